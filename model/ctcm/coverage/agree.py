"""Model and bmv2 agree on what a vector exercised.

For one vector, the model's coverage (:mod:`ctcm.coverage.model`) and the
bmv2 log of its replay (:func:`ctcm.coverage.p4.read_log`) are compared:

* every ``TRANSITIONS`` row the model says the vector hits through a lookup
  (results transition and retransmission; a new connection takes no row on
  either side) must show as a hit of the P4 ``transitions`` table with the
  key (direction, message, state);
* every counter the model says the vector moves must show as an update of
  that index of the P4 counter array (the indices are ``spec.Counter``).

The other direction (bmv2 ran more) is reported, not an error: the PTF
replay does not send a frame the kernel refuses (a 10-byte frame), and
retries are the target's business.
"""

from __future__ import annotations

from ctcm.coverage.model import Coverage, row_cell
from ctcm.coverage.p4 import COUNTERS, LogHits
from ctcm.spec import Counter, Result

__all__ = ["agreement"]

_KEY_OF = {c.key: c for c in Counter}


def agreement(vector: str, cov: Coverage, h: LogHits) -> dict:
    """What the model says ``vector`` hit that bmv2's log does not show, and the reverse."""
    rows = [r for r, by in cov.hits["transition"].items() if vector in by]
    cells = {}
    for r in rows:
        d, m, s, res = row_cell(r)
        if res != Result.NEW:
            cells[(int(d), int(m), int(s))] = r
    on_bmv2 = {(d, m, s) for d, m, s, hit in h.transitions if hit}
    counters = {_KEY_OF[r] for r, by in cov.hits["counter"].items() if vector in by}
    updated = {i for name, i in h.counters if name == COUNTERS}
    return {
        "vector": vector,
        "bmv2_packets": h.packets,
        "transitions_checked": len(cells),
        "transitions_not_on_bmv2": sorted(r for c, r in cells.items() if c not in on_bmv2),
        "transitions_only_on_bmv2": sorted(f"direction {d} msg {m} state {s}" for d, m, s in on_bmv2 - set(cells)),
        "counters_checked": len(counters),
        "counters_not_on_bmv2": sorted(c.key for c in counters if int(c) not in updated),
        "counters_only_on_bmv2": sorted(Counter(i).key if i < len(Counter) else str(i)
                                        for i in updated - {int(c) for c in counters}),
    }
