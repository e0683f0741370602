"""The reference fast path's control plane (its register port; map in
rtl/README.md), as the kit's ControlPlane hook."""

from __future__ import annotations

from cocotb.triggers import ReadOnly, RisingEdge

from ctcm.cocotb.slowpath import ControlPlane, FlowWrite

REG_ID, REG_PARAMS, REG_CNP_INTERVAL_LO, REG_CNP_INTERVAL_HI = 0x00, 0x04, 0x08, 0x0C
REG_FLOW_IP, REG_FLOW_RQPN, REG_FLOW_LQPN, REG_FLOW_CMD = 0x10, 0x20, 0x24, 0x28
REG_COUNTERS = 0x40
COUNTERS = ("packets", "forwarded", "not_roce", "roce", "cm", "malformed", "unsupported",
            "ce_packets", "ce_untracked", "cnp_sent", "cnp_suppressed")
DESIGN_ID = 0xC7C00001


class RegisterPort(ControlPlane):
    def __init__(self, dut, clock):
        self.dut, self.clock = dut, clock
        dut.reg_wr.value = 0
        dut.reg_rd.value = 0
        dut.reg_addr.value = 0
        dut.reg_wdata.value = 0
        self.table_size = 64

    async def write(self, addr: int, value: int) -> None:
        d = self.dut
        d.reg_addr.value = addr
        d.reg_wdata.value = value
        d.reg_wr.value = 1
        await RisingEdge(self.clock)
        d.reg_wr.value = 0

    async def read(self, addr: int) -> int:
        d = self.dut
        d.reg_addr.value = addr
        d.reg_rd.value = 1
        await RisingEdge(self.clock)
        d.reg_rd.value = 0
        await ReadOnly()
        assert int(d.reg_rvalid.value) == 1, "register port: no reg_rvalid in the cycle after reg_rd"
        v = int(d.reg_rdata.value)
        await RisingEdge(self.clock)
        return v

    async def configure(self, config) -> None:
        ident = await self.read(REG_ID)
        assert ident == DESIGN_ID, f"register ID {ident:#x}, expected {DESIGN_ID:#x}: not the ctcm fast path"
        self.table_size = (await self.read(REG_PARAMS)) >> 16
        await self.write(REG_CNP_INTERVAL_LO, config.cnp_interval_us & 0xFFFFFFFF)
        await self.write(REG_CNP_INTERVAL_HI, config.cnp_interval_us >> 32)

    async def write_flow(self, w: FlowWrite) -> None:
        for k in range(4):
            await self.write(REG_FLOW_IP + 4 * k, int.from_bytes(w.remote_ip[4 * k : 4 * k + 4], "big"))
        await self.write(REG_FLOW_RQPN, w.remote_qpn)
        await self.write(REG_FLOW_LQPN, w.local_qpn)
        await self.write(REG_FLOW_CMD, w.index | int(w.valid) << 16 | int(w.clear_pacing) << 17)

    async def counters(self) -> dict[str, int]:
        return {name: await self.read(REG_COUNTERS + 4 * i) for i, name in enumerate(COUNTERS)}
