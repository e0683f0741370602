"""Compiled state machine for batches of CM messages in ``p4`` mode (optional).

:meth:`ctcm.tracker.Tracker.process_batch` in ``p4`` mode runs the table
work of a whole batch here when numba is installed (``pip install
ctcm[fast]``), and in Python otherwise. This is the same state machine as
:meth:`Tracker.track` -- the transitions come from the same ``_TRANS`` table,
the tables are the tracker's own slot arrays (viewed in place, no copies) --
written as one loop over fixed-size arrays, as the P4 program will be. The
Python path is the reference: tests check that both give the same events,
counters and tables message by message, on damaged traffic and full tables.

Per message the kernel writes result codes (what happened, old and new state,
which identifiers the event shows, flows added or removed); the tracker
turns them into the same :class:`~ctcm.tracker.Event` objects as ``track``.

Set ``CTCM_KERNEL=0`` in the environment to use the Python path always.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["available", "run", "MIN_MESSAGES"]

#: Batches with fewer CM messages run in Python: no compilation for a few
#: messages (the first compiled call in a fresh installation takes seconds;
#: later processes load the compiled code from numba's cache).
MIN_MESSAGES = 1000

# result codes: the index in tracker.RESULTS
R_NEW, R_TRANSITION, R_RETRANSMISSION, R_UNEXPECTED, R_UNKNOWN, R_REFUSED, R_IGNORED = range(7)
# identifier sources for the event's remote IP: the message, the slot, none
IP_MSG, IP_SLOT, IP_NONE = 0, 1, 2
NONE = -1  # absent local/remote comm ID, old/new state
GONE_CODE = -2  # new state: the connection is removed
# special table values (_TRANS): unexpected, retransmission, removal
T_NONE, T_SAME, T_GONE = -1, -2, -3


_HAVE_NUMBA: bool | None = None


def available() -> bool:
    """True when the compiled path can run (numba installed, not disabled by
    ``CTCM_KERNEL=0``). numba itself is imported on the first :func:`run`."""
    global _HAVE_NUMBA
    if os.environ.get("CTCM_KERNEL", "1") == "0":
        return False
    if _HAVE_NUMBA is None:
        import importlib.util

        _HAVE_NUMBA = importlib.util.find_spec("numba") is not None
    return _HAVE_NUMBA


def _crc_table() -> np.ndarray:
    t = np.zeros(256, np.uint32)
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        t[n] = c
    return t


CRC_TABLE = _crc_table()


def _kernel(
    # messages
    dirs, attrs, ips, locs, rems, qpns, mraeds, times,
    # message decoding: per attribute ID, message code (-2: not tracked, -1: MRA) and counter index
    msg_of_attr, counter_of_attr,
    # the tables (views of the tracker's arrays)
    state, flags, lid, rid, lqpn, rqpn, ts, ip, flows,
    # geometry, timing, transitions, constants
    geo, timewait, trans, crc_table, consts,
    # outputs
    o_res, o_msg, o_old, o_new, o_lid, o_ipsrc, o_ip, o_rid,
    o_fa, o_fa_ip, o_fa_rq, o_fa_lq, o_fr, o_fr_ip, o_fr_rq,
    counters, occupancy,
):
    amask, aways, pmask, pways, pbase, fmask, fways = geo[0], geo[1], geo[2], geo[3], geo[4], geo[5], geo[6]
    (C_IGNORED, C_UNKNOWN, C_UNEXPECTED, C_RETRANS, C_TRANSITION, C_NEW, C_REFUSED, C_REMOVED, C_TW_EXPIRED,
     C_TABLE_REFUSALS, C_FLOW_INSERTS, C_FLOW_REMOVALS, C_FLOW_REFUSALS, C_FLOW_CONFLICTS, C_FLOW_ZERO,
     M_REQ, M_REP, M_MRA_REQ, M_MRA_REP, S_REQ_SENT, S_REQ_RCVD, S_ESTABLISHED, S_TIMEWAIT,
     F_LID, F_RID, F_FLOW, F_PASSIVE, FROM_HOST) = (
        consts[0], consts[1], consts[2], consts[3], consts[4], consts[5], consts[6], consts[7], consts[8],
        consts[9], consts[10], consts[11], consts[12], consts[13], consts[14],
        consts[15], consts[16], consts[17], consts[18], consts[19], consts[20], consts[21], consts[22],
        consts[23], consts[24], consts[25], consts[26], consts[27])
    key = np.zeros(20, np.uint8)

    for k in range(dirs.shape[0]):
        d = dirs[k]
        attr = attrs[k]
        now = times[k]
        o_old[k] = NONE
        o_new[k] = NONE
        o_lid[k] = NONE
        o_rid[k] = NONE
        o_ipsrc[k] = IP_NONE
        o_msg[k] = -1
        o_fa[k] = 0
        o_fr[k] = 0
        m = msg_of_attr[attr]
        counters[counter_of_attr[attr]] += 1
        if m == -2:  # not a tracked message: the name is made in Python
            counters[C_IGNORED] += 1
            o_res[k] = R_IGNORED
            continue
        if m == -1:  # MRA: of the REQ, the REP, or else (LAP, reserved): ignored
            if mraeds[k] > 1:
                counters[C_IGNORED] += 1
                o_res[k] = R_IGNORED
                continue
            m = M_MRA_REQ if mraeds[k] == 0 else M_MRA_REP
        o_msg[k] = m
        host = d == FROM_HOST
        i = -1
        loc = locs[k]
        base = 0
        host_id = -1
        peer_id = -1
        if m == M_REQ:
            # find: ACTIVE by the host's comm ID, PASSIVE by (peer IP, peer comm ID)
            if host:
                base = _active_base(key, loc, amask, aways, crc_table)
                i = _find_active(base, aways, lid, state, loc)
            else:
                base = _passive_base(key, ips, k, loc, pbase, pmask, pways, crc_table)
                i = _find_passive(base, pways, rid, state, ip, ips, k, loc)
            if i >= 0 and host and not _ip_eq(ip, i, ips, k):
                # the same local comm ID towards another peer: not this connection
                counters[C_UNEXPECTED] += 1
                o_res[k] = R_UNEXPECTED
                o_old[k] = state[i]
                o_new[k] = state[i]
                _ids(k, i, flags, lid, rid, ip, o_lid, o_rid, o_ipsrc, o_ip, F_LID, F_RID, IP_SLOT)
                continue
        else:
            if host:
                host_id, peer_id = locs[k], rems[k]
            else:
                host_id, peer_id = rems[k], locs[k]
            # lookup: ACTIVE[host id], checked against the peer; else PASSIVE[(peer IP, peer id)]
            i = _find_active(_active_base(key, host_id, amask, aways, crc_table), aways, lid, state, host_id)
            if i < 0 or not _ip_eq(ip, i, ips, k) or ((flags[i] & F_RID) != 0 and rid[i] != peer_id):
                base = _passive_base(key, ips, k, peer_id, pbase, pmask, pways, crc_table)
                i = _find_passive(base, pways, rid, state, ip, ips, k, peer_id)
                if i >= 0 and (flags[i] & F_LID) != 0 and lid[i] != host_id:
                    i = -1
        # a TIMEWAIT connection whose time is up is gone (Tracker._drop_expired)
        if i >= 0 and state[i] == S_TIMEWAIT and now - ts[i] >= timewait:
            _remove(i, state, flags, rqpn, ip, flows, key, fmask, fways, crc_table, counters, occupancy,
                    pbase, o_fr, o_fr_ip, o_fr_rq, k, F_FLOW, C_FLOW_REMOVALS, C_REMOVED, False)
            counters[C_TW_EXPIRED] += 1
            i = -1
        if i < 0 and m != M_REQ:
            counters[C_UNKNOWN] += 1
            o_res[k] = R_UNKNOWN
            continue
        if i < 0:  # a REQ: allocate a free way of the key's bucket, else an expired TIMEWAIT one
            ways = aways if host else pways  # (base: the bucket found above)
            for s in range(base, base + ways):
                if state[s] == 0:
                    i = s
                    break
            if i < 0:
                for s in range(base, base + ways):
                    if state[s] == S_TIMEWAIT and now - ts[s] >= timewait:
                        counters[C_TW_EXPIRED] += 1
                        i = s
                        break
            else:  # a free way: one more connection (a taken-over slot is not)
                occupancy[0 if host else 1] += 1
            if i < 0:
                counters[C_TABLE_REFUSALS] += 1
                counters[C_REFUSED] += 1
                o_res[k] = R_REFUSED
                o_ipsrc[k] = IP_MSG
                if host:
                    o_lid[k] = loc
                else:
                    o_rid[k] = loc
                continue
            for j in range(16):
                ip[16 * i + j] = ips[k, j]
            ts[i] = now
            if host:
                state[i] = S_REQ_SENT
                flags[i] = F_LID
                lid[i] = loc
                rid[i] = 0
                lqpn[i] = qpns[k]
                rqpn[i] = 0
                o_new[k] = S_REQ_SENT
                o_lid[k] = loc
            else:
                state[i] = S_REQ_RCVD
                flags[i] = F_RID | F_PASSIVE
                lid[i] = 0
                rid[i] = loc
                lqpn[i] = 0
                rqpn[i] = qpns[k]
                o_new[k] = S_REQ_RCVD
                o_rid[k] = loc
            counters[C_NEW] += 1
            o_res[k] = R_NEW
            o_ipsrc[k] = IP_MSG
            continue
        # apply the transition of (direction, message, state)
        old = state[i]
        to = trans[d << 8 | m << 4 | old]
        o_old[k] = old
        o_ipsrc[k] = IP_MSG
        if to == T_NONE or to == T_SAME:
            if to == T_NONE:
                counters[C_UNEXPECTED] += 1
                o_res[k] = R_UNEXPECTED
            else:
                counters[C_RETRANS] += 1
                o_res[k] = R_RETRANSMISSION
            o_new[k] = old
            _ids(k, i, flags, lid, rid, ip, o_lid, o_rid, o_ipsrc, o_ip, F_LID, F_RID, IP_MSG)
            continue
        if to == T_GONE:
            _ids(k, i, flags, lid, rid, ip, o_lid, o_rid, o_ipsrc, o_ip, F_LID, F_RID, IP_MSG)
            o_new[k] = GONE_CODE
            _remove(i, state, flags, rqpn, ip, flows, key, fmask, fways, crc_table, counters, occupancy,
                    pbase, o_fr, o_fr_ip, o_fr_rq, k, F_FLOW, C_FLOW_REMOVALS, C_REMOVED, True)
            counters[C_TRANSITION] += 1
            o_res[k] = R_TRANSITION
            continue
        if m == M_REP:  # what a REP records
            if host:
                lqpn[i] = qpns[k]
                lid[i] = host_id
                flags[i] |= F_LID
            else:
                rqpn[i] = qpns[k]
                rid[i] = peer_id
                flags[i] |= F_RID
        state[i] = to
        ts[i] = now
        _ids(k, i, flags, lid, rid, ip, o_lid, o_rid, o_ipsrc, o_ip, F_LID, F_RID, IP_MSG)
        o_new[k] = to
        if to == S_ESTABLISHED:  # the flow (remote IP, remote QPN) -> local QPN
            lq, rq = lqpn[i], rqpn[i]
            if lq == 0 or rq == 0:
                counters[C_FLOW_ZERO] += 1
            else:
                base = _flow_base(key, ip, i, rq, fmask, fways, crc_table)
                free = -1
                conflict = False
                for w in range(base, base + fways):
                    c = flows[w]
                    if c < 0:
                        if free < 0:
                            free = w
                    elif rqpn[c] == rq and _slot_ip_eq(ip, c, i):
                        conflict = True
                        break
                if conflict:
                    counters[C_FLOW_CONFLICTS] += 1
                    counters[C_FLOW_REFUSALS] += 1
                elif free < 0:
                    counters[C_FLOW_REFUSALS] += 1
                else:
                    flows[free] = i
                    flags[i] |= F_FLOW
                    counters[C_FLOW_INSERTS] += 1
                    o_fa[k] = 1
                    for j in range(16):
                        o_fa_ip[k, j] = ip[16 * i + j]
                    o_fa_rq[k] = rq
                    o_fa_lq[k] = lq
        elif to == S_TIMEWAIT:
            _flow_remove(i, flags, rqpn, ip, flows, key, fmask, fways, crc_table, counters, o_fr, o_fr_ip, o_fr_rq,
                         k, F_FLOW, C_FLOW_REMOVALS, True)
        counters[C_TRANSITION] += 1
        o_res[k] = R_TRANSITION


def _crc(key, n, table):
    c = np.uint32(0xFFFFFFFF)
    for j in range(n):
        c = table[(c ^ key[j]) & 0xFF] ^ (c >> np.uint32(8))
    return np.int64(c ^ np.uint32(0xFFFFFFFF))


def _active_base(key, ident, amask, aways, table):
    """First slot of the ACTIVE bucket of a host comm ID (key: its 4 bytes)."""
    for j in range(4):
        key[j] = (ident >> (24 - 8 * j)) & 0xFF
    return (_crc(key, 4, table) & amask) * aways


def _passive_base(key, ips, k, ident, pbase, pmask, pways, table):
    """First slot of the PASSIVE bucket of (message k's peer IP, a peer comm ID)."""
    for j in range(16):
        key[j] = ips[k, j]
    for j in range(4):
        key[16 + j] = (ident >> (24 - 8 * j)) & 0xFF
    return pbase + (_crc(key, 20, table) & pmask) * pways


def _flow_base(key, ip, i, rq, fmask, fways, table):
    """First way of the FLOW bucket of (slot i's remote IP, remote QPN rq)."""
    for j in range(16):
        key[j] = ip[16 * i + j]
    for j in range(3):
        key[16 + j] = (rq >> (16 - 8 * j)) & 0xFF
    return (_crc(key, 19, table) & fmask) * fways


def _find_active(base, ways, lid, state, ident):
    for s in range(base, base + ways):
        if lid[s] == ident and state[s] != 0:
            return s
    return -1


def _find_passive(base, ways, rid, state, ip, ips, k, ident):
    for s in range(base, base + ways):
        if rid[s] == ident and state[s] != 0 and _ip_eq(ip, s, ips, k):
            return s
    return -1


def _ip_eq(ip, s, ips, k):
    for j in range(16):
        if ip[16 * s + j] != ips[k, j]:
            return False
    return True


def _slot_ip_eq(ip, a, b):
    for j in range(16):
        if ip[16 * a + j] != ip[16 * b + j]:
            return False
    return True


def _ids(k, i, flags, lid, rid, ip, o_lid, o_rid, o_ipsrc, o_ip, F_LID, F_RID, ipsrc):
    """The event shows the slot's comm IDs (where known) and, for IP_SLOT, its IP."""
    f = flags[i]
    o_lid[k] = lid[i] if f & F_LID else NONE
    o_rid[k] = rid[i] if f & F_RID else NONE
    o_ipsrc[k] = ipsrc
    if ipsrc == IP_SLOT:
        for j in range(16):
            o_ip[k, j] = ip[16 * i + j]


def _flow_remove(i, flags, rqpn, ip, flows, key, fmask, fways, table, counters, o_fr, o_fr_ip, o_fr_rq, k,
                 F_FLOW, C_FLOW_REMOVALS, report):
    if (flags[i] & F_FLOW) == 0:
        return
    rq = rqpn[i]
    base = _flow_base(key, ip, i, rq, fmask, fways, table)
    for w in range(base, base + fways):
        c = flows[w]
        if c >= 0 and rqpn[c] == rq and _slot_ip_eq(ip, c, i):
            flows[w] = -1
            break
    flags[i] &= ~F_FLOW
    counters[C_FLOW_REMOVALS] += 1
    if report:
        o_fr[k] = 1
        for j in range(16):
            o_fr_ip[k, j] = ip[16 * i + j]
        o_fr_rq[k] = rq


def _remove(i, state, flags, rqpn, ip, flows, key, fmask, fways, table, counters, occupancy, pbase,
            o_fr, o_fr_ip, o_fr_rq, k, F_FLOW, C_FLOW_REMOVALS, C_REMOVED, report):
    _flow_remove(i, flags, rqpn, ip, flows, key, fmask, fways, table, counters, o_fr, o_fr_ip, o_fr_rq, k,
                 F_FLOW, C_FLOW_REMOVALS, report)
    occupancy[1 if i >= pbase else 0] -= 1
    state[i] = 0
    flags[i] = 0
    counters[C_REMOVED] += 1


_COMPILED = None


def _compile():
    """The kernel compiled by numba (once per process; cached on disk by numba)."""
    global _COMPILED
    if _COMPILED is None:
        import numba

        g = globals()
        opts = dict(cache=True, nogil=True)
        for name in ("_crc", "_ip_eq", "_slot_ip_eq", "_active_base", "_passive_base", "_flow_base", "_find_active",
                     "_find_passive"):
            g[name] = numba.njit(inline="always", **opts)(g[name])
        for name in ("_ids", "_flow_remove", "_remove"):
            g[name] = numba.njit(**opts)(g[name])
        _COMPILED = numba.njit(**opts)(_kernel)
    return _COMPILED


def run(*args) -> None:
    """Run the kernel (see :meth:`ctcm.tracker.Tracker.process_batch`)."""
    _compile()(*args)
