"""p4 mode's storage: the probes of ``p4/include/probes.p4``, over the tables
of :mod:`ctcm.dataplane.machine` (:class:`~ctcm.dataplane.machine.Tables`).

BUCKETS x WAYS slots, slot = base + bucket * WAYS + way; bucket = CRC-32 of
the spec's key bytes (:data:`ctcm.spec.KEY_LAYOUTS`). A slot's remote IP is
four 32-bit words (``conn_ip[4 * slot + w]``, w = 0 most significant), a
message's is its 16 bytes (hashed as they are) and their words
(:func:`ip_words`, compared with a slot's). The FLOW table ``flow_slot`` holds
slot + 1 (0 = empty). Each function names the P4 macro it mirrors.

These functions are bound together with the machine's (``machine.bind``):
``ideal`` mode replaces the probes by dict indexes, the compiled path the
byte helpers by numba-friendly loops (:mod:`ctcm.dataplane.storage`).
"""

from __future__ import annotations

import struct
import zlib
from typing import NamedTuple

from ctcm import spec
from ctcm.spec import State

IDLE, TIMEWAIT = int(State.IDLE), int(State.TIMEWAIT)
FLOW_ADDED, FLOW_FULL, FLOW_CONFLICT = 1, 0, -1  # flow_add answers
# Four words: of a message's IP bytes (big endian), of a slot in conn_ip (array('I'): native)
_BIG_ENDIAN, _WORDS = struct.Struct(">4I"), struct.Struct("=4I")


class Buckets(NamedTuple):
    """p4 mode's geometry as the probes use it (spec.Geometry: counts)."""

    active_mask: int
    active_ways: int
    passive_mask: int
    passive_ways: int
    passive_base: int   # first PASSIVE slot (= ACTIVE_SLOTS)
    flow_mask: int
    flow_ways: int


def buckets(g: spec.Geometry) -> Buckets:
    return Buckets(g.active_buckets - 1, g.active_ways, g.passive_buckets - 1, g.passive_ways, g.active_slots,
                   g.flow_buckets - 1, g.flow_ways)


# --- IP words ---------------------------------------------------------------------------

#: ip_words(ip): a message's 16-byte IP as four 32-bit words, most significant first
ip_words = _BIG_ENDIAN.unpack


def ip_bytes(conn_ip, i):
    """Slot i's IP as 16 bytes."""
    return _BIG_ENDIAN.pack(*_WORDS.unpack_from(conn_ip, 16 * i))


def ip_eq(conn_ip, i, ipw):
    return _WORDS.unpack_from(conn_ip, 16 * i) == ipw


def ip_set(conn_ip, i, ipw):
    _WORDS.pack_into(conn_ip, 16 * i, *ipw)


def slot_ip_eq(conn_ip, a, b):
    return _WORDS.unpack_from(conn_ip, 16 * a) == _WORDS.unpack_from(conn_ip, 16 * b)


# --- bucket bases (ACTIVE_BASE, PASSIVE_BASE, FLOW_BASE) ------------------------------

def active_base(G, host_id):
    """First slot of the ACTIVE bucket of a host comm ID."""
    return (zlib.crc32(spec.active_key(host_id)) & G.active_mask) * G.active_ways


def passive_base(G, ip, remote_id):
    """First slot of the PASSIVE bucket of (remote IP, remote comm ID)."""
    return G.passive_base + (zlib.crc32(spec.passive_key(bytes(ip), remote_id)) & G.passive_mask) * G.passive_ways


def flow_base(T, G, i):
    """First way of the FLOW bucket of slot i's (remote IP, remote QPN)."""
    return (zlib.crc32(spec.flow_key(ip_bytes(T.conn_ip, i), T.conn_rqpn[i])) & G.flow_mask) * G.flow_ways


# --- probes -------------------------------------------------------------------------------

def find_active(T, G, host_id):
    """PROBE_ACTIVE: the first way whose lid is the key and state is not IDLE."""
    state, lid = T.conn_state, T.conn_lid
    b = active_base(G, host_id)
    for s in range(b, b + G.active_ways):
        if lid[s] == host_id and state[s] != IDLE:
            return s
    return -1


def find_passive(T, G, ip, ipw, remote_id):
    """PROBE_PASSIVE: ... rid is the key, state not IDLE, IP the key's."""
    state, rid, conn_ip = T.conn_state, T.conn_rid, T.conn_ip
    b = passive_base(G, ip, remote_id)
    for s in range(b, b + G.passive_ways):
        if rid[s] == remote_id and state[s] != IDLE and ip_eq(conn_ip, s, ipw):
            return s
    return -1


def free_way(T, G, host, ip, key_id):
    """PROBE_FREE: the first free way of the new key's bucket, -1 when none."""
    state = T.conn_state
    if host:
        b, ways = active_base(G, key_id), G.active_ways
    else:
        b, ways = passive_base(G, ip, key_id), G.passive_ways
    for s in range(b, b + ways):
        if state[s] == IDLE:
            return s
    return -1


def expired_way(T, G, host, ip, key_id, now, timewait):
    """PROBE_RECLAIM: the first expired TIMEWAIT way of the new key's bucket."""
    state, ts = T.conn_state, T.conn_ts
    if host:
        b, ways = active_base(G, key_id), G.active_ways
    else:
        b, ways = passive_base(G, ip, key_id), G.passive_ways
    for s in range(b, b + ways):
        if state[s] == TIMEWAIT and now - ts[s] >= timewait:
            return s
    return -1


def free_slot(T, G, i):
    """The slot is IDLE again (release)."""
    T.occupancy[0 if i < G.passive_base else 1] -= 1
    T.conn_state[i] = IDLE
    T.conn_flags[i] = 0


def flow_add(T, G, i):
    """PROBE_FLOW_ADD: slot i + 1 into the first free way of its flow key's
    bucket, unless another slot there has the same key."""
    flows, rqpn, conn_ip = T.flow_slot, T.conn_rqpn, T.conn_ip
    b = flow_base(T, G, i)
    free = -1
    for w in range(b, b + G.flow_ways):
        c = flows[w]
        if c == 0:
            if free < 0:
                free = w
        elif rqpn[c - 1] == rqpn[i] and slot_ip_eq(conn_ip, c - 1, i):
            return FLOW_CONFLICT
    if free < 0:
        return FLOW_FULL
    flows[free] = i + 1
    return FLOW_ADDED


def flow_del(T, G, i):
    """PROBE_FLOW_REMOVE: the way whose value is slot i + 1 is emptied."""
    flows = T.flow_slot
    b = flow_base(T, G, i)
    for w in range(b, b + G.flow_ways):
        if flows[w] == i + 1:
            flows[w] = 0


def flow_find(T, G, ip, qpn):
    """PROBE_FLOW_FIND: slot of the flow (remote IP, remote QPN), -1 when not in the map."""
    flows, rqpn, conn_ip = T.flow_slot, T.conn_rqpn, T.conn_ip
    ipw = ip_words(ip)
    b = (zlib.crc32(spec.flow_key(bytes(ip), qpn)) & G.flow_mask) * G.flow_ways
    for w in range(b, b + G.flow_ways):
        c = flows[w]
        if c != 0 and rqpn[c - 1] == qpn and ip_eq(conn_ip, c - 1, ipw):
            return c - 1
    return -1


#: The probes and helpers, rebound with the machine (machine.FUNCTIONS).
FUNCTIONS = ("ip_words", "ip_bytes", "ip_eq", "ip_set", "slot_ip_eq", "active_base", "passive_base", "flow_base",
             "find_active", "find_passive", "free_way", "expired_way", "free_slot", "flow_add", "flow_del",
             "flow_find")
