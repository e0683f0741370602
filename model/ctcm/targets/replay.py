"""Offline replay of a vector on bmv2: pcap files in, pcap files out, no root.

:func:`replay_bmv2` replays one vector file on ``simple_switch`` in its
pcap-file mode (``--use-files``) and compares what came out with the
vector, like ``ctcm compare`` (the oracle's streaming compare, field-level
diffs), then the switch's counters and connection table with the vector's
final snapshot:

1. the model decides that the vector's outcome does not depend on time
   (:mod:`ctcm.vectors.timing`); a time-dependent vector is refused
   (:class:`TimeDependent`, one line naming its first such stimulus);
2. its stimuli are written as one pcap per port (``p<port>_in.pcap``),
   streamed, in a private temporary directory; the pcap timestamps are the
   stimulus numbers (µs), so bmv2, which merges its input files by
   timestamp, reads them in vector order;
3. simple_switch runs the build of the vector's geometry
   (``build/p4/<geometry>/ctcm.json``) in that directory, is programmed with
   the vector's config through :mod:`ctcm.targets.bmv2` (the PTF suite's
   code) during the ``--use-files`` wait, and reads its files;
4. once its packet counter reached the vector's and its output files are
   still, counters and connection table are read and the switch is stopped;
   the per-port output pcaps, merged by time, are compared with the vector.

Nothing is left behind: the switch is stopped and the directory removed
whatever happens. ``log_file``: simple_switch's per-packet log (the logging
build; P4 coverage reads it).
"""

from __future__ import annotations

import heapq
import os
import shutil
import struct
import tempfile
import time
from dataclasses import dataclass, field

from ctcm.io.pcapio import LINKTYPE_ETHERNET, CaptureError, CaptureReader
from ctcm.oracle.compare import OracleError, Report, compare
from ctcm.oracle.files import _NotStreamable, compare_streams, iter_expected, load_expected
from ctcm.oracle.parts import iter_stimuli, vector_config, vector_final, vector_head
from ctcm.spec import Counter
from ctcm.targets.bmv2 import Bmv2Switch, TargetError
from ctcm.targets.program import counter_diffs, program, table_diffs
from ctcm.vectors.timing import time_dependence

__all__ = ["replay_bmv2", "ReplayResult", "TimeDependent", "json_for", "REPO_BUILD"]

#: Where ``make p4`` puts the builds: <repo>/build/p4/<geometry tag>/ctcm.json.
REPO_BUILD = os.path.normpath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, os.pardir, "build", "p4"))
#: Seconds simple_switch waits before reading its files (it is programmed meanwhile).
WAIT = int(os.environ.get("CTCM_REPLAY_WAIT", "1"))
#: Seconds without progress after which the switch is declared stuck.
STALL = float(os.environ.get("CTCM_REPLAY_STALL", "10"))
#: Seconds the output files must stay unchanged once every stimulus was counted.
SETTLE = 0.2
_PCAP_HEAD = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, LINKTYPE_ETHERNET)
_REC = struct.Struct("<IIII")


class TimeDependent(Exception):
    """The model says the vector's outcome depends on time (one line)."""


@dataclass
class ReplayResult:
    name: str
    stimuli: int
    switch: str
    report: Report
    counter_diffs: list = field(default_factory=list)
    table_diffs: list = field(default_factory=list)
    counters_compared: int = 0
    connections: int = 0
    seconds: float = 0.0  # the switch's time for the stimuli (see _wait_done)
    span_limit_us: int | None = None
    problems: list = field(default_factory=list)  # run-level failures (stall, span too long)

    @property
    def rate(self) -> float:
        return self.stimuli / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        return self.report.ok and not self.counter_diffs and not self.table_diffs and not self.problems

    def format(self) -> str:
        lines = [f"{self.name}: {self.stimuli} stimuli on bmv2 ({os.path.basename(self.switch)}, pcap files) "
                 f"in {self.seconds:.2f} s: {self.rate:,.0f} stimuli/s"]
        lines += self.problems
        lines.append(self.report.format())
        if self.counter_diffs:
            lines.append("counters differ from the vector's final counters:")
            lines += self.counter_diffs
        else:
            lines.append(f"counters: {self.counters_compared} of {self.counters_compared} equal")
        if self.table_diffs:
            lines.append("connection table differs from the vector's final connections "
                         "(opened_by state local_id remote_ip remote_id local_qpn remote_qpn flow):")
            lines += self.table_diffs
        else:
            lines.append(f"connections: {self.connections} of {self.connections} equal")
        return "\n".join(lines)


def json_for(tag: str, build: str | None = None) -> str:
    return os.path.join(build or os.environ.get("CTCM_P4_BUILD") or REPO_BUILD, tag, "ctcm.json")


def _write_inputs(path: str, workdir: str, ports, progress=None) -> tuple[int, set]:
    """``p<port>_in.pcap`` for every port of ``ports`` and of the stimuli; (stimuli, ports)."""
    files = {}

    def out(port):
        f = files.get(port)
        if f is None:
            f = files[port] = open(os.path.join(workdir, f"p{port}_in.pcap"), "wb", buffering=1 << 20)  # noqa: SIM115
            f.write(_PCAP_HEAD)
        return f

    n = 0
    try:
        for p in ports:
            out(p)
        pack = _REC.pack
        for port, _t, frame in iter_stimuli(path):
            n += 1
            f = out(port)
            f.write(pack(n // 1_000_000, n % 1_000_000, len(frame), len(frame)))
            f.write(frame)
            if progress is not None and not n & 0x3FFF:
                progress(n)
    finally:
        for f in files.values():
            f.close()
    return n, set(files)


def _outputs(workdir: str, ports) -> list[str]:
    return [os.path.join(workdir, f"p{p}_out.pcap") for p in sorted(ports)]


def _sizes(paths) -> tuple:
    return tuple(os.path.getsize(p) if os.path.exists(p) else 0 for p in paths)


def _observed(workdir: str, ports):
    """(port, frame) of every output pcap, merged by bmv2's output time (bmv2
    writes link type 0 for Ethernet: read as Ethernet)."""

    def one(port):
        p = os.path.join(workdir, f"p{port}_out.pcap")
        if not os.path.exists(p) or os.path.getsize(p) == 0:
            return
        try:
            with CaptureReader(p, linktype=LINKTYPE_ETHERNET) as r:
                for ts, _i, frame, _w in r:
                    yield ts, port, frame
        except CaptureError as e:
            raise OracleError(str(e)) from None

    for _ts, port, frame in heapq.merge(*(one(p) for p in sorted(ports))):
        yield port, frame


def _wait_done(switch: Bmv2Switch, want: int, outs: list[str], t_read: float,
               progress=None) -> tuple[float, float, list[str]]:
    """Poll until the switch counted ``want`` packets and its outputs are still.
    ``t_read``: a time before which it counted none. Returns (seconds the
    switch took: from the first poll that saw a packet counted to the one that
    saw the last, scaled to every packet; an upper bound of its span from its
    first packet to its last; problems)."""
    thrift = switch.thrift
    last, last_change = -1, time.monotonic()
    first = None  # (time, count) of the first poll that saw packets counted
    while True:
        n = thrift.counter(Counter.PACKETS)
        now = time.monotonic()
        if progress is not None:
            progress(n)
        if n and first is None:
            first = (now, n)
        if n != last:
            last, last_change = n, now
        if n >= want:
            break
        if not switch.running():
            return 0.0, now - t_read, [f"simple_switch exited after {n} of {want} packets"]
        if now - last_change > STALL:
            return 0.0, now - t_read, [f"simple_switch stopped at {n} of {want} packets (nothing for {STALL:.0f} s)"]
        time.sleep(0.005 if first is None else 0.02)
    done = time.monotonic()
    if first is None or n == first[1]:
        seconds = done - t_read
    else:
        seconds = (done - first[0]) * want / (n - first[1])
    sizes, still = _sizes(outs), time.monotonic()
    while time.monotonic() - still < SETTLE:
        time.sleep(0.05)
        s = _sizes(outs)
        if s != sizes:
            sizes, still = s, time.monotonic()
    return seconds, done - t_read, []


def replay_bmv2(path: str, *, switch: str | None = None, log_file: str | None = None, log_level: str = "trace",
                build: str | None = None, progress=None, wait: int | None = None) -> ReplayResult:
    """Replay one vector file offline on bmv2 (see the module doc). ``progress``:
    (total, desc) -> (update(n), close()) for a progress bar, or None.
    Raises :class:`TimeDependent` (refused), :class:`TargetError` (no switch,
    no build) and :class:`OracleError` (unreadable vector)."""
    head = vector_head(path)
    name = str(head.get("name") or os.path.basename(path))
    cfg = vector_config(path, head)
    verdict = time_dependence(cfg, iter_stimuli(path))
    if not verdict.independent:
        raise TimeDependent(verdict.line(name))
    final = vector_final(path)
    json_file = json_for(cfg.geometry.tag, build)
    if not os.path.isfile(json_file):
        raise TargetError(f"{json_file} is missing: run `make p4` (the P4 program for geometry {cfg.geometry.tag})")
    wait = WAIT if wait is None else wait
    workdir = tempfile.mkdtemp(prefix="ctcm-replay-")
    try:
        bar = progress(verdict.stimuli, f"{name}: pcap") if progress else None
        try:
            n, ports = _write_inputs(path, workdir, sorted(cfg.ports), bar[0] if bar else None)
        finally:
            if bar:
                bar[1]()
        want = int(final.get("counters", {}).get(Counter.PACKETS.key, n))
        while True:
            sw = Bmv2Switch(json_file, {p: f"p{p}" for p in ports}, switch=switch, workdir=workdir,
                            files_wait=wait, log_file=log_file, log_level=log_level,
                            console=os.path.join(workdir, "switch.log"))
            try:
                thrift = sw.start()
                thrift.program(program(cfg))
                thrift.set_queue_depths()  # bmv2's 64-frame egress queues drop frames of a fast input
                # it reads nothing before its wait ends, nor (checked) before this read of its counter
                t_read = max(sw.started + wait, time.monotonic())
                if thrift.counter(Counter.PACKETS) != 0:  # it read packets before it was programmed
                    sw.stop()
                    if wait >= 8:
                        raise TargetError(f"simple_switch read its files before it was programmed "
                                          f"({wait} s wait); raise CTCM_REPLAY_WAIT")
                    wait *= 2
                    continue
                bar = progress(want, f"{name}: bmv2") if progress else None
                try:
                    seconds, span, problems = _wait_done(sw, want, _outputs(workdir, ports), t_read,
                                                         bar[0] if bar else None)
                finally:
                    if bar:
                        bar[1]()
                counters = thrift.counters()
                table = thrift.connections()
            finally:
                sw.stop()
            break
        res = ReplayResult(name, n, sw.switch, Report(), seconds=seconds, problems=problems,
                           span_limit_us=verdict.max_span)
        if verdict.max_span is not None and span * 1e6 >= verdict.max_span:
            res.problems.append(f"the replay took up to {span:.2f} s, not less than the vector's shortest timer "
                                f"({verdict.max_span / 1e6:g} s): its time-independence does not hold for it")
        try:
            res.report = compare_streams(iter_expected(path), _observed(workdir, ports),
                                         observed_again=lambda: _observed(workdir, ports))
        except _NotStreamable:
            obs: dict = {}
            for port, frame in _observed(workdir, ports):
                obs.setdefault(port, []).append(frame)
            res.report = compare(load_expected(path), obs)
        expected = final.get("counters") or {}
        res.counter_diffs = counter_diffs(expected, counters, None, "bmv2")
        res.counters_compared = len(expected)
        if table is None:
            res.problems.append("the switch's connection table cannot be read (no conn_* registers)")
        else:
            res.table_diffs = table_diffs(final.get("connections") or [], table)
            res.connections = len(final.get("connections") or [])
        return res
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
