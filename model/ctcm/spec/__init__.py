"""The spec: everything the data plane compiles in, written once.

The model (:mod:`ctcm.dataplane.machine`, :mod:`ctcm.dataplane.tracker`, :mod:`ctcm.dataplane.pipeline`)
and the P4 program (through the includes that :mod:`ctcm.gen.p4gen` generates
into ``p4/include/generated/``) both take from here:

* the enums: directions, connection states, tracked CM messages, results,
  connection flags, counters (whose numbers are the P4 counter indices);
* :data:`TRANSITIONS`, the state machine as data;
* the table geometry and the key layout of each table (the bytes whose
  CRC-32 picks a bucket);
* the CNP template constants and the default TIMEWAIT duration.

Protocol numbers (ethertypes, UDP port, opcodes, MAD classes) are here too,
so the classifier, the batch classifier and the P4 parser share them.
Header field offsets are in the field tables (:mod:`ctcm.spec.headers`).
"""

from __future__ import annotations

import enum
import zlib
from dataclasses import asdict, dataclass

from ctcm.spec import headers as H

__all__ = [
    "Kind", "Direction", "State", "Msg", "Outcome", "Result", "Flag", "Counter", "TRANSITIONS", "PRE_ESTABLISHED",
    "Geometry", "KEY_LAYOUTS", "active_key", "passive_key", "flow_key", "bucket_of", "V4_MAPPED_PREFIX",
    "next_of", "MESSAGES", "MSG_NONE",
]

# --- protocol numbers ------------------------------------------------------------
ETH_P_IPV4 = 0x0800
ETH_P_IPV6 = 0x86DD
ETH_P_8021Q = 0x8100
ETH_P_8021AD = 0x88A8   # QinQ outer tag: not supported (Kind.UNSUPPORTED)
IPPROTO_UDP = 17
ROCEV2_PORT = 4791
OPCODE_RC_SEND_ONLY = 0x04
OPCODE_UD_SEND_ONLY = 0x64
OPCODE_CNP = 0x81
QP1 = 1
GSI_QKEY = 0x80010000
MGMT_CLASS_CM = 0x07
MAD_BASE_VERSION = 1
CM_CLASS_VERSION = 2
MAD_METHOD_SEND = 0x03
ECN_CE = 3
ICRC_LENGTH = 4
#: IPv6 next-header values of extension headers (hop-by-hop, routing, fragment,
#: ESP, AH, destination options, mobility, HIP, shim6, experimental): a packet
#: with one before UDP is not followed (Kind.UNSUPPORTED), as in the P4 parser.
IPV6_EXTENSION_HEADERS = (0, 43, 44, 50, 51, 60, 135, 139, 140, 253, 254)

# --- CNP template (the C library's ctcm_fill_cnp_template) -------------------------
CNP_TOS = 0xC2          # DSCP 48 (CS6) + ECT(0)
CNP_TTL = 255
CNP_UDP_SPORT = 0xF000
CNP_PKEY = 0xFFFF

#: Default TIMEWAIT duration on model time (µs); the control-plane config sets it.
TIMEWAIT_US = 1_000_000


# --- enums --------------------------------------------------------------------------

class Kind(enum.IntEnum):
    """What the classifier (and the P4 parser) makes of a frame."""

    NOT_ROCE = 0
    ROCE = 1
    CM = 2
    MALFORMED = 3
    UNSUPPORTED = 4  # RoCE may be inside, behind headers not followed: QinQ, IPv6 extension headers


class Direction(enum.IntEnum):
    """Who sent a message: the local host or the network."""

    FROM_HOST = 0
    FROM_NET = 1


class State(enum.IntEnum):
    """Connection states; IDLE (0) is also "free slot"."""

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


class Msg(enum.IntEnum):
    """Tracked CM messages (MRA split by its "message MRAed" field)."""

    REQ = 0
    REP = 1
    RTU = 2
    MRA_REQ = 3
    MRA_REP = 4
    DREQ = 5
    DREP = 6
    REJ = 7

    @property
    def label(self) -> str:
        """The name events and docs show: ``MRA(REQ)`` for MRA_REQ."""
        return self.name.replace("_", "(") + ")" if self.name.startswith("MRA_") else self.name


class Outcome(enum.IntEnum):
    """Where a transition goes when it does not go to a state."""

    SAME = 16        # a retransmission: absorbed, nothing changes
    GONE = 17        # the connection is removed
    UNEXPECTED = 18  # no row: counted, nothing changes (the default action)


class Result(enum.IntEnum):
    """What one CM message did; every CM message gets exactly one."""

    NEW = 0
    TRANSITION = 1
    RETRANSMISSION = 2
    UNEXPECTED = 3
    UNKNOWN = 4
    REFUSED = 5
    IGNORED = 6

    @property
    def label(self) -> str:
        return self.name.lower()


class Flag(enum.IntFlag):
    """Connection flags (one byte per slot)."""

    LID = 1      # local (host) comm ID known
    RID = 2      # remote comm ID known
    FLOW = 4     # in the flow map
    PASSIVE = 8  # opened by the network (PASSIVE table)


class Counter(enum.IntEnum):
    """Every counter; the number is the index of the P4 program's counter array.

    The pipeline's own counters come first, the tracker's after
    (:attr:`key` is the name snapshots show)."""

    PACKETS = 0
    DROPPED_UNKNOWN_PORT = 1
    FORWARDED = 2
    NOT_ROCE = 3
    ROCE = 4
    CM = 5
    MALFORMED = 6
    UNSUPPORTED = 7
    ICRC_ERRORS = 8
    CE_PACKETS = 9
    CE_UNTRACKED = 10
    CNP_SENT = 11
    CNP_SUPPRESSED = 12
    # the tracker's: CM messages by attribute
    CM_REQ = 13
    CM_MRA = 14
    CM_REJ = 15
    CM_REP = 16
    CM_RTU = 17
    CM_DREQ = 18
    CM_DREP = 19
    CM_SIDR_REQ = 20
    CM_SIDR_REP = 21
    CM_LAP = 22
    CM_APR = 23
    CM_OTHER = 24
    # results (in Result order)
    NEW = 25
    TRANSITION = 26
    RETRANSMISSION = 27
    UNEXPECTED = 28
    UNKNOWN = 29
    REFUSED = 30
    IGNORED = 31
    # tables
    REMOVED = 32
    TIMEWAIT_EXPIRED = 33
    TABLE_REFUSALS = 34
    FLOW_INSERTS = 35
    FLOW_REMOVALS = 36
    FLOW_REFUSALS = 37
    FLOW_CONFLICTS = 38
    FLOW_ZERO_QPN = 39

    @property
    def tracker(self) -> bool:
        return self >= Counter.CM_REQ

    @property
    def short(self) -> str:
        """Name without the ``tracker.`` prefix: ``cm_REQ``, ``new``, ``packets``."""
        n = self.name
        if n.startswith("CM_") and n != "CM_OTHER":
            return "cm_" + n[3:]
        return n.lower()

    @property
    def key(self) -> str:
        """Name in snapshots: ``packets``, ``tracker.cm_REQ``."""
        return ("tracker." if self.tracker else "") + self.short


PIPELINE_COUNTERS = tuple(c for c in Counter if not c.tracker)
TRACKER_COUNTERS = tuple(c for c in Counter if c.tracker)
assert [Counter.NEW + r for r in Result] == [Counter[r.name] for r in Result]

#: CM attribute ID -> its counter (others: CM_OTHER).
CM_ATTRS = H.CM_ATTR_NAMES  # 0x10 -> "REQ" ... (the CM field tables' attribute IDs)
COUNTER_OF_ATTR = {a: Counter["CM_" + n] for a, n in CM_ATTRS.items()}
#: CM attribute ID -> tracked message (MRA: by "message MRAed"; the others are ignored).
MSG_OF_ATTR = {H.ATTR_REQ: Msg.REQ, H.ATTR_REP: Msg.REP, H.ATTR_RTU: Msg.RTU, H.ATTR_DREQ: Msg.DREQ,
               H.ATTR_DREP: Msg.DREP, H.ATTR_REJ: Msg.REJ}
ATTR_MRA = H.ATTR_MRA
#: "message MRAed" value -> message (2 = LAP and reserved values are ignored).
MSG_OF_MRAED = {0: Msg.MRA_REQ, 1: Msg.MRA_REP}
#: The message stage's answer for a message that is not tracked (P4 MSG_NONE).
MSG_NONE = 15
#: The tracker's message stage as rows (attribute ID, "message MRAed", message or
#: None when not tracked, counter): the P4 program's CtcmMessage const entries
#: (generated) and machine.message's table. Unlisted keys: (None, CM_OTHER).
#: Only an MRA carries a "message MRAed"; other messages have 0 there.
MESSAGES = tuple((a, r, MSG_OF_MRAED.get(r) if a == ATTR_MRA else MSG_OF_ATTR.get(a), COUNTER_OF_ATTR[a])
                 for a in sorted(CM_ATTRS) for r in (range(4) if a == ATTR_MRA else (0,)))


# --- the state machine -------------------------------------------------------------
S = State
PRE_ESTABLISHED = frozenset({S.REQ_SENT, S.REQ_RCVD, S.MRA_REQ_RCVD, S.MRA_REQ_SENT, S.MRA_REP_SENT,
                             S.MRA_REP_RCVD, S.REP_SENT, S.REP_RCVD})
_H, _N = Direction.FROM_HOST, Direction.FROM_NET
SAME, GONE = Outcome.SAME, Outcome.GONE

# (direction, message, from states, to, note). IDLE = no connection yet (only
# REQ creates one). Rows marked C are the C library's; the others close its gaps.
TRANSITIONS: tuple[tuple[Direction, Msg, frozenset, State | Outcome, str], ...] = (
    (_H, Msg.REQ, frozenset({S.IDLE}), S.REQ_SENT, "C: new active connection, records local QPN"),
    (_H, Msg.REQ, frozenset({S.REQ_SENT, S.MRA_REQ_RCVD}), SAME, "retransmitted REQ"),
    (_H, Msg.REP, frozenset({S.REQ_RCVD, S.MRA_REQ_SENT}), S.REP_SENT, "C: records local QPN and local comm ID"),
    (_H, Msg.REP, frozenset({S.REP_SENT, S.MRA_REP_RCVD}), SAME, "retransmitted REP"),
    (_H, Msg.RTU, frozenset({S.REP_RCVD, S.MRA_REP_SENT}), S.ESTABLISHED, "C"),
    (_H, Msg.RTU, frozenset({S.ESTABLISHED}), SAME, "retransmitted RTU"),
    (_H, Msg.MRA_REQ, frozenset({S.REQ_RCVD}), S.MRA_REQ_SENT, "MRA handled"),
    (_H, Msg.MRA_REQ, frozenset({S.MRA_REQ_SENT}), SAME, "retransmitted MRA"),
    (_H, Msg.MRA_REP, frozenset({S.REP_RCVD}), S.MRA_REP_SENT, "MRA handled"),
    (_H, Msg.MRA_REP, frozenset({S.MRA_REP_SENT}), SAME, "retransmitted MRA"),
    (_H, Msg.DREQ, frozenset({S.ESTABLISHED, S.DREQ_RCVD}), S.DREQ_SENT, "C"),
    (_H, Msg.DREQ, frozenset({S.DREQ_SENT, S.TIMEWAIT}), SAME, "retransmitted DREQ (C: DREQ_SENT -> DREQ_SENT)"),
    (_H, Msg.DREP, frozenset({S.DREQ_SENT, S.DREQ_RCVD}), S.TIMEWAIT, "C removes; TIMEWAIT added"),
    (_H, Msg.DREP, frozenset({S.TIMEWAIT}), SAME, "retransmitted DREP"),
    (_H, Msg.REJ, PRE_ESTABLISHED, GONE, "C"),
    (_N, Msg.REQ, frozenset({S.IDLE}), S.REQ_RCVD, "C: new passive connection, records remote QPN"),
    (_N, Msg.REQ, frozenset({S.REQ_RCVD, S.MRA_REQ_SENT, S.REP_SENT}), SAME, "retransmitted REQ"),
    (_N, Msg.REP, frozenset({S.REQ_SENT, S.MRA_REQ_RCVD}), S.REP_RCVD, "C: records remote QPN and remote comm ID"),
    (_N, Msg.REP, frozenset({S.REP_RCVD, S.MRA_REP_SENT, S.ESTABLISHED}), SAME, "retransmitted REP"),
    (_N, Msg.RTU, frozenset({S.REP_SENT, S.MRA_REP_RCVD}), S.ESTABLISHED, "C"),
    (_N, Msg.RTU, frozenset({S.ESTABLISHED}), SAME, "retransmitted RTU"),
    (_N, Msg.MRA_REQ, frozenset({S.REQ_SENT}), S.MRA_REQ_RCVD, "MRA handled"),
    (_N, Msg.MRA_REQ, frozenset({S.MRA_REQ_RCVD}), SAME, "retransmitted MRA"),
    (_N, Msg.MRA_REP, frozenset({S.REP_SENT}), S.MRA_REP_RCVD, "MRA handled"),
    (_N, Msg.MRA_REP, frozenset({S.MRA_REP_RCVD}), SAME, "retransmitted MRA"),
    (_N, Msg.DREQ, frozenset({S.REP_SENT, S.MRA_REP_RCVD, S.ESTABLISHED, S.DREQ_SENT}), S.DREQ_RCVD, "C"),
    (_N, Msg.DREQ, frozenset({S.DREQ_RCVD, S.TIMEWAIT}), SAME,
     "retransmitted DREQ (C: -> DREQ_RCVD, from TIMEWAIT too)"),
    (_N, Msg.DREP, frozenset({S.DREQ_SENT, S.DREQ_RCVD}), S.TIMEWAIT, "C removes; TIMEWAIT added"),
    (_N, Msg.DREP, frozenset({S.TIMEWAIT}), SAME, "retransmitted DREP"),
    (_N, Msg.REJ, PRE_ESTABLISHED | {S.DREQ_SENT, S.ESTABLISHED}, GONE, "C"),
)


def _next_table() -> tuple[int, ...]:
    """(direction << 8 | message << 4 | state) -> next (a State or an Outcome)."""
    t = [int(Outcome.UNEXPECTED)] * 512
    seen = set()
    for d, m, froms, to, _why in TRANSITIONS:
        for s in froms:
            if (d, m, s) in seen:
                raise AssertionError(f"TRANSITIONS: two rows for {d.name} {m.label} in {s.name}")
            seen.add((d, m, s))
            t[d << 8 | m << 4 | s] = int(to)
    return tuple(t)


#: The transition table as a flat tuple of ints (what the machine indexes).
NEXT = _next_table()


def next_of(direction: int, msg: int, state: int) -> int:
    """The row of (direction, message, state): a State, Outcome.SAME/GONE, or UNEXPECTED."""
    return NEXT[direction << 8 | msg << 4 | state]


# --- tables: geometry and keys ------------------------------------------------------

@dataclass(frozen=True)
class Geometry:
    """Fixed-size table geometry of ``p4`` mode (BUCKETS x WAYS each).

    Slots [0, A) hold the ACTIVE table and [A, A + P) the PASSIVE table of
    one set of per-field arrays (A = active_buckets x active_ways); the FLOW
    table holds slot numbers, FLOW_BUCKETS x FLOW_WAYS of them."""

    active_buckets: int = 4096
    active_ways: int = 2
    passive_buckets: int = 4096
    passive_ways: int = 2
    flow_buckets: int = 8192
    flow_ways: int = 2

    def __post_init__(self):
        for name in ("active", "passive", "flow"):
            b, w = getattr(self, f"{name}_buckets"), getattr(self, f"{name}_ways")
            if type(b) is not int or type(w) is not int:
                raise ValueError(f"{name}_buckets and {name}_ways must be integers")
            if b < 1 or b & (b - 1) or b > 1 << 24:
                raise ValueError(f"{name}_buckets must be a power of two from 1 to 2^24, not {b}")
            if not 1 <= w <= 8:
                raise ValueError(f"{name}_ways must be 1..8, not {w}")

    @property
    def active_slots(self) -> int:
        return self.active_buckets * self.active_ways

    @property
    def slots(self) -> int:
        """Connection slots (ACTIVE then PASSIVE)."""
        return self.active_slots + self.passive_buckets * self.passive_ways

    @property
    def flow_slots(self) -> int:
        return self.flow_buckets * self.flow_ways

    @property
    def tag(self) -> str:
        """Short name (build directories): ``default`` or ``a4x1-p4x1-f4x1``."""
        if self == Geometry():
            return "default"
        return (f"a{self.active_buckets}x{self.active_ways}-p{self.passive_buckets}x{self.passive_ways}"
                f"-f{self.flow_buckets}x{self.flow_ways}")

    def as_dict(self) -> dict:
        return asdict(self)


#: The bytes hashed for each table, in order: (part, bytes). IPs are 16
#: bytes, IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d). Integers big endian.
KEY_LAYOUTS = {
    "ACTIVE": (("host_comm_id", 4),),
    "PASSIVE": (("remote_ip", 16), ("remote_comm_id", 4)),
    "FLOW": (("remote_ip", 16), ("remote_qpn", 3)),
}

V4_MAPPED_PREFIX = b"\0" * 10 + b"\xff\xff"


def active_key(host_comm_id: int) -> bytes:
    """ACTIVE key bytes (see :data:`KEY_LAYOUTS`)."""
    return host_comm_id.to_bytes(4, "big")


def passive_key(remote_ip16: bytes, remote_comm_id: int) -> bytes:
    """PASSIVE key bytes (see :data:`KEY_LAYOUTS`)."""
    return remote_ip16 + remote_comm_id.to_bytes(4, "big")


def flow_key(remote_ip16: bytes, remote_qpn: int) -> bytes:
    """FLOW key bytes (see :data:`KEY_LAYOUTS`)."""
    return remote_ip16 + remote_qpn.to_bytes(3, "big")


def bucket_of(key: bytes, buckets: int) -> int:
    """Bucket of a key: CRC-32 (zlib = v1model HashAlgorithm.crc32) of its bytes, low bits."""
    return zlib.crc32(key) & (buckets - 1)
