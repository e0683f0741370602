"""pytest runner of the reference fast path's testbench (make rtl): one test
per (simulator, variant, vector), each a cocotb run of fastpath_tb.py
(build and run: simrun.py).

Environment: CTCM_RTL_SIMS (icarus,verilator), CTCM_RTL_VECTORS (YAML
files, space-separated; default the committed vectors/*.yaml),
CTCM_RTL_VARIANTS (idle,backpressure; see ctcm.cocotb.bench.VARIANTS),
CTCM_RTL_DEFINES (e.g. FAULT_ICRC_BYTE_ORDER: the negative controls),
CTCM_RTL_DATA_W (64), CTCM_RTL_BUILD (build/rtl), CTCM_STIMULUS (auto | pcapng | hex |
yaml: where stimuli are read from), CTCM_RATE_FILE (a file
each run appends its frames and seconds to).
"""

from __future__ import annotations

import glob
import os

import pytest

from simrun import REPO, build, run

TB = os.path.dirname(os.path.abspath(__file__))
SOURCES = sorted(glob.glob(os.path.join(REPO, "rtl", "src", "*.v")))
SIMS = os.environ.get("CTCM_RTL_SIMS", "icarus,verilator").split(",")
VARIANTS = os.environ.get("CTCM_RTL_VARIANTS", "idle,backpressure").split(",")
DEFINES = [d for d in os.environ.get("CTCM_RTL_DEFINES", "").split(",") if d]
DATA_W = int(os.environ.get("CTCM_RTL_DATA_W", "64"))
VECTORS = os.environ.get("CTCM_RTL_VECTORS", "").split() or sorted(glob.glob(os.path.join(REPO, "vectors", "*.yaml")))
TAG = "w%d%s" % (DATA_W, "".join("-" + d.lower() for d in DEFINES))


def _name(path: str) -> str:
    return os.path.basename(path)[: -len(".yaml")]


@pytest.mark.parametrize("vector", VECTORS, ids=_name)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("sim", SIMS)
def test_vector(sim, variant, vector):
    runner = build(sim, "ctcm_fastpath", SOURCES, TAG, {"DATA_W": DATA_W}, DEFINES)
    run(runner, sim, "ctcm_fastpath", TAG, "fastpath_tb", TB, f"{variant}-{_name(vector)}",
        {"CTCM_VECTOR": os.path.abspath(vector), "CTCM_VARIANT": variant,
         "CTCM_RATE_FILE": os.environ.get("CTCM_RATE_FILE", "")})
