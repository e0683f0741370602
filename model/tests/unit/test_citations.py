"""Comments that cannot go stale (issue 16 item 8): every model function, class or
module a P4 comment cites (``machine.lookup``, ``cnp.CnpGenerator.generate``,
``model/ctcm/dataplane/machine.py``) exists, and every P4 control, table or file a
model docstring or comment cites (``CtcmTracker``, ``p4/include/tracker.p4``) exists."""

from __future__ import annotations

import importlib
import pathlib
import re

import ctcm

PKG = pathlib.Path(ctcm.__file__).parent
ROOT = PKG.parent.parent
P4 = ROOT / "p4"

#: module stem -> dotted name, for the stems that name one module only
_stems: dict[str, list[str]] = {}
for _p in PKG.rglob("*.py"):
    if _p.stem != "__init__":
        _stems.setdefault(_p.stem, []).append(".".join(_p.relative_to(PKG.parent).with_suffix("").parts))
MODULES = {k: v[0] for k, v in _stems.items() if len(v) == 1}
MODULES["spec"] = "ctcm.spec"

CITE = re.compile(r"\b([A-Za-z_]\w*)\.([A-Za-z_]\w*)(?:\.([A-Za-z_]\w*))?")
PY_PATH = re.compile(r"\bmodel/ctcm/[\w/]+\.py\b")
P4_NAME = re.compile(r"\bCtcm[A-Z]\w*")
P4_PATH = re.compile(r"(?<![\w.])(?:p4/)?(?:include/)?(?:generated/)?[\w]+\.p4\b(?!\.)")


def p4_comments(text: str) -> str:
    return "\n".join(re.findall(r"//[^\n]*|/\*.*?\*/", text, re.S))


def _classes() -> dict[str, object]:
    """Every public class of the package by name (for ``Pipeline.process``-style citations)."""
    out = {}
    for dotted in MODULES.values():
        try:
            mod = importlib.import_module(dotted)
        except ImportError:  # an optional dependency (cocotb, grpc) not installed: not cited by the P4
            continue
        for k, v in vars(mod).items():
            if isinstance(v, type) and getattr(v, "__module__", "").startswith("ctcm"):
                out.setdefault(k, v)
    return out


def model_citations(comments: str, classes: dict) -> tuple[list[str], list[str]]:
    """(citations checked, those that do not exist) in P4 comment text."""
    checked, missing = [], []
    for m in CITE.finditer(comments):
        head, *rest = [g for g in m.groups() if g]
        if head in MODULES:
            obj, name = importlib.import_module(MODULES[head]), MODULES[head]
        elif head in classes:
            obj, name = classes[head], head
        else:
            continue  # P4 names (meta.now, hdr.ipv4), file suffixes
        if rest and rest[-1] in ("py", "p4", "yaml", "md"):
            continue
        cited = ".".join([head, *rest])
        checked.append(cited)
        for attr in rest:
            if not hasattr(obj, attr):
                missing.append(cited)
                break
            obj = getattr(obj, attr)
    for path in PY_PATH.findall(comments):
        checked.append(path)
        if not (ROOT / path).is_file():
            missing.append(path)
    return checked, missing


def p4_defined() -> set[str]:
    names = set()
    for p in P4.rglob("*.p4"):
        names |= set(re.findall(r"\b(?:control|parser|table|header|struct)\s+(\w+)", p.read_text()))
    return names


def p4_citations(text: str, defined: set[str]) -> tuple[list[str], list[str]]:
    """(citations checked, those that do not exist) of P4 names and files in model text."""
    checked, missing = [], []
    for name in P4_NAME.findall(text):
        checked.append(name)
        if name not in defined:
            missing.append(name)
    for path in P4_PATH.findall(text):
        checked.append(path)
        tail = path.split("/")[-1]
        if not any(p.name == tail and str(p).endswith(path) for p in P4.rglob("*.p4")) \
                and not (ROOT / path).is_file():
            missing.append(path)
    return checked, missing


def test_p4_comments_cite_model_names_that_exist():
    classes = _classes()
    checked, missing = [], []
    for p in sorted(P4.rglob("*.p4")):
        c, m = model_citations(p4_comments(p.read_text()), classes)
        checked += c
        missing += [f"{p.relative_to(ROOT)}: {x}" for x in m]
    assert not missing, "P4 comments cite model names that do not exist:\n" + "\n".join(missing)
    # the stage table of tracker.p4 is among what was checked
    for stage in ("message", "lookup", "expire", "admit", "transition", "flow_insert", "flow_remove", "release"):
        assert f"machine.{stage}" in checked


def test_model_text_cites_p4_names_that_exist():
    defined = p4_defined()
    checked, missing = [], []
    for p in sorted(PKG.rglob("*.py")):
        c, m = p4_citations(p.read_text(), defined)
        checked += c
        missing += [f"{p.relative_to(ROOT)}: {x}" for x in m]
    assert not missing, "model text cites P4 names or files that do not exist:\n" + "\n".join(missing)
    assert "CtcmTracker" in checked and "p4/include/tracker.p4" in checked


def test_the_checks_catch_a_stale_citation():
    """The checkers find a name that is gone (so the tests above can fail)."""
    c, m = model_citations("// machine.lookup, machine.lookup_old, cnp.CnpGenerator.nope, model/ctcm/gone.py",
                           _classes())
    assert m == ["machine.lookup_old", "cnp.CnpGenerator.nope", "model/ctcm/gone.py"]
    c, m = p4_citations("CtcmTracker, CtcmGone; p4/include/tracker.p4, p4/include/track.p4", p4_defined())
    assert m == ["CtcmGone", "p4/include/track.p4"]
