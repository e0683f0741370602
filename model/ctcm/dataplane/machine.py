"""The CM state machine, written once: one CM message in, one pass over fixed tables.

This is what the P4 program's tracker control mirrors (``p4/include/tracker.p4``),
function by function:

* :func:`track` -- one CM message (the fields the P4 parser extracts): count
  it, pick the tracked message, look the connection up, apply the row;
* :func:`req` -- a REQ: find by its key, else allocate a way of its bucket;
* :func:`apply` -- the :data:`ctcm.spec.TRANSITIONS` row of (direction,
  message, state) and what it records;
* :func:`flow_insert`, :func:`flow_remove`, :func:`remove` -- the flow map
  and slot release.

Storage is reached through a few primitives (``find_active``,
``find_passive``, ``alloc``, ``release``, ``flow_add``, ``flow_del``): the
``p4`` ones are below (BUCKETS x WAYS register-style arrays, CRC-32 buckets
over the spec's key bytes); ``ideal`` mode binds the same functions to
unbounded dict indexes (:mod:`ctcm.dataplane.storage`). Bindings (:func:`bind`) re-use
the code objects of this module with other globals, so there is one
source for three uses:

* ``p4`` in plain Python (per packet, and batches without numba);
* ``p4`` compiled with numba (:func:`compiled`; batches);
* ``ideal`` in plain Python.

Tables ``T``: (state, flags, lid, rid, lqpn, rqpn, ts, ip, flows, occ) --
per-field slot arrays (ip: 16 bytes per slot, IPv4-mapped), the FLOW table
of slot numbers (-1 = empty), and occupancy [ACTIVE, PASSIVE]. Geometry
``G`` (p4): (amask, aways, pmask, pways, pbase, fmask, fways).

Results go into an event record ``ev`` (integers, indices ``E_*``) that the
tracker turns into an :class:`~ctcm.dataplane.tracker.Event`.
"""

from __future__ import annotations

import types
import zlib

from ctcm import spec
from ctcm.spec import Counter as C
from ctcm.spec import Direction, Flag, Msg, Outcome, Result, State

# The spec's enums as plain ints: constants for Python and numba alike.
FROM_HOST = int(Direction.FROM_HOST)
IDLE, REQ_SENT, REQ_RCVD = int(State.IDLE), int(State.REQ_SENT), int(State.REQ_RCVD)
ESTABLISHED, TIMEWAIT = int(State.ESTABLISHED), int(State.TIMEWAIT)
M_REQ, M_REP, M_MRA_REQ, M_MRA_REP = int(Msg.REQ), int(Msg.REP), int(Msg.MRA_REQ), int(Msg.MRA_REP)
SAME, GONE, UNEXPECTED = int(Outcome.SAME), int(Outcome.GONE), int(Outcome.UNEXPECTED)
F_LID, F_RID, F_FLOW, F_PASSIVE = int(Flag.LID), int(Flag.RID), int(Flag.FLOW), int(Flag.PASSIVE)
R_NEW, R_TRANSITION, R_RETRANSMISSION = int(Result.NEW), int(Result.TRANSITION), int(Result.RETRANSMISSION)
R_UNEXPECTED, R_UNKNOWN, R_REFUSED, R_IGNORED = (int(Result.UNEXPECTED), int(Result.UNKNOWN),
                                                 int(Result.REFUSED), int(Result.IGNORED))
C_RESULT = int(C.NEW)  # counter of result r: C_RESULT + r
C_CM_OTHER, C_REMOVED, C_TW_EXPIRED = int(C.CM_OTHER), int(C.REMOVED), int(C.TIMEWAIT_EXPIRED)
C_TABLE_REFUSALS, C_FLOW_INSERTS, C_FLOW_REMOVALS = int(C.TABLE_REFUSALS), int(C.FLOW_INSERTS), int(C.FLOW_REMOVALS)
C_FLOW_REFUSALS, C_FLOW_CONFLICTS, C_FLOW_ZERO = int(C.FLOW_REFUSALS), int(C.FLOW_CONFLICTS), int(C.FLOW_ZERO_QPN)

#: message of an attribute ID (-2: not tracked, -1: MRA, by "message MRAed"); counter of an attribute ID
MSG_NOT_TRACKED, MSG_MRA = -2, -1
MSG_OF_ATTR = tuple(int(spec.MSG_OF_ATTR.get(a, MSG_MRA if a == spec.ATTR_MRA else MSG_NOT_TRACKED))
                    for a in range(0x20))
COUNTER_OF_ATTR = tuple(int(spec.COUNTER_OF_ATTR.get(a, C.CM_OTHER)) for a in range(0x20))
NEXT = spec.NEXT

# flow_add answers
FLOW_ADDED, FLOW_FULL, FLOW_CONFLICT = 1, 0, -1

# The event record.
# (E_LQPN, E_RQPN: the slot's QPNs when the event was made, for the flow it
# added or removed; E_IP0..3: the slot's remote IP as four 32-bit words, for
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
    f = T[1][i]
    _event(ev, res, m, old, new, T[2][i] if (f & F_LID) != 0 else NONE, T[3][i] if (f & F_RID) != 0 else NONE,
           ipsrc, i)
    ev[E_LQPN] = T[4][i]
    ev[E_RQPN] = T[5][i]
    if ipsrc == IP_SLOT:
        for w in range(4):
            ev[E_IP0 + w] = ip_word(T[7], i, w)


def track(T, G, d, attr, ip16, loc, rem, qpn, mraed, now, timewait, counters, ev):
    """One CM message: direction ``d``, attribute ID, peer IP (16 bytes), the
    message's local and remote comm IDs, the QPN of a REQ/REP (else 0), an
    MRA's "message MRAed" (else 0), time (µs). Writes ``ev``."""
    a = attr if 0 <= attr < 0x20 else 0
    m = MSG_OF_ATTR[a] if a == attr else MSG_NOT_TRACKED
    counters[COUNTER_OF_ATTR[a] if a == attr else C_CM_OTHER] += 1
    if m == MSG_MRA:
        if mraed > 1:  # MRA of a LAP (or reserved): not tracked
            m = MSG_NOT_TRACKED
        else:
            m = M_MRA_REQ if mraed == 0 else M_MRA_REP
    if m == MSG_NOT_TRACKED:
        counters[C_RESULT + R_IGNORED] += 1
        _event(ev, R_IGNORED, NONE, NONE, NONE, NONE, NONE, IP_NONE, NONE)
        return
    if m == M_REQ:
        req(T, G, d, ip16, loc, qpn, now, timewait, counters, ev)
        return
    if d == FROM_HOST:
        host_id, peer_id = loc, rem
    else:
        host_id, peer_id = rem, loc
    # The lookup: ACTIVE[host id] checked against the peer, else
    # PASSIVE[(peer IP, peer id)] checked against the host id.
    flags, lid, rid = T[1], T[2], T[3]
    i = find_active(T, G, host_id)
    if i < 0 or not ip_eq(T[7], i, ip16) or ((flags[i] & F_RID) != 0 and rid[i] != peer_id):
        i = find_passive(T, G, ip16, peer_id)
        if i >= 0 and (flags[i] & F_LID) != 0 and lid[i] != host_id:
            i = -1
    if i >= 0 and expired(T, i, now, timewait):
        remove(T, G, i, counters)
        counters[C_TW_EXPIRED] += 1
        i = -1
    if i < 0:
        counters[C_RESULT + R_UNKNOWN] += 1
        _event(ev, R_UNKNOWN, m, NONE, NONE, NONE, NONE, IP_NONE, NONE)
        return
    apply(T, G, d, m, i, qpn, host_id, peer_id, now, counters, ev)


def expired(T, i, now, timewait):
    """Slot i is a TIMEWAIT connection whose time is up."""
    return T[0][i] == TIMEWAIT and now - T[6][i] >= timewait


def req(T, G, d, ip16, loc, qpn, now, timewait, counters, ev):
    """A REQ: the connection it names (ACTIVE by the host's comm ID, PASSIVE by
    (peer IP, peer comm ID)), else a new one in a free way of its bucket."""
    host = d == FROM_HOST
    state, flags, lid, rid, lqpn, rqpn, ts, ip = T[0], T[1], T[2], T[3], T[4], T[5], T[6], T[7]
    i = find_active(T, G, loc) if host else find_passive(T, G, ip16, loc)
    if i >= 0 and host and not ip_eq(ip, i, ip16):
        # The same local comm ID towards another peer: not this connection.
        counters[C_RESULT + R_UNEXPECTED] += 1
        _slot_event(T, ev, R_UNEXPECTED, M_REQ, state[i], state[i], i, IP_SLOT)
        return
    if i >= 0 and expired(T, i, now, timewait):
        remove(T, G, i, counters)
        counters[C_TW_EXPIRED] += 1
        i = -1
    if i >= 0:
        apply(T, G, d, M_REQ, i, qpn, NONE, NONE, now, counters, ev)
        return
    i = alloc(T, G, host, ip16, loc, now, timewait, counters)
    if i < 0:
        counters[C_TABLE_REFUSALS] += 1
        counters[C_RESULT + R_REFUSED] += 1
        _event(ev, R_REFUSED, M_REQ, NONE, NONE, loc if host else NONE, NONE if host else loc, IP_MSG, NONE)
        return
    ip_set(ip, i, ip16)
    ts[i] = now
    if host:
        state[i] = REQ_SENT
        flags[i] = F_LID
        lid[i], rid[i], lqpn[i], rqpn[i] = loc, 0, qpn, 0
        _event(ev, R_NEW, M_REQ, NONE, REQ_SENT, loc, NONE, IP_MSG, i)
    else:
        state[i] = REQ_RCVD
        flags[i] = F_RID | F_PASSIVE
        lid[i], rid[i], lqpn[i], rqpn[i] = 0, loc, 0, qpn
        _event(ev, R_NEW, M_REQ, NONE, REQ_RCVD, NONE, loc, IP_MSG, i)
    counters[C_RESULT + R_NEW] += 1


def apply(T, G, d, m, i, qpn, host_id, peer_id, now, counters, ev):
    """Apply the TRANSITIONS row of (direction, message, state) to slot i (whose
    remote IP is the message's: the lookup matched it)."""
    state, flags = T[0], T[1]
    old = state[i]
    to = NEXT[d << 8 | m << 4 | old]
    if to == UNEXPECTED or to == SAME:
        r = R_UNEXPECTED if to == UNEXPECTED else R_RETRANSMISSION
        counters[C_RESULT + r] += 1
        _slot_event(T, ev, r, m, old, old, i, IP_MSG)
        return
    counters[C_RESULT + R_TRANSITION] += 1
    if to == GONE:
        _slot_event(T, ev, R_TRANSITION, m, old, GONE, i, IP_MSG)
        ev[E_FLOW_REMOVED] = remove(T, G, i, counters)
        return
    if m == M_REP:  # what a REP records
        if d == FROM_HOST:
            T[4][i] = qpn
            T[2][i] = host_id
            flags[i] |= F_LID
        else:
            T[5][i] = qpn
            T[3][i] = peer_id
            flags[i] |= F_RID
    state[i] = to
    T[6][i] = now
    _slot_event(T, ev, R_TRANSITION, m, old, to, i, IP_MSG)
    if to == ESTABLISHED:
        ev[E_FLOW_ADDED] = flow_insert(T, G, i, counters)
    elif to == TIMEWAIT:
        ev[E_FLOW_REMOVED] = flow_remove(T, G, i, counters)


def flow_insert(T, G, i, counters):
    """Slot i entered ESTABLISHED: (remote IP, remote QPN) -> slot i in the flow
    map. 1 when added (the event reports the slot's key and local QPN)."""
    lq, rq = T[4][i], T[5][i]
    if lq == 0 or rq == 0:
        counters[C_FLOW_ZERO] += 1
        return 0
    done = flow_add(T, G, i)
    if done != FLOW_ADDED:
        if done == FLOW_CONFLICT:  # another connection has this (remote IP, remote QPN)
            counters[C_FLOW_CONFLICTS] += 1
        counters[C_FLOW_REFUSALS] += 1
        return 0
    T[1][i] |= F_FLOW
    counters[C_FLOW_INSERTS] += 1
    return 1


def flow_remove(T, G, i, counters):
    """Slot i leaves the flow map (if it is in it); 1 when removed."""
    if (T[1][i] & F_FLOW) == 0:
        return 0
    flow_del(T, G, i)
    T[1][i] &= ~F_FLOW
    counters[C_FLOW_REMOVALS] += 1
    return 1


def remove(T, G, i, counters):
    """The connection in slot i is gone; 1 when it had a flow entry."""
    had = flow_remove(T, G, i, counters)
    release(T, G, i)
    counters[C_REMOVED] += 1
    return had


def track_batch(T, G, dirs, attrs, ips, locs, rems, qpns, mraeds, times, timewait, counters, out):
    """:func:`track` of k messages in order (ips: k x 16; out: k x E_SIZE)."""
    for k in range(len(dirs)):
        track(T, G, dirs[k], attrs[k], ips[k], locs[k], rems[k], qpns[k], mraeds[k], times[k], timewait,
              counters, out[k])


# --- p4 storage: BUCKETS x WAYS slots, slot = base + bucket * WAYS + way --------------------

def ip_eq(ip, i, ip16):
    return ip[16 * i : 16 * i + 16] == ip16


def ip_word(ip, i, w):
    """Word w (0..3, big endian) of slot i's remote IP."""
    return int.from_bytes(ip[16 * i + 4 * w : 16 * i + 4 * w + 4], "big")


def ip_set(ip, i, ip16):
    ip[16 * i : 16 * i + 16] = ip16


def slot_ip_eq(ip, a, b):
    return ip[16 * a : 16 * a + 16] == ip[16 * b : 16 * b + 16]


def active_base(G, host_id):
    """First slot of the ACTIVE bucket of a host comm ID."""
    return (zlib.crc32(spec.active_key(host_id)) & G[0]) * G[1]


def passive_base(G, ip16, remote_id):
    """First slot of the PASSIVE bucket of (remote IP, remote comm ID)."""
    return G[4] + (zlib.crc32(spec.passive_key(bytes(ip16), remote_id)) & G[2]) * G[3]


def flow_base(T, G, i):
    """First way of the FLOW bucket of slot i's (remote IP, remote QPN)."""
    return (zlib.crc32(spec.flow_key(bytes(T[7][16 * i : 16 * i + 16]), T[5][i])) & G[5]) * G[6]


def find_active(T, G, host_id):
    state, lid = T[0], T[2]
    b = active_base(G, host_id)
    for s in range(b, b + G[1]):
        if lid[s] == host_id and state[s] != IDLE:
            return s
    return -1


def find_passive(T, G, ip16, remote_id):
    state, rid, ip = T[0], T[3], T[7]
    b = passive_base(G, ip16, remote_id)
    for s in range(b, b + G[3]):
        if rid[s] == remote_id and state[s] != IDLE and ip_eq(ip, s, ip16):
            return s
    return -1


def alloc(T, G, host, ip16, key_id, now, timewait, counters):
    """A way of the new key's bucket: the first free one, else the first expired
    TIMEWAIT one (taken over); -1 when the bucket is full (refused)."""
    state, occ = T[0], T[9]
    if host:
        b, ways = active_base(G, key_id), G[1]
    else:
        b, ways = passive_base(G, ip16, key_id), G[3]
    for s in range(b, b + ways):
        if state[s] == IDLE:
            occ[0 if host else 1] += 1
            return s
    for s in range(b, b + ways):
        if expired(T, s, now, timewait):
            counters[C_TW_EXPIRED] += 1
            return s
    return -1


def release(T, G, i):
    T[9][0 if i < G[4] else 1] -= 1
    T[0][i] = IDLE
    T[1][i] = 0


def flow_add(T, G, i):
    """Point slot i's flow key at slot i in the first free way of its bucket."""
    flows, rqpn, ip = T[8], T[5], T[7]
    b = flow_base(T, G, i)
    free = -1
    for w in range(b, b + G[6]):
        c = flows[w]
        if c < 0:
            if free < 0:
                free = w
        elif rqpn[c] == rqpn[i] and slot_ip_eq(ip, c, i):
            return FLOW_CONFLICT
    if free < 0:
        return FLOW_FULL
    flows[free] = i
    return FLOW_ADDED


def flow_del(T, G, i):
    flows = T[8]
    b = flow_base(T, G, i)
    for w in range(b, b + G[6]):
        if flows[w] == i:
            flows[w] = -1
            return


def flow_find(T, G, ip16, qpn):
    """Slot of the flow (remote IP, remote QPN), -1 when not in the map."""
    flows, rqpn, ip = T[8], T[5], T[7]
    b = (zlib.crc32(spec.flow_key(bytes(ip16), qpn)) & G[5]) * G[6]
    for w in range(b, b + G[6]):
        c = flows[w]
        if c >= 0 and rqpn[c] == qpn and ip_eq(ip, c, ip16):
            return c
    return -1


# --- bindings ----------------------------------------------------------------------------

#: The functions that make up the machine and its p4 storage (rebound together).
FUNCTIONS = ("_event", "_slot_event", "track", "expired", "req", "apply", "flow_insert", "flow_remove", "remove",
             "track_batch", "ip_eq", "ip_word", "ip_set", "slot_ip_eq", "active_base", "passive_base", "flow_base",
             "find_active", "find_passive", "alloc", "release", "flow_add", "flow_del", "flow_find")


def bind(overrides: dict) -> types.SimpleNamespace:
    """The machine's functions with some globals replaced (storage primitives,
    byte helpers): same code objects, another globals dict."""
    g = dict(globals())
    g.update(overrides)
    for name in FUNCTIONS:
        if name not in overrides:
            f = globals()[name]
            g[name] = types.FunctionType(f.__code__, g, name, f.__defaults__)
    return types.SimpleNamespace(**{n: g[n] for n in FUNCTIONS}, globals=g)


P4 = types.SimpleNamespace(**{n: globals()[n] for n in FUNCTIONS})
