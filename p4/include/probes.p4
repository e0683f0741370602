// The tracker's way probes: model/ctcm/dataplane/probes.py as macros, unrolled over the
// ways of a bucket. Included by p4/include/tracker.p4: they read and write the registers
// of CtcmTracker and the locals of its apply block (pr_*: declared there, not here).

// Unrolled loops over the ways of a bucket (WAYS is a compile-time number 1..8).
#define CTCM_CAT_(a, b) a##b
#define CTCM_CAT(a, b) CTCM_CAT_(a, b)
#define WAYS_1(M) M(0)
#define WAYS_2(M) WAYS_1(M) M(1)
#define WAYS_3(M) WAYS_2(M) M(2)
#define WAYS_4(M) WAYS_3(M) M(3)
#define WAYS_5(M) WAYS_4(M) M(4)
#define WAYS_6(M) WAYS_5(M) M(5)
#define WAYS_7(M) WAYS_6(M) M(6)
#define WAYS_8(M) WAYS_7(M) M(7)
#define FOR_WAYS(n, M) CTCM_CAT(WAYS_, n)(M)

// Bucket bases (first slot of the key's bucket): probes.active_base, passive_base, flow_base.
#define ACTIVE_BASE(base, host_id) \
    hash(base, HashAlgorithm.crc32, 32w0, { host_id }, (bit<32>)ACTIVE_BUCKETS); \
    base = base * ACTIVE_WAYS;
#define PASSIVE_BASE(base, ip16, remote_id) \
    hash(base, HashAlgorithm.crc32, 32w0, { ip16, remote_id }, (bit<32>)PASSIVE_BUCKETS); \
    base = ACTIVE_SLOTS + base * PASSIVE_WAYS;
#define FLOW_BASE(base, ip16, qpn24) \
    hash(base, HashAlgorithm.crc32, 32w0, { ip16, qpn24 }, (bit<32>)FLOW_BUCKETS); \
    base = base * FLOW_WAYS;

// The probes: pr_base, pr_key32 (and pr_ip) in; pr_found, pr_slot out.
// probes.find_active: the first way whose lid is the key and state is not IDLE.
#define PROBE_ACTIVE(w) \
    if (pr_found == 0) { \
        conn_lid.read(pr_v32, pr_base + w); conn_state.read(pr_st, pr_base + w); \
        if (pr_v32 == pr_key32 && pr_st != 0) { pr_found = 1; pr_slot = pr_base + w; } \
    }
// probes.find_passive: ... rid is the key, state not IDLE, IP the key's (pr_ip).
#define PROBE_PASSIVE(w) \
    if (pr_found == 0) { \
        conn_rid.read(pr_v32, pr_base + w); conn_state.read(pr_st, pr_base + w); \
        conn_ip_read(pr_base + w, pr_v128); \
        if (pr_v32 == pr_key32 && pr_st != 0 && pr_v128 == pr_ip) { pr_found = 1; pr_slot = pr_base + w; } \
    }
// probes.free_way: the first free way.
#define PROBE_FREE(w) \
    if (pr_found == 0) { \
        conn_state.read(pr_st, pr_base + w); \
        if (pr_st == 0) { pr_found = 1; pr_slot = pr_base + w; } \
    }
// probes.expired_way: the first expired TIMEWAIT way (reclaimed).
#define PROBE_RECLAIM(w) \
    if (pr_found == 0) { \
        conn_state.read(pr_st, pr_base + w); conn_ts.read(pr_ts, pr_base + w); \
        if (pr_st == STATE_TIMEWAIT && meta.now - pr_ts >= meta.timewait_us) { \
            pr_found = 1; pr_reclaimed = 1; pr_slot = pr_base + w; \
        } \
    }
// probes.flow_find: the first way holding a slot with this remote IP and QPN.
#define PROBE_FLOW_FIND(w) \
    if (pr_found == 0) { \
        flow_slot.read(pr_v32, pr_base + w); \
        if (pr_v32 != 0) { \
            conn_rqpn.read(pr_q, pr_v32 - 1); conn_ip_read(pr_v32 - 1, pr_v128); \
            if (pr_q == pr_key32 && pr_v128 == pr_ip) { pr_found = 1; pr_slot = pr_v32 - 1; } \
        } \
    }
// probes.flow_add: the first free way (pr_found, pr_slot = way) and whether the key is
// already there (pr_conflict).
#define PROBE_FLOW_ADD(w) \
    flow_slot.read(pr_v32, pr_base + w); \
    if (pr_v32 == 0) { \
        if (pr_found == 0) { pr_found = 1; pr_slot = pr_base + w; } \
    } else { \
        conn_rqpn.read(pr_q, pr_v32 - 1); conn_ip_read(pr_v32 - 1, pr_v128); \
        if (pr_q == pr_key32 && pr_v128 == pr_ip) { pr_conflict = 1; } \
    }
// probes.flow_del: the way whose value is this slot + 1 is emptied.
#define PROBE_FLOW_REMOVE(w) \
    flow_slot.read(pr_v32, pr_base + w); \
    if (pr_v32 == slot + 1) { flow_slot.write(pr_base + w, 0); }
