"""CM connection tracker: the C library's state machine, its gaps closed.

Where is REQ handled? In :data:`ctcm.spec.TRANSITIONS` (what it may do, per
direction and state) and :func:`ctcm.dataplane.machine.admit` /
:func:`ctcm.dataplane.machine.transition` (the one place that applies a row). This module is the API around them:
frames in, :class:`Event` objects out, queries and snapshots.

Connections are seen from one host. Direction FROM_HOST = sent by the local
host, FROM_NET = received from the network. A connection lives in one of two
tables, chosen by who opened it:

* ACTIVE  (the host sent the REQ), keyed by the host's local comm ID;
* PASSIVE (the network sent the REQ), keyed by (remote IP, remote comm ID).

Every CM message after the REQ carries both the host's comm ID and the
peer's, so a lookup reads ACTIVE[host id] and PASSIVE[(peer IP, peer id)] and
checks the stored keys: one pass, two reads, which a v1model program does
with register arrays. The flow map (remote IP, remote QPN) -> local QPN is
filled on entering ESTABLISHED and emptied when the connection leaves
ESTABLISHED/DREQ_SENT/DREQ_RCVD.

Table modes: ``ideal`` (unbounded, like the C library) and ``p4`` (fixed
BUCKETS x WAYS hash tables, CRC-32 over the spec's key bytes; a new entry
whose bucket has no free way is refused). Both run the same machine over
per-field slot arrays (:mod:`ctcm.dataplane.storage`). Model time is integer µs.
"""

from __future__ import annotations

import ipaddress
from array import array

import numpy as np

from ctcm.spec import headers as H
from ctcm.dataplane import machine as M
from ctcm.dataplane import storage
from ctcm import spec
from ctcm.dataplane.batch import Scratch
from ctcm.dataplane.cmfields import cm_fields, cm_fields_batch
from ctcm.io.gcpause import gc_paused
from ctcm.dataplane.packet import CM, classify
from ctcm.dataplane.probes import ip_bytes
from ctcm.spec import TRACKER_COUNTERS, Direction, Geometry, Msg, Outcome, Result, State

__all__ = ["Direction", "FROM_HOST", "FROM_NET", "State", "Event", "Geometry", "Tracker", "normalize_ip"]

FROM_HOST = Direction.FROM_HOST
FROM_NET = Direction.FROM_NET
_STATES = tuple(State)
_MSG_LABELS = tuple(m.label for m in Msg)
_RESULT_LABELS = tuple(r.label for r in Result)
_V4 = spec.V4_MAPPED_PREFIX
_DIRECTIONS = {int(d): d for d in Direction}
_R_IGNORED, _IP_SLOT, _IP_MSG, _GONE_CODE, _E_IP0 = M.R_IGNORED, M.IP_SLOT, M.IP_MSG, M.GONE, M.E_IP0
_GONE = Outcome.GONE
assert (M.E_RES, M.E_MSG, M.E_OLD, M.E_NEW, M.E_LID, M.E_RID, M.E_IPSRC, M.E_SLOT, M.E_FLOW_ADDED, M.E_FLOW_REMOVED,
        M.E_LQPN, M.E_RQPN) == tuple(range(M.E_IP0))


def normalize_ip(ip) -> bytes:
    """16-byte form of an address: IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d)."""
    if isinstance(ip, (bytes, bytearray, memoryview)):
        ip = bytes(ip)
        if len(ip) == 4:
            return _V4 + ip
        if len(ip) == 16:
            return ip
        raise ValueError(f"an IP address is 4 or 16 bytes, not {len(ip)}")
    if isinstance(ip, int) and not isinstance(ip, bool):
        return _V4 + ip.to_bytes(4, "big")
    return normalize_ip(ipaddress.ip_address(ip).packed)


def ip_str(ip16: bytes) -> str:
    if ip16[:12] == _V4:
        return str(ipaddress.IPv4Address(ip16[12:]))
    return str(ipaddress.IPv6Address(ip16))


class Event:
    """What one CM message did. ``result`` is a :class:`~ctcm.spec.Result` label
    ("new", "transition", ...); ``new_state`` is a State or ``Outcome.GONE``."""

    __slots__ = ("direction", "msg", "result", "old_state", "new_state", "local_id", "remote_ip", "remote_id",
                 "flow_added", "flow_removed")

    def __init__(self, direction, msg, result, old_state=None, new_state=None, local_id=None, remote_ip=None,
                 remote_id=None, flow_added=None, flow_removed=None):
        self.direction = direction
        self.msg = msg
        self.result = result
        self.old_state = old_state
        self.new_state = new_state
        self.local_id = local_id
        self.remote_ip = remote_ip
        self.remote_id = remote_id
        self.flow_added = flow_added      # (remote IP 16 bytes, remote QPN, local QPN)
        self.flow_removed = flow_removed  # (remote IP 16 bytes, remote QPN)

    def __str__(self) -> str:
        arrow = "->" if self.direction == FROM_HOST else "<-"
        s = f"{arrow} {self.msg:8s} {self.result}"
        if self.old_state is not None or self.new_state is not None:
            o = self.old_state.name if self.old_state is not None else "IDLE"
            n = self.new_state.name if isinstance(self.new_state, State) else "gone"
            s += f" {o} -> {n}" if o != n else f" ({o})"
        ident = []
        if self.local_id is not None:
            ident.append(f"local={self.local_id:#010x}")
        if self.remote_ip is not None:
            ident.append(f"remote={ip_str(self.remote_ip)}")
        if self.remote_id is not None:
            ident.append(f"remote_id={self.remote_id:#010x}")
        if ident:
            s += " [" + " ".join(ident) + "]"
        if self.flow_added:
            ip, rq, lq = self.flow_added
            s += f" +flow({ip_str(ip)}, {rq:#08x}) -> {lq:#08x}"
        if self.flow_removed:
            ip, rq = self.flow_removed
            s += f" -flow({ip_str(ip)}, {rq:#08x})"
        return s

    __repr__ = __str__


def _ignored_name(attr: int, mraed: int) -> str:
    if attr == spec.ATTR_MRA:  # an MRA of neither REQ nor REP
        return "MRA(LAP)" if mraed == 2 else f"MRA({mraed})"
    return H.CM_ATTR_NAMES.get(attr) or f"attr {attr:#06x}"


class Tracker:
    """The connection tracker (C: ctcm_create / ctcm_process_packets / ctcm_query_ipv4)."""

    def __init__(self, mode: str = "ideal", *, timewait_us: int = spec.TIMEWAIT_US, geometry: Geometry | None = None):
        if mode not in ("ideal", "p4"):
            raise ValueError(f"mode must be 'ideal' or 'p4', not {mode!r}")
        if type(timewait_us) is not int or timewait_us < 0:
            raise ValueError(f"timewait_us must be an integer >= 0, not {timewait_us!r}")
        self.mode = mode
        self.timewait_us = timewait_us
        self.geometry = geometry or Geometry()
        self._counters = [0] * len(spec.Counter)  # indexed by spec.Counter (lists: the fastest in Python)
        self._ev = [0] * M.E_SIZE  # the event record track() fills
        self.now = 0
        self._scratch = None  # classify_batch's reusable buffer (process_batch)
        self._init_tables()

    def _init_tables(self) -> None:
        if self.mode == "ideal":
            self._T, self._G, self._m = storage.ideal_tables(), storage.IdealIndex(), storage.IDEAL
        else:
            self._T, self._G, self._m = storage.p4_tables(self.geometry), storage.p4_geometry(self.geometry), M.P4

    # -- lifecycle ------------------------------------------------------------
    def close(self) -> None:
        """C: ``ctcm_destroy``: frees the tables (an empty, unbounded index remains)."""
        self.mode = "ideal"
        self._init_tables()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    @property
    def capacity(self) -> int | None:
        return None if self.mode == "ideal" else self.geometry.slots

    @property
    def counters(self) -> dict[str, int]:
        """The tracker's counters by name (``cm_REQ``, ``new`` ...)."""
        c = self._counters
        return {k.short: c[k] for k in TRACKER_COUNTERS}

    def table_bytes(self) -> int:
        """Bytes held by the connection and flow arrays (not counting ideal mode's dicts)."""
        return sum(len(a) * (a.itemsize if isinstance(a, array) else 1) for a in self._T)

    # -- processing ---------------------------------------------------------------
    def process_packets(self, direction, packets, now_us: int = 0) -> int:
        """Feed frames (bytes or (bytes, Parsed)); returns the number of CM messages processed."""
        n = 0
        for p in packets:
            ev = self.process(direction, *p, now_us=now_us) if isinstance(p, tuple) else self.process(
                direction, p, None, now_us)
            n += ev is not None
        return n

    def process(self, direction, buf, parsed=None, now_us: int = 0) -> Event | None:
        """One frame; None when it is not a CM MAD."""
        if parsed is None:
            parsed = classify(buf)
        if parsed.kind != CM:
            return None
        if direction.__class__ is not Direction:
            direction = Direction(direction)
        return self.track(direction, *cm_fields(buf, parsed, direction), now_us)

    def track(self, direction, attr: int, peer_ip: bytes, msg_local: int, msg_remote: int, qpn: int, mraed: int,
              now_us: int) -> Event:
        """The state machine on the fields of one CM message (what the P4
        parser extracts; see :mod:`ctcm.dataplane.cmfields`)."""
        self.now = now_us
        ev = self._ev
        self._m.track(self._T, self._G, direction, attr, peer_ip, msg_local, msg_remote, qpn, mraed, now_us,
                      self.timewait_us, self._counters, ev)
        return self._event(direction, attr, mraed, peer_ip, ev)

    def _event(self, d, attr, mraed, peer_ip, ev) -> Event:
        res, m, old, new, lid, rid, src, _slot, added, removed, lqpn, rqpn = ev[:_E_IP0]
        if res == _R_IGNORED:
            return Event(d, _ignored_name(attr, mraed), "ignored")
        if src == _IP_SLOT:
            ip = b"".join(w.to_bytes(4, "big") for w in ev[_E_IP0 : _E_IP0 + 4])
        else:
            ip = peer_ip if src == _IP_MSG else None
        e = Event(d, _MSG_LABELS[m], _RESULT_LABELS[res], None if old < 0 else _STATES[old],
                  _GONE if new == _GONE_CODE else (None if new < 0 else _STATES[new]),
                  None if lid < 0 else lid, ip, None if rid < 0 else rid)
        # A flow added or removed is the matched connection's: its IP is the message's.
        if added:
            e.flow_added = (peer_ip, rqpn, lqpn)
        if removed:
            e.flow_removed = (peer_ip, rqpn)
        return e

    def process_batch(self, directions, frames, now_us=0) -> list[Event | None]:
        """Many frames at once: the same events as :meth:`process` one by one.

        ``directions``: one Direction for all frames or one per frame;
        ``now_us``: one time or one per frame. Field extraction is vectorised
        (numpy); in p4 mode, batches of at least ``storage.MIN_COMPILED`` CM
        messages run the machine compiled by numba when it is installed."""
        with gc_paused():
            return self._process_batch(directions, frames, now_us)

    def _process_batch(self, directions, frames, now_us) -> list[Event | None]:
        frames = list(frames)
        n = len(frames)
        if isinstance(directions, int):
            dirs = [Direction(directions)] * n
        else:
            try:
                dirs = [_DIRECTIONS[d] for d in directions]
            except (KeyError, TypeError):
                dirs = list(map(Direction, directions))  # the error names the bad value
        times = [now_us] * n if isinstance(now_us, int) else list(now_us)
        out: list[Event | None] = [None] * n
        if self._scratch is None:
            self._scratch = Scratch()
        f = cm_fields_batch(frames, dirs, self._scratch)
        k = len(f.index)
        if not k:
            return out
        idx = f.index.tolist()
        if self.mode == "p4" and k >= storage.MIN_COMPILED and storage.numba_available():
            self._track_compiled(f, idx, dirs, times, out)
            return out
        ipb = f.ip.tobytes()
        track = self.track
        for j, (i, attr, loc, rem, qpn, mraed) in enumerate(zip(idx, f.attr.tolist(), f.local_id.tolist(),
                                                                f.remote_id.tolist(), f.qpn.tolist(),
                                                                f.mraed.tolist())):
            out[i] = track(dirs[i], attr, ipb[16 * j : 16 * j + 16], loc, rem, qpn, mraed, times[i])
        return out

    def _track_compiled(self, f, idx, dirs, times, out) -> None:
        """The machine compiled by numba over the whole batch; events as :meth:`track` makes them."""
        k = len(idx)
        d = np.fromiter(map(dirs.__getitem__, idx), np.int64, k)
        t = np.fromiter(map(times.__getitem__, idx), np.int64, k)
        T = M.TablesTuple._make(np.frombuffer(a, np.uint8 if not isinstance(a, array) else a.typecode) for a in self._T)
        evs = np.zeros((k, M.E_SIZE), np.int64)
        counters = np.array(self._counters, np.int64)
        storage.compiled().track_batch(T, self._G, d, f.attr, f.ip, f.local_id, f.remote_id, f.qpn, f.mraed, t,
                                       self.timewait_us, counters, evs)
        self._counters[:] = counters.tolist()
        self.now = int(t[-1])
        ipb = f.ip.tobytes()
        for j, (i, attr, mraed, ev) in enumerate(zip(idx, f.attr.tolist(), f.mraed.tolist(), evs.tolist())):
            out[i] = self._event(dirs[i], attr, mraed, ipb[16 * j : 16 * j + 16], ev)

    def expire(self, now_us: int) -> int:
        """Remove TIMEWAIT connections whose time is up; returns how many."""
        expire, T, G, tw, c = self._m.expire, self._T, self._G, self.timewait_us, self._counters
        return sum(expire(T, G, i, now_us, tw, c) for i in self._occupied())

    # -- queries ---------------------------------------------------------------------
    def query(self, ip, dqpn: int) -> int:
        """Local QPN sending to (remote IP, remote QPN); 0 when unknown. ``ip`` packed, 4 or 16 bytes."""
        i = self.flow_slot(ip, dqpn)
        return self._T.conn_lqpn[i] if i >= 0 else 0

    def flow_slot(self, ip, dqpn: int) -> int:
        """Slot of the connection whose flow is (remote IP, remote QPN); -1 when none."""
        ip = _V4 + bytes(ip) if len(ip) == 4 else bytes(ip)
        return self._m.flow_find(self._T, self._G, ip, dqpn)

    def query_ipv4(self, dest_ip, dest_qpn: int) -> int:
        """C: ``ctcm_query_ipv4(ctx, dest_ip, dqpn)``; dest_ip as str, int or 4 bytes."""
        ip = normalize_ip(dest_ip)
        if ip[:12] != _V4:
            raise ValueError(f"{dest_ip!r} is not an IPv4 address")
        return self.query(ip, dest_qpn & 0xFFFFFF)

    def query_ipv6(self, dest_ip, dest_qpn: int) -> int:
        return self.query(normalize_ip(dest_ip), dest_qpn & 0xFFFFFF)

    # -- snapshots ----------------------------------------------------------------------
    def _occupied(self) -> list[int]:
        st = self._T.conn_state
        return [i for i in range(len(st)) if st[i]]

    def _conn(self, i: int) -> dict:
        T = self._T
        state, flags, lid, rid, lqpn, rqpn, ts = (T.conn_state, T.conn_flags, T.conn_lid, T.conn_rid, T.conn_lqpn,
                                                  T.conn_rqpn, T.conn_ts)
        f = flags[i]
        return {
            "opened_by": "network" if f & spec.Flag.PASSIVE else "host",
            "state": _STATES[state[i]].name,
            "local_comm_id": f"{lid[i]:#010x}" if f & spec.Flag.LID else "-",
            "remote_ip": ip_str(ip_bytes(T.conn_ip, i)),
            "remote_comm_id": f"{rid[i]:#010x}" if f & spec.Flag.RID else "-",
            "local_qpn": f"{lqpn[i]:#08x}",
            "remote_qpn": f"{rqpn[i]:#08x}",
            "since_us": ts[i],
            "flow": bool(f & spec.Flag.FLOW),
        }

    def connections(self) -> list[dict]:
        rows = [self._conn(i) for i in self._occupied()]
        rows.sort(key=lambda r: (r["opened_by"], r["remote_ip"], r["local_comm_id"], r["remote_comm_id"]))
        return rows

    def flows(self) -> list[dict]:
        rows = [{"remote_ip": r["remote_ip"], "remote_qpn": r["remote_qpn"], "local_qpn": r["local_qpn"]}
                for r in map(self._conn, self._occupied()) if r["flow"]]
        rows.sort(key=lambda r: (r["remote_ip"], r["remote_qpn"]))
        return rows

    def __len__(self) -> int:
        occ = self._T.occupancy
        return occ[0] + occ[1]
