// The tracker: machine.track (model/ctcm/dataplane/machine.py) as a control, with the same
// stages in the same order under the same names, and its registers (machine.Tables).
// Probes over BUCKETS x WAYS ways (p4/include/probes.p4) mirror model/ctcm/dataplane/probes.py.
//
// CtcmIngress applies it for (a) a CM MAD with a good ICRC (meta.tracker_op == TRACKER_TRACK)
// and (b) CE data from the host side (TRACKER_CE: the flow lookup and pacing):
//
//   stage           P4 (this file)                         model
//   1 fields        // --- 1 fields                         cmfields.cm_fields
//   2 message       // --- 2 message (CtcmMessage)          machine.message
//   3 lookup        // --- 3 lookup                         machine.lookup
//   4 expire        // --- 4 expire                         machine.expire
//   5 admit         // --- 5 admit                          machine.admit
//   6 transition    // --- 6 transition (CtcmNext)          machine.transition
//   7 flow_insert   // --- 7 flow_insert                    machine.flow_insert
//   8 flow_remove   // --- 8 flow_remove                    machine.flow_remove
//   9 release       // --- 9 release                        machine.release
//   CE              // --- flow lookup, pacing              probes.flow_find, Pipeline.process
//
// A connection is one slot of per-field register arrays: slots [0, ACTIVE_SLOTS) are the
// ACTIVE table (opened by a REQ from the host, key: host comm ID), [ACTIVE_SLOTS, SLOTS)
// the PASSIVE table (opened by the network, key: remote IP + remote comm ID).
// slot = base + bucket * WAYS + way, bucket = CRC-32 of the key bytes (spec.KEY_LAYOUTS)
// mod BUCKETS. A way is free when its state is 0 (IDLE).

#define TRACKER_NONE 0
#define TRACKER_TRACK 1     // a CM MAD with a good ICRC
#define TRACKER_CE 2        // CE data from the host side: flow lookup + pacing

#include "probes.p4"

control CtcmTracker(inout headers_t hdr, inout meta_t meta) {
    // machine.Tables: one index per slot
    register<bit<8>>(SLOTS) conn_state;      // spec.State
    register<bit<8>>(SLOTS) conn_flags;      // spec.Flag: LID 1, RID 2, FLOW 4, PASSIVE 8
    register<bit<32>>(SLOTS) conn_lid;       // local (host) comm ID
    register<bit<32>>(SLOTS) conn_rid;       // remote comm ID
    register<bit<32>>(SLOTS) conn_lqpn;      // local QPN
    register<bit<32>>(SLOTS) conn_rqpn;      // remote QPN
    register<bit<48>>(SLOTS) conn_ts;        // time of the last transition (µs)
    // remote IP, IPv4 as ::ffff:a.b.c.d: four 32-bit words a slot, index 4 * slot + w,
    // w = 0 most significant (32-bit registers: readable through bmv2's Thrift API)
    register<bit<32>>(4 * SLOTS) conn_ip;
    // The FLOW table: FLOW_BUCKETS x FLOW_WAYS ways, each the connection slot + 1
    // (0 = empty). Its key (remote IP, remote QPN) and value (local QPN) are read from that slot.
    register<bit<32>>(FLOW_SLOTS) flow_slot;
    // CNP pacing per slot: time of the flow's last CNP + 1 (0 = none); cleared when the
    // slot's flow entry is made or removed (flow_insert, flow_remove).
    register<bit<48>>(SLOTS) last_cnp;

    CtcmMessage() message;      // spec.MESSAGES (generated const entries)
    CtcmNext() next_state;      // spec.TRANSITIONS (generated const entries)

    action conn_ip_read(in bit<32> s, out bit<128> ip) {
        bit<32> w0; bit<32> w1; bit<32> w2; bit<32> w3;
        conn_ip.read(w0, 4 * s);
        conn_ip.read(w1, 4 * s + 1);
        conn_ip.read(w2, 4 * s + 2);
        conn_ip.read(w3, 4 * s + 3);
        ip = w0 ++ w1 ++ w2 ++ w3;
    }

    action conn_ip_write(in bit<32> s, in bit<128> ip) {
        conn_ip.write(4 * s, ip[127:96]);
        conn_ip.write(4 * s + 1, ip[95:64]);
        conn_ip.write(4 * s + 2, ip[63:32]);
        conn_ip.write(4 * s + 3, ip[31:0]);
    }

    // machine.release: the connection in the slot is gone, the slot is free
    action release(in bit<32> s) {
        conn_state.write(s, STATE_IDLE);
        conn_flags.write(s, 0);
        ctcm_counters.count(CTR_REMOVED);
    }

    apply {
        // probe variables
        bit<32> pr_base = 0;
        bit<32> pr_key32 = 0;
        bit<128> pr_ip = 0;
        bit<1> pr_found = 0;
        bit<32> pr_slot = 0;
        bit<1> pr_conflict = 0;
        bit<1> pr_reclaimed = 0;
        bit<8> pr_st = 0;
        bit<32> pr_v32 = 0;
        bit<32> pr_q = 0;
        bit<128> pr_v128 = 0;
        bit<48> pr_ts = 0;
        // the stages' results
        bit<1> done = 0;
        bit<1> found = 0;
        bit<32> slot = 0;
        bit<8> flags = 0;
        bit<32> v32 = 0;
        bit<128> ip = 0;

        if (meta.tracker_op == TRACKER_TRACK) {
            // --- 1 fields (cmfields.cm_fields) --------------------------------------------
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

            // --- 2 message (machine.message) -------------------------------------------------
            bit<8> msg;
            bit<32> ctr;
            message.apply(meta.attr, meta.mraed, msg, ctr);
            ctcm_counters.count(ctr);
            if (msg == MSG_NONE) {
                ctcm_counters.count(CTR_IGNORED);
                done = 1;
            }
            // the host's comm ID and the peer's
            bit<32> host_id = meta.from_host == 1 ? meta.msg_local : meta.msg_remote;
            bit<32> peer_id = meta.from_host == 1 ? meta.msg_remote : meta.msg_local;

            // --- 3 lookup (machine.lookup) ---------------------------------------------------
            if (done == 0) {
                pr_found = 0;
                pr_ip = meta.peer_ip;
                if (msg == MSG_REQ) {
                    // ACTIVE[host id] from the host, PASSIVE[(peer IP, peer id)] from the network
                    if (meta.from_host == 1) {
                        pr_key32 = host_id;
                        ACTIVE_BASE(pr_base, pr_key32)
                        FOR_WAYS(ACTIVE_WAYS, PROBE_ACTIVE)
                    } else {
                        pr_key32 = peer_id;
                        PASSIVE_BASE(pr_base, pr_ip, pr_key32)
                        FOR_WAYS(PASSIVE_WAYS, PROBE_PASSIVE)
                    }
                } else {
                    // ACTIVE[host id] when its IP is the peer's and its remote comm ID, once
                    // known, the peer's; else PASSIVE[(peer IP, peer id)] when its local
                    // comm ID, once known, is the host's
                    pr_key32 = host_id;
                    ACTIVE_BASE(pr_base, pr_key32)
                    FOR_WAYS(ACTIVE_WAYS, PROBE_ACTIVE)
                    if (pr_found == 1) {
                        conn_ip_read(pr_slot, ip);
                        conn_flags.read(flags, pr_slot);
                        conn_rid.read(v32, pr_slot);
                        if (ip != meta.peer_ip || ((flags & FLAG_RID) != 0 && v32 != peer_id)) {
                            pr_found = 0;
                        }
                    }
                    if (pr_found == 0) {
                        pr_key32 = peer_id;
                        PASSIVE_BASE(pr_base, pr_ip, pr_key32)
                        FOR_WAYS(PASSIVE_WAYS, PROBE_PASSIVE)
                        if (pr_found == 1) {
                            conn_flags.read(flags, pr_slot);
                            conn_lid.read(v32, pr_slot);
                            if ((flags & FLAG_LID) != 0 && v32 != host_id) {
                                pr_found = 0;
                            }
                        }
                    }
                }
                found = pr_found;
                slot = pr_slot;
                if (found == 1 && msg == MSG_REQ && meta.from_host == 1) {
                    conn_ip_read(slot, ip);
                    if (ip != meta.peer_ip) {
                        // a REQ with the same local comm ID towards another peer: not this connection
                        ctcm_counters.count(CTR_UNEXPECTED);
                        done = 1;
                    }
                }
            }

            // --- 4 expire (machine.expire) ---------------------------------------------------
            if (done == 0 && found == 1) {
                bit<8> st;
                bit<48> ts;
                conn_state.read(st, slot);
                conn_ts.read(ts, slot);
                if (st == STATE_TIMEWAIT && meta.now - ts >= meta.timewait_us) {
                    // its flow entry went on entering TIMEWAIT: only the release
                    release(slot);
                    ctcm_counters.count(CTR_TIMEWAIT_EXPIRED);
                    found = 0;
                }
            }

            // --- 5 admit (machine.admit) -----------------------------------------------------
            if (done == 0 && found == 0) {
                done = 1;
                if (msg != MSG_REQ) {
                    ctcm_counters.count(CTR_UNKNOWN);
                } else {
                    // a free way of the new key's bucket, else an expired TIMEWAIT way, else refused
                    pr_found = 0;
                    pr_reclaimed = 0;
                    pr_key32 = meta.msg_local;
                    if (meta.from_host == 1) {
                        ACTIVE_BASE(pr_base, pr_key32)
                        FOR_WAYS(ACTIVE_WAYS, PROBE_FREE)
                        FOR_WAYS(ACTIVE_WAYS, PROBE_RECLAIM)
                    } else {
                        PASSIVE_BASE(pr_base, pr_ip, pr_key32)
                        FOR_WAYS(PASSIVE_WAYS, PROBE_FREE)
                        FOR_WAYS(PASSIVE_WAYS, PROBE_RECLAIM)
                    }
                    if (pr_reclaimed == 1) {
                        ctcm_counters.count(CTR_TIMEWAIT_EXPIRED);
                    }
                    if (pr_found == 0) {
                        ctcm_counters.count(CTR_TABLE_REFUSALS);
                        ctcm_counters.count(CTR_REFUSED);
                    } else {
                        conn_ip_write(pr_slot, meta.peer_ip);
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

            // --- 6 transition (machine.transition) -------------------------------------------
            bit<8> to = OUTCOME_UNEXPECTED;
            if (done == 0) {
                bit<8> old;
                conn_state.read(old, slot);
                next_state.apply(meta.dir, msg, old, to);
                if (to == OUTCOME_UNEXPECTED) {
                    ctcm_counters.count(CTR_UNEXPECTED);
                } else if (to == OUTCOME_SAME) {
                    ctcm_counters.count(CTR_RETRANSMISSION);
                } else {
                    ctcm_counters.count(CTR_TRANSITION);
                    if (to != OUTCOME_GONE) {
                        if (msg == MSG_REP) {   // what a REP records: the sender's QPN and comm ID
                            conn_flags.read(flags, slot);
                            if (meta.from_host == 1) {
                                conn_lqpn.write(slot, meta.qpn);
                                conn_lid.write(slot, host_id);
                                conn_flags.write(slot, flags | FLAG_LID);
                            } else {
                                conn_rqpn.write(slot, meta.qpn);
                                conn_rid.write(slot, peer_id);
                                conn_flags.write(slot, flags | FLAG_RID);
                            }
                        }
                        conn_state.write(slot, to);
                        conn_ts.write(slot, meta.now);
                    }
                }
            }

            // --- 7 flow_insert (machine.flow_insert) -----------------------------------------
            if (to == STATE_ESTABLISHED) {
                bit<32> lq;
                bit<32> rq;
                conn_lqpn.read(lq, slot);
                conn_rqpn.read(rq, slot);
                if (lq == 0 || rq == 0) {
                    ctcm_counters.count(CTR_FLOW_ZERO_QPN);
                } else {
                    conn_ip_read(slot, pr_ip);
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
                        flow_slot.write(pr_slot, slot + 1);
                        conn_flags.read(flags, slot);
                        conn_flags.write(slot, flags | FLAG_FLOW);
                        last_cnp.write(slot, 0);
                        ctcm_counters.count(CTR_FLOW_INSERTS);
                    }
                }
            }

            // --- 8 flow_remove (machine.flow_remove) -----------------------------------------
            if (to == STATE_TIMEWAIT || to == OUTCOME_GONE) {
                conn_flags.read(flags, slot);
                if ((flags & FLAG_FLOW) != 0) {
                    bit<32> rq;
                    conn_ip_read(slot, pr_ip);
                    conn_rqpn.read(rq, slot);
                    FLOW_BASE(pr_base, pr_ip, rq[23:0])
                    FOR_WAYS(FLOW_WAYS, PROBE_FLOW_REMOVE)
                    conn_flags.write(slot, flags & ~((bit<8>)FLAG_FLOW));
                    last_cnp.write(slot, 0);    // the pacing time goes with the flow entry
                    ctcm_counters.count(CTR_FLOW_REMOVALS);
                }
            }

            // --- 9 release (machine.release) -------------------------------------------------
            if (to == OUTCOME_GONE) {
                release(slot);
            }
        } else if (meta.tracker_op == TRACKER_CE) {
            // --- flow lookup (probes.flow_find): the flow entry's connection slot ------------
            pr_ip = meta.peer_ip;
            pr_key32 = (bit<32>)meta.ce_dqpn;
            pr_found = 0;
            FLOW_BASE(pr_base, pr_ip, meta.ce_dqpn)
            FOR_WAYS(FLOW_WAYS, PROBE_FLOW_FIND)
            bit<32> lqpn = 0;
            if (pr_found == 1) {
                conn_lqpn.read(lqpn, pr_slot);
            }
            meta.cnp_send = 0;
            if (lqpn == 0) {
                ctcm_counters.count(CTR_CE_UNTRACKED);  // "CE on an untracked flow: no CNP"
            } else {
                // --- pacing (Pipeline.process): at most one CNP per flow per cnp_interval_us
                // (0: off), last_cnp[slot] = time of the last CNP + 1, 0 = none
                meta.cnp_send = 1;
                meta.cnp_dqpn = lqpn[23:0];
                if (meta.cnp_interval_us != 0) {
                    bit<48> last;
                    last_cnp.read(last, pr_slot);
                    if (last != 0 && meta.now - (last - 1) < meta.cnp_interval_us) {
                        meta.cnp_send = 0;
                        ctcm_counters.count(CTR_CNP_SUPPRESSED);
                    } else {
                        last_cnp.write(pr_slot, meta.now + 1);
                    }
                }
            }
        }
    }
}
