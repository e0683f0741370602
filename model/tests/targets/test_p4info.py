"""The P4Info `make p4` writes beside each build's JSON (p4c --p4runtime-files)
names every table, action, counter and register the control-plane contract
(ctcm.targets.program) names.

The P4Info is read here with a plain regular expression over p4c's text format
(``KIND {`` then ``preamble { id: N name: "..."``), not with the P4Runtime
client's own reader. The default geometry is compiled into a temporary
directory unless build/p4/default is newer than every file under p4/."""

from __future__ import annotations

import os
import re

import pytest
from conftest import require_tool

from ctcm.gen import p4gen
from ctcm.targets.program import CONN_FIELDS, COUNTERS, OPTIONS, PORT_MAP, SET_OPTIONS, SET_PEER, contract_names

REPO = os.path.normpath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, os.pardir))
_OBJ = re.compile(r'^(tables|actions|counters|registers) \{\n\s+preamble \{\n\s+id: (\d+)\n\s+name: "([^"]+)"', re.M)


def p4info_names(text: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for kind, _id, name in _OBJ.findall(text):
        out.setdefault(kind, set()).add(name)
    return out


def missing(text: str) -> list[str]:
    """Contract names the P4Info lacks (registers by their last name part)."""
    have = p4info_names(text)
    out = []
    for kind, names in contract_names().items():
        for n in names:
            found = {h for h in have.get(kind, ()) if h == n or (kind == "registers" and h.endswith("." + n))}
            if len(found) != 1:
                out.append(f"{kind}: {n}")
    return out


def _fresh(path: str) -> bool:
    if not os.path.isfile(path):
        return False
    t = os.path.getmtime(path)
    srcs = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(REPO, "p4")) for f in fs]
    return all(os.path.getmtime(s) <= t for s in srcs + [p4gen.__file__])


@pytest.fixture(scope="module")
def p4info_text(tmp_path_factory) -> str:
    built = os.path.join(REPO, "build", "p4", "default", "ctcm" + p4gen.P4INFO_SUFFIX)
    if not _fresh(built):
        require_tool("p4c", "p4c (p4/README.md, Toolchain)")
        out = tmp_path_factory.mktemp("p4")
        js = p4gen.build(p4gen.geometry_of_tag("default"), out_root=str(out))
        built = js[:-len(".json")] + p4gen.P4INFO_SUFFIX
        assert os.path.isfile(js), "the JSON is still written beside the P4Info"
    with open(built) as f:
        return f.read()


def test_contract_names_are_the_program_constants():
    names = contract_names()
    assert names == {"tables": (PORT_MAP, OPTIONS), "actions": (SET_PEER, SET_OPTIONS), "counters": (COUNTERS,),
                     "registers": CONN_FIELDS}


def test_p4info_names_the_whole_contract(p4info_text):
    have = p4info_names(p4info_text)
    assert have.get("tables") and have.get("actions") and have.get("counters") and have.get("registers")
    assert missing(p4info_text) == []


def test_a_p4info_without_a_contract_object_is_caught(p4info_text):
    """Negative control: the check names a table, an action and a register removed from the text."""
    text = p4info_text.replace(f'name: "{PORT_MAP}"', 'name: "CtcmIngress.renamed_map"')
    text = text.replace(f'name: "{SET_OPTIONS}"', 'name: "CtcmIngress.renamed_options"')
    text = re.sub(r'name: "([^"]*\.)?conn_rqpn"', 'name: "CtcmIngress.renamed_rqpn"', text)
    assert missing(text) == [f"tables: {PORT_MAP}", f"actions: {SET_OPTIONS}", "registers: conn_rqpn"]
