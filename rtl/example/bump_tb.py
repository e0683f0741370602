"""The kit on a user's own DUT (rtl/example/bump.v): the whole testbench."""

import os

import cocotb
from cocotb.clock import Clock

from ctcm.cocotb.bench import VectorBench
from ctcm.cocotb.slowpath import ControlPlane


class NoControlPlane(ControlPlane):
    """bump.v has no flow table: the slow path's writes go nowhere."""

    table_size = 1 << 20

    async def write_flow(self, w):
        pass


@cocotb.test()
async def replay(dut):
    cocotb.start_soon(Clock(dut.clk, 4, unit="ns").start())
    tb = VectorBench(dut, clock=dut.clk, reset=dut.rst, timestamp=None, control=NoControlPlane(),
                     sources={1: "host_rx", 2: "net_rx"}, sinks={1: "host_tx", 2: "net_tx"})
    await tb.reset()
    res = await tb.run(os.environ["CTCM_VECTOR"])
    assert res.ok, "oracle:\n" + res.format()
