// CtcmParser: mirrors ctcm.dataplane.packet.classify (model/ctcm/dataplane/packet.py), rule by rule.
//
// The parser never extracts past the end of the frame: before each extract it
// compares the frame length (standard_metadata.packet_length) or the IP/UDP
// lengths with what the header needs, exactly where classify() checks them, and
// stops with meta.kind = KIND_MALFORMED (or KIND_NOT_ROCE) when classify() would.
// Every byte not extracted stays in the payload, and the deparser emits the
// extracted headers unchanged: every frame leaves byte-for-byte as it came.
//
// "a < b" is tested as the borrow bit of a - b in 32 bits (all values here are
// below 2^16): LT(a, b) is 1 when a < b.

#define LT(a, b) ((bit<32>)(a) - (bit<32>)(b))[31:31]

parser CtcmParser(packet_in pkt, out headers_t hdr, inout meta_t meta, inout standard_metadata_t sm) {

    state start {
        meta.kind = KIND_NOT_ROCE;
        meta.n = sm.packet_length;
        meta.l3 = LEN_ETH;
        // classify: "truncated Ethernet header"
        transition select(LT(meta.n, LEN_ETH)) {
            1: malformed;
            default: parse_ethernet;
        }
    }

    state parse_ethernet {
        pkt.extract(hdr.eth);
        meta.ethertype = hdr.eth.ethertype;
        transition select(hdr.eth.ethertype) {
            ETH_P_8021Q: check_vlan;
            default: dispatch_l3;
        }
    }

    state check_vlan {
        // classify: "truncated 802.1Q tag"
        transition select(LT(meta.n, LEN_ETH + LEN_DOT1Q)) {
            1: malformed;
            default: parse_vlan;
        }
    }

    state parse_vlan {
        pkt.extract(hdr.vlan);
        meta.ethertype = hdr.vlan.ethertype;
        meta.l3 = LEN_ETH + LEN_DOT1Q;
        transition dispatch_l3;
    }

    state dispatch_l3 {
        transition select(meta.ethertype) {
            ETH_P_IPV4: check_ipv4;
            ETH_P_IPV6: check_ipv6;
            ETH_P_8021Q: unsupported;               // "QinQ: stacked VLAN tags are not followed"
            ETH_P_8021AD: unsupported;
            default: accept;                        // NOT_ROCE: "ethertype ..."
        }
    }

    // --- IPv4 ---------------------------------------------------------------------
    state check_ipv4 {
        meta.ip_version = 4;
        // "truncated IPv4 header"
        transition select(LT(meta.n, meta.l3 + LEN_IPV4)) {
            1: malformed;
            default: parse_ipv4;
        }
    }

    state parse_ipv4 {
        pkt.extract(hdr.ipv4);
        meta.ihl_bytes = ((bit<32>)hdr.ipv4.ihl) << 2;
        meta.ip_end = meta.l3 + (bit<32>)hdr.ipv4.total_length;
        meta.l4 = meta.l3 + meta.ihl_bytes;
        meta.opt_words = hdr.ipv4.ihl;
        // "IPv4 ethertype with IP version N", "IPv4 IHL N below 5",
        // "IPv4 total length N does not fit the frame" (total < ihl or l3 + total > n)
        transition select(hdr.ipv4.version, LT(hdr.ipv4.ihl, 5),
                          LT(hdr.ipv4.total_length, meta.ihl_bytes), LT(meta.n, meta.ip_end)) {
            (4, 0, 0, 0): ipv4_fits;
            default: malformed;
        }
    }

    state ipv4_fits {
        // "not UDP", "IPv4 fragment" (MF or offset: flags & 1 or frag_offset != 0)
        transition select(hdr.ipv4.protocol, hdr.ipv4.flags[0:0], hdr.ipv4.frag_offset) {
            (IPPROTO_UDP, 0, 0): parse_ipv4_options;
            default: accept;                        // NOT_ROCE
        }
    }

    // The options (IHL - 5 words) are extracted one 32-bit word at a time, so the
    // ICRC check can include them (the frame holds them: total >= IHL * 4 fits).
    state parse_ipv4_options {
        transition select(meta.opt_words) {
            5: check_udp;
            default: parse_ipv4_option_word;
        }
    }

    state parse_ipv4_option_word {
        pkt.extract(hdr.ipv4_opt.next);
        meta.opt_words = meta.opt_words - 1;
        transition parse_ipv4_options;
    }

    // --- IPv6 ---------------------------------------------------------------------
    state check_ipv6 {
        meta.ip_version = 6;
        // "truncated IPv6 header"
        transition select(LT(meta.n, meta.l3 + LEN_IPV6)) {
            1: malformed;
            default: parse_ipv6;
        }
    }

    state parse_ipv6 {
        pkt.extract(hdr.ipv6);
        meta.l4 = meta.l3 + LEN_IPV6;
        meta.ip_end = meta.l4 + (bit<32>)hdr.ipv6.payload_length;
        // "IPv6 ethertype with IP version N", "IPv6 payload length does not fit the frame"
        transition select(hdr.ipv6.version, LT(meta.n, meta.ip_end)) {
            (6, 0): ipv6_fits;
            default: malformed;
        }
    }

    state ipv6_fits {
        transition select(hdr.ipv6.next_header) {
            IPPROTO_UDP: check_udp;
            IPV6_EXTENSION_HEADER_CASES(unsupported)  // "IPv6 extension header N: not followed"
            default: accept;                        // NOT_ROCE: "not UDP"
        }
    }

    // --- UDP, BTH, DETH, MAD --------------------------------------------------------
    state check_udp {
        // "truncated UDP header": ip_end - l4 < 8
        transition select(LT(meta.ip_end - meta.l4, LEN_UDP)) {
            1: malformed;
            default: parse_udp;
        }
    }

    state parse_udp {
        pkt.extract(hdr.udp);
        meta.ulen = (bit<32>)hdr.udp.length;
        transition select(hdr.udp.dport) {
            ROCEV2_PORT: udp_fits;
            default: accept;                        // NOT_ROCE: "UDP port is not 4791"
        }
    }

    state udp_fits {
        // "UDP length N does not fit the IP packet": ulen < 8 or l4 + ulen > ip_end;
        // "too short for BTH and ICRC": ulen - 8 - 4 < 12
        transition select(LT(meta.ulen, LEN_UDP), LT(meta.ip_end, meta.l4 + meta.ulen),
                          LT(meta.ulen, LEN_UDP + LEN_BTH + ICRC_LENGTH)) {
            (0, 0, 0): parse_bth;
            default: malformed;
        }
    }

    state parse_bth {
        pkt.extract(hdr.bth);
        meta.kind = KIND_ROCE;
        // a MAD is a UD SEND_ONLY to QP1; anything else is RoCE data
        transition select(hdr.bth.opcode, hdr.bth.dqpn) {
            (OPCODE_UD_SEND_ONLY, QP1): check_mad;
            default: accept;
        }
    }

    state check_mad {
        // "MAD to QP1 is N bytes, expected 256": UDP length must be 8 + 12 + 8 + 256 + 4
        transition select(meta.ulen) {
            (LEN_UDP + LEN_BTH + LEN_DETH + LEN_MAD + ICRC_LENGTH): parse_mad;
            default: malformed;
        }
    }

    state parse_mad {
        pkt.extract(hdr.deth);
        pkt.extract(hdr.mad);
        pkt.extract(hdr.cm);
        pkt.extract(hdr.icrc);
        // not the CM class: RoCE; "CM MAD base version N", "CM class version N": malformed
        transition select(hdr.mad.mgmt_class, hdr.mad.base_version, hdr.mad.class_version) {
            (MGMT_CLASS_CM, MAD_BASE_VERSION, CM_CLASS_VERSION): cm;
            (MGMT_CLASS_CM, _, _): malformed;
            default: accept;                        // ROCE (a MAD of another class)
        }
    }

    state cm {
        meta.kind = KIND_CM;
        transition accept;
    }

    state malformed {
        meta.kind = KIND_MALFORMED;
        transition accept;
    }

    state unsupported {
        meta.kind = KIND_UNSUPPORTED;
        transition accept;
    }
}
