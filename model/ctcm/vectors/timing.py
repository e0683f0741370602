"""Does a vector's outcome depend on time? The model decides.

A target that replays a vector without its timing (bmv2 in pcap-file mode
reads its input files as fast as it can, and its clock is the wall clock)
gives the vector's outcome only if no TIMEWAIT expiry and no CNP pacing
decision changes with when each stimulus arrives.

:func:`time_dependence` runs the vector's stimuli through the model three
times side by side: with the vector's own times, *compressed* (every
stimulus at one instant) and *shifted* (the vector's times plus 2^40 µs).
The vector is time-independent when every stimulus gives the same outputs
and tracker events in all three runs, and the final counters, connections
(all fields but ``since_us``) and flows are equal; otherwise the first
stimulus whose outcome differs is named.

Why compressed stands for any fast replay: a replay that takes less than
``max_span_us`` (the shortest non-zero timer: TIMEWAIT, the CNP interval)
from its first stimulus to its last cannot see a TIMEWAIT expire (every
connection in TIMEWAIT entered it during the replay) nor a CNP interval
end, exactly like the compressed run. So such a replay gives the compressed
outcome, which is the vector's when the vector is time-independent. The
replay measures its span and fails (never silently passes) when it was
longer.
"""

from __future__ import annotations

from dataclasses import dataclass

from ctcm.dataplane.packet import decode
from ctcm.dataplane.pipeline import Pipeline
from ctcm.io.gcpause import gc_paused

__all__ = ["TimeVerdict", "time_dependence", "max_span_us", "SHIFT_US"]

#: The shift of the compressed and shifted runs (µs; about 12.7 days).
SHIFT_US = 1 << 40
_CHUNK = 20_000


# --- the decision ------------------------------------------------------------------------------

@dataclass
class TimeVerdict:
    independent: bool
    stimuli: int = 0
    #: the first stimulus whose outcome depends on time: (id, t_us, port, frame), or None
    first: tuple | None = None
    #: what differs: "outputs", "tracker events" or "final counters/connections/flows"
    what: str = ""
    timing: str = ""  # "compressed" or "shifted"
    #: a time-independent vector: the longest a replay may take (µs; None: no limit)
    max_span: int | None = None

    def line(self, name: str) -> str:
        """One line for users: why the vector cannot be replayed without its time."""
        if self.independent:
            return f"{name}: time-independent ({self.stimuli} stimuli)"
        if self.first is None:
            where = "its final state"
        else:
            sid, t, port, frame = self.first
            where = f"stimulus {sid} (t={t} µs, port {port}: {decode(frame).summary()})"
        return (f"{name} is time-dependent: {where} has other {self.what} when the vector's time is "
                f"{self.timing} (TIMEWAIT expiry or CNP pacing); replay it live, in real time: "
                f"make ptf TARGET=bmv2 TESTS=Vector_{name.replace('-', '_')}")


def _outcome(r) -> tuple:
    outs, events, _verdict = r  # the verdict text carries times: its effect is in outputs and counters
    return tuple(outs), tuple(str(e) for e in events or ())


def _final(pipe) -> tuple:
    """The final snapshot without the connections' ``since_us`` (a time)."""
    s = pipe.snapshot()
    conns = sorted(str(sorted((k, v) for k, v in c.items() if k != "since_us")) for c in s["connections"])
    return sorted(s["counters"].items()), conns, sorted(map(str, s.get("flows", [])))


def max_span_us(cfg) -> int | None:
    """The longest a replay may take for the verdict to hold: the shortest
    non-zero timer (µs), or None when no timer is on."""
    timers = [t for t in (cfg.timewait_us, cfg.cnp_interval_us) if t > 0]
    return min(timers) if timers else None


def time_dependence(cfg, stimuli) -> TimeVerdict:
    """Decide (see the module doc) for a config and an iterable of (port, t_us, frame)."""
    runs = {"": Pipeline(cfg), "compressed": Pipeline(cfg), "shifted": Pipeline(cfg)}
    n = 0
    it = iter(stimuli)
    with gc_paused():
        while True:
            chunk = []
            for item in it:
                chunk.append(item)
                if len(chunk) == _CHUNK:
                    break
            if not chunk:
                break
            base = runs[""].process_batch([(p, fr, t) for p, t, fr in chunk])
            alt = {
                "compressed": runs["compressed"].process_batch([(p, fr, SHIFT_US) for p, _t, fr in chunk]),
                "shifted": runs["shifted"].process_batch([(p, fr, SHIFT_US + t) for p, t, fr in chunk]),
            }
            for k, r in enumerate(base):
                want = _outcome(r)
                for timing, res in alt.items():
                    got = _outcome(res[k])
                    if got != want:
                        p, t, fr = chunk[k]
                        what = "outputs" if got[0] != want[0] else "tracker events"
                        return TimeVerdict(False, n + k + 1, (n + k + 1, t, p, fr), what, timing)
            n += len(chunk)
    want = _final(runs[""])
    for timing in ("compressed", "shifted"):
        if _final(runs[timing]) != want:
            return TimeVerdict(False, n, None, "final counters/connections/flows", timing)
    return TimeVerdict(True, n, max_span=max_span_us(cfg))
