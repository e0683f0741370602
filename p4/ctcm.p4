/* ctcm: RDMA CM connection tracking and RoCEv2 CNP generation, P4_16 for v1model (bmv2).
 *
 * The mirror of the Python model's pipeline (model/ctcm/dataplane/pipeline.py, Pipeline.process)
 * in its `p4` table mode. One pass per packet:
 *
 *   CtcmParser           packet.classify              p4/include/parser.p4
 *   CtcmIngress          Pipeline.process             this file
 *     port_map             config port pairs (control plane)
 *     verify_icrc          icrc.verify_icrc            p4/include/icrc.p4
 *     tracker (CtcmTracker) machine.track (p4 mode)    p4/include/tracker.p4
 *     flow lookup + pacing probes.flow_find, Pipeline  p4/include/tracker.p4 (TRACKER_CE)
 *   CtcmEgress           cnp.CnpGenerator.generate    p4/include/cnp.p4
 *   CtcmComputeChecksum  cnp.generate_cnp (IPv4 checksum of a CNP only)
 *
 * Constants, header types and the transition table come from p4/include/generated/
 * (python -m ctcm.gen.p4gen; do not edit those). Table geometry is fixed at compile time:
 * -DACTIVE_BUCKETS=4 -DACTIVE_WAYS=1 ... (see p4/README.md, `make p4`).
 */

#include <core.p4>
#include <v1model.p4>

#include "include/generated/constants.p4"
#include "include/generated/headers.p4"
#include "include/generated/transitions.p4"
#include "include/generated/messages.p4"

#define MAX_IPV4_OPTION_WORDS 10
#define CLONE_FIELDS 1              // @field_list index preserved into the CNP clone
#define INSTANCE_TYPE_INGRESS_CLONE 1

header ipv4_opt_h { bit<32> word; }
header icrc_h { bit<32> value; }    // the 4 ICRC bytes as on the wire (CRC little endian)

struct headers_t {
    // a CNP, built in egress on the I2E clone (cnp.p4); emitted first, invalid otherwise
    ethernet_h  cnp_eth;
    dot1q_h     cnp_vlan;
    ipv4_h      cnp_ipv4;
    ipv6_h      cnp_ipv6;
    udp_h       cnp_udp;
    bth_h       cnp_bth;
    cnp_pad_h   cnp_pad;
    icrc_h      cnp_icrc;
    // the received frame, as far as classify() reads it
    ethernet_h  eth;
    dot1q_h     vlan;
    ipv4_h      ipv4;
    ipv4_opt_h[MAX_IPV4_OPTION_WORDS] ipv4_opt;
    ipv6_h      ipv6;
    udp_h       udp;
    bth_h       bth;
    deth_h      deth;
    mad_h       mad;
    cm_body_h   cm;
    icrc_h      icrc;
}

struct meta_t {
    // parser (classify)
    bit<8>   kind;
    bit<32>  n;             // frame length
    bit<16>  ethertype;
    bit<8>   ip_version;
    bit<32>  l3;
    bit<32>  l4;
    bit<32>  ihl_bytes;
    bit<32>  ip_end;
    bit<32>  ulen;
    bit<4>   opt_words;
    // port map and options (control plane)
    bit<1>   mapped;
    bit<9>   peer;
    bit<1>   from_host;
    bit<32>  cnp_session;
    bit<48>  timewait_us;
    bit<48>  cnp_interval_us;
    // time (µs)
    bit<48>  now;
    // the CM message fields the tracker reads (Tracker.process -> track)
    bit<8>   dir;
    bit<16>  attr;
    bit<128> peer_ip;       // 16 bytes, IPv4 as ::ffff:a.b.c.d
    bit<32>  msg_local;
    bit<32>  msg_remote;
    bit<32>  qpn;           // REQ/REP local QPN, else 0
    bit<2>   mraed;         // MRA "message MRAed", else 0
    // the tracker's operation (TRACKER_TRACK, TRACKER_CE), the CE packet's destination QPN
    // (its destination IP in peer_ip) and the answer: send a CNP to cnp_dqpn
    bit<8>   tracker_op;
    bit<24>  ce_dqpn;
    bit<1>   cnp_send;
    // the CNP the egress builds on the clone (preserved through the clone)
    @field_list(CLONE_FIELDS) bit<48>  cnp_eth_dst;      // = the frame's source MAC
    @field_list(CLONE_FIELDS) bit<48>  cnp_eth_src;      // = the frame's destination MAC
    @field_list(CLONE_FIELDS) bit<16>  cnp_ethertype;    // 0x8100 with a tag, else the IP ethertype
    @field_list(CLONE_FIELDS) bit<1>   cnp_has_vlan;
    @field_list(CLONE_FIELDS) bit<16>  cnp_vlan_tci;
    @field_list(CLONE_FIELDS) bit<16>  cnp_vlan_ethertype;
    @field_list(CLONE_FIELDS) bit<8>   cnp_ip_version;
    @field_list(CLONE_FIELDS) bit<128> cnp_src;          // = the frame's destination IP
    @field_list(CLONE_FIELDS) bit<128> cnp_dst;          // = the frame's source IP
    @field_list(CLONE_FIELDS) bit<24>  cnp_dqpn;         // = the tracked local QPN
}

#include "include/parser.p4"

control CtcmVerifyChecksum(inout headers_t hdr, inout meta_t meta) {
    apply { }   // nothing is verified here: classify() does not check IP checksums
}

#include "include/icrc.p4"

// Every counter of spec.Counter, indexed by its value (CTR_* in constants.p4): one array
// that every control counts into (bmv2 name: ctcm_counters).
counter(CTR_COUNT, CounterType.packets) ctcm_counters;

#include "include/tracker.p4"

control CtcmIngress(inout headers_t hdr, inout meta_t meta, inout standard_metadata_t sm) {

    // --- the control-plane config (p4/config.yaml) ---------------------------------
    action drop_unknown_port() {
        meta.mapped = 0;
        mark_to_drop(sm);
    }

    // per config pair (h, n): h -> set_peer(n, 1, h + 1); n -> set_peer(h, 0, 0)
    action set_peer(bit<9> peer, bit<1> from_host, bit<32> cnp_session) {
        meta.mapped = 1;
        meta.peer = peer;
        meta.from_host = from_host;
        meta.cnp_session = cnp_session;
    }

    table port_map {
        key = { sm.ingress_port : exact; }
        actions = { set_peer; drop_unknown_port; }
        default_action = drop_unknown_port();
        size = 512;
    }

    action set_options(bit<48> timewait_us, bit<48> cnp_interval_us) {
        meta.timewait_us = timewait_us;
        meta.cnp_interval_us = cnp_interval_us;
    }

    table options {
        key = { }
        actions = { set_options; }
        default_action = set_options(DEFAULT_TIMEWAIT_US, DEFAULT_CNP_INTERVAL_US);
    }

    CtcmVerifyIcrc() verify_icrc;
    CtcmTracker() tracker;      // machine.track, and the flow lookup + pacing of CE data

    apply {
        // Pipeline.process
        ctcm_counters.count(CTR_PACKETS);
        port_map.apply();
        if (meta.mapped == 0) {
            ctcm_counters.count(CTR_DROPPED_UNKNOWN_PORT);      // "dropped: port N is not in the port map"
        } else {
            options.apply();
            sm.egress_spec = meta.peer;                         // forwarded unchanged to the peer port
            ctcm_counters.count(CTR_FORWARDED);
            meta.now = sm.ingress_global_timestamp;
            meta.dir = meta.from_host == 1 ? (bit<8>)DIR_FROM_HOST : (bit<8>)DIR_FROM_NET;
            if (meta.kind == KIND_NOT_ROCE) {
                ctcm_counters.count(CTR_NOT_ROCE);
            } else if (meta.kind == KIND_MALFORMED) {
                ctcm_counters.count(CTR_MALFORMED);
            } else if (meta.kind == KIND_UNSUPPORTED) {
                ctcm_counters.count(CTR_UNSUPPORTED);           // "unsupported: QinQ / IPv6 extension header"
            } else if (meta.kind == KIND_CM) {
                ctcm_counters.count(CTR_CM);
                bit<1> icrc_ok;
                verify_icrc.apply(hdr, icrc_ok);
                if (icrc_ok == 0) {
                    ctcm_counters.count(CTR_ICRC_ERRORS);       // "bad ICRC: counted, no state change"
                } else {
                    meta.tracker_op = TRACKER_TRACK;            // Tracker.process -> machine.track
                    tracker.apply(hdr, meta);
                }
            } else {
                ctcm_counters.count(CTR_ROCE);
                bit<2> ecn = hdr.ipv4.isValid() ? hdr.ipv4.ecn : hdr.ipv6.traffic_class[1:0];
                if (meta.from_host == 1 && hdr.bth.opcode != OPCODE_CNP && ecn == ECN_CE) {
                    ctcm_counters.count(CTR_CE_PACKETS);
                    // the flow (destination IP, BTH destination QPN) and its pacing, in the tracker
                    bit<128> dst = hdr.ipv4.isValid() ? 80w0 ++ 16w0xffff ++ hdr.ipv4.dst : hdr.ipv6.dst;
                    meta.peer_ip = dst;
                    meta.ce_dqpn = hdr.bth.dqpn;
                    meta.tracker_op = TRACKER_CE;
                    tracker.apply(hdr, meta);
                    if (meta.cnp_send == 1) {
                        // the CNP: an I2E clone to the ingress (host) port, rewritten in egress
                        ctcm_counters.count(CTR_CNP_SENT);
                        meta.cnp_eth_dst = hdr.eth.src;
                        meta.cnp_eth_src = hdr.eth.dst;
                        meta.cnp_ethertype = hdr.eth.ethertype;
                        meta.cnp_has_vlan = hdr.vlan.isValid() ? 1w1 : 1w0;
                        meta.cnp_vlan_tci = hdr.vlan.pcp ++ hdr.vlan.dei ++ hdr.vlan.vid;
                        meta.cnp_vlan_ethertype = hdr.vlan.ethertype;
                        meta.cnp_ip_version = meta.ip_version;
                        meta.cnp_src = dst;
                        meta.cnp_dst = hdr.ipv4.isValid() ? 96w0 ++ hdr.ipv4.src : hdr.ipv6.src;
                        clone_preserving_field_list(CloneType.I2E, meta.cnp_session, CLONE_FIELDS);
                    }
                }
            }
        }
    }
}

#include "include/cnp.p4"

control CtcmDeparser(packet_out pkt, in headers_t hdr) {
    apply {
        pkt.emit(hdr);   // every header in declaration order: a CNP, or the frame as received
    }
}

V1Switch(CtcmParser(), CtcmVerifyChecksum(), CtcmIngress(), CtcmEgress(), CtcmComputeChecksum(),
         CtcmDeparser()) main;
