"""The base class of the ctcm PTF tests and its helpers.

Shaped like p4c's bmv2 PTF tests and ONF's fabric-p4test: one base class
with helpers (send a frame on a port, expect frames per port, replay a
stimulus or a golden vector, read counters), then one behaviour per test.

Expected packets are always the model's: a behaviour test writes a small
scenario (the format of vectors/scenarios/), the model runs it
(:func:`ctcm.vectors.run_stimulus`), and the replay compares what the target
sends with the model's outputs using the oracle (:func:`ctcm.oracle.compare_outputs`,
field-level diffs); a replay test does the same with a committed golden vector.

Replay rules (see the README's PTF section):

* when the model says the outcome does not depend on time
  (:func:`ctcm.vectors.timing.time_dependence`), the replay is windowed: up
  to WINDOW stimuli in flight, sent as fast as that allows, order between
  ports kept for the packets that touch state; all outputs are compared per
  port with the oracle (:func:`ctcm.oracle.compare.compare`);
* otherwise one stimulus at a time: send it, then wait for as many frames as
  the model expects (any port) before sending the next; the vector's time is
  kept: stimulus k is not sent before start + t_us(k) (later when the target
  is slower than the vector); each stimulus' outputs are compared;
* a missing frame is a failure, never retried (a frame that comes after its
  stimulus was given up is reported late); after the last stimulus a quiet
  period catches late extras;
* then the counters the target reports are compared with the model's final
  counters and its connection table with the model's (targets without a
  control plane skip this, with a log line).

Test parameters (``make ptf PTF_PARAMS=...``): ``corrupt_cnp_qpn=1`` (or
env ``CTCM_PTF_CORRUPT_CNP_QPN=1``) flips one bit of the destination QPN of
every expected CNP: the run must fail with a field-level diff.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

import ptf
import ptf.testutils as testutils
from ptf.base_tests import BaseTest

from ctcm.dataplane.packet import decode
from ctcm.oracle.compare import Expected, compare, compare_outputs
from ctcm.stimulus.scenario import compile_scenario, parse_scenario
from ctcm.targets.program import counter_diffs, table_diffs
from ctcm.vectors.run import run_stimulus
from ctcm.vectors.timing import time_dependence

from .modelutil import make_pipeline, config_for, dest_qpn, flip_cnp_qpn, is_cnp
from .targets import attach

log = logging.getLogger("ctcm")

#: Seconds to wait for a stimulus' expected frames, and for "nothing more" after a drop / at the end.
OUTPUT_TIMEOUT = float(os.environ.get("CTCM_PTF_TIMEOUT", "1.0"))
QUIET = float(os.environ.get("CTCM_PTF_QUIET", "0.05"))
END_QUIET = float(os.environ.get("CTCM_PTF_END_QUIET", "0.2"))
GRACE = float(os.environ.get("CTCM_PTF_GRACE", "0.02"))
#: Stimuli in flight in a windowed replay (1: always one at a time at the vector's time).
WINDOW = int(os.environ.get("CTCM_PTF_WINDOW", "16"))
ETH_HLEN = 14
#: Printed failures per replay.
MAX_SHOWN = 8

HOSTS = """\
hosts:
  host: {ip: 10.0.0.1, mac: "02:00:00:00:00:01", side: host}
  peer: {ip: 10.0.0.2, mac: "02:00:00:00:00:02", side: net}
  peer2: {ip: 10.0.0.3, mac: "02:00:00:00:00:03", side: net}
  host6: {ip: "fd00::1", mac: "02:00:00:00:00:01", side: host}
  peer6: {ip: "fd00::2", mac: "02:00:00:00:00:02", side: net}
"""


@dataclass
class Step:
    """One stimulus and the model's outputs for it."""

    id: int
    t_us: int
    port: int
    frame: bytes
    expect: list  # [(port, bytes)]
    note: str = ""
    summary: str = ""


@dataclass
class ReplayResult:
    steps: list
    observed: dict = field(default_factory=dict)  # step id -> [(port, bytes)]
    failures: list = field(default_factory=list)   # formatted text, one per failing stimulus
    late_extras: list = field(default_factory=list)
    seconds: float = 0.0
    max_late_ms: float = 0.0
    window_observed: list = field(default_factory=list)  # windowed: every output, in arrival order
    late: list = field(default_factory=list)  # windowed: (stimulus id, frame) that came after a timeout
    timeouts: int = 0
    order_waits: int = 0  # windowed: times a stimulus waited for the ports' order

    @property
    def rate(self) -> float:
        return len(self.steps) / self.seconds if self.seconds > 0 else 0.0


def model_snapshot(cfg, steps: list[Step]) -> dict:
    """The model's final snapshot after these steps (a fresh pipeline with this config)."""
    pipe = make_pipeline(cfg)
    for s in steps:
        pipe.process(s.port, s.frame, s.t_us)
    return pipe.snapshot()


def steps_from_vector_doc(doc: dict) -> list[Step]:
    """Steps of a vector file (``vectors/NAME.yaml``, parsed)."""
    return [Step(p["id"], p["t_us"], p["port"], bytes.fromhex(p["bytes"]),
                 [(e["port"], bytes.fromhex(e["bytes"])) for e in p.get("expect", [])],
                 p.get("note", ""), p.get("summary", ""))
            for p in doc["packets"]]


def steps_from_vector(vec) -> list[Step]:
    """Steps of a model run (:class:`ctcm.vectors.run.Vector`)."""
    return [Step(p["id"], p["t_us"], p["port"], bytes(p["frame"]), [(q, bytes(b)) for q, b in p["expect"]],
                 p.get("note", "")) for p in vec.packets]


class CtcmTest(BaseTest):
    """Base of every ctcm test. A subclass sets :attr:`options` (the scenario
    options: geometry, timewait_us, cnp_interval_us) when it needs more than
    the control-plane config; the harness groups tests by geometry (one
    switch build and start per geometry)."""

    options: dict = {}
    ports: dict = {"host": 1, "net": 2}
    _max_span: int | None = None

    @classmethod
    def config(cls):
        return config_for(cls.options, cls.ports)

    @classmethod
    def geometry_tag(cls) -> str:
        return cls.config().geometry.tag

    # -- setup -----------------------------------------------------------------------
    def setUp(self):
        BaseTest.setUp(self)
        self.dataplane = ptf.dataplane_instance
        # The harness captures every port (portN.pcap): ptf's own copy of the frames it
        # receives would only slow its receive thread down.
        self.dataplane.stop_pcap()
        self.tparams = testutils.test_params_get() or {}
        self.ctcm = dict(self.tparams.get("ctcm") or {"target": "device"})
        self.target = attach(self.ctcm)
        self.corrupt = str(self.tparams.get("corrupt_cnp_qpn", os.environ.get("CTCM_PTF_CORRUPT_CNP_QPN", "0"))) \
            not in ("0", "", "False", "false")
        self.cfg = self.config()
        if self.ctcm["target"] == "device" and not self.target.configurable:
            base = config_for({}, self.ports)
            if (self.cfg.timewait_us, self.cfg.cnp_interval_us) != (base.timewait_us, base.cnp_interval_us):
                self.skipTest(f"needs TIMEWAIT {self.cfg.timewait_us} µs and pacing {self.cfg.cnp_interval_us} µs; "
                              "a device has no control plane here and runs p4/config.yaml's")
        self.target.configure(self.cfg)
        self.target.reset()
        self.dataplane.flush()

    def tearDown(self):
        close = getattr(self.target, "close", None)
        if close:
            close()
        BaseTest.tearDown(self)

    # -- small helpers -------------------------------------------------------------------
    def send(self, port: int, frame: bytes) -> None:
        """Send one frame into the switch on a port."""
        testutils.send_packet(self, port, frame)

    def receive(self, n: int, timeout: float) -> list:
        """Up to n frames from any port, in arrival order: [(port, bytes)]."""
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            r = self.dataplane.poll(device_number=0, port_number=None, timeout=left)
            if isinstance(r, self.dataplane.PollFailure) or r.packet is None:
                break
            out.append((r.port, bytes(r.packet)))
        return out

    def collect(self, expected: list, timeout: float) -> tuple[list, bool]:
        """The frames that follow one stimulus, in arrival order, and whether every expected
        (port, bytes) came. Waits until all expected frames arrived (other frames on the way
        are kept: they are extras of this stimulus), at most ``timeout``; once as many frames
        as expected came but not the right ones, waits only GRACE more. Expecting nothing:
        waits QUIET for anything."""
        if not expected:
            return self.drain(QUIET), True
        want: dict = {}
        for k in expected:
            want[k] = want.get(k, 0) + 1
        missing = len(expected)
        got = []
        deadline = time.monotonic() + timeout
        while missing:
            left = deadline - time.monotonic()
            if len(got) >= len(expected):
                left = min(left, GRACE)
            if left <= 0:
                break
            r = self.receive(1, left)
            if not r:
                break
            got += r
            if want.get(r[0]):
                want[r[0]] -= 1
                missing -= 1
        return got, missing == 0

    def drain(self, quiet: float) -> list:
        """Every frame that arrives until nothing came for ``quiet`` seconds."""
        out = []
        while True:
            got = self.receive(1, quiet)
            if not got:
                return out
            out += got

    def expect_frames(self, expected: list, what: str = "") -> None:
        """Wait for the expected [(port, bytes)] and compare (field-level diff on failure)."""
        got = self.receive(len(expected), OUTPUT_TIMEOUT if expected else 0)
        got += self.drain(QUIET)
        rep = compare_outputs(expected, got)
        self.assertTrue(rep.ok, f"{what}\n{rep.format()}")

    def counters(self) -> dict | None:
        """The target's counters by snapshot key, or None (no control plane)."""
        return self.target.counters()

    def model(self, timeline: str, connections: str, name: str = "behaviour"):
        """Run a scenario (timeline and connections in the scenario YAML format, the
        class's :attr:`options` and :attr:`ports`: the target runs the same config) on the
        model; returns the :class:`ctcm.vectors.run.Vector` (expected outputs, final snapshot)."""
        opts = dict(self.options)
        text = f"name: {name}\n"
        if opts:
            text += "options: " + _flow(opts) + "\n"
        text += f"ports: {_flow(self.ports)}\n" + HOSTS + "connections:\n" + _indent(connections) + \
            "timeline:\n" + _indent(timeline)
        sc = parse_scenario(text, f"<{type(self).__name__}>")
        stim, cps = compile_scenario(sc)
        return run_stimulus(sc.name, sc.description, sc.options, sc.ports, stim, cps)

    # -- replay ----------------------------------------------------------------------------
    def window(self, steps: list[Step], name: str) -> int:
        """How many stimuli may be in flight: WINDOW when the model says the
        outcome does not depend on time (:func:`ctcm.vectors.timing.time_dependence`),
        else 0 (one at a time, at the vector's time)."""
        if WINDOW <= 1 or not steps:
            return 0
        verdict = time_dependence(self.cfg, ((s.port, s.t_us, s.frame) for s in steps))
        if not verdict.independent:
            log.info("%s: one stimulus at a time at its vector time: %s", name, verdict.line(name))
            return 0
        self._max_span = verdict.max_span
        return WINDOW

    def _send_paced(self, steps: list[Step], res: ReplayResult) -> None:
        """One stimulus at a time, never before start + t_us; each one's outputs collected."""
        t0 = time.monotonic()
        first = steps[0].t_us if steps else 0
        timeouts = 0
        for s in steps:
            due = t0 + (s.t_us - first) / 1e6
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            else:
                res.max_late_ms = max(res.max_late_ms, (now - due) * 1e3)
            self.send(s.port, s.frame)
            got, complete = self.collect(s.expect, OUTPUT_TIMEOUT if timeouts < 5 else 0.1)
            if not complete:
                timeouts += 1
            res.observed[s.id] = got

    def _send_windowed(self, steps: list[Step], window: int, res: ReplayResult) -> None:
        """Up to ``window`` stimuli in flight, sent as fast as that allows. A stimulus
        is in flight until its expected outputs came (one expecting none: until an
        output of a later stimulus came, the switch working in order). Order
        between ports is not kept by the interfaces, so a stimulus that reads or
        changes state (:meth:`Pipeline.touches_state`) waits for the stimuli in
        flight on other ports, and any stimulus waits for such stimuli there.
        Outputs are kept per port for the oracle. With nothing coming for
        OUTPUT_TIMEOUT the stimuli in flight are given up (their frames are
        reported missing, or late when they come afterwards), never sent again."""
        from collections import deque

        ordered = bool(self.ctcm.get("ordered"))  # one socket for every port keeps their order
        stateful = [False] * len(steps) if ordered else \
            make_pipeline(self.cfg).touches_state([(s.port, s.frame) for s in steps])
        pending: dict = {}   # (port, bytes) -> deque of stimulus index
        left = [0] * len(steps)
        flight: deque = deque()  # stimulus indices, in send order
        given_up: set = set()
        got = res.window_observed
        i = 0
        poll = self.dataplane.poll
        failure = self.dataplane.PollFailure

        def may_send(i):
            if len(flight) >= window:
                return False
            port, st = steps[i].port, stateful[i]
            if any(steps[x].port != port and (st or stateful[x]) for x in flight):
                res.order_waits += 1
                return False
            return True

        while i < len(steps) or flight:
            if i < len(steps) and may_send(i):
                s = steps[i]
                for k in s.expect:
                    pending.setdefault(k, deque()).append(i)
                left[i] = len(s.expect)
                flight.append(i)
                self.send(s.port, s.frame)
                i += 1
                r = poll(device_number=0, port_number=None, timeout=0)
                if isinstance(r, failure) or r.packet is None:
                    continue
            else:
                # only stimuli expecting nothing in flight: a quiet wait is enough
                waiting = any(left[x] for x in flight)
                r = poll(device_number=0, port_number=None, timeout=OUTPUT_TIMEOUT if waiting else QUIET)
                if isinstance(r, failure) or r.packet is None:
                    if waiting:
                        res.timeouts += 1
                        given_up.update(flight)
                    flight.clear()
                    continue
            frame = (r.port, bytes(r.packet))
            got.append(frame)
            q = pending.get(frame)
            if not q:
                continue
            j = q.popleft()
            if not q:
                del pending[frame]
            if j in given_up:
                res.late.append((steps[j].id, frame))
                continue
            left[j] -= 1
            while flight and (left[flight[0]] == 0 and (steps[flight[0]].expect or flight[0] < j)):
                flight.popleft()

    def replay(self, steps: list[Step], final_counters: dict | None, name: str,
               final_connections: list | None = None) -> ReplayResult:
        """Send every step (windowed when the model says time does not matter, else
        at the vector's time), compare the outputs with the oracle, then the
        counters and the connection table; fails the test with the oracle's report."""
        if self.corrupt:
            steps = [Step(s.id, s.t_us, s.port, s.frame,
                          [(p, flip_cnp_qpn(b) if is_cnp(b) else b) for p, b in s.expect], s.note, s.summary)
                     for s in steps]
        res = ReplayResult(steps)
        # No Ethernet interface can send a frame shorter than its header.
        skipped = [s for s in steps if len(s.frame) < ETH_HLEN]
        sent = [s for s in steps if len(s.frame) >= ETH_HLEN]
        window = self.window(steps, name)
        self.dataplane.flush()
        before = self.counters()
        t0 = time.monotonic()
        if window:
            self._send_windowed(sent, window, res)
        else:
            self._send_paced(sent, res)
        res.seconds = time.monotonic() - t0
        res.late_extras = self.drain(END_QUIET)
        if skipped:
            log.info("%s: %d stimuli shorter than an Ethernet header cannot be sent on an interface: "
                     "skipped (ids %s); expected counters and connections from the model on the others",
                     name, len(skipped), ", ".join(str(s.id) for s in skipped))
            snap = model_snapshot(self.cfg, sent)
            if final_counters is not None:
                final_counters = snap["counters"]
            if final_connections is not None:
                final_connections = snap["connections"]
        if window:
            self._compare_windowed(sent, res)
        else:
            self._compare_paced(sent, res)
        after = self.counters()
        who = self.ctcm["target"]
        counter_problems = []
        if final_counters is not None and after is not None:
            counter_problems = counter_diffs(final_counters, after, before, who)
            got = after.get("packets", 0) - (before or {}).get("packets", 0)
            if got < final_counters.get("packets", 0):  # the switch never saw them
                counter_problems.insert(0, f"  {final_counters['packets'] - got} stimuli dropped before {who} "
                                           f"counted them (its packets counter: {got} of {final_counters['packets']})")
        elif final_counters is not None:
            log.info("%s: the target has no counters to read: counter comparison skipped", name)
        conn_problems = []
        if final_connections is not None:
            got_conns = self.target.connections()
            if got_conns is None:
                log.info("%s: the target's connection table cannot be read: not compared", name)
            else:
                conn_problems = table_diffs(final_connections, got_conns, MAX_SHOWN)
        how = f"window {window} ({res.order_waits} waits for order between ports)" if window else f"one at a time, latest send {res.max_late_ms:.1f} ms after its time"
        msg = f"{name}: {len(steps)} stimuli in {res.seconds:.2f} s ({res.rate:.0f} pkt/s), {how}"
        log.info(msg)
        self._record_rate(name, res, window)
        problems = []
        if window and res.late:
            problems.append(f"{len(res.late)} frame(s) came late (after {OUTPUT_TIMEOUT:g} s without output "
                            f"their stimuli were given up): stimuli "
                            + ", ".join(str(sid) for sid, _f in res.late[:MAX_SHOWN]))
        if window and self._max_span is not None and res.seconds * 1e6 >= self._max_span:
            waited = f" ({res.timeouts} wait(s) of {OUTPUT_TIMEOUT:g} s for missing frames)" if res.timeouts else ""
            problems.append(f"the replay took {res.seconds:.2f} s{waited}, not less than the shortest timer "
                            f"({self._max_span / 1e6:g} s): its outcome may depend on time")
        if res.failures:
            if window:  # one entry per port, then the oracle's verdict
                problems.append(f"{len(res.failures) - 1} port(s) differ from the model:")
                problems += res.failures
            else:
                problems.append(f"{len(res.failures)} stimuli differ from the model:")
                problems += res.failures[:MAX_SHOWN]
                if len(res.failures) > MAX_SHOWN:
                    problems.append(f"... and {len(res.failures) - MAX_SHOWN} more")
        if res.late_extras:
            problems.append(f"{len(res.late_extras)} frame(s) after the last stimulus:")
            problems += [f"  port {p}: {decode(b).summary()}" for p, b in res.late_extras[:MAX_SHOWN]]
        if counter_problems:
            problems.append("counters differ from the model's final counters:")
            problems += counter_problems
        if conn_problems:
            problems.append("connection table differs from the model's final connections "
                            "(opened_by state local_id remote_ip remote_id local_qpn remote_qpn flow):")
            problems += conn_problems
        if problems:
            self.fail(msg + "\n" + "\n".join(problems))
        return res

    def _compare_paced(self, steps: list[Step], res: ReplayResult) -> None:
        """Each stimulus' outputs with the oracle (field-level diffs)."""
        for s in steps:
            rep = compare_outputs(s.expect, res.observed[s.id])
            for m in rep.mismatches:
                if m.expected is not None:
                    m.expected.stimulus = s.id
            if not rep.ok:
                head = f"stimulus {s.id} (t={s.t_us} µs, port {s.port}): {s.summary or decode(s.frame).summary()}"
                if s.note:
                    head += f"  [{s.note}]"
                body = "\n".join("  " + line for line in rep.format().splitlines())
                res.failures.append(head + "\n" + body)

    def _compare_windowed(self, steps: list[Step], res: ReplayResult) -> None:
        """Every output with the oracle, per port in order (dropped frames are missing)."""
        exp: dict = {}
        for s in steps:
            for k, (port, frame) in enumerate(s.expect, 1):
                exp.setdefault(port, []).append(Expected(s.id, k, bytes(frame)))
        obs: dict = {}
        for port, frame in res.window_observed:
            obs.setdefault(port, []).append(frame)
        rep = compare(exp, obs)
        if not rep.ok:
            by_port: dict = {}
            for m in rep.mismatches:
                by_port.setdefault(m.port, []).append(m)
            for port, ms in sorted(by_port.items()):
                body = "\n".join("  " + m.format().replace("\n", "\n  ") for m in ms[:MAX_SHOWN])
                res.failures.append(f"port {port}: {len(ms)} mismatch(es)\n{body}")
            res.failures.append(rep.verdict())

    def replay_vector(self, vec, name: str | None = None) -> ReplayResult:
        """Replay a model run (:meth:`model`) and compare with it."""
        return self.replay(steps_from_vector(vec), vec.final.get("counters"), name or type(self).__name__,
                           vec.final.get("connections"))

    def _record_rate(self, name: str, res: ReplayResult, window: int = 0) -> None:
        d = self.ctcm.get("logdir")
        if not d:
            return
        with open(os.path.join(d, "replay-rates.tsv"), "a") as f:
            f.write(f"{name}\t{len(res.steps)}\t{res.seconds:.3f}\t{res.rate:.0f}\t{res.max_late_ms:.1f}\t"
                    f"{window}\t{len(res.late)}\n")

    # -- expectations about the model's own outputs (the test means what it says) ---------------
    def assert_cnps(self, vec, wanted: dict) -> None:
        """``wanted``: {stimulus id: local QPN of the CNP, or None for no CNP}."""
        for sid, qpn in wanted.items():
            p = vec.packets[sid - 1]
            cnps = [(port, b) for port, b in p["expect"] if is_cnp(b)]
            if qpn is None:
                self.assertEqual(cnps, [], f"model: stimulus {sid} should make no CNP")
            else:
                self.assertEqual(len(cnps), 1, f"model: stimulus {sid} should make one CNP")
                port, b = cnps[0]
                self.assertEqual(port, p["port"], "a CNP goes back out of the ingress (host) port")
                self.assertEqual(dest_qpn(b), qpn, f"model: CNP of stimulus {sid}: {decode(b).summary()}")


def _flow(d: dict) -> str:
    import json

    return json.dumps(d)


def _indent(text: str) -> str:
    lines = [ln for ln in text.strip("\n").splitlines()]
    return "".join("  " + ln.strip() + "\n" for ln in lines)
