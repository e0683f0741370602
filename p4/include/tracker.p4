// The tracker's storage and probes: mirrors the p4 table mode of ctcm.dataplane.tracker
// (model/ctcm/dataplane/storage.py p4_tables and the p4 probes of model/ctcm/dataplane/machine.py).
// Included inside CtcmIngress (declarations); p4/include/track.p4 is machine.track.
//
// A connection is one slot of per-field register arrays (storage.p4_tables):
// slots [0, ACTIVE_SLOTS) are the ACTIVE table (opened by a REQ from the host,
// key: host comm ID), [ACTIVE_SLOTS, SLOTS) the PASSIVE table (opened by the
// network, key: remote IP + remote comm ID). slot = base + bucket * WAYS + way,
// bucket = CRC-32 of the key bytes (spec.KEY_LAYOUTS) mod BUCKETS. A way is
// free when its state is 0 (IDLE).
register<bit<8>>(SLOTS) conn_state;      // spec.State
register<bit<8>>(SLOTS) conn_flags;      // spec.Flag: LID 1, RID 2, FLOW 4, PASSIVE 8
register<bit<32>>(SLOTS) conn_lid;       // local (host) comm ID
register<bit<32>>(SLOTS) conn_rid;       // remote comm ID
register<bit<32>>(SLOTS) conn_lqpn;      // local QPN
register<bit<32>>(SLOTS) conn_rqpn;      // remote QPN
register<bit<48>>(SLOTS) conn_ts;        // time of the last transition (µs)
register<bit<128>>(SLOTS) conn_ip;       // remote IP, IPv4 as ::ffff:a.b.c.d
// The FLOW table: FLOW_BUCKETS x FLOW_WAYS ways, each the connection slot + 1
// (0 = empty; the model stores the slot, -1 = empty). Its key (remote IP, remote
// QPN) and value (local QPN) are read from that slot.
register<bit<32>>(FLOW_SLOTS) flow_slot;
// CNP pacing, per connection slot: time of the flow's last CNP + 1 (0 = none).
// Cleared when the slot's flow entry is made or removed (the model's
// Pipeline._last_cnp entry lives exactly as long as the flow entry).
register<bit<48>>(SLOTS) last_cnp;

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

// Bucket bases (first slot of the key's bucket).
#define ACTIVE_BASE(base, host_id) \
    hash(base, HashAlgorithm.crc32, 32w0, { host_id }, (bit<32>)ACTIVE_BUCKETS); \
    base = base * ACTIVE_WAYS;
#define PASSIVE_BASE(base, ip16, remote_id) \
    hash(base, HashAlgorithm.crc32, 32w0, { ip16, remote_id }, (bit<32>)PASSIVE_BUCKETS); \
    base = ACTIVE_SLOTS + base * PASSIVE_WAYS;
#define FLOW_BASE(base, ip16, qpn24) \
    hash(base, HashAlgorithm.crc32, 32w0, { ip16, qpn24 }, (bit<32>)FLOW_BUCKETS); \
    base = base * FLOW_WAYS;

// machine.find_active: the first way whose lid is the key and state is not IDLE.
// Variables: pr_base, pr_key32 in; pr_found, pr_slot out; pr_st, pr_v32 scratch.
#define PROBE_ACTIVE(w) \
    if (pr_found == 0) { \
        conn_lid.read(pr_v32, pr_base + w); conn_state.read(pr_st, pr_base + w); \
        if (pr_v32 == pr_key32 && pr_st != 0) { pr_found = 1; pr_slot = pr_base + w; } \
    }
// machine.find_passive: ... rid is the key, state not IDLE, ip is the key's IP (pr_ip).
#define PROBE_PASSIVE(w) \
    if (pr_found == 0) { \
        conn_rid.read(pr_v32, pr_base + w); conn_state.read(pr_st, pr_base + w); \
        conn_ip.read(pr_v128, pr_base + w); \
        if (pr_v32 == pr_key32 && pr_st != 0 && pr_v128 == pr_ip) { pr_found = 1; pr_slot = pr_base + w; } \
    }
// machine.alloc, first loop: the first free way.
#define PROBE_FREE(w) \
    if (pr_found == 0) { \
        conn_state.read(pr_st, pr_base + w); \
        if (pr_st == 0) { pr_found = 1; pr_slot = pr_base + w; } \
    }
// machine.alloc, second loop: the first expired TIMEWAIT way.
#define PROBE_RECLAIM(w) \
    if (pr_found == 0) { \
        conn_state.read(pr_st, pr_base + w); conn_ts.read(pr_ts, pr_base + w); \
        if (pr_st == STATE_TIMEWAIT && meta.now - pr_ts >= meta.timewait_us) { \
            pr_found = 1; pr_slot = pr_base + w; \
        } \
    }
// machine.flow_find: the first way pointing at a slot with this remote IP and QPN.
// Variables: pr_base, pr_ip, pr_key32 (QPN) in; pr_found, pr_slot (connection slot) out.
#define PROBE_FLOW_FIND(w) \
    if (pr_found == 0) { \
        flow_slot.read(pr_v32, pr_base + w); \
        if (pr_v32 != 0) { \
            conn_rqpn.read(pr_q, pr_v32 - 1); conn_ip.read(pr_v128, pr_v32 - 1); \
            if (pr_q == pr_key32 && pr_v128 == pr_ip) { pr_found = 1; pr_slot = pr_v32 - 1; } \
        } \
    }
// machine.flow_add: the first free way (pr_found, pr_slot = way) and whether the
// key is already there (pr_conflict).
#define PROBE_FLOW_ADD(w) \
    flow_slot.read(pr_v32, pr_base + w); \
    if (pr_v32 == 0) { \
        if (pr_found == 0) { pr_found = 1; pr_slot = pr_base + w; } \
    } else { \
        conn_rqpn.read(pr_q, pr_v32 - 1); conn_ip.read(pr_v128, pr_v32 - 1); \
        if (pr_q == pr_key32 && pr_v128 == pr_ip) { pr_conflict = 1; } \
    }
// machine.flow_del: empty the way holding the key (the way pointing at the slot).
#define PROBE_FLOW_REMOVE(w) \
    if (pr_found == 0) { \
        flow_slot.read(pr_v32, pr_base + w); \
        if (pr_v32 != 0) { \
            conn_rqpn.read(pr_q, pr_v32 - 1); conn_ip.read(pr_v128, pr_v32 - 1); \
            if (pr_q == pr_key32 && pr_v128 == pr_ip) { pr_found = 1; flow_slot.write(pr_base + w, 0); } \
        } \
    }

// The scratch variables of the probes (declared once per apply block that probes).
#define PROBE_VARS \
    bit<32> pr_base = 0; bit<32> pr_key32 = 0; bit<128> pr_ip = 0; bit<1> pr_found = 0; \
    bit<32> pr_slot = 0; bit<1> pr_conflict = 0; bit<8> pr_st = 0; bit<32> pr_v32 = 0; \
    bit<32> pr_q = 0; bit<128> pr_v128 = 0; bit<48> pr_ts = 0;
