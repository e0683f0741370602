"""The CM state machine, written once: one CM message in, one pass over fixed tables.

This is the P4 program's tracker control (``control CtcmTracker`` in
``p4/include/tracker.p4``) in Python: the same stages, in the same order,
under the same names, over the same registers (:class:`Tables`).
:func:`track` is its apply block:

==  ===============  =========================================================
 2  message          attribute decode (``spec.MESSAGES``): counter, tracked message
 3  lookup           ACTIVE[host id] / PASSIVE[(peer IP, peer id)], keys checked
 4  expire           an expired TIMEWAIT connection is released
 5  admit            a REQ without a connection takes a free way, else reclaims
                     an expired TIMEWAIT way, else is refused; others: unknown
 6  transition       the ``spec.TRANSITIONS`` row, and what a REP records
 7  flow_insert      ESTABLISHED: (remote IP, remote QPN) -> slot in the flow map
 8  flow_remove      leaving the flow map (TIMEWAIT, gone)
 9  release          the slot is free again
==  ===============  =========================================================

(Stage 1, the fields, is :func:`ctcm.dataplane.cmfields.cm_fields`.) Storage
is reached through the probes of :mod:`ctcm.dataplane.probes` (p4 mode); ideal
mode binds the same functions to unbounded dict indexes and the compiled path
to numba (:mod:`ctcm.dataplane.storage`), through :func:`bind`: one source for
p4 in plain Python, p4 compiled with numba and ideal in plain Python.

Results go into an event record ``ev`` (integers, indices ``E_*``) that the
tracker turns into an :class:`~ctcm.dataplane.tracker.Event`.
"""

from __future__ import annotations

import types
from array import array
from typing import NamedTuple

from ctcm import spec
from ctcm.dataplane import probes
from ctcm.dataplane.probes import (FLOW_ADDED, FLOW_CONFLICT, IDLE, TIMEWAIT, active_base, expired_way,  # noqa: F401
                                   find_active, find_passive, flow_add, flow_base, flow_del, flow_find, free_slot,
                                   free_way, ip_bytes, ip_eq, ip_set, ip_words, passive_base, slot_ip_eq)
from ctcm.spec import Counter as C
from ctcm.spec import Direction, Flag, Msg, Outcome, Result, State

# The spec's enums as plain ints: constants for Python and numba alike.
FROM_HOST = int(Direction.FROM_HOST)
REQ_SENT, REQ_RCVD, ESTABLISHED = int(State.REQ_SENT), int(State.REQ_RCVD), int(State.ESTABLISHED)
M_REQ, M_REP = int(Msg.REQ), int(Msg.REP)
MSG_NONE = spec.MSG_NONE  # not a tracked message
SAME, GONE, UNEXPECTED = int(Outcome.SAME), int(Outcome.GONE), int(Outcome.UNEXPECTED)
F_LID, F_RID, F_FLOW, F_PASSIVE = int(Flag.LID), int(Flag.RID), int(Flag.FLOW), int(Flag.PASSIVE)
R_NEW, R_TRANSITION, R_RETRANSMISSION = int(Result.NEW), int(Result.TRANSITION), int(Result.RETRANSMISSION)
R_UNEXPECTED, R_UNKNOWN, R_REFUSED, R_IGNORED = (int(Result.UNEXPECTED), int(Result.UNKNOWN),
                                                 int(Result.REFUSED), int(Result.IGNORED))
C_RESULT = int(C.NEW)  # counter of result r: C_RESULT + r
C_CM_OTHER, C_REMOVED, C_TW_EXPIRED = int(C.CM_OTHER), int(C.REMOVED), int(C.TIMEWAIT_EXPIRED)
C_TABLE_REFUSALS, C_FLOW_INSERTS, C_FLOW_REMOVALS = int(C.TABLE_REFUSALS), int(C.FLOW_INSERTS), int(C.FLOW_REMOVALS)
C_FLOW_REFUSALS, C_FLOW_CONFLICTS, C_FLOW_ZERO = int(C.FLOW_REFUSALS), int(C.FLOW_CONFLICTS), int(C.FLOW_ZERO_QPN)

#: spec.MESSAGES flattened, indexed by attribute << 2 | message MRAed (attributes below 0x20)
MSG_OF = [MSG_NONE] * 0x80
CTR_OF = [C_CM_OTHER] * 0x80
for _a, _r, _m, _c in spec.MESSAGES:
    MSG_OF[_a << 2 | _r], CTR_OF[_a << 2 | _r] = MSG_NONE if _m is None else int(_m), int(_c)
MSG_OF, CTR_OF = tuple(MSG_OF), tuple(CTR_OF)
NEXT = spec.NEXT


#: The tracker's registers (p4/include/tracker.p4), one index per slot, and
#: ``occupancy`` ([ACTIVE, PASSIVE] connections), the model's own.
TABLE_FIELDS = (
    "conn_state",   # spec.State (bytearray)
    "conn_flags",   # spec.Flag (bytearray)
    "conn_lid",     # local (host) comm ID
    "conn_rid",     # remote comm ID
    "conn_lqpn",    # local QPN
    "conn_rqpn",    # remote QPN
    "conn_ts",      # time of the last transition (µs)
    "conn_ip",      # remote IP (IPv4 as ::ffff:a.b.c.d), 4 words a slot, most significant first
    "flow_slot",    # the FLOW table: slot + 1, 0 = empty (ideal mode: unused)
    "last_cnp",     # CNP pacing per slot: time of the flow's last CNP + 1, 0 = none
    "occupancy",
)


class Tables:
    """The tables as plain Python runs them (slotted attributes: the fastest
    to read); :data:`TablesTuple` holds the same fields for numba."""

    __slots__ = TABLE_FIELDS

    def __init__(self, *arrays):
        for name, a in zip(TABLE_FIELDS, arrays, strict=True):
            setattr(self, name, a)

    def __iter__(self):
        return (getattr(self, n) for n in TABLE_FIELDS)


#: The same fields as a named tuple: what the compiled machine gets (numpy arrays).
TablesTuple = NamedTuple("TablesTuple", [(n, object) for n in TABLE_FIELDS])


def tables(slots: int, flow_slots: int) -> Tables:
    z4 = bytes(4 * slots)
    return Tables(bytearray(slots), bytearray(slots), array("I", z4), array("I", z4), array("I", z4),
                  array("I", z4), array("q", bytes(8 * slots)), array("I", bytes(16 * slots)),
                  array("I", bytes(4 * flow_slots)), array("q", bytes(8 * slots)), array("q", [0, 0]))


# The event record. (E_LQPN, E_RQPN: the slot's QPNs when the event was made, for
# the flow it added or removed; E_IP0..3: the slot's remote IP as four words, for
# an event whose IP is the slot's rather than the message's.)
(E_RES, E_MSG, E_OLD, E_NEW, E_LID, E_RID, E_IPSRC, E_SLOT, E_FLOW_ADDED, E_FLOW_REMOVED, E_LQPN, E_RQPN,
 E_IP0) = range(13)
E_SIZE = E_IP0 + 4
NONE = -1            # absent state / comm ID
IP_MSG, IP_SLOT, IP_NONE = 0, 1, 2  # where the event's remote IP comes from


def _event(ev, res, m, old, new, lid, rid, ipsrc, slot):
    ev[E_RES] = res
    ev[E_MSG] = m
    ev[E_OLD] = old
    ev[E_NEW] = new
    ev[E_LID] = lid
    ev[E_RID] = rid
    ev[E_IPSRC] = ipsrc
    ev[E_SLOT] = slot
    ev[E_FLOW_ADDED] = 0
    ev[E_FLOW_REMOVED] = 0


def _slot_event(T, ev, res, m, old, new, i, ipsrc):
    """An event about slot i: its comm IDs where known, its QPNs (for a flow it
    adds or removes) and, for IP_SLOT, its IP."""
    f = T.conn_flags[i]
    _event(ev, res, m, old, new, T.conn_lid[i] if (f & F_LID) != 0 else NONE,
           T.conn_rid[i] if (f & F_RID) != 0 else NONE, ipsrc, i)
    ev[E_LQPN] = T.conn_lqpn[i]
    ev[E_RQPN] = T.conn_rqpn[i]
    if ipsrc == IP_SLOT:
        for w in range(4):
            ev[E_IP0 + w] = T.conn_ip[4 * i + w]


def track(T, G, d, attr, ip, loc, rem, qpn, mraed, now, timewait, counters, ev):
    """One CM message: direction ``d``, attribute ID, peer IP (16 bytes), the
    message's local and remote comm IDs, the QPN of a REQ/REP (else 0), an
    MRA's "message MRAed" (else 0), time (µs). The apply block of CtcmTracker
    (track path). Writes ``ev``."""
    # --- 2 message
    m = message(attr, mraed, counters)
    if m == MSG_NONE:
        counters[C_RESULT + R_IGNORED] += 1
        _event(ev, R_IGNORED, NONE, NONE, NONE, NONE, NONE, IP_NONE, NONE)
        return
    if d == FROM_HOST:  # the host's comm ID and the peer's
        host_id, peer_id = loc, rem
    else:
        host_id, peer_id = rem, loc
    ipw = ip_words(ip)
    # --- 3 lookup
    i = lookup(T, G, d, m, ip, ipw, host_id, peer_id)
    if i >= 0 and m == M_REQ and d == FROM_HOST and not ip_eq(T.conn_ip, i, ipw):
        # a REQ with the same local comm ID towards another peer: not this connection
        counters[C_RESULT + R_UNEXPECTED] += 1
        st = T.conn_state[i]
        _slot_event(T, ev, R_UNEXPECTED, M_REQ, st, st, i, IP_SLOT)
        return
    # --- 4 expire
    if i >= 0 and expire(T, G, i, now, timewait, counters):
        i = -1
    # --- 5 admit
    if i < 0:
        admit(T, G, d, m, ip, ipw, loc, qpn, now, timewait, counters, ev)
        return
    # --- 6 transition
    to = transition(T, d, m, i, qpn, host_id, peer_id, now, counters, ev)
    # --- 7 flow_insert
    if to == ESTABLISHED:
        ev[E_FLOW_ADDED] = flow_insert(T, G, i, counters)
    # --- 8 flow_remove
    elif to == TIMEWAIT or to == GONE:
        ev[E_FLOW_REMOVED] = flow_remove(T, G, i, counters)
    # --- 9 release
    if to == GONE:
        release(T, G, i, counters)


def message(attr, mraed, counters):
    """Count the attribute's counter; the tracked message (MSG_NONE: not tracked)."""
    k = attr << 2 | mraed if 0 <= attr < 0x20 else 0
    if k == 0:
        counters[C_CM_OTHER] += 1
        return MSG_NONE
    counters[CTR_OF[k]] += 1
    return MSG_OF[k]


def lookup(T, G, d, m, ip, ipw, host_id, peer_id):
    """The connection a message names, -1 when none. A REQ: ACTIVE[host id]
    from the host, PASSIVE[(peer IP, peer id)] from the network. Others:
    ACTIVE[host id] when its IP is the peer's and its remote comm ID, once
    known, the peer's; else PASSIVE[(peer IP, peer id)] when its local comm
    ID, once known, is the host's."""
    if m == M_REQ:
        return find_active(T, G, host_id) if d == FROM_HOST else find_passive(T, G, ip, ipw, peer_id)
    i = find_active(T, G, host_id)
    if i < 0 or not ip_eq(T.conn_ip, i, ipw) or ((T.conn_flags[i] & F_RID) != 0 and T.conn_rid[i] != peer_id):
        i = find_passive(T, G, ip, ipw, peer_id)
        if i >= 0 and (T.conn_flags[i] & F_LID) != 0 and T.conn_lid[i] != host_id:
            i = -1
    return i


def expire(T, G, i, now, timewait, counters):
    """Release slot i when it is a TIMEWAIT connection whose time is up (its
    flow entry went on entering TIMEWAIT); True when it was."""
    if T.conn_state[i] != TIMEWAIT or now - T.conn_ts[i] < timewait:
        return False
    release(T, G, i, counters)
    counters[C_TW_EXPIRED] += 1
    return True


def admit(T, G, d, m, ip, ipw, loc, qpn, now, timewait, counters, ev):
    """A message without a connection: a REQ opens one (a free way of its
    bucket, else an expired TIMEWAIT way reclaimed, else refused); any other
    message is unknown."""
    if m != M_REQ:
        counters[C_RESULT + R_UNKNOWN] += 1
        _event(ev, R_UNKNOWN, m, NONE, NONE, NONE, NONE, IP_NONE, NONE)
        return
    host = d == FROM_HOST
    i = free_way(T, G, host, ip, loc)
    if i >= 0:
        T.occupancy[0 if host else 1] += 1
    else:
        i = expired_way(T, G, host, ip, loc, now, timewait)
        if i >= 0:  # reclaimed
            counters[C_TW_EXPIRED] += 1
    if i < 0:
        counters[C_TABLE_REFUSALS] += 1
        counters[C_RESULT + R_REFUSED] += 1
        _event(ev, R_REFUSED, M_REQ, NONE, NONE, loc if host else NONE, NONE if host else loc, IP_MSG, NONE)
        return
    ip_set(T.conn_ip, i, ipw)
    T.conn_ts[i] = now
    if host:
        T.conn_state[i] = REQ_SENT
        T.conn_flags[i] = F_LID
        T.conn_lid[i], T.conn_rid[i], T.conn_lqpn[i], T.conn_rqpn[i] = loc, 0, qpn, 0
        _event(ev, R_NEW, M_REQ, NONE, REQ_SENT, loc, NONE, IP_MSG, i)
    else:
        T.conn_state[i] = REQ_RCVD
        T.conn_flags[i] = F_RID | F_PASSIVE
        T.conn_lid[i], T.conn_rid[i], T.conn_lqpn[i], T.conn_rqpn[i] = 0, loc, 0, qpn
        _event(ev, R_NEW, M_REQ, NONE, REQ_RCVD, NONE, loc, IP_MSG, i)
    counters[C_RESULT + R_NEW] += 1


def transition(T, d, m, i, qpn, host_id, peer_id, now, counters, ev):
    """The TRANSITIONS row of (direction, message, state) on slot i (whose IP
    is the message's: the lookup matched it); returns where it went."""
    old = T.conn_state[i]
    to = NEXT[d << 8 | m << 4 | old]
    if to == UNEXPECTED or to == SAME:
        r = R_UNEXPECTED if to == UNEXPECTED else R_RETRANSMISSION
        counters[C_RESULT + r] += 1
        _slot_event(T, ev, r, m, old, old, i, IP_MSG)
        return to
    counters[C_RESULT + R_TRANSITION] += 1
    if to == GONE:
        _slot_event(T, ev, R_TRANSITION, m, old, GONE, i, IP_MSG)
        return to
    if m == M_REP:  # what a REP records: the sender's QPN and comm ID
        if d == FROM_HOST:
            T.conn_lqpn[i] = qpn
            T.conn_lid[i] = host_id
            T.conn_flags[i] |= F_LID
        else:
            T.conn_rqpn[i] = qpn
            T.conn_rid[i] = peer_id
            T.conn_flags[i] |= F_RID
    T.conn_state[i] = to
    T.conn_ts[i] = now
    _slot_event(T, ev, R_TRANSITION, m, old, to, i, IP_MSG)
    return to


def flow_insert(T, G, i, counters):
    """Slot i entered ESTABLISHED: (remote IP, remote QPN) -> slot i in the flow
    map, pacing cleared. 1 when added (the event reports the slot's key and local QPN)."""
    if T.conn_lqpn[i] == 0 or T.conn_rqpn[i] == 0:
        counters[C_FLOW_ZERO] += 1
        return 0
    done = flow_add(T, G, i)
    if done != FLOW_ADDED:
        if done == FLOW_CONFLICT:  # another connection has this (remote IP, remote QPN)
            counters[C_FLOW_CONFLICTS] += 1
        counters[C_FLOW_REFUSALS] += 1
        return 0
    T.conn_flags[i] |= F_FLOW
    T.last_cnp[i] = 0
    counters[C_FLOW_INSERTS] += 1
    return 1


def flow_remove(T, G, i, counters):
    """Slot i leaves the flow map (if it is in it), and its pacing time with it; 1 when removed."""
    if (T.conn_flags[i] & F_FLOW) == 0:
        return 0
    flow_del(T, G, i)
    T.conn_flags[i] &= ~F_FLOW
    T.last_cnp[i] = 0
    counters[C_FLOW_REMOVALS] += 1
    return 1


def release(T, G, i, counters):
    """The connection in slot i is gone: the slot is free."""
    free_slot(T, G, i)
    counters[C_REMOVED] += 1


def track_batch(T, G, dirs, attrs, ips, locs, rems, qpns, mraeds, times, timewait, counters, out):
    """:func:`track` of k messages in order (ips: k x 16; out: k x E_SIZE)."""
    for k in range(len(dirs)):
        track(T, G, dirs[k], attrs[k], ips[k], locs[k], rems[k], qpns[k], mraeds[k], times[k], timewait,
              counters, out[k])


# --- bindings ----------------------------------------------------------------------------

#: The functions that make up the machine and its p4 storage (rebound together).
FUNCTIONS = ("_event", "_slot_event", "track", "message", "lookup", "expire", "admit", "transition",
             "flow_insert", "flow_remove", "release", "track_batch") + probes.FUNCTIONS


def bind(overrides: dict) -> types.SimpleNamespace:
    """The machine's functions with some globals replaced (storage primitives,
    byte helpers): same code objects, another globals dict."""
    g = dict(vars(probes))
    g.update(globals())
    g.update(overrides)
    for name in FUNCTIONS:
        f = g[name]
        if name not in overrides and isinstance(f, types.FunctionType):  # (ip_words is a C method)
            g[name] = types.FunctionType(f.__code__, g, name, f.__defaults__)
    return types.SimpleNamespace(**{n: g[n] for n in FUNCTIONS}, globals=g)


P4 = types.SimpleNamespace(**{n: globals()[n] for n in FUNCTIONS})
