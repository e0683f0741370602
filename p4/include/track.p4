// Tracker.process + machine.track (model/ctcm/dataplane/machine.py, p4 mode; the same functions
// numba compiles for batches) for one CM MAD with a good ICRC. Included in CtcmIngress.apply, after
// PROBE_VARS; uses the registers and probes of p4/include/tracker.p4.
//
// One pass, in phases; each phase is a block that runs at most once, so the
// transition table (CtcmNext) is applied once and every register access is in
// program order:
//   1 fields       Tracker.process: attribute, peer IP, comm IDs, QPN, message MRAed
//   2 message      machine.track: count cm_<attribute>, ignore untracked messages
//   3 lookup       machine.req (find_active / find_passive) or machine.track's lookup
//   4 expiry       machine.expired, then remove: an expired TIMEWAIT is gone
//   5 new / none   machine.req + alloc: allocate (free way, else expired TIMEWAIT, else refuse);
//                  other messages without a connection: unknown
//   6 apply        machine.apply: the TRANSITIONS row of (direction, message, state)
//   7 flow insert  machine.flow_insert / flow_add
//   8 flow remove  machine.flow_remove / flow_del
//   9 release      machine.remove / release
{
    // --- 1 fields (Tracker.process) ----------------------------------------------
    meta.attr = hdr.mad.attr_id;
    if (hdr.ipv4.isValid()) {   // the peer: destination of what the host sends, source of what it receives
        meta.peer_ip = 80w0 ++ 16w0xffff ++ (meta.from_host == 1 ? hdr.ipv4.dst : hdr.ipv4.src);
    } else {
        meta.peer_ip = meta.from_host == 1 ? hdr.ipv6.dst : hdr.ipv6.src;
    }
    meta.msg_local = CM_LOCAL_COMM_ID(hdr.cm);
    meta.msg_remote = CM_REMOTE_COMM_ID(hdr.cm);
    meta.qpn = 0;
    if (meta.attr == ATTR_REQ) {
        meta.qpn = (bit<32>)CM_REQ_LOCAL_QPN(hdr.cm);
    } else if (meta.attr == ATTR_REP) {
        meta.qpn = (bit<32>)CM_REP_LOCAL_QPN(hdr.cm);
    }
    meta.mraed = meta.attr == ATTR_MRA ? CM_MRA_MESSAGE_MRAED(hdr.cm) : 2w0;

    // --- 2 message (machine.track) -----------------------------------------------
    bit<8> tk_msg = MSG_NONE;
    bit<1> tk_done = 0;
    if (meta.attr == ATTR_REQ) { ctcm_counters.count(CTR_CM_REQ); tk_msg = MSG_REQ; }
    else if (meta.attr == ATTR_MRA) {
        ctcm_counters.count(CTR_CM_MRA);
        if (meta.mraed == 0) { tk_msg = MSG_MRA_REQ; }
        else if (meta.mraed == 1) { tk_msg = MSG_MRA_REP; }      // MRA of a LAP (or reserved): ignored
    }
    else if (meta.attr == ATTR_REJ) { ctcm_counters.count(CTR_CM_REJ); tk_msg = MSG_REJ; }
    else if (meta.attr == ATTR_REP) { ctcm_counters.count(CTR_CM_REP); tk_msg = MSG_REP; }
    else if (meta.attr == ATTR_RTU) { ctcm_counters.count(CTR_CM_RTU); tk_msg = MSG_RTU; }
    else if (meta.attr == ATTR_DREQ) { ctcm_counters.count(CTR_CM_DREQ); tk_msg = MSG_DREQ; }
    else if (meta.attr == ATTR_DREP) { ctcm_counters.count(CTR_CM_DREP); tk_msg = MSG_DREP; }
    else if (meta.attr == ATTR_SIDR_REQ) { ctcm_counters.count(CTR_CM_SIDR_REQ); }
    else if (meta.attr == ATTR_SIDR_REP) { ctcm_counters.count(CTR_CM_SIDR_REP); }
    else if (meta.attr == ATTR_LAP) { ctcm_counters.count(CTR_CM_LAP); }
    else if (meta.attr == ATTR_APR) { ctcm_counters.count(CTR_CM_APR); }
    else { ctcm_counters.count(CTR_CM_OTHER); }
    if (tk_msg == MSG_NONE) {
        ctcm_counters.count(CTR_IGNORED);
        tk_done = 1;
    }
    // the host's comm ID and the peer's, from the sender's point of view
    bit<32> host_id = meta.from_host == 1 ? meta.msg_local : meta.msg_remote;
    bit<32> peer_id = meta.from_host == 1 ? meta.msg_remote : meta.msg_local;

    // --- 3 lookup ---------------------------------------------------------------------
    bit<1> tk_found = 0;
    bit<32> tk_slot = 0;
    bit<128> tk_ip = 0;
    bit<8> tk_flags = 0;
    bit<32> tk_v32 = 0;
    if (tk_done == 0) {
        if (tk_msg == MSG_REQ) {
            // machine.req: ACTIVE[msg local] for the host, PASSIVE[(peer IP, msg local)] for the network
            pr_found = 0;
            if (meta.from_host == 1) {
                pr_key32 = meta.msg_local;
                ACTIVE_BASE(pr_base, pr_key32)
                FOR_WAYS(ACTIVE_WAYS, PROBE_ACTIVE)
                if (pr_found == 1) {
                    conn_ip.read(tk_ip, pr_slot);
                    if (tk_ip != meta.peer_ip) {
                        // the same local comm ID towards another peer: not this connection
                        ctcm_counters.count(CTR_UNEXPECTED);
                        tk_done = 1;
                    }
                }
            } else {
                pr_key32 = meta.msg_local;
                pr_ip = meta.peer_ip;
                PASSIVE_BASE(pr_base, pr_ip, pr_key32)
                FOR_WAYS(PASSIVE_WAYS, PROBE_PASSIVE)
            }
            tk_found = pr_found;
            tk_slot = pr_slot;
        } else {
            // ACTIVE[host id], accepted when its remote IP is the peer's and its remote
            // comm ID, once known, is the peer's; else PASSIVE[(peer IP, peer id)],
            // accepted when its local comm ID, once known, is the host's
            pr_found = 0;
            pr_key32 = host_id;
            ACTIVE_BASE(pr_base, pr_key32)
            FOR_WAYS(ACTIVE_WAYS, PROBE_ACTIVE)
            if (pr_found == 1) {
                conn_ip.read(tk_ip, pr_slot);
                conn_flags.read(tk_flags, pr_slot);
                conn_rid.read(tk_v32, pr_slot);
                if (tk_ip != meta.peer_ip || ((tk_flags & FLAG_RID) != 0 && tk_v32 != peer_id)) {
                    pr_found = 0;
                }
            }
            if (pr_found == 0) {
                pr_key32 = peer_id;
                pr_ip = meta.peer_ip;
                PASSIVE_BASE(pr_base, pr_ip, pr_key32)
                FOR_WAYS(PASSIVE_WAYS, PROBE_PASSIVE)
                if (pr_found == 1) {
                    conn_flags.read(tk_flags, pr_slot);
                    conn_lid.read(tk_v32, pr_slot);
                    if ((tk_flags & FLAG_LID) != 0 && tk_v32 != host_id) {
                        pr_found = 0;
                    }
                }
            }
            tk_found = pr_found;
            tk_slot = pr_slot;
        }
    }

    // --- 4 expiry (machine.expired, remove) ---------------------------------------------
    if (tk_done == 0 && tk_found == 1) {
        bit<8> st;
        bit<48> ts;
        conn_state.read(st, tk_slot);
        conn_ts.read(ts, tk_slot);
        if (st == STATE_TIMEWAIT && meta.now - ts >= meta.timewait_us) {
            // remove: its flow entry went on entering TIMEWAIT, so only the release
            conn_state.write(tk_slot, STATE_IDLE);
            conn_flags.write(tk_slot, 0);
            ctcm_counters.count(CTR_REMOVED);
            ctcm_counters.count(CTR_TIMEWAIT_EXPIRED);
            tk_found = 0;
        }
    }

    // --- 5 new connection (machine.req, alloc) or unknown ----------------------------------------
    if (tk_done == 0 && tk_found == 0) {
        tk_done = 1;
        if (tk_msg != MSG_REQ) {
            ctcm_counters.count(CTR_UNKNOWN);
        } else {
            pr_found = 0;
            if (meta.from_host == 1) {
                pr_key32 = meta.msg_local;
                ACTIVE_BASE(pr_base, pr_key32)
                FOR_WAYS(ACTIVE_WAYS, PROBE_FREE)
                FOR_WAYS(ACTIVE_WAYS, PROBE_RECLAIM)
            } else {
                pr_key32 = meta.msg_local;
                pr_ip = meta.peer_ip;
                PASSIVE_BASE(pr_base, pr_ip, pr_key32)
                FOR_WAYS(PASSIVE_WAYS, PROBE_FREE)
                FOR_WAYS(PASSIVE_WAYS, PROBE_RECLAIM)
            }
            // PROBE_RECLAIM runs only when PROBE_FREE found nothing; a taken slot in
            // TIMEWAIT state is a reclaimed one
            bit<8> st;
            if (pr_found == 1) {
                conn_state.read(st, pr_slot);
                if (st != STATE_IDLE) {
                    ctcm_counters.count(CTR_TIMEWAIT_EXPIRED);
                }
            }
            if (pr_found == 0) {
                ctcm_counters.count(CTR_TABLE_REFUSALS);
                ctcm_counters.count(CTR_REFUSED);
            } else {
                conn_ip.write(pr_slot, meta.peer_ip);
                conn_ts.write(pr_slot, meta.now);
                if (meta.from_host == 1) {
                    conn_state.write(pr_slot, STATE_REQ_SENT);
                    conn_flags.write(pr_slot, FLAG_LID);
                    conn_lid.write(pr_slot, meta.msg_local);
                    conn_rid.write(pr_slot, 0);
                    conn_lqpn.write(pr_slot, meta.qpn);
                    conn_rqpn.write(pr_slot, 0);
                } else {
                    conn_state.write(pr_slot, STATE_REQ_RCVD);
                    conn_flags.write(pr_slot, FLAG_RID | FLAG_PASSIVE);
                    conn_lid.write(pr_slot, 0);
                    conn_rid.write(pr_slot, meta.msg_local);
                    conn_lqpn.write(pr_slot, 0);
                    conn_rqpn.write(pr_slot, meta.qpn);
                }
                ctcm_counters.count(CTR_NEW);
            }
        }
    }

    // --- 6 apply (machine.apply) ---------------------------------------------------------
    bit<1> tk_flow_insert = 0;
    bit<1> tk_flow_remove = 0;
    bit<1> tk_release = 0;
    bit<8> tk_next = OUTCOME_UNEXPECTED;
    if (tk_done == 0) {
        bit<8> old;
        conn_state.read(old, tk_slot);
        next_state.apply(meta.dir, tk_msg, old, tk_next);
        if (tk_next == OUTCOME_UNEXPECTED) {
            ctcm_counters.count(CTR_UNEXPECTED);
        } else if (tk_next == OUTCOME_SAME) {
            ctcm_counters.count(CTR_RETRANSMISSION);
        } else {
            ctcm_counters.count(CTR_TRANSITION);
            if (tk_next == OUTCOME_GONE) {
                tk_flow_remove = 1;
                tk_release = 1;
            } else {
                // records made by the message: a REP records the sender's QPN and comm ID
                if (tk_msg == MSG_REP) {
                    conn_flags.read(tk_flags, tk_slot);
                    if (meta.from_host == 1) {
                        conn_lqpn.write(tk_slot, meta.qpn);
                        conn_lid.write(tk_slot, host_id);
                        conn_flags.write(tk_slot, tk_flags | FLAG_LID);
                    } else {
                        conn_rqpn.write(tk_slot, meta.qpn);
                        conn_rid.write(tk_slot, peer_id);
                        conn_flags.write(tk_slot, tk_flags | FLAG_RID);
                    }
                }
                conn_state.write(tk_slot, tk_next);
                conn_ts.write(tk_slot, meta.now);
                if (tk_next == STATE_ESTABLISHED) {
                    tk_flow_insert = 1;
                } else if (tk_next == STATE_TIMEWAIT) {
                    tk_flow_remove = 1;
                }
            }
        }
    }

    // --- 7 flow insert (machine.flow_insert, flow_add) ---------------------------
    if (tk_flow_insert == 1) {
        bit<32> lq;
        bit<32> rq;
        conn_lqpn.read(lq, tk_slot);
        conn_rqpn.read(rq, tk_slot);
        if (lq == 0 || rq == 0) {
            ctcm_counters.count(CTR_FLOW_ZERO_QPN);
        } else {
            conn_ip.read(pr_ip, tk_slot);
            pr_key32 = rq;
            pr_found = 0;
            pr_conflict = 0;
            FLOW_BASE(pr_base, pr_ip, rq[23:0])
            FOR_WAYS(FLOW_WAYS, PROBE_FLOW_ADD)
            if (pr_conflict == 1) {
                // another connection has this (remote IP, remote QPN)
                ctcm_counters.count(CTR_FLOW_CONFLICTS);
                ctcm_counters.count(CTR_FLOW_REFUSALS);
            } else if (pr_found == 0) {
                ctcm_counters.count(CTR_FLOW_REFUSALS);
            } else {
                flow_slot.write(pr_slot, tk_slot + 1);
                conn_flags.read(tk_flags, tk_slot);
                conn_flags.write(tk_slot, tk_flags | FLAG_FLOW);
                last_cnp.write(tk_slot, 0);
                ctcm_counters.count(CTR_FLOW_INSERTS);
            }
        }
    }

    // --- 8 flow remove (machine.flow_remove, flow_del) -------------------------
    if (tk_flow_remove == 1) {
        conn_flags.read(tk_flags, tk_slot);
        if ((tk_flags & FLAG_FLOW) != 0) {
            bit<32> rq;
            conn_ip.read(pr_ip, tk_slot);
            conn_rqpn.read(rq, tk_slot);
            pr_key32 = rq;
            pr_found = 0;
            FLOW_BASE(pr_base, pr_ip, rq[23:0])
            FOR_WAYS(FLOW_WAYS, PROBE_FLOW_REMOVE)
            conn_flags.write(tk_slot, tk_flags & ~((bit<8>)FLAG_FLOW));
            last_cnp.write(tk_slot, 0);    // the pacing time goes with the flow entry
            ctcm_counters.count(CTR_FLOW_REMOVALS);
        }
    }

    // --- 9 release (machine.remove, release) --------------------------------------
    if (tk_release == 1) {
        conn_state.write(tk_slot, STATE_IDLE);
        conn_flags.write(tk_slot, 0);
        ctcm_counters.count(CTR_REMOVED);
    }
}
