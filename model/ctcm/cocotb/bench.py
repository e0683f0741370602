"""The cocotb side of the kit: drive a golden vector through a DUT with
AXI-Stream ports and check what comes out with the oracle.

:class:`VectorBench` is the ``TB`` class of the corundum / verilog-ethernet
testbenches: an ``AxiStreamSource`` per ingress port and an
``AxiStreamSink`` per egress port built from bus prefixes (cocotbext-axi),
a monitor per sink feeding the :class:`~ctcm.cocotb.scoreboard.Scoreboard`,
the :class:`~ctcm.cocotb.slowpath.SlowPath` (the model tracking CM beside
the DUT) writing the DUT's flow table through a
:class:`~ctcm.cocotb.slowpath.ControlPlane`, and idle / backpressure
generators for sources and sinks. See rtl/README.md.

Stimuli go in one at a time in vector order, whatever their port: stimulus
k+1 starts once the DUT has taken the last beat of stimulus k and the slow
path's writes for k are done. The vector's time reaches the DUT through a
timestamp input (as hardware gets it from a PTP counter) set to the
stimulus' ``t_us`` before it is sent, so idle time in the vector costs no
simulated cycles.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field

import cocotb
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import AxiStreamBus, AxiStreamSink, AxiStreamSource

from ctcm.cocotb.scoreboard import Scoreboard
from ctcm.cocotb.slowpath import ControlPlane, SlowPath
from ctcm.cocotb.vectors import expected_by_port, iter_stimuli, read_head, vector_config
from ctcm.oracle.compare import Report

__all__ = ["VectorBench", "RunResult", "idle", "backpressure", "random_gaps", "VARIANTS"]


def idle():
    """No pauses: a source sends every cycle, a sink is always ready."""
    return None


def backpressure(seed: int = 1, ready: float = 0.5):
    """A sink's pause pattern: ready on a random ``ready`` share of the cycles."""
    rng = random.Random(seed)
    while True:
        yield rng.random() >= ready


def random_gaps(seed: int = 2, busy: float = 0.7):
    """A source's pause pattern: valid on a random ``busy`` share of the cycles."""
    rng = random.Random(seed)
    while True:
        yield rng.random() >= busy


#: named variants: (source pause generator, sink pause generator) factories
VARIANTS = {
    "idle": (idle, idle),
    "backpressure": (idle, backpressure),
    "gaps-backpressure": (random_gaps, backpressure),
}


@dataclass
class RunResult:
    vector: str
    report: Report
    stimuli: int = 0
    counter_errors: list[str] = field(default_factory=list)
    first_error: str | None = None
    seconds: float = 0.0       # wall clock
    cpu_seconds: float = 0.0   # CPU time of the simulator process (simulator and Python)

    @property
    def ok(self) -> bool:
        return self.report.ok and not self.counter_errors

    def format(self) -> str:
        """The oracle's report (as ``ctcm compare`` prints it), then the first frame
        that differed from the next expected one on its port, with the oracle's
        field-level diff (also when the report pairs no frames: a frame shifted by
        a lost tag shows as missing + extra there), then counter mismatches."""
        lines = [self.report.format()]
        if self.first_error:
            lines.append("first difference, in order on its port: " + self.first_error)
        return "\n".join(lines + self.counter_errors)


class VectorBench:
    """A DUT with per-port AXI-Stream interfaces, driven by golden vectors.

    ``sources`` / ``sinks``: {ctcm port number: bus prefix} (``{1: "s_axis_h"}``);
    ``control``: the DUT's :class:`ControlPlane`; ``timestamp``: the name of
    the DUT's time input (µs), or None when it has none."""

    def __init__(self, dut, *, clock, sources: dict, sinks: dict, control: ControlPlane, reset=None,
                 reset_active_level: bool = True, timestamp: str | None = "ts_us"):
        self.dut = dut
        self.clock = clock
        self.reset_signal = reset
        self.reset_active_level = reset_active_level
        self.control = control
        self.log = dut._log
        self.sources = {p: AxiStreamSource(AxiStreamBus.from_prefix(dut, n), clock, reset, reset_active_level)
                        for p, n in sources.items()}
        self.sinks = {p: AxiStreamSink(AxiStreamBus.from_prefix(dut, n), clock, reset, reset_active_level)
                      for p, n in sinks.items()}
        for bus in (*self.sources.values(), *self.sinks.values()):
            bus.log.setLevel(logging.WARNING)  # else every frame is formatted into the log ("TX frame: ...")
        self.timestamp = getattr(dut, timestamp) if timestamp else None
        if self.timestamp is not None:
            self.timestamp.value = 0

    def set_variant(self, name: str) -> None:
        """Pause generators by name (:data:`VARIANTS`)."""
        src, snk = VARIANTS[name]
        for k, s in enumerate(self.sources.values()):
            s.set_pause_generator(src() if src is idle else src(seed=10 + k))
        for k, s in enumerate(self.sinks.values()):
            s.set_pause_generator(snk() if snk is idle else snk(seed=20 + k))

    async def reset(self, cycles: int = 4) -> None:
        """Hold the DUT's reset for ``cycles`` clock cycles (nothing without a reset)."""
        if self.reset_signal is None:
            return
        self.reset_signal.value = int(self.reset_active_level)
        await ClockCycles(self.clock, cycles)
        self.reset_signal.value = int(not self.reset_active_level)
        await RisingEdge(self.clock)

    async def run(self, vector: str, *, source: str = "auto", drain_cycles: int = 2000) -> RunResult:
        """Replay ``vector`` (its YAML path): every stimulus, the slow path's
        writes, then wait until the expected number of frames came out (or
        nothing came for ``drain_cycles``) and ``drain_cycles // 10`` more
        for extras. Returns the oracle's report and the counter check."""
        start, cpu = time.monotonic(), time.process_time()
        head = read_head(vector)
        config = vector_config(head)
        sb = Scoreboard(expected_by_port(vector), self.log.error)
        slow = SlowPath(config, self.control.table_size)
        await self.control.configure(config)
        monitors = [cocotb.start_soon(self._monitor(p, s, sb)) for p, s in self.sinks.items()]
        n = 0
        for stim in iter_stimuli(vector, source):
            n += 1
            if self.timestamp is not None:
                self.timestamp.value = stim.t_us
            _res, writes = slow.step(stim.port, stim.frame, stim.t_us)
            src = self.sources.get(stim.port)
            if src is not None:  # else a port the DUT does not have: the model drops the frame too
                await src.send(stim.frame)
                await src.wait()
            for w in writes:
                await self.control.write_flow(w)
        await self._drain(sb, drain_cycles)
        for m in monitors:
            m.cancel()
        errors = []
        got = await self.control.counters()
        model = slow.pipeline.counters
        for k, v in got.items():
            if model.get(k) != v:
                errors.append(f"counter {k}: model {model.get(k)}, DUT {v}")
        return RunResult(vector, sb.report(), n, errors, sb.first_error, time.monotonic() - start,
                         time.process_time() - cpu)

    async def _monitor(self, port: int, sink: AxiStreamSink, sb: Scoreboard) -> None:
        while True:
            frame = await sink.recv()
            sb.observe(port, bytes(frame.tdata))

    async def _drain(self, sb: Scoreboard, cycles: int) -> None:
        seen, quiet = sb.observed_count, 0
        while sb.observed_count < sb.expected_count and quiet < cycles:
            await ClockCycles(self.clock, 10)
            quiet = 0 if sb.observed_count != seen else quiet + 10
            seen = sb.observed_count
        await ClockCycles(self.clock, max(10, cycles // 10))
