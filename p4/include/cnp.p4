// The CNP: mirrors ctcm.dataplane.cnp (fill_cnp_template, CnpGenerator.generate) and the
// CNP part of ctcm.dataplane.pipeline.Pipeline.process.
//
// Ingress clones a CE-marked data packet from the host side on a tracked flow
// (I2E, mirroring session = the ingress port's cnp_session, which sends it back
// out of that host port) and preserves the meta.cnp_* fields. bmv2 parses the
// clone again, but the CNP is built from the preserved fields alone: every
// parsed header is dropped, the cnp_* headers are filled from the template,
// and the packet is truncated to the CNP's length (the deparser emits the
// cnp_* headers first; truncation cuts what is left of the original).
//
//   Ethernet   addresses swapped, ethertype and 802.1Q tag (TCI, inner type) kept
//   IPv4       version 4, IHL 5, TOS 0xC2, total length 60, ID 0, DF, TTL 255, UDP,
//              checksum (CtcmComputeChecksum), source = the packet's destination
//   IPv6       traffic class 0xC2, flow label 0, payload length 40, UDP, hop limit 255
//   UDP        0xF000 -> 4791, length 40, checksum 0
//   BTH        opcode 0x81 (CNP), BECN, P_Key 0xFFFF, destination QPN = tracked local QPN, PSN 0
//   16 zero bytes, ICRC

control CtcmEgress(inout headers_t hdr, inout meta_t meta, inout standard_metadata_t sm) {
    apply {
        if (sm.instance_type == INSTANCE_TYPE_INGRESS_CLONE) {
            // drop what the parser found in the clone
            hdr.eth.setInvalid();
            hdr.vlan.setInvalid();
            hdr.ipv4.setInvalid();
            hdr.ipv4_opt[0].setInvalid(); hdr.ipv4_opt[1].setInvalid(); hdr.ipv4_opt[2].setInvalid();
            hdr.ipv4_opt[3].setInvalid(); hdr.ipv4_opt[4].setInvalid(); hdr.ipv4_opt[5].setInvalid();
            hdr.ipv4_opt[6].setInvalid(); hdr.ipv4_opt[7].setInvalid(); hdr.ipv4_opt[8].setInvalid();
            hdr.ipv4_opt[9].setInvalid();
            hdr.ipv6.setInvalid();
            hdr.udp.setInvalid();
            hdr.bth.setInvalid();
            hdr.deth.setInvalid();
            hdr.mad.setInvalid();
            hdr.cm.setInvalid();
            hdr.icrc.setInvalid();

            bit<32> len = LEN_ETH;
            hdr.cnp_eth.setValid();
            hdr.cnp_eth.dst = meta.cnp_eth_dst;
            hdr.cnp_eth.src = meta.cnp_eth_src;
            hdr.cnp_eth.ethertype = meta.cnp_ethertype;
            if (meta.cnp_has_vlan == 1) {
                hdr.cnp_vlan.setValid();
                hdr.cnp_vlan.pcp = meta.cnp_vlan_tci[15:13];
                hdr.cnp_vlan.dei = meta.cnp_vlan_tci[12:12];
                hdr.cnp_vlan.vid = meta.cnp_vlan_tci[11:0];
                hdr.cnp_vlan.ethertype = meta.cnp_vlan_ethertype;
                len = len + LEN_DOT1Q;
            }
            hdr.cnp_udp.setValid();
            hdr.cnp_udp.sport = CNP_UDP_SPORT;
            hdr.cnp_udp.dport = ROCEV2_PORT;
            hdr.cnp_udp.length = CNP_UDP_LENGTH;
            hdr.cnp_udp.checksum = 0;
            hdr.cnp_bth.setValid();
            hdr.cnp_bth.opcode = OPCODE_CNP;
            hdr.cnp_bth.solicited = 0;
            hdr.cnp_bth.migreq = 0;
            hdr.cnp_bth.padcount = 0;
            hdr.cnp_bth.version = 0;
            hdr.cnp_bth.pkey = CNP_PKEY;
            hdr.cnp_bth.fecn = 0;
            hdr.cnp_bth.becn = 1;
            hdr.cnp_bth.resv6 = 0;
            hdr.cnp_bth.dqpn = meta.cnp_dqpn;
            hdr.cnp_bth.ackreq = 0;
            hdr.cnp_bth.resv7 = 0;
            hdr.cnp_bth.psn = 0;
            hdr.cnp_pad.setValid();
            hdr.cnp_pad._rsvd0 = 0;
            hdr.cnp_icrc.setValid();
            bit<32> crc;
            if (meta.cnp_ip_version == 4) {
                hdr.cnp_ipv4.setValid();
                hdr.cnp_ipv4.version = 4;
                hdr.cnp_ipv4.ihl = 5;
                hdr.cnp_ipv4.dscp = (bit<6>)(CNP_TOS >> 2);
                hdr.cnp_ipv4.ecn = (bit<2>)(CNP_TOS & 3);
                hdr.cnp_ipv4.total_length = CNP_IPV4_TOTAL_LENGTH;
                hdr.cnp_ipv4.id = 0;
                hdr.cnp_ipv4.flags = CNP_IPV4_FLAGS;
                hdr.cnp_ipv4.frag_offset = 0;
                hdr.cnp_ipv4.ttl = CNP_TTL;
                hdr.cnp_ipv4.protocol = IPPROTO_UDP;
                hdr.cnp_ipv4.checksum = 0;              // CtcmComputeChecksum fills it
                hdr.cnp_ipv4.src = meta.cnp_src[31:0];
                hdr.cnp_ipv4.dst = meta.cnp_dst[31:0];
                hash(crc, HashAlgorithm.crc32, 32w0,
                     { ICRC_IPV4(hdr.cnp_ipv4), ICRC_UDP_BTH(hdr.cnp_udp, hdr.cnp_bth), hdr.cnp_pad._rsvd0 },
                     ICRC_MAX);
                len = len + CNP_IPV4_TOTAL_LENGTH;
            } else {
                hdr.cnp_ipv6.setValid();
                hdr.cnp_ipv6.version = 6;
                hdr.cnp_ipv6.traffic_class = CNP_TOS;
                hdr.cnp_ipv6.flow_label = 0;
                hdr.cnp_ipv6.payload_length = CNP_IPV6_PAYLOAD_LENGTH;
                hdr.cnp_ipv6.next_header = IPPROTO_UDP;
                hdr.cnp_ipv6.hop_limit = CNP_TTL;
                hdr.cnp_ipv6.src = meta.cnp_src;
                hdr.cnp_ipv6.dst = meta.cnp_dst;
                hash(crc, HashAlgorithm.crc32, 32w0,
                     { ICRC_IPV6(hdr.cnp_ipv6), ICRC_UDP_BTH(hdr.cnp_udp, hdr.cnp_bth), hdr.cnp_pad._rsvd0 },
                     ICRC_MAX);
                len = len + LEN_IPV6 + CNP_IPV6_PAYLOAD_LENGTH;
            }
            hdr.cnp_icrc.value = ICRC_SWAP(crc);
            truncate(len);
        }
    }
}

// The IPv4 header checksum of a CNP (bmv2 has no offload); forwarded frames are
// never touched.
control CtcmComputeChecksum(inout headers_t hdr, inout meta_t meta) {
    apply {
        update_checksum(hdr.cnp_ipv4.isValid(),
            { hdr.cnp_ipv4.version, hdr.cnp_ipv4.ihl, hdr.cnp_ipv4.dscp, hdr.cnp_ipv4.ecn,
              hdr.cnp_ipv4.total_length, hdr.cnp_ipv4.id, hdr.cnp_ipv4.flags, hdr.cnp_ipv4.frag_offset,
              hdr.cnp_ipv4.ttl, hdr.cnp_ipv4.protocol, hdr.cnp_ipv4.src, hdr.cnp_ipv4.dst },
            hdr.cnp_ipv4.checksum, HashAlgorithm.csum16);
    }
}
