"""The slow path: the model tracks CM while the vector replays and tells the
DUT's flow table what to hold (pure Python, no cocotb).

A DPU splits the work: software on its cores tracks CM connections (here the
model's :class:`~ctcm.dataplane.pipeline.Pipeline`, fed the same stimuli as
the DUT), the hardware does the per-packet work and looks flows up in a table
that software writes. :class:`SlowPath` turns the model's tracker events
(flow added, flow removed) into table writes: for every flow key an event
touches, the DUT's entry is made to answer what the model's
``Tracker.query`` answers (a local QPN, or no entry), at an index the slow
path allocates. :class:`ControlPlane` is the hook through which a DUT's own
control interface receives them.
"""

from __future__ import annotations

from typing import NamedTuple

from ctcm.dataplane.config import Config
from ctcm.dataplane.pipeline import Pipeline, Result
from ctcm.dataplane.tracker import normalize_ip

__all__ = ["FlowWrite", "ControlPlane", "SlowPath", "TableFull"]


class FlowWrite(NamedTuple):
    """One write to the DUT's flow table."""

    index: int
    remote_ip: bytes      # 16 bytes, IPv4 as ::ffff:a.b.c.d
    remote_qpn: int
    local_qpn: int        # 0 with valid=False
    valid: bool           # False: remove the entry
    clear_pacing: bool    # forget the entry's CNP pacing state (a new or removed flow)


class TableFull(Exception):
    """The model tracks more flows at once than the DUT's table holds."""


class ControlPlane:
    """What the kit asks of a DUT's control plane; subclass it for a DUT (the
    reference design's is ``rtl/tb/fastpath_ctl.py``). Every method is a
    coroutine run in the simulation."""

    #: entries of the DUT's flow table (the slow path's indices are below it)
    table_size: int = 64

    async def configure(self, config: Config) -> None:
        """Before the first stimulus: the vector's config (CNP pacing interval ...)."""

    async def write_flow(self, w: FlowWrite) -> None:
        """One flow-table write (an add, an update or a removal)."""
        raise NotImplementedError

    async def counters(self) -> dict[str, int]:
        """The DUT's counters under the model's names (``packets``, ``cnp_sent`` ...)
        after the last stimulus; the kit checks those it gets against the model.
        An empty dict: the DUT has none to check."""
        return {}


class SlowPath:
    """The model run alongside the DUT; :meth:`step` gives each stimulus' writes."""

    def __init__(self, config: Config, table_size: int):
        self.pipeline = Pipeline(config)
        self.table_size = table_size
        self.index: dict[tuple[bytes, int], int] = {}  # flow key -> DUT table index
        self._free = list(range(table_size - 1, -1, -1))

    def step(self, port: int, frame: bytes, t_us: int) -> tuple[Result, list[FlowWrite]]:
        """Run one stimulus through the model: its result and the table writes
        that follow from its events (to apply before the next stimulus)."""
        res = self.pipeline.process(port, frame, t_us)
        writes: list[FlowWrite] = []
        for ev in res.events:
            removed = added = None
            if ev.flow_removed is not None:
                removed = (normalize_ip(ev.flow_removed[0]), ev.flow_removed[1])
            if ev.flow_added is not None:
                added = (normalize_ip(ev.flow_added[0]), ev.flow_added[1])
            for key in dict.fromkeys(k for k in (removed, added) if k is not None):
                writes.append(self._sync(key, cleared=key == removed))
        return res, [w for w in writes if w is not None]

    def _sync(self, key: tuple[bytes, int], cleared: bool) -> FlowWrite | None:
        ip, rqpn = key
        lqpn = self.pipeline.tracker.query(ip, rqpn)
        idx = self.index.get(key)
        if not lqpn:
            if idx is None:
                return None
            del self.index[key]
            self._free.append(idx)
            return FlowWrite(idx, ip, rqpn, 0, False, True)
        new = idx is None
        if new:
            if not self._free:
                raise TableFull(f"the model tracks more than {self.table_size} flows at once: "
                                "the DUT's flow table is too small for this vector")
            idx = self.index[key] = self._free.pop()
        return FlowWrite(idx, ip, rqpn, lqpn, True, new or cleared)
