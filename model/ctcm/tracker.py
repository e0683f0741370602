"""CM connection tracker: the C library's state machine, its gaps closed.

Where is REQ handled? In :data:`TRANSITIONS` (what it may do, per direction
and state) and :meth:`Tracker._handle` (the one place that applies a row).

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

Table modes: ``ideal`` (unbounded dicts, like the C library) and ``p4``
(fixed BUCKETS x WAYS hash tables, CRC-32 over stated key bytes; a new entry
whose bucket has no free way is refused). Model time is integer µs.
"""

from __future__ import annotations

import enum
import ipaddress
import zlib
from dataclasses import dataclass

from . import constants as K
from . import headers as H
from .packet import CM, classify

__all__ = [
    "Direction", "FROM_HOST", "FROM_NET", "State", "Event", "Geometry", "Tracker", "TRANSITIONS",
    "SAME", "GONE", "create", "destroy", "normalize_ip", "bucket_of", "transitions_dot",
    "transitions_markdown", "RESULTS",
]


class Direction(enum.IntEnum):
    FROM_HOST = 0
    FROM_NET = 1


FROM_HOST = Direction.FROM_HOST
FROM_NET = Direction.FROM_NET


class State(enum.IntEnum):
    IDLE = 0
    REQ_SENT = 1
    REQ_RCVD = 2
    MRA_REQ_RCVD = 3
    MRA_REQ_SENT = 4
    MRA_REP_SENT = 5
    MRA_REP_RCVD = 6
    REP_SENT = 7
    REP_RCVD = 8
    ESTABLISHED = 9
    DREQ_SENT = 10
    DREQ_RCVD = 11
    TIMEWAIT = 12


S = State
SAME = "same"  # a retransmission: absorbed, nothing changes
GONE = "gone"  # the connection is removed

PRE_ESTABLISHED = frozenset({S.REQ_SENT, S.REQ_RCVD, S.MRA_REQ_RCVD, S.MRA_REQ_SENT, S.MRA_REP_SENT,
                             S.MRA_REP_RCVD, S.REP_SENT, S.REP_RCVD})
FLOW_STATES = frozenset({S.ESTABLISHED, S.DREQ_SENT, S.DREQ_RCVD})

# (direction, message, from states, to). Message "MRA(REQ)"/"MRA(REP)" by the
# "message MRAed" field. IDLE = no connection yet (only REQ creates one).
# Rows marked C are the C library's; the others close its gaps.
TRANSITIONS: tuple[tuple[Direction, str, frozenset, object, str], ...] = (
    (FROM_HOST, "REQ", frozenset({S.IDLE}), S.REQ_SENT, "C: new active connection, records local QPN"),
    (FROM_HOST, "REQ", frozenset({S.REQ_SENT, S.MRA_REQ_RCVD}), SAME, "retransmitted REQ"),
    (FROM_HOST, "REP", frozenset({S.REQ_RCVD, S.MRA_REQ_SENT}), S.REP_SENT, "C: records local QPN and local comm ID"),
    (FROM_HOST, "REP", frozenset({S.REP_SENT, S.MRA_REP_RCVD}), SAME, "retransmitted REP"),
    (FROM_HOST, "RTU", frozenset({S.REP_RCVD, S.MRA_REP_SENT}), S.ESTABLISHED, "C"),
    (FROM_HOST, "RTU", frozenset({S.ESTABLISHED}), SAME, "retransmitted RTU"),
    (FROM_HOST, "MRA(REQ)", frozenset({S.REQ_RCVD}), S.MRA_REQ_SENT, "MRA handled"),
    (FROM_HOST, "MRA(REQ)", frozenset({S.MRA_REQ_SENT}), SAME, "retransmitted MRA"),
    (FROM_HOST, "MRA(REP)", frozenset({S.REP_RCVD}), S.MRA_REP_SENT, "MRA handled"),
    (FROM_HOST, "MRA(REP)", frozenset({S.MRA_REP_SENT}), SAME, "retransmitted MRA"),
    (FROM_HOST, "DREQ", frozenset({S.ESTABLISHED, S.DREQ_RCVD}), S.DREQ_SENT, "C"),
    (FROM_HOST, "DREQ", frozenset({S.DREQ_SENT, S.TIMEWAIT}), SAME, "retransmitted DREQ (C: DREQ_SENT -> DREQ_SENT)"),
    (FROM_HOST, "DREP", frozenset({S.DREQ_SENT, S.DREQ_RCVD}), S.TIMEWAIT, "C removes; TIMEWAIT added"),
    (FROM_HOST, "DREP", frozenset({S.TIMEWAIT}), SAME, "retransmitted DREP"),
    (FROM_HOST, "REJ", PRE_ESTABLISHED, GONE, "C"),
    (FROM_NET, "REQ", frozenset({S.IDLE}), S.REQ_RCVD, "C: new passive connection, records remote QPN"),
    (FROM_NET, "REQ", frozenset({S.REQ_RCVD, S.MRA_REQ_SENT, S.REP_SENT}), SAME, "retransmitted REQ"),
    (FROM_NET, "REP", frozenset({S.REQ_SENT, S.MRA_REQ_RCVD}), S.REP_RCVD, "C: records remote QPN and remote comm ID"),
    (FROM_NET, "REP", frozenset({S.REP_RCVD, S.MRA_REP_SENT, S.ESTABLISHED}), SAME, "retransmitted REP"),
    (FROM_NET, "RTU", frozenset({S.REP_SENT, S.MRA_REP_RCVD}), S.ESTABLISHED, "C"),
    (FROM_NET, "RTU", frozenset({S.ESTABLISHED}), SAME, "retransmitted RTU"),
    (FROM_NET, "MRA(REQ)", frozenset({S.REQ_SENT}), S.MRA_REQ_RCVD, "MRA handled"),
    (FROM_NET, "MRA(REQ)", frozenset({S.MRA_REQ_RCVD}), SAME, "retransmitted MRA"),
    (FROM_NET, "MRA(REP)", frozenset({S.REP_SENT}), S.MRA_REP_RCVD, "MRA handled"),
    (FROM_NET, "MRA(REP)", frozenset({S.MRA_REP_RCVD}), SAME, "retransmitted MRA"),
    (FROM_NET, "DREQ", frozenset({S.REP_SENT, S.MRA_REP_RCVD, S.ESTABLISHED, S.DREQ_SENT}), S.DREQ_RCVD, "C"),
    (FROM_NET, "DREQ", frozenset({S.DREQ_RCVD, S.TIMEWAIT}), SAME,
     "retransmitted DREQ (C: -> DREQ_RCVD, from TIMEWAIT too)"),
    (FROM_NET, "DREP", frozenset({S.DREQ_SENT, S.DREQ_RCVD}), S.TIMEWAIT, "C removes; TIMEWAIT added"),
    (FROM_NET, "DREP", frozenset({S.TIMEWAIT}), SAME, "retransmitted DREP"),
    (FROM_NET, "REJ", PRE_ESTABLISHED | {S.DREQ_SENT, S.ESTABLISHED}, GONE, "C"),
)

# (direction, message, state) -> to
_TABLE: dict[tuple[int, str, int], object] = {}
for _d, _m, _froms, _to, _why in TRANSITIONS:
    for _s in _froms:
        if (_d, _m, _s) in _TABLE:
            raise AssertionError(f"TRANSITIONS: two rows for {_d.name} {_m} in {_s.name}")
        _TABLE[(_d, _m, _s)] = _to

#: results an Event can have; every CM message gets exactly one.
RESULTS = ("new", "transition", "retransmission", "unexpected", "unknown", "refused", "ignored")


# --- field offsets (from the tables, relative to the MAD start) ----------------
_BODY = H.MAD.length
_LOCAL_ID = _BODY + H.CM_REP["local_comm_id"].byte
_REMOTE_ID = _BODY + H.CM_REP["remote_comm_id"].byte
assert H.CM_REQ["local_comm_id"].byte == 0 and all(
    h["local_comm_id"].byte == 0 and h["remote_comm_id"].byte == 4
    for h in (H.CM_MRA, H.CM_REJ, H.CM_REP, H.CM_RTU, H.CM_DREQ, H.CM_DREP))
_REQ_QPN = _BODY + H.CM_REQ["local_qpn"].byte
_REP_QPN = _BODY + H.CM_REP["local_qpn"].byte
_MRAED = _BODY + H.CM_MRA["message_mraed"].byte
_MRAED_SHIFT = 8 - H.CM_MRA["message_mraed"].width
_TRACKED = {H.ATTR_REQ: "REQ", H.ATTR_MRA: "MRA", H.ATTR_REJ: "REJ", H.ATTR_REP: "REP",
            H.ATTR_RTU: "RTU", H.ATTR_DREQ: "DREQ", H.ATTR_DREP: "DREP"}

_V4_PREFIX = b"\0" * 10 + b"\xff\xff"


def normalize_ip(ip) -> bytes:
    """16-byte form of an address: IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d)."""
    if isinstance(ip, (bytes, bytearray, memoryview)):
        ip = bytes(ip)
        if len(ip) == 4:
            return _V4_PREFIX + ip
        if len(ip) == 16:
            return ip
        raise ValueError(f"an IP address is 4 or 16 bytes, not {len(ip)}")
    if isinstance(ip, int):
        return _V4_PREFIX + ip.to_bytes(4, "big")
    a = ipaddress.ip_address(ip)
    return normalize_ip(a.packed)


def _ip_str(ip16: bytes) -> str:
    if ip16[:12] == _V4_PREFIX:
        return str(ipaddress.IPv4Address(ip16[12:]))
    return str(ipaddress.IPv6Address(ip16))


# --- geometry -----------------------------------------------------------------

@dataclass(frozen=True)
class Geometry:
    """Fixed-size table geometry of ``p4`` mode (BUCKETS x WAYS each)."""

    active_buckets: int = K.ACTIVE_BUCKETS
    active_ways: int = K.ACTIVE_WAYS
    passive_buckets: int = K.PASSIVE_BUCKETS
    passive_ways: int = K.PASSIVE_WAYS
    flow_buckets: int = K.FLOW_BUCKETS
    flow_ways: int = K.FLOW_WAYS

    def __post_init__(self):
        for name in ("active", "passive", "flow"):
            b, w = getattr(self, f"{name}_buckets"), getattr(self, f"{name}_ways")
            if b < 1 or b & (b - 1):
                raise ValueError(f"{name}_buckets must be a power of two, not {b}")
            if not 1 <= w <= 8:
                raise ValueError(f"{name}_ways must be 1..8, not {w}")


def active_key(local_id: int) -> bytes:
    """ACTIVE table key bytes: the host's comm ID, 4 bytes big endian."""
    return local_id.to_bytes(4, "big")


def passive_key(remote_ip16: bytes, remote_id: int) -> bytes:
    """PASSIVE table key bytes: remote IP (16 bytes, IPv4-mapped) + remote comm ID (4)."""
    return remote_ip16 + remote_id.to_bytes(4, "big")


def flow_key(remote_ip16: bytes, remote_qpn: int) -> bytes:
    """FLOW table key bytes: remote IP (16 bytes) + remote QPN (3 bytes)."""
    return remote_ip16 + remote_qpn.to_bytes(3, "big")


def bucket_of(key: bytes, buckets: int) -> int:
    """Bucket of a key: CRC-32 (zlib = bmv2 HashAlgorithm.crc32) of the key bytes, low bits."""
    return zlib.crc32(key) & (buckets - 1)


class _DictTable:
    """ideal mode: unbounded."""

    __slots__ = ("d",)

    def __init__(self):
        self.d = {}

    def get(self, key):
        return self.d.get(key)

    def insert(self, key, value, reclaimable=None) -> bool:
        self.d[key] = value
        return True

    def remove(self, key):
        self.d.pop(key, None)

    def values(self):
        return self.d.values()

    def __len__(self):
        return len(self.d)


class _HashTable:
    """p4 mode: BUCKETS x WAYS slots, slot = bucket * WAYS + way.

    ``reclaimable(value)`` tells whether an occupied slot may be taken (an
    expired TIMEWAIT connection); the caller has already dropped it.
    """

    __slots__ = ("buckets", "ways", "keys", "vals", "n")

    def __init__(self, buckets: int, ways: int):
        self.buckets, self.ways = buckets, ways
        self.keys = [None] * (buckets * ways)
        self.vals = [None] * (buckets * ways)
        self.n = 0

    def get(self, key):
        base = (zlib.crc32(key) & (self.buckets - 1)) * self.ways
        keys = self.keys
        for i in range(base, base + self.ways):
            if keys[i] == key:
                return self.vals[i]
        return None

    def insert(self, key, value, reclaimable=None) -> bool:
        base = (zlib.crc32(key) & (self.buckets - 1)) * self.ways
        keys = self.keys
        for i in range(base, base + self.ways):
            if keys[i] is None or keys[i] == key:
                if keys[i] is None:
                    self.n += 1
                keys[i] = key
                self.vals[i] = value
                return True
        if reclaimable is not None:
            for i in range(base, base + self.ways):
                if reclaimable(self.vals[i]):
                    keys[i] = key
                    self.vals[i] = value
                    return True
        return False

    def remove(self, key):
        base = (zlib.crc32(key) & (self.buckets - 1)) * self.ways
        for i in range(base, base + self.ways):
            if self.keys[i] == key:
                self.keys[i] = None
                self.vals[i] = None
                self.n -= 1
                return

    def values(self):
        return [v for v in self.vals if v is not None]

    def __len__(self):
        return self.n


class Conn:
    """One tracked connection (lean: __slots__)."""

    __slots__ = ("local_id", "remote_ip", "remote_id", "local_qpn", "remote_qpn", "state", "ts", "flow", "passive")

    def __init__(self, passive, local_id, remote_ip, remote_id, state, ts):
        self.passive = passive
        self.local_id = local_id      # None until known (passive: host REP)
        self.remote_ip = remote_ip    # 16 bytes
        self.remote_id = remote_id    # None until known (active: REP from net)
        self.local_qpn = 0
        self.remote_qpn = 0
        self.state = state
        self.ts = ts
        self.flow = None              # flow key bytes while in the flow map

    def snapshot(self) -> dict:
        return {
            "opened_by": "network" if self.passive else "host",
            "state": self.state.name,
            "local_comm_id": "-" if self.local_id is None else f"{self.local_id:#010x}",
            "remote_ip": _ip_str(self.remote_ip),
            "remote_comm_id": "-" if self.remote_id is None else f"{self.remote_id:#010x}",
            "local_qpn": f"{self.local_qpn:#08x}",
            "remote_qpn": f"{self.remote_qpn:#08x}",
            "since_us": self.ts,
            "flow": self.flow is not None,
        }


class Event:
    """What one CM message did."""

    __slots__ = ("direction", "msg", "result", "old_state", "new_state", "local_id", "remote_ip", "remote_id",
                 "flow_added", "flow_removed")

    def __init__(self, direction, msg, result, old_state=None, new_state=None, conn=None):
        self.direction = direction
        self.msg = msg
        self.result = result
        self.old_state = old_state
        self.new_state = new_state
        self.local_id = conn.local_id if conn else None
        self.remote_ip = conn.remote_ip if conn else None
        self.remote_id = conn.remote_id if conn else None
        self.flow_added = None    # (remote IP 16 bytes, remote QPN, local QPN)
        self.flow_removed = None  # (remote IP 16 bytes, remote QPN)

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
            ident.append(f"remote={_ip_str(self.remote_ip)}")
        if self.remote_id is not None:
            ident.append(f"remote_id={self.remote_id:#010x}")
        if ident:
            s += " [" + " ".join(ident) + "]"
        if self.flow_added:
            ip, rq, lq = self.flow_added
            s += f" +flow({_ip_str(ip)}, {rq:#08x}) -> {lq:#08x}"
        if self.flow_removed:
            ip, rq = self.flow_removed
            s += f" -flow({_ip_str(ip)}, {rq:#08x})"
        return s

    __repr__ = __str__


COUNTERS = (
    *(f"cm_{m}" for m in ("REQ", "MRA", "REJ", "REP", "RTU", "DREQ", "DREP", "SIDR_REQ", "SIDR_REP", "LAP", "APR", "other")),
    *RESULTS,
    "removed", "timewait_expired", "table_refusals", "flow_inserts", "flow_removals", "flow_refusals",
    "flow_conflicts", "flow_zero_qpn",
)


class Tracker:
    """The connection tracker (ctcm_create / ctcm_process_packets / ctcm_query_ipv4)."""

    def __init__(self, mode: str = "ideal", *, timewait_us: int = K.TIMEWAIT_US, geometry: Geometry | None = None):
        if mode not in ("ideal", "p4"):
            raise ValueError(f"mode must be 'ideal' or 'p4', not {mode!r}")
        if timewait_us < 0:
            raise ValueError("timewait_us must be >= 0")
        self.mode = mode
        self.timewait_us = timewait_us
        self.geometry = geometry or Geometry()
        g = self.geometry
        if mode == "ideal":
            self._active, self._passive, self._flows = _DictTable(), _DictTable(), _DictTable()
        else:
            self._active = _HashTable(g.active_buckets, g.active_ways)
            self._passive = _HashTable(g.passive_buckets, g.passive_ways)
            self._flows = _HashTable(g.flow_buckets, g.flow_ways)
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.now = 0
        self._closed = False

    # -- lifecycle ------------------------------------------------------------
    def close(self) -> None:
        self._closed = True
        self._active = self._passive = self._flows = _DictTable()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    @property
    def capacity(self) -> int | None:
        g = self.geometry
        return None if self.mode == "ideal" else g.active_buckets * g.active_ways + g.passive_buckets * g.passive_ways

    # -- parsing / processing ---------------------------------------------------
    @staticmethod
    def parse_packets(packets):
        return [classify(p) for p in packets]

    def process_packets(self, direction, packets, now_us: int = 0) -> int:
        """Feed frames (bytes or (bytes, Parsed)); returns the number of CM messages processed."""
        n = 0
        for p in packets:
            if isinstance(p, tuple):
                ev = self.process(direction, p[0], p[1], now_us)
            else:
                ev = self.process(direction, p, None, now_us)
            if ev is not None:
                n += 1
        return n

    def process(self, direction, buf, parsed=None, now_us: int = 0) -> Event | None:
        """One frame; None when it is not a CM MAD."""
        if parsed is None:
            parsed = classify(buf)
        if parsed.kind != CM:
            return None
        if direction.__class__ is not Direction:
            direction = Direction(direction)
        self.now = now_us
        attr = parsed.attr_id
        name = _TRACKED.get(attr)
        c = self.counters
        if name is None:
            hname = H.CM_ATTR_NAMES.get(attr)
            c[f"cm_{hname}" if hname else "cm_other"] += 1
            c["ignored"] += 1
            return Event(direction, hname or f"attr {attr:#06x}", "ignored")
        c[f"cm_{name}"] += 1
        mad = parsed.mad
        l3 = parsed.l3
        # The peer is the destination of what the host sends, the source of what it receives.
        if parsed.ip_version == 4:
            a = l3 + (16 if direction == FROM_HOST else 12)
            peer_ip = _V4_PREFIX + buf[a : a + 4]
        else:
            a = l3 + (24 if direction == FROM_HOST else 8)
            peer_ip = bytes(buf[a : a + 16])
        msg_local = int.from_bytes(buf[mad + _LOCAL_ID : mad + _LOCAL_ID + 4], "big")
        if name == "MRA":
            mraed = buf[mad + _MRAED] >> _MRAED_SHIFT
            if mraed > 1:  # MRA of a LAP (or reserved): not tracked
                c["ignored"] += 1
                return Event(direction, "MRA(LAP)" if mraed == 2 else f"MRA({mraed})", "ignored")
            name = "MRA(REQ)" if mraed == 0 else "MRA(REP)"
        if name == "REQ":
            return self._req(direction, buf, mad, peer_ip, msg_local, now_us)
        msg_remote = int.from_bytes(buf[mad + _REMOTE_ID : mad + _REMOTE_ID + 4], "big")
        host_id, peer_id = (msg_local, msg_remote) if direction == FROM_HOST else (msg_remote, msg_local)
        conn = self._lookup(host_id, peer_ip, peer_id, now_us)
        if conn is None:
            c["unknown"] += 1
            return Event(direction, name, "unknown")
        return self._apply(direction, name, conn, buf, mad, host_id, peer_id, now_us)

    # -- lookups ------------------------------------------------------------------
    def _expired(self, conn: Conn, now_us: int) -> bool:
        return conn.state == S.TIMEWAIT and now_us - conn.ts >= self.timewait_us

    def _drop_expired(self, conn: Conn) -> None:
        self._remove(conn)
        self.counters["timewait_expired"] += 1

    def _lookup(self, host_id: int, peer_ip: bytes, peer_id: int, now_us: int) -> Conn | None:
        conn = self._active.get(active_key(host_id))
        if conn is not None and conn.remote_ip == peer_ip and conn.remote_id in (None, peer_id):
            if self._expired(conn, now_us):
                self._drop_expired(conn)
                return None
            return conn
        conn = self._passive.get(passive_key(peer_ip, peer_id))
        if conn is not None and conn.local_id in (None, host_id):
            if self._expired(conn, now_us):
                self._drop_expired(conn)
                return None
            return conn
        return None

    # -- transitions --------------------------------------------------------------
    def _req(self, direction, buf, mad, peer_ip, msg_local, now_us) -> Event:
        c = self.counters
        if direction == FROM_HOST:
            table, key = self._active, active_key(msg_local)
        else:
            table, key = self._passive, passive_key(peer_ip, msg_local)
        conn = table.get(key)
        if conn is not None and direction == FROM_HOST and conn.remote_ip != peer_ip:
            # The same local comm ID towards another peer: not this connection.
            c["unexpected"] += 1
            return Event(direction, "REQ", "unexpected", conn.state, conn.state, conn)
        if conn is not None and self._expired(conn, now_us):
            self._drop_expired(conn)
            conn = None
        if conn is not None:
            return self._apply(direction, "REQ", conn, buf, mad, None, None, now_us)
        qpn = int.from_bytes(buf[mad + _REQ_QPN : mad + _REQ_QPN + 3], "big")
        if direction == FROM_HOST:
            conn = Conn(False, msg_local, peer_ip, None, S.REQ_SENT, now_us)
            conn.local_qpn = qpn
        else:
            conn = Conn(True, None, peer_ip, msg_local, S.REQ_RCVD, now_us)
            conn.remote_qpn = qpn
        if not table.insert(key, conn, self._reclaim_fn(now_us)):
            c["table_refusals"] += 1
            c["refused"] += 1
            return Event(direction, "REQ", "refused", None, None, conn)
        c["new"] += 1
        return Event(direction, "REQ", "new", None, conn.state, conn)

    def _reclaim_fn(self, now_us):
        if self.mode == "ideal":
            return None

        def reclaim(conn):
            if conn is not None and self._expired(conn, now_us):
                self.counters["timewait_expired"] += 1
                return True
            return False

        return reclaim

    def _apply(self, direction, name, conn, buf, mad, host_id, peer_id, now_us) -> Event:
        c = self.counters
        old = conn.state
        to = _TABLE.get((direction, name, old))
        if to is None:
            c["unexpected"] += 1
            return Event(direction, name, "unexpected", old, old, conn)
        if to is SAME:
            c["retransmission"] += 1
            return Event(direction, name, "retransmission", old, old, conn)
        ev = Event(direction, name, "transition", old, to, conn)
        if to is GONE:
            ev.flow_removed = self._remove(conn)
            c["transition"] += 1
            return ev
        # Records made by the message.
        if name == "REP":
            qpn = int.from_bytes(buf[mad + _REP_QPN : mad + _REP_QPN + 3], "big")
            if direction == FROM_HOST:
                conn.local_qpn = qpn
                conn.local_id = host_id
            else:
                conn.remote_qpn = qpn
                conn.remote_id = peer_id
        conn.state = to
        conn.ts = now_us
        if to == S.ESTABLISHED:
            ev.flow_added = self._flow_insert(conn)
        elif to == S.TIMEWAIT:
            ev.flow_removed = self._flow_remove(conn)
        ev.local_id, ev.remote_id = conn.local_id, conn.remote_id
        c["transition"] += 1
        return ev

    def _flow_insert(self, conn: Conn):
        c = self.counters
        if not conn.local_qpn or not conn.remote_qpn:
            c["flow_zero_qpn"] += 1
            return None
        key = flow_key(conn.remote_ip, conn.remote_qpn)
        if self._flows.get(key) is not None:
            c["flow_conflicts"] += 1
            c["flow_refusals"] += 1
            return None
        if not self._flows.insert(key, conn.local_qpn):
            c["flow_refusals"] += 1
            return None
        conn.flow = key
        c["flow_inserts"] += 1
        return (conn.remote_ip, conn.remote_qpn, conn.local_qpn)

    def _flow_remove(self, conn: Conn):
        if conn.flow is None:
            return None
        self._flows.remove(conn.flow)
        conn.flow = None
        self.counters["flow_removals"] += 1
        return (conn.remote_ip, conn.remote_qpn)

    def _remove(self, conn: Conn):
        removed = self._flow_remove(conn)
        if conn.passive:
            self._passive.remove(passive_key(conn.remote_ip, conn.remote_id))
        else:
            self._active.remove(active_key(conn.local_id))
        self.counters["removed"] += 1
        return removed

    def expire(self, now_us: int) -> int:
        """Remove TIMEWAIT connections whose time is up; returns how many."""
        gone = [x for t in (self._active, self._passive) for x in t.values() if self._expired(x, now_us)]
        for x in gone:
            self._drop_expired(x)
        return len(gone)

    # -- queries ---------------------------------------------------------------------
    def query(self, ip, dqpn: int) -> int:
        """Local QPN sending to (remote IP, remote QPN); 0 when unknown. ``ip`` packed, 4 or 16 bytes."""
        if len(ip) == 4:
            ip = _V4_PREFIX + ip
        v = self._flows.get(bytes(ip) + dqpn.to_bytes(3, "big"))
        return v or 0

    def query_ipv4(self, dest_ip, dest_qpn: int) -> int:
        """C: ``ctcm_query_ipv4(ctx, dest_ip, dqpn)``; dest_ip as str, int or 4 bytes."""
        ip = normalize_ip(dest_ip)
        if ip[:12] != _V4_PREFIX:
            raise ValueError(f"{dest_ip!r} is not an IPv4 address")
        return self.query(ip, dest_qpn & 0xFFFFFF)

    def query_ipv6(self, dest_ip, dest_qpn: int) -> int:
        return self.query(normalize_ip(dest_ip), dest_qpn & 0xFFFFFF)

    # -- snapshots ----------------------------------------------------------------------
    def _conns(self):
        return list(self._active.values()) + list(self._passive.values())

    def connections(self) -> list[dict]:
        rows = [x.snapshot() for x in self._conns()]
        rows.sort(key=lambda r: (r["opened_by"], r["remote_ip"], r["local_comm_id"], r["remote_comm_id"]))
        return rows

    def flows(self) -> list[dict]:
        rows = [
            {"remote_ip": _ip_str(x.remote_ip), "remote_qpn": f"{x.remote_qpn:#08x}", "local_qpn": f"{x.local_qpn:#08x}"}
            for x in self._conns() if x.flow is not None
        ]
        rows.sort(key=lambda r: (r["remote_ip"], r["remote_qpn"]))
        return rows

    def __len__(self) -> int:
        return len(self._active) + len(self._passive)


def create(**kw) -> Tracker:
    """C: ``ctcm_create()``."""
    return Tracker(**kw)


def destroy(tracker: Tracker) -> None:
    """C: ``ctcm_destroy(ctx)``."""
    tracker.close()


# --- documentation generated from TRANSITIONS ------------------------------------------

def transitions_dot() -> str:
    """Graphviz state diagram of TRANSITIONS (docs/state-machine.dot)."""
    lines = [
        "// Generated from ctcm.tracker.TRANSITIONS by `make docs`; do not edit.",
        "digraph ctcm_cm_states {",
        '  rankdir=TB; node [shape=box, style=rounded, fontname="Helvetica"]; edge [fontname="Helvetica", fontsize=10];',
        '  GONE [shape=doublecircle, label="gone"];',
    ]
    edges: dict[tuple[str, str], list[str]] = {}
    for d, m, froms, to, _why in TRANSITIONS:
        if to is SAME:
            continue
        arrow = "send" if d == FROM_HOST else "recv"
        for s in sorted(froms):
            dst = "GONE" if to is GONE else to.name
            edges.setdefault((s.name, dst), []).append(f"{arrow} {m}")
    lines.append('  TIMEWAIT -> GONE [style=dashed, label="timewait_us elapsed"];')
    for (a, b), labels in sorted(edges.items()):
        lines.append(f'  {a} -> {b} [label="' + "\\n".join(labels) + '"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def transitions_markdown() -> str:
    """The transition table as Markdown (docs/tracker.md)."""
    out = ["| direction | message | from states | to | note |", "|---|---|---|---|---|"]
    for d, m, froms, to, why in TRANSITIONS:
        t = "absorbed (retransmission)" if to is SAME else ("removed" if to is GONE else to.name)
        out.append(f"| {'from host' if d == FROM_HOST else 'from network'} | {m} | "
                   f"{', '.join(s.name for s in sorted(froms))} | {t} | {why} |")
    return "\n".join(out) + "\n"


BEGIN, END = "<!-- BEGIN TRANSITIONS (generated) -->", "<!-- END TRANSITIONS -->"


def docs_with_table(text: str) -> str:
    """``text`` (docs/tracker.md) with its generated transition table replaced."""
    a, b = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[:a] + "\n" + transitions_markdown() + text[b:]
