"""The scoreboard: the oracle of ``ctcm compare`` on what the DUT sends out.

Each egress port's frames are checked as they arrive, in order, against the
vector's expected outputs for that port (the first difference is reported at
once with the oracle's field-level diff), and at the end the whole run goes
through :func:`ctcm.oracle.compare.compare`: the same report, verdict line
and field-level diffs ``ctcm compare`` prints (missing, extra, differing,
reordered). Pure Python (no cocotb).
"""

from __future__ import annotations

from ctcm.oracle.compare import Expected, Report, compare, field_diff

__all__ = ["Scoreboard"]


class Scoreboard:
    def __init__(self, expected: dict[int, list[Expected]], log=None):
        self.expected = expected
        self.observed: dict[int, list[bytes]] = {p: [] for p in expected}
        self.first_error: str | None = None
        self._log = log

    @property
    def expected_count(self) -> int:
        return sum(map(len, self.expected.values()))

    @property
    def observed_count(self) -> int:
        return sum(map(len, self.observed.values()))

    def observe(self, port: int, frame: bytes) -> None:
        """A frame the DUT sent on ``port``."""
        obs = self.observed.setdefault(port, [])
        obs.append(bytes(frame))
        if self.first_error is not None:
            return
        exp = self.expected.get(port, [])
        n = len(obs)
        if n > len(exp):
            self._error(f"port {port}: frame #{n} is extra (the vector expects {len(exp)} on this port)")
        elif exp[n - 1].frame != obs[-1]:
            e = exp[n - 1]
            diff = "\n    ".join(field_diff(e.frame, obs[-1]))
            self._error(f"port {port}: frame #{n} differs from stimulus {e.stimulus} output {e.output}:\n    {diff}")

    def _error(self, msg: str) -> None:
        self.first_error = msg
        if self._log is not None:
            self._log(msg)

    def report(self) -> Report:
        """The oracle's report on everything observed so far."""
        return compare(self.expected, self.observed)
