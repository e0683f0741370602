"""Offsets are written once, in the field tables (issue 16): a byte offset in the
reference and hot paths is a named constant taken from ``ctcm.spec.headers``, never
a number. This test reads those modules' source and fails on a literal offset:

* a bare number of 2 or more as an index or slice bound (``buf[12]``, ``t[:20]``);
* a number of 2 or more added to or subtracted from a position inside a
  subscript, unless the sum already holds a named constant (``buf[l3 + 9]``
  fails; ``buf[l3 + _IP4_PROTOCOL]`` and ``buf[b + _DQPN + 2]`` pass). ``+ 1``,
  the next byte of a multi-byte field, is allowed anywhere.

Strides (``[::2]``) and products (``2 * alen``: counts, not positions) are not offsets.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

import ctcm

PKG = pathlib.Path(ctcm.__file__).parent
MODULES = [
    "dataplane/packet.py", "dataplane/batch.py", "dataplane/icrc.py", "dataplane/cnp.py",
    "stimulus/randgen.py", "stimulus/scenario.py", "oracle/compare.py", "cli.py",
]


def _named(node) -> bool:
    """True when the expression holds a named constant (an UPPER_CASE name or attribute)."""
    for n in ast.walk(node):
        name = n.id if isinstance(n, ast.Name) else n.attr if isinstance(n, ast.Attribute) else ""
        if name.lstrip("_")[:1].isupper():
            return True
    return False


def literal_offsets(source: str) -> list[str]:
    """``line: expression`` of every literal offset in ``source``."""
    found = []

    def check(expr, sub):
        if isinstance(expr, ast.Constant) and type(expr.value) is int and expr.value >= 2:
            found.append(f"{sub.lineno}: {ast.unparse(sub)}")
            return
        for top in ast.walk(expr):
            if isinstance(top, ast.BinOp) and isinstance(top.op, (ast.Add, ast.Sub)):
                for side in (top.left, top.right):
                    if isinstance(side, ast.Constant) and type(side.value) is int and side.value >= 2 and not _named(top):
                        found.append(f"{sub.lineno}: {ast.unparse(sub)}")
                        return

    for sub in ast.walk(ast.parse(source)):
        if not isinstance(sub, ast.Subscript):
            continue
        parts = sub.slice.elts if isinstance(sub.slice, ast.Tuple) else [sub.slice]
        for p in parts:
            if isinstance(p, ast.Slice):
                for bound in (p.lower, p.upper):  # not p.step: a stride is no offset
                    if bound is not None:
                        check(bound, sub)
            else:
                check(p, sub)
    return sorted(set(found), key=lambda s: int(s.split(":")[0]))


@pytest.mark.parametrize("module", MODULES)
def test_no_literal_offset(module):
    bad = literal_offsets((PKG / module).read_text())
    assert not bad, f"{module}: literal offsets (take them from ctcm.spec.headers): " + "; ".join(bad)


@pytest.mark.parametrize("code, flagged", [
    ("buf[12]", True), ("buf[l3 + 9]", True), ("t[:20]", True), ("f[b + 5 : b + 8]", True), ("x[q + 2]", True), ("x[off + 1]", False),
    ("buf[l3 + _IP4_PROTOCOL]", False), ("buf[b + _DQPN + 1]", False), ("h.name[len(P):]", False),
    ("w[:, 0::2]", False), ("v[:, : 2 * alen]", False), ("buf[0]", False), ("buf[l3 + H.IPV4['ttl'].byte]", False),
])
def test_the_check_itself(code, flagged):
    assert bool(literal_offsets(code)) is flagged
