"""Functional coverage of vectors, observed on the model.

Each vector's stimulus is run through a fresh :class:`~ctcm.dataplane.pipeline.Pipeline`
with the vector's config, one packet at a time; nothing here classifies or
moves a connection itself. What is recorded per packet comes from what the
model already produces:

* the classifier's answer (:func:`~ctcm.dataplane.packet.classify`: kind, IP
  version, offsets, reason), passed on to ``Pipeline.process`` (parsed once);
* the tracker's :class:`~ctcm.dataplane.tracker.Event` (direction, message,
  result, old and new state);
* the change of every counter of :class:`ctcm.spec.Counter` (table refusals,
  TIMEWAIT reclaims, flow conflicts, CNPs sent and suppressed, ...).

The cover groups come from :mod:`ctcm.spec` (see :func:`cover_groups`):
every ``TRANSITIONS`` cell with its result, the same crossed with the table
mode, CM messages that match no row, every result per direction, every
counter, every classifier kind, header variants, table events and CNP cases.
"""

from __future__ import annotations

from ctcm.dataplane.packet import classify
from ctcm.oracle.compare import OracleError
from ctcm.oracle.files import _load_yaml
from ctcm.spec import TRANSITIONS, Counter, Direction, Kind, Msg, Outcome, Result, State
from ctcm.vectors.run import make_pipeline

__all__ = ["cover_groups", "Coverage", "observe_vector", "coverage_of", "transition_row", "row_cell", "MODES"]

MODES = ("ideal", "p4")
_DIR = {Direction.FROM_HOST: "host", Direction.FROM_NET: "net"}
_MSG_OF_LABEL = {m.label: m for m in Msg}

HEADERS = ("802.1Q tag", "IPv4", "IPv4 options", "IPv6", "QinQ", "IPv6 extension header", "cut frame (truncated)",
           "snaplen cut (capture shorter than the frame)")
TABLE_EVENTS = ("ACTIVE table refusal", "PASSIVE table refusal", "ACTIVE TIMEWAIT reclaim (REQ takes an expired way)",
                "PASSIVE TIMEWAIT reclaim (REQ takes an expired way)", "TIMEWAIT expired at lookup", "flow conflict",
                "flow refusal (bucket full)", "zero QPN (no flow)")
CNP_CASES = ("CNP sent (IPv4)", "CNP sent (IPv6)", "CNP sent (802.1Q tag kept)", "CNP sent with pacing on",
             "CNP suppressed by pacing", "CE on an untracked flow")


def _expected_result(msg: Msg, state: State, to) -> Result:
    if to == Outcome.SAME:
        return Result.RETRANSMISSION
    if msg == Msg.REQ and state == State.IDLE:
        return Result.NEW
    return Result.TRANSITION


def transition_row(d: Direction, msg: Msg, state: State) -> str | None:
    """The name of the TRANSITIONS cell (direction, message, state), None when no row has it."""
    r = _ROWS.get((d, msg, state))
    return r[0] if r else None


def _rows() -> dict:
    """(direction, message, state) -> (row name, the result the row gives), in TRANSITIONS order."""
    out = {}
    for d, m, froms, to, _why in TRANSITIONS:
        for s in sorted(froms):
            dest = "gone" if to == Outcome.GONE else (s.name if to == Outcome.SAME else to.name)
            res = _expected_result(m, s, to)
            out[(d, m, s)] = (f"{_DIR[d]} {m.label} in {s.name} -> {dest} ({res.label})", res)
    return out


_ROWS = _rows()
_CELL_OF = {row: (*cell, res) for cell, (row, res) in _ROWS.items()}


def row_cell(row: str) -> tuple[Direction, Msg, State, Result]:
    """(direction, message, state, result) of a ``transition`` row."""
    return _CELL_OF[row]


def cover_groups() -> dict[str, list[str]]:
    """Group name -> its rows, in order (from the spec's tables and enums)."""
    rows = [row for row, _res in _ROWS.values()]
    return {
        "transition": rows,
        "transition x mode": [f"{r} [{mode}]" for r in rows for mode in MODES],
        "unexpected": [f"{_DIR[d]} {m.label}: no row (unexpected)" for d in Direction for m in Msg],
        "result": [f"{_DIR[d]} {r.label}" for d in Direction for r in Result],
        "counter": [c.key for c in Counter],
        "kind": [k.name.lower() for k in Kind],
        "header": list(HEADERS),
        "table": list(TABLE_EVENTS),
        "cnp": list(CNP_CASES),
    }


class Coverage:
    """Hits per (group, row), with the vectors that hit each row."""

    def __init__(self):
        self.groups = cover_groups()
        self.hits: dict[str, dict[str, dict[str, int]]] = {g: {} for g in self.groups}
        self.vectors: list[str] = []
        self.packets = 0
        self._known = {g: set(r) for g, r in self.groups.items()}

    def hit(self, group: str, row: str, vector: str) -> None:
        if row not in self._known[group]:
            raise AssertionError(f"coverage: {group!r} has no row {row!r}")
        by = self.hits[group].setdefault(row, {})
        by[vector] = by.get(vector, 0) + 1

    def merge(self, other: "Coverage") -> None:
        for g, rows in other.hits.items():
            for r, by in rows.items():
                mine = self.hits[g].setdefault(r, {})
                for v, n in by.items():
                    mine[v] = mine.get(v, 0) + n
        self.vectors += other.vectors
        self.packets += other.packets

    def hit_rows(self) -> set[tuple[str, str]]:
        return {(g, r) for g, rows in self.hits.items() for r in rows}

    def missed(self, group: str) -> list[str]:
        return [r for r in self.groups[group] if r not in self.hits[group]]


def _header_rows(p) -> list[str]:
    """Header variants of one classified frame (from the classifier's answer)."""
    out = []
    if p.l3 == 18:
        out.append("802.1Q tag")
    if p.ip_version == 4 and p.l3 >= 0:
        out.append("IPv4")
        if p.l4 >= 0 and p.l4 - p.l3 > 20:
            out.append("IPv4 options")
    elif p.ip_version == 6:
        out.append("IPv6")
    if p.kind == Kind.UNSUPPORTED:
        out.append("QinQ" if p.reason.startswith("QinQ") else "IPv6 extension header")
    if p.kind == Kind.MALFORMED and ("truncated" in p.reason or "does not fit" in p.reason):
        out.append("cut frame (truncated)")
    return out


def observe_packet(cov: Coverage, name: str, mode: str, pacing: bool, pipe, port, frame, t_us) -> None:
    """Run one stimulus packet through ``pipe`` and record what it exercised."""
    before = pipe.counters
    p = classify(frame)
    res = pipe.process(port, frame, t_us, p)
    after = pipe.counters
    delta = {c: after[c.key] - before[c.key] for c in Counter}
    hit = cov.hit
    for c, n in delta.items():
        if n:
            hit("counter", c.key, name)
    if delta[Counter.PACKETS] and not delta[Counter.DROPPED_UNKNOWN_PORT]:
        hit("kind", Kind(p.kind).name.lower(), name)
        for h in _header_rows(p):
            hit("header", h, name)
    for ev in res.events:
        d = Direction(ev.direction)
        hit("result", f"{_DIR[d]} {ev.result}", name)
        msg = _MSG_OF_LABEL.get(ev.msg)
        if msg is None:  # ignored: not a tracked message
            continue
        if ev.result == Result.UNEXPECTED.label:
            hit("unexpected", f"{_DIR[d]} {msg.label}: no row (unexpected)", name)
            continue
        old = ev.old_state if ev.old_state is not None else State.IDLE
        row = transition_row(d, msg, old)
        if row is not None and row.endswith(f"({ev.result})"):
            hit("transition", row, name)
            hit("transition x mode", f"{row} [{mode}]", name)
        table = "ACTIVE" if d == Direction.FROM_HOST else "PASSIVE"  # the table a REQ's connection goes in
        if delta[Counter.TABLE_REFUSALS]:
            hit("table", f"{table} table refusal", name)
        if delta[Counter.TIMEWAIT_EXPIRED] and not delta[Counter.REMOVED]:
            hit("table", f"{table} TIMEWAIT reclaim (REQ takes an expired way)", name)
    if delta[Counter.TIMEWAIT_EXPIRED] and delta[Counter.REMOVED]:
        hit("table", "TIMEWAIT expired at lookup", name)
    if delta[Counter.FLOW_CONFLICTS]:
        hit("table", "flow conflict", name)
    elif delta[Counter.FLOW_REFUSALS]:
        hit("table", "flow refusal (bucket full)", name)
    if delta[Counter.FLOW_ZERO_QPN]:
        hit("table", "zero QPN (no flow)", name)
    if delta[Counter.CNP_SENT]:
        hit("cnp", f"CNP sent (IPv{p.ip_version})", name)
        if p.l3 == 18:
            hit("cnp", "CNP sent (802.1Q tag kept)", name)
        if pacing:
            hit("cnp", "CNP sent with pacing on", name)
    if delta[Counter.CNP_SUPPRESSED]:
        hit("cnp", "CNP suppressed by pacing", name)
    if delta[Counter.CE_UNTRACKED]:
        hit("cnp", "CE on an untracked flow", name)


def _vector_doc(path: str) -> dict:
    doc = _load_yaml(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("packets"), list) or "name" not in doc:
        raise OracleError(f"{path}: not a ctcm vector (no 'name' and 'packets')")
    return doc


def observe_vector(path: str) -> Coverage:
    """The coverage of one vector file (``vectors/NAME.yaml``)."""
    doc = _vector_doc(path)
    name = str(doc["name"])
    try:
        pipe = make_pipeline(doc.get("options") or {}, doc.get("ports") or {"host": 1, "net": 2})
    except Exception as e:  # ConfigError, ValueError: one line
        raise OracleError(f"{path}: options: {e}") from None
    cov = Coverage()
    cov.vectors.append(name)
    cfg = pipe.config
    for n, pk in enumerate(doc["packets"], 1):
        try:
            frame = bytes.fromhex(str(pk["bytes"]))
            port, t_us = int(pk["port"]), int(pk["t_us"])
        except (KeyError, TypeError, ValueError):
            raise OracleError(f"{path}: packet {n}: needs 'port', 't_us' and hex 'bytes'") from None
        observe_packet(cov, name, cfg.mode, cfg.cnp_interval_us > 0, pipe, port, frame, t_us)
    cov.packets = len(doc["packets"])
    return cov


def coverage_of(paths) -> tuple[Coverage, dict[str, Coverage]]:
    """The coverage of several vectors: the union and each vector's own."""
    total = Coverage()
    each = {}
    for p in paths:
        c = observe_vector(p)
        each[c.vectors[0]] = c
        total.merge(c)
    return total, each
