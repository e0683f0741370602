"""One replay test per committed golden vector (vectors/*.yaml).

Each test sends the vector's stimulus (keeping its time), compares every
stimulus' outputs with the vector's expected packets (the oracle's
``compare_outputs``) and the target's counters with the vector's final
counters. Vectors with their own geometry (p4-collision, p4-full-table) run
on their own switch build (the harness groups tests by geometry).
"""

from __future__ import annotations

import glob
import os
import re

import yaml

from ctcm_ptf.base import CtcmTest, steps_from_vector_doc
from ctcm_ptf.modelutil import VECTORS, config_from_dict

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _head(path: str) -> dict:
    """The vector's header (name, options, ports) without reading its packets."""
    lines = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("packets:"):
                break
            lines.append(line)
    return yaml.load("".join(lines), Loader=_Loader) or {}


class VectorReplay(CtcmTest):
    """Replays one golden vector; subclasses (below) name the file."""

    path: str = ""
    recorded: dict | None = None  # the control-plane config the vector records (its `config:` line)

    @classmethod
    def config(cls):
        """The config the vector was made with when it records one, else
        p4/config.yaml with the vector's options and ports."""
        if cls.recorded:
            return config_from_dict(cls.recorded)
        return super().config()

    def replay_file(self):
        with open(self.path, encoding="utf-8") as f:
            doc = yaml.load(f, Loader=_Loader)
        steps = steps_from_vector_doc(doc)
        final = doc.get("final") or {}
        self.replay(steps, final.get("counters"), f"vector {doc['name']}", final.get("connections"))


def _vector_files() -> list[str]:
    d = os.environ.get("CTCM_PTF_VECTORS", VECTORS)
    out = []
    for p in sorted(glob.glob(os.path.join(d, "*.yaml"))):
        h = _head(p)
        if isinstance(h, dict) and h.get("format", "").startswith("ctcm-vector/"):
            out.append(p)
    return out


for _p in _vector_files():
    _h = _head(_p)
    _name = "Vector_" + re.sub(r"\W", "_", _h["name"])
    globals()[_name] = type(_name, (VectorReplay,), {
        "path": _p,
        "recorded": _h.get("config"),
        "runTest": VectorReplay.replay_file,
        "options": dict(_h.get("options") or {}),
        "ports": dict(_h.get("ports") or {"host": 1, "net": 2}),
        "__doc__": f"Replay of the golden vector {os.path.basename(_p)}.",
        "__module__": __name__,
    })
del _p, _h, _name
