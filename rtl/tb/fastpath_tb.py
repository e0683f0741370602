"""cocotb testbench of the reference CE -> CNP fast path (rtl/src): one golden
vector per run, named by the environment (the pytest runner test_fastpath.py
sets it): CTCM_VECTOR (its YAML), CTCM_VARIANT (idle | backpressure |
gaps-backpressure), CTCM_STIMULUS (auto | pcapng | hex | yaml)."""

from __future__ import annotations

import os
import sys

import cocotb
from cocotb.clock import Clock

sys.path.insert(0, os.path.dirname(__file__))
from fastpath_ctl import RegisterPort  # noqa: E402

from ctcm.cocotb.bench import VectorBench  # noqa: E402


class TB(VectorBench):
    def __init__(self, dut):
        cocotb.start_soon(Clock(dut.clk, 4, unit="ns").start())
        super().__init__(dut, clock=dut.clk, reset=dut.rst, timestamp="ts_us",
                         sources={1: "s_axis_h", 2: "s_axis_n"}, sinks={1: "m_axis_h", 2: "m_axis_n"},
                         control=RegisterPort(dut, dut.clk))


@cocotb.test()
async def replay(dut):
    """The vector's forwarded frames and CNPs equal its expected outputs; the DUT's counters the model's."""
    vector = os.environ["CTCM_VECTOR"]
    tb = TB(dut)
    tb.set_variant(os.environ.get("CTCM_VARIANT", "idle"))
    await tb.reset()
    res = await tb.run(vector, source=os.environ.get("CTCM_STIMULUS", "auto"))
    dut._log.info(f"{os.path.basename(vector)}: {res.stimuli} stimuli in {res.seconds:.2f} s wall, "
                  f"{res.cpu_seconds:.2f} s CPU ({res.stimuli / max(res.cpu_seconds, 1e-9):.0f} frames per CPU second)")
    out = os.environ.get("CTCM_RATE_FILE")
    if out:
        with open(out, "a", encoding="utf-8") as f:
            f.write(f"{os.environ.get('CTCM_SIM', '?')} {os.environ.get('CTCM_VARIANT', 'idle')} "
                    f"{os.path.basename(vector)} {res.stimuli} {res.seconds:.3f} {res.cpu_seconds:.3f}\n")
    assert res.ok, "oracle:\n" + res.format()
