"""CM connection tracker: the C library's state machine, its gaps closed.

Where is REQ handled? In :data:`TRANSITIONS` (what it may do, per direction
and state) and :meth:`Tracker._apply` (the one place that applies a row).

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
BUCKETS x WAYS hash tables, CRC-32 over stated key bytes; a new entry whose
bucket has no free way is refused). In both, a connection is one slot of
per-field arrays, as in a v1model program's register arrays (see
"connection storage" below). Model time is integer µs.
"""

from __future__ import annotations

import enum
import ipaddress
import zlib
from array import array
from dataclasses import dataclass
from typing import NamedTuple

from . import constants as K
from . import kernel
from . import headers as H
from .gcpause import gc_paused
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
_DIRECTIONS = {0: FROM_HOST, 1: FROM_NET}


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


# --- connection storage: per-field arrays indexed by slot ----------------------
#
# Both modes keep a connection as one *slot* in per-field arrays, the way a
# v1model program keeps it in register arrays (one register per field, one
# index per slot): state and flags (1 byte each), local/remote comm ID and
# local/remote QPN (4 bytes each), timestamp (8) and remote IP (16) = 42 bytes
# per slot, no Python object per connection. Slots [0, A) belong to the
# ACTIVE table and [A, A + P) to the PASSIVE table. The FLOW table holds slot
# numbers only: its key (remote IP, remote QPN) and value (local QPN) are read
# from the connection it points to, so it costs 4 bytes per way.
#
# ``ideal`` mode: the arrays grow on demand and three dicts index them
# (active: host comm ID, passive: remote IP + remote comm ID, flow: remote IP
# + remote QPN; all unbounded). ``p4`` mode: the arrays have the fixed
# geometry and lookups probe the WAYS slots of the key's bucket.

F_LID = 1      # local (host) comm ID known
F_RID = 2      # remote comm ID known
F_FLOW = 4     # in the flow map
F_PASSIVE = 8  # opened by the network (PASSIVE table)

_FREE = 0  # state value of an empty slot (State.IDLE: no connection)

# Message codes: index into the transition array.
MSGS = ("REQ", "REP", "RTU", "MRA(REQ)", "MRA(REP)", "DREQ", "DREP", "REJ")
M_REQ, M_REP, M_RTU, M_MRA_REQ, M_MRA_REP, M_DREQ, M_DREP, M_REJ = range(len(MSGS))
_M_MRA = -1
_MSG_OF_ATTR = {H.ATTR_REQ: M_REQ, H.ATTR_MRA: _M_MRA, H.ATTR_REJ: M_REJ, H.ATTR_REP: M_REP,
                H.ATTR_RTU: M_RTU, H.ATTR_DREQ: M_DREQ, H.ATTR_DREP: M_DREP}
_CM_COUNTER = {a: f"cm_{n}" for a, n in _TRACKED.items()}
_QPN_AT = {H.ATTR_REQ: _REQ_QPN, H.ATTR_REP: _REP_QPN}  # MAD offset of the QPN a message records

# (direction << 8 | message << 4 | state) -> State, SAME, GONE or None (unexpected)
_TRANS: list = [None] * 512
for (_d, _m, _s), _to in _TABLE.items():
    _TRANS[int(_d) << 8 | MSGS.index(_m) << 4 | int(_s)] = _to
_STATES = tuple(State)
_TIMEWAIT, _ESTABLISHED = int(S.TIMEWAIT), int(S.ESTABLISHED)


class _Slots:
    """The per-field arrays (see above); ``grow`` appends empty slots."""

    __slots__ = ("state", "flags", "lid", "rid", "lqpn", "rqpn", "ts", "ip", "n")

    def __init__(self, n: int):
        self.n = 0
        self.state = bytearray()
        self.flags = bytearray()
        self.lid = array("I")
        self.rid = array("I")
        self.lqpn = array("I")
        self.rqpn = array("I")
        self.ts = array("q")
        self.ip = bytearray()
        self.grow(n)

    def grow(self, k: int) -> None:
        self.n += k
        self.state.extend(bytes(k))
        self.flags.extend(bytes(k))
        z = bytes(4 * k)
        for a in (self.lid, self.rid, self.lqpn, self.rqpn):
            a.frombytes(z)
        self.ts.frombytes(bytes(8 * k))
        self.ip.extend(bytes(16 * k))

    def nbytes(self) -> int:
        return len(self.state) + len(self.flags) + 4 * 4 * self.n + 8 * self.n + len(self.ip)


class _IdealIndex:
    """ideal mode: unbounded dicts over growable slots (free slots are reused)."""

    def __init__(self, slots: _Slots):
        self.s = slots
        self.active: dict[int, int] = {}
        self.passive: dict[bytes, int] = {}
        self.flows: dict[bytes, int] = {}
        self.free: list[int] = []
        self.n_active = self.n_passive = 0
        # closures over the dicts' get (they run for every CM message)
        active_get, passive_get = self.active.get, self.passive.get

        def find_active(local_id: int) -> int:
            return active_get(local_id, -1)

        def find_passive(ip16: bytes, remote_id: int) -> int:
            return passive_get(ip16 + remote_id.to_bytes(4, "big"), -1)

        self.find_active, self.find_passive = find_active, find_passive

    def _take(self) -> int:
        if self.free:
            return self.free.pop()
        i = self.s.n
        self.s.grow(max(16, i >> 3))
        self.free.extend(range(self.s.n - 1, i, -1))
        return i

    def alloc_active(self, local_id: int, reclaim) -> int:
        i = self._take()
        self.active[local_id] = i
        self.n_active += 1
        return i

    def alloc_passive(self, ip16: bytes, remote_id: int, reclaim) -> int:
        i = self._take()
        self.passive[ip16 + remote_id.to_bytes(4, "big")] = i
        self.n_passive += 1
        return i

    def release(self, i: int) -> None:
        s = self.s
        if s.flags[i] & F_PASSIVE:
            del self.passive[bytes(s.ip[16 * i : 16 * i + 16]) + s.rid[i].to_bytes(4, "big")]
            self.n_passive -= 1
        else:
            del self.active[s.lid[i]]
            self.n_active -= 1
        s.state[i] = _FREE
        s.flags[i] = 0
        self.free.append(i)

    def flow_find(self, ip16: bytes, qpn: int) -> int:
        return self.flows.get(ip16 + qpn.to_bytes(3, "big"), -1)

    def flow_add(self, ip16: bytes, qpn: int, i: int) -> int:
        """Point key (ip16, qpn) at slot i: 1 done, -1 the key is already there (unbounded: never full)."""
        k = ip16 + qpn.to_bytes(3, "big")
        if k in self.flows:
            return -1
        self.flows[k] = i
        return 1

    def flow_remove(self, ip16: bytes, qpn: int) -> None:
        self.flows.pop(ip16 + qpn.to_bytes(3, "big"), None)

    def occupied(self):
        return list(self.active.values()) + list(self.passive.values())

    def nbytes(self) -> int:
        return self.s.nbytes()


class _P4Index:
    """p4 mode: fixed BUCKETS x WAYS slots; slot = base + bucket * WAYS + way."""

    def __init__(self, slots: _Slots, g: Geometry):
        self.s = slots
        self.amask, self.aways = g.active_buckets - 1, g.active_ways
        self.pmask, self.pways = g.passive_buckets - 1, g.passive_ways
        self.pbase = g.active_buckets * g.active_ways
        self.fmask, self.fways = g.flow_buckets - 1, g.flow_ways
        self.flows = array("i", [-1]) * (g.flow_buckets * g.flow_ways)
        self.n_active = self.n_passive = 0

        # The probes are closures over the arrays and the geometry (no attribute
        # lookups per message: they run for every CM message).
        crc32 = zlib.crc32
        st, lid, rid, ip = slots.state, slots.lid, slots.rid, slots.ip
        amask, aways, pmask, pways, pbase = self.amask, self.aways, self.pmask, self.pways, self.pbase

        def find_active(local_id: int) -> int:
            i = (crc32(local_id.to_bytes(4, "big")) & amask) * aways
            for i in range(i, i + aways):
                if lid[i] == local_id and st[i]:
                    return i
            return -1

        def find_passive(ip16: bytes, remote_id: int) -> int:
            i = pbase + (crc32(ip16 + remote_id.to_bytes(4, "big")) & pmask) * pways
            for i in range(i, i + pways):
                if rid[i] == remote_id and st[i] and ip[16 * i : 16 * i + 16] == ip16:
                    return i
            return -1

        self.find_active, self.find_passive = find_active, find_passive

    def _alloc(self, base: int, ways: int, reclaim) -> int:
        st = self.s.state
        for i in range(base, base + ways):
            if not st[i]:
                return i
        for i in range(base, base + ways):
            if reclaim(i):  # an expired TIMEWAIT connection: taken over
                return i
        return -1

    def alloc_active(self, local_id: int, reclaim) -> int:
        i = self._alloc((zlib.crc32(local_id.to_bytes(4, "big")) & self.amask) * self.aways, self.aways, reclaim)
        if i >= 0 and not self.s.state[i]:
            self.n_active += 1
        return i

    def alloc_passive(self, ip16: bytes, remote_id: int, reclaim) -> int:
        base = self.pbase + (zlib.crc32(ip16 + remote_id.to_bytes(4, "big")) & self.pmask) * self.pways
        i = self._alloc(base, self.pways, reclaim)
        if i >= 0 and not self.s.state[i]:
            self.n_passive += 1
        return i

    def release(self, i: int) -> None:
        s = self.s
        if i >= self.pbase:
            self.n_passive -= 1
        else:
            self.n_active -= 1
        s.state[i] = _FREE
        s.flags[i] = 0

    def _flow_base(self, ip16: bytes, qpn: int) -> int:
        return (zlib.crc32(ip16 + qpn.to_bytes(3, "big")) & self.fmask) * self.fways

    def flow_find(self, ip16: bytes, qpn: int) -> int:
        base = self._flow_base(ip16, qpn)
        fl, rqpn, ip = self.flows, self.s.rqpn, self.s.ip
        for j in range(base, base + self.fways):
            i = fl[j]
            if i >= 0 and rqpn[i] == qpn and ip[16 * i : 16 * i + 16] == ip16:
                return i
        return -1

    def flow_add(self, ip16: bytes, qpn: int, i: int) -> int:
        """Point key (ip16, qpn) at slot i in the first free way of its bucket:
        1 done, 0 the bucket is full, -1 the key is already there."""
        base = self._flow_base(ip16, qpn)
        fl, rqpn, ip = self.flows, self.s.rqpn, self.s.ip
        free = -1
        for j in range(base, base + self.fways):
            k = fl[j]
            if k < 0:
                if free < 0:
                    free = j
            elif rqpn[k] == qpn and ip[16 * k : 16 * k + 16] == ip16:
                return -1
        if free < 0:
            return 0
        fl[free] = i
        return 1

    def flow_remove(self, ip16: bytes, qpn: int) -> None:
        base = self._flow_base(ip16, qpn)
        fl, rqpn, ip = self.flows, self.s.rqpn, self.s.ip
        for j in range(base, base + self.fways):
            i = fl[j]
            if i >= 0 and rqpn[i] == qpn and ip[16 * i : 16 * i + 16] == ip16:
                fl[j] = -1
                return

    def occupied(self):
        st = self.s.state
        return [i for i in range(self.s.n) if st[i]]

    def nbytes(self) -> int:
        return self.s.nbytes() + self.flows.itemsize * len(self.flows)


class Conn:
    """A copy of one tracked connection, read from its slot (for snapshots)."""

    __slots__ = ("slot", "passive", "local_id", "remote_ip", "remote_id", "local_qpn", "remote_qpn", "state", "ts",
                 "flow")

    def __init__(self, s: _Slots, i: int):
        f = s.flags[i]
        self.slot = i
        self.passive = bool(f & F_PASSIVE)
        self.local_id = s.lid[i] if f & F_LID else None
        self.remote_ip = bytes(s.ip[16 * i : 16 * i + 16])
        self.remote_id = s.rid[i] if f & F_RID else None
        self.local_qpn = s.lqpn[i]
        self.remote_qpn = s.rqpn[i]
        self.state = _STATES[s.state[i]]
        self.ts = s.ts[i]
        self.flow = bool(f & F_FLOW)

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
            "flow": self.flow,
        }


class Event:
    """What one CM message did."""

    __slots__ = ("direction", "msg", "result", "old_state", "new_state", "local_id", "remote_ip", "remote_id",
                 "flow_added", "flow_removed")

    def __init__(self, direction, msg, result, old_state=None, new_state=None, local_id=None, remote_ip=None,
                 remote_id=None):
        self.direction = direction
        self.msg = msg
        self.result = result
        self.old_state = old_state
        self.new_state = new_state
        self.local_id = local_id
        self.remote_ip = remote_ip
        self.remote_id = remote_id
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


# Tables for the compiled kernel (ctcm.kernel), made from the ones above.
def _kernel_tables():
    import numpy as np

    msg_of_attr = np.full(1 << 16, -2, np.int64)  # -2: not tracked (ignored), -1: MRA
    counter_of_attr = np.full(1 << 16, COUNTERS.index("cm_other"), np.int64)
    for attr, name in H.CM_ATTR_NAMES.items():
        counter_of_attr[attr] = COUNTERS.index(f"cm_{name}")
    for attr, m in _MSG_OF_ATTR.items():
        msg_of_attr[attr] = m
    special = {None: kernel.T_NONE, SAME: kernel.T_SAME, GONE: kernel.T_GONE}
    trans = np.array([special[x] if x is None or isinstance(x, str) else int(x) for x in _TRANS], np.int64)
    ci = COUNTERS.index
    consts = np.array([
        ci("ignored"), ci("unknown"), ci("unexpected"), ci("retransmission"), ci("transition"), ci("new"),
        ci("refused"), ci("removed"), ci("timewait_expired"), ci("table_refusals"), ci("flow_inserts"),
        ci("flow_removals"), ci("flow_refusals"), ci("flow_conflicts"), ci("flow_zero_qpn"),
        M_REQ, M_REP, M_MRA_REQ, M_MRA_REP, S.REQ_SENT, S.REQ_RCVD, S.ESTABLISHED, S.TIMEWAIT,
        F_LID, F_RID, F_FLOW, F_PASSIVE, FROM_HOST], np.int64)
    return msg_of_attr, counter_of_attr, trans, consts


_KERNEL_MSG_OF_ATTR, _KERNEL_COUNTER_OF_ATTR, _KERNEL_TRANS, _KERNEL_CONSTS = _kernel_tables()
_R_IGNORED = RESULTS.index("ignored")


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
        self._init_tables()
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.now = 0
        self._closed = False
        self._scratch = None  # classify_batch's reusable buffer (process_batch)

    def _init_tables(self) -> None:
        g = self.geometry
        if self.mode == "ideal":
            self._s = _Slots(0)
            self._t = _IdealIndex(self._s)
        else:
            self._s = _Slots(g.active_buckets * g.active_ways + g.passive_buckets * g.passive_ways)
            self._t = _P4Index(self._s, g)
        self._find_active, self._find_passive = self._t.find_active, self._t.find_passive

    # -- lifecycle ------------------------------------------------------------
    def close(self) -> None:
        """C: ``ctcm_destroy``: frees the tables (an empty, unbounded index remains)."""
        self._closed = True
        self._s = _Slots(0)
        self._t = _IdealIndex(self._s)
        self._find_active, self._find_passive = self._t.find_active, self._t.find_passive

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    @property
    def capacity(self) -> int | None:
        g = self.geometry
        return None if self.mode == "ideal" else g.active_buckets * g.active_ways + g.passive_buckets * g.passive_ways

    def table_bytes(self) -> int:
        """Bytes held by the connection and flow arrays (not counting ideal mode's dicts)."""
        return self._t.nbytes()

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
        attr = parsed.attr_id
        mad = parsed.mad
        l3 = parsed.l3
        # The peer is the destination of what the host sends, the source of what it receives.
        if parsed.ip_version == 4:
            a = l3 + (16 if direction == FROM_HOST else 12)
            peer_ip = _V4_PREFIX + buf[a : a + 4]
        else:
            a = l3 + (24 if direction == FROM_HOST else 8)
            peer_ip = bytes(buf[a : a + 16])
        q = _QPN_AT.get(attr)
        return self.track(direction, attr, peer_ip,
                          int.from_bytes(buf[mad + _LOCAL_ID : mad + _LOCAL_ID + 4], "big"),
                          int.from_bytes(buf[mad + _REMOTE_ID : mad + _REMOTE_ID + 4], "big"),
                          int.from_bytes(buf[mad + q : mad + q + 3], "big") if q else 0,
                          buf[mad + _MRAED] >> _MRAED_SHIFT if attr == H.ATTR_MRA else 0,
                          now_us)

    def process_batch(self, directions, frames, now_us=0) -> list[Event | None]:
        """Many frames at once: the same events as :meth:`process` one by one.

        ``directions``: one Direction for all frames or one per frame;
        ``now_us``: one time or one per frame. Classification and field
        extraction are vectorised (numpy); only the table work is per message.
        """
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
                dirs = [Direction(d) for d in directions]  # the error names the bad value
        times = [now_us] * n if isinstance(now_us, int) else list(now_us)
        out: list[Event | None] = [None] * n
        if self._scratch is None:
            from .batch import Scratch

            self._scratch = Scratch()
        fa = _cm_fields_arrays(frames, dirs, self._scratch)
        if isinstance(self._t, _P4Index) and len(fa.index) >= max(1, kernel.MIN_MESSAGES) and kernel.available():
            self._track_compiled(fa, dirs, times, out)
            return out
        f = _as_lists(fa)
        track = self.track
        for i, attr, ip, loc, rem, qpn, mraed in zip(f.index, f.attr, f.peer_ip, f.local_id, f.remote_id, f.qpn,
                                                    f.mraed):
            out[i] = track(dirs[i], attr, ip, loc, rem, qpn, mraed, times[i])
        return out

    def _track_compiled(self, f: "_FieldArrays", dirs: list, times: list, out: list) -> None:
        """:meth:`track` of every message of ``f`` in order, by the compiled
        kernel (:mod:`ctcm.kernel`, p4 mode); events into ``out``."""
        import numpy as np

        k = len(f.index)
        idx = f.index.tolist()
        d = np.fromiter(map(dirs.__getitem__, idx), np.int64, k)
        t = np.fromiter(map(times.__getitem__, idx), np.int64, k)
        s = self._s
        o = {name: np.zeros(k, np.int64) for name in ("res", "msg", "old", "new", "lid", "ipsrc", "rid", "fa", "fa_rq",
                                                  "fa_lq", "fr", "fr_rq")}
        o_ip, o_fa_ip, o_fr_ip = (np.zeros((k, 16), np.uint8) for _ in range(3))
        counters = np.zeros(len(COUNTERS), np.int64)
        occupancy = np.zeros(2, np.int64)
        t_ = self._t
        kernel.run(
            d, f.attr, f.ip, f.local_id, f.remote_id, f.qpn, f.mraed, t,
            _KERNEL_MSG_OF_ATTR, _KERNEL_COUNTER_OF_ATTR,
            np.frombuffer(s.state, np.uint8), np.frombuffer(s.flags, np.uint8), np.frombuffer(s.lid, np.uint32),
            np.frombuffer(s.rid, np.uint32), np.frombuffer(s.lqpn, np.uint32), np.frombuffer(s.rqpn, np.uint32),
            np.frombuffer(s.ts, np.int64), np.frombuffer(s.ip, np.uint8), np.frombuffer(t_.flows, np.int32),
            np.array([t_.amask, t_.aways, t_.pmask, t_.pways, t_.pbase, t_.fmask, t_.fways], np.int64),
            self.timewait_us, _KERNEL_TRANS, kernel.CRC_TABLE, _KERNEL_CONSTS,
            o["res"], o["msg"], o["old"], o["new"], o["lid"], o["ipsrc"], o_ip, o["rid"],
            o["fa"], o_fa_ip, o["fa_rq"], o["fa_lq"], o["fr"], o_fr_ip, o["fr_rq"],
            counters, occupancy,
        )
        c = self.counters
        for name, v in zip(COUNTERS, counters.tolist()):
            if v:
                c[name] += v
        t_.n_active += int(occupancy[0])
        t_.n_passive += int(occupancy[1])
        self.now = int(t[-1])
        # the events, as track() makes them
        ipb, slot_ipb, fa_ipb, fr_ipb = f.ip.tobytes(), o_ip.tobytes(), o_fa_ip.tobytes(), o_fr_ip.tobytes()
        cols = (idx, f.attr.tolist(), f.mraed.tolist(), *(o[n].tolist() for n in (
            "res", "msg", "old", "new", "lid", "ipsrc", "rid", "fa", "fa_rq", "fa_lq", "fr", "fr_rq")))
        states = _STATES
        for j, (i, attr, mraed, res, m, old, new, lid, ipsrc, rid, fa, fa_rq, fa_lq, fr, fr_rq) in enumerate(zip(*cols)):
            a, b = 16 * j, 16 * j + 16
            if res == _R_IGNORED:
                if attr == H.ATTR_MRA:  # an MRA of neither REQ nor REP
                    name = "MRA(LAP)" if mraed == 2 else f"MRA({mraed})"
                else:
                    name = H.CM_ATTR_NAMES.get(attr) or f"attr {attr:#06x}"
                out[i] = Event(dirs[i], name, "ignored")
                continue
            ev = Event(dirs[i], MSGS[m], RESULTS[res],
                       None if old < 0 else states[old],
                       GONE if new == kernel.GONE_CODE else (None if new < 0 else states[new]),
                       None if lid < 0 else lid,
                       ipb[a:b] if ipsrc == kernel.IP_MSG else (slot_ipb[a:b] if ipsrc == kernel.IP_SLOT else None),
                       None if rid < 0 else rid)
            if fa:
                ev.flow_added = (fa_ipb[a:b], fa_rq, fa_lq)
            if fr:
                ev.flow_removed = (fr_ipb[a:b], fr_rq)
            out[i] = ev

    def track(self, direction, attr: int, peer_ip: bytes, msg_local: int, msg_remote: int, qpn: int, mraed: int,
              now_us: int) -> Event:
        """The state machine on the fields of one CM message (what the P4
        parser extracts): attribute ID, the peer's IP (16 bytes, IPv4-mapped),
        the message's local and remote comm IDs, the QPN of a REQ or REP (else
        0) and the MRA's "message MRAed" (else 0)."""
        self.now = now_us
        m = _MSG_OF_ATTR.get(attr)
        c = self.counters
        if m is None:
            hname = H.CM_ATTR_NAMES.get(attr)
            c[f"cm_{hname}" if hname else "cm_other"] += 1
            c["ignored"] += 1
            return Event(direction, hname or f"attr {attr:#06x}", "ignored")
        c[_CM_COUNTER[attr]] += 1
        if m == _M_MRA:
            if mraed > 1:  # MRA of a LAP (or reserved): not tracked
                c["ignored"] += 1
                return Event(direction, "MRA(LAP)" if mraed == 2 else f"MRA({mraed})", "ignored")
            m = M_MRA_REQ if mraed == 0 else M_MRA_REP
        if m == M_REQ:
            return self._req(direction, peer_ip, msg_local, qpn, now_us)
        if direction == FROM_HOST:
            host_id, peer_id = msg_local, msg_remote
        else:
            host_id, peer_id = msg_remote, msg_local
        # The lookup: ACTIVE[host id] checked against the peer, else
        # PASSIVE[(peer IP, peer id)] checked against the host id.
        s = self._s
        i = self._find_active(host_id)
        if i < 0 or s.ip[16 * i : 16 * i + 16] != peer_ip or (s.flags[i] & F_RID and s.rid[i] != peer_id):
            i = self._find_passive(peer_ip, peer_id)
            if i >= 0 and s.flags[i] & F_LID and s.lid[i] != host_id:
                i = -1
        if i >= 0 and s.state[i] == _TIMEWAIT and now_us - s.ts[i] >= self.timewait_us:
            self._drop_expired(i)
            i = -1
        if i < 0:
            c["unknown"] += 1
            return Event(direction, MSGS[m], "unknown")
        return self._apply(direction, m, i, qpn, host_id, peer_id, peer_ip, now_us)

    # -- lookups ------------------------------------------------------------------
    def _expired(self, i: int, now_us: int) -> bool:
        s = self._s
        return s.state[i] == S.TIMEWAIT and now_us - s.ts[i] >= self.timewait_us

    def _drop_expired(self, i: int) -> None:
        self._remove(i)
        self.counters["timewait_expired"] += 1

    def _ids(self, i: int):
        s = self._s
        f = s.flags[i]
        return (s.lid[i] if f & F_LID else None, bytes(s.ip[16 * i : 16 * i + 16]), s.rid[i] if f & F_RID else None)

    # -- transitions --------------------------------------------------------------
    def _req(self, direction, peer_ip, msg_local, qpn, now_us) -> Event:
        c = self.counters
        s, t = self._s, self._t
        host = direction == FROM_HOST
        i = t.find_active(msg_local) if host else t.find_passive(peer_ip, msg_local)
        if i >= 0 and host and s.ip[16 * i : 16 * i + 16] != peer_ip:
            # The same local comm ID towards another peer: not this connection.
            c["unexpected"] += 1
            st = _STATES[s.state[i]]
            return Event(direction, "REQ", "unexpected", st, st, *self._ids(i))
        if i >= 0 and self._expired(i, now_us):
            self._drop_expired(i)
            i = -1
        if i >= 0:
            return self._apply(direction, M_REQ, i, qpn, None, None, peer_ip, now_us)
        reclaim = None if self.mode == "ideal" else (lambda j: self._reclaim(j, now_us))
        i = t.alloc_active(msg_local, reclaim) if host else t.alloc_passive(peer_ip, msg_local, reclaim)
        if i < 0:
            c["table_refusals"] += 1
            c["refused"] += 1
            if host:
                return Event(direction, "REQ", "refused", None, None, msg_local, peer_ip, None)
            return Event(direction, "REQ", "refused", None, None, None, peer_ip, msg_local)
        s.ip[16 * i : 16 * i + 16] = peer_ip
        s.ts[i] = now_us
        if host:
            s.state[i] = S.REQ_SENT
            s.flags[i] = F_LID
            s.lid[i], s.rid[i], s.lqpn[i], s.rqpn[i] = msg_local, 0, qpn, 0
            c["new"] += 1
            return Event(direction, "REQ", "new", None, S.REQ_SENT, msg_local, peer_ip, None)
        s.state[i] = S.REQ_RCVD
        s.flags[i] = F_RID | F_PASSIVE
        s.lid[i], s.rid[i], s.lqpn[i], s.rqpn[i] = 0, msg_local, 0, qpn
        c["new"] += 1
        return Event(direction, "REQ", "new", None, S.REQ_RCVD, None, peer_ip, msg_local)

    def _reclaim(self, i: int, now_us: int) -> bool:
        if self._expired(i, now_us):
            self.counters["timewait_expired"] += 1
            return True
        return False

    def _apply(self, direction, m, i, qpn, host_id, peer_id, peer_ip, now_us) -> Event:
        """Apply the TRANSITIONS row of (direction, message, state) to slot i
        (whose remote IP is ``peer_ip``: the lookup matched it)."""
        c = self.counters
        s = self._s
        old = _STATES[s.state[i]]
        to = _TRANS[direction << 8 | m << 4 | old]
        if to is None or to is SAME:
            f = s.flags[i]
            r = "unexpected" if to is None else "retransmission"
            c[r] += 1
            return Event(direction, MSGS[m], r, old, old, s.lid[i] if f & F_LID else None, peer_ip,
                         s.rid[i] if f & F_RID else None)
        if to is GONE:
            f = s.flags[i]
            ev = Event(direction, MSGS[m], "transition", old, to, s.lid[i] if f & F_LID else None, peer_ip,
                       s.rid[i] if f & F_RID else None)
            ev.flow_removed = self._remove(i)
            c["transition"] += 1
            return ev
        # Records made by the message.
        if m == M_REP:
            if direction == FROM_HOST:
                s.lqpn[i] = qpn
                s.lid[i] = host_id
                s.flags[i] |= F_LID
            else:
                s.rqpn[i] = qpn
                s.rid[i] = peer_id
                s.flags[i] |= F_RID
        s.state[i] = to
        s.ts[i] = now_us
        f = s.flags[i]
        ev = Event(direction, MSGS[m], "transition", old, to, s.lid[i] if f & F_LID else None, peer_ip,
                   s.rid[i] if f & F_RID else None)
        if to == _ESTABLISHED:
            ev.flow_added = self._flow_insert(i)
        elif to == _TIMEWAIT:
            ev.flow_removed = self._flow_remove(i)
        c["transition"] += 1
        return ev

    def _flow_insert(self, i: int):
        c = self.counters
        s = self._s
        lq, rq = s.lqpn[i], s.rqpn[i]
        if not lq or not rq:
            c["flow_zero_qpn"] += 1
            return None
        ip = bytes(s.ip[16 * i : 16 * i + 16])
        done = self._t.flow_add(ip, rq, i)
        if done <= 0:
            if done < 0:  # another connection has this (remote IP, remote QPN)
                c["flow_conflicts"] += 1
            c["flow_refusals"] += 1
            return None
        s.flags[i] |= F_FLOW
        c["flow_inserts"] += 1
        return (ip, rq, lq)

    def _flow_remove(self, i: int):
        s = self._s
        if not s.flags[i] & F_FLOW:
            return None
        ip, rq = bytes(s.ip[16 * i : 16 * i + 16]), s.rqpn[i]
        self._t.flow_remove(ip, rq)
        s.flags[i] &= ~F_FLOW
        self.counters["flow_removals"] += 1
        return (ip, rq)

    def _remove(self, i: int):
        removed = self._flow_remove(i)
        self._t.release(i)
        self.counters["removed"] += 1
        return removed

    def expire(self, now_us: int) -> int:
        """Remove TIMEWAIT connections whose time is up; returns how many."""
        gone = [i for i in self._t.occupied() if self._expired(i, now_us)]
        for i in gone:
            self._drop_expired(i)
        return len(gone)

    # -- queries ---------------------------------------------------------------------
    def query(self, ip, dqpn: int) -> int:
        """Local QPN sending to (remote IP, remote QPN); 0 when unknown. ``ip`` packed, 4 or 16 bytes."""
        ip = _V4_PREFIX + ip if len(ip) == 4 else bytes(ip)
        i = self._t.flow_find(ip, dqpn)
        return self._s.lqpn[i] if i >= 0 else 0

    def query_ipv4(self, dest_ip, dest_qpn: int) -> int:
        """C: ``ctcm_query_ipv4(ctx, dest_ip, dqpn)``; dest_ip as str, int or 4 bytes."""
        ip = normalize_ip(dest_ip)
        if ip[:12] != _V4_PREFIX:
            raise ValueError(f"{dest_ip!r} is not an IPv4 address")
        return self.query(ip, dest_qpn & 0xFFFFFF)

    def query_ipv6(self, dest_ip, dest_qpn: int) -> int:
        return self.query(normalize_ip(dest_ip), dest_qpn & 0xFFFFFF)

    # -- snapshots ----------------------------------------------------------------------
    def _conns(self) -> list[Conn]:
        return [Conn(self._s, i) for i in self._t.occupied()]

    def connections(self) -> list[dict]:
        rows = [x.snapshot() for x in self._conns()]
        rows.sort(key=lambda r: (r["opened_by"], r["remote_ip"], r["local_comm_id"], r["remote_comm_id"]))
        return rows

    def flows(self) -> list[dict]:
        rows = [
            {"remote_ip": _ip_str(x.remote_ip), "remote_qpn": f"{x.remote_qpn:#08x}", "local_qpn": f"{x.local_qpn:#08x}"}
            for x in self._conns() if x.flow
        ]
        rows.sort(key=lambda r: (r["remote_ip"], r["remote_qpn"]))
        return rows

    def __len__(self) -> int:
        return self._t.n_active + self._t.n_passive


def _cm_fields_arrays(frames: list, dirs: list, scratch=None) -> "_FieldArrays":
    """The fields :meth:`Tracker.track` takes, for every CM MAD of a batch:
    numpy gathers over the header bytes that :func:`ctcm.batch.classify_batch`
    (identical to :func:`classify`) keeps; a MAD whose fields lie beyond
    those bytes (long IPv4 options) is read in Python."""
    import numpy as np

    from .batch import W, classify_batch

    res = classify_batch(frames, scratch)
    idx = np.flatnonzero(res.kind == CM)
    k = len(idx)
    if not k:
        z = np.zeros(0, np.int64)
        return _FieldArrays(z, z, np.zeros((0, 16), np.uint8), z, z, z, z)
    mad, l3, attr = res.mad[idx], res.l3[idx], res.attr_id[idx]
    v4 = res.ip_version[idx] == 4
    host = np.fromiter(map(dirs.__getitem__, idx.tolist()), np.int8, k) == FROM_HOST
    ipoff = np.where(v4, l3 + np.where(host, 16, 12), l3 + np.where(host, 24, 8))
    last = max(_LOCAL_ID + 4, _REMOTE_ID + 4, _REQ_QPN + 3, _REP_QPN + 3, _MRAED + 1)
    inside = mad + last <= W
    fast = np.flatnonzero(inside)
    fi, fm, fa = idx[fast], mad[fast], attr[fast]

    def u(off, nbytes):
        v = res.byte(fi, off).astype(np.int64)
        for j in range(1, nbytes):
            v = v << 8 | res.byte(fi, off + j)
        return v

    ip = np.zeros((len(fast), 16), np.uint8)
    ip[:, 10:12] = 0xFF
    fv4, fo = v4[fast], ipoff[fast]
    for j in range(16):
        col = res.byte(fi, fo + j - 12) if j >= 12 else None
        if j >= 12:
            ip[fv4, j] = col[fv4]
        ip[~fv4, j] = res.byte(fi[~fv4], fo[~fv4] + j)
    is_req, is_rep = fa == H.ATTR_REQ, fa == H.ATTR_REP
    qpn = np.where(is_req | is_rep, u(np.where(is_req, fm + _REQ_QPN, fm + _REP_QPN), 3), 0)
    mraed = np.where(fa == H.ATTR_MRA, res.byte(fi, fm + _MRAED) >> _MRAED_SHIFT, 0).astype(np.int64)
    f = _FieldArrays(fi.astype(np.int64), fa.astype(np.int64), ip, u(fm + _LOCAL_ID, 4), u(fm + _REMOTE_ID, 4),
                     qpn.astype(np.int64), mraed)
    slow = np.flatnonzero(~inside)
    if len(slow):  # rare: read in Python, then merged in frame order
        rows = [_fields_one(frames[i], res.parsed(i), dirs[i], i) for i in idx[slow].tolist()]
        cols = list(zip(*rows))
        extra = _FieldArrays(np.array(cols[0], np.int64), np.array(cols[1], np.int64),
                             np.frombuffer(b"".join(cols[2]), np.uint8).reshape(-1, 16),
                             *(np.array(c, np.int64) for c in cols[3:]))
        order = np.argsort(np.concatenate([f.index, extra.index]), kind="stable")
        f = _FieldArrays(*(np.concatenate([a, b])[order] for a, b in zip(f, extra)))
    return f


def _cm_fields_batch(frames: list, dirs: list, scratch=None):
    """:func:`_cm_fields_arrays` as lists (peer IPs as 16-byte strings), for
    :meth:`Tracker.track`."""
    return _as_lists(_cm_fields_arrays(frames, dirs, scratch))


def _as_lists(f: "_FieldArrays"):
    ipb = f.ip.tobytes()
    return _Fields(index=f.index.tolist(), attr=f.attr.tolist(),
                   peer_ip=[ipb[16 * j : 16 * j + 16] for j in range(len(f.index))],
                   local_id=f.local_id.tolist(), remote_id=f.remote_id.tolist(), qpn=f.qpn.tolist(),
                   mraed=f.mraed.tolist())


class _FieldArrays(NamedTuple):
    index: "np.ndarray"      # frame index in the batch
    attr: "np.ndarray"       # attribute ID
    ip: "np.ndarray"         # peer IP, k x 16 bytes (IPv4-mapped)
    local_id: "np.ndarray"   # the message's local comm ID
    remote_id: "np.ndarray"  # the message's remote comm ID
    qpn: "np.ndarray"        # QPN of a REQ or REP, else 0
    mraed: "np.ndarray"      # an MRA's "message MRAed", else 0


def _fields_one(buf, parsed, direction, i):
    """(i, and the fields of one CM MAD) as :meth:`Tracker.process` reads them."""
    mad, l3, attr = parsed.mad, parsed.l3, parsed.attr_id
    if parsed.ip_version == 4:
        a = l3 + (16 if direction == FROM_HOST else 12)
        peer_ip = _V4_PREFIX + bytes(buf[a : a + 4])
    else:
        a = l3 + (24 if direction == FROM_HOST else 8)
        peer_ip = bytes(buf[a : a + 16])
    q = _QPN_AT.get(attr)
    return (i, attr, peer_ip, int.from_bytes(buf[mad + _LOCAL_ID : mad + _LOCAL_ID + 4], "big"),
            int.from_bytes(buf[mad + _REMOTE_ID : mad + _REMOTE_ID + 4], "big"),
            int.from_bytes(buf[mad + q : mad + q + 3], "big") if q else 0,
            buf[mad + _MRAED] >> _MRAED_SHIFT if attr == H.ATTR_MRA else 0)


class _Fields:
    def __init__(self, **kw):
        self.__dict__.update(kw)


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
