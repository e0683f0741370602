// RoCEv2 ICRC (IBTA annex A17): mirrors ctcm.dataplane.icrc (model/ctcm/dataplane/icrc.py).
//
// CRC-32 (v1model HashAlgorithm.crc32 = zlib.crc32) over: 64 one-bits (the LRH
// placeholder) | the IP header with its variant fields as ones (IPv4: TOS, TTL,
// header checksum; IPv6: traffic class, flow label, hop limit) | the UDP header
// with its checksum as ones | the BTH with byte 4 (FECN, BECN, 6 reserved bits)
// as ones | the rest up to the ICRC. The wire carries the CRC little endian, so
// the 32-bit field read big endian is the CRC byte-swapped (ICRC_SWAP).
//
// The IPv4 options (0..10 words, a header stack) are covered too: p4c copies
// every hash input into temporaries, so an invalid stack element would count as
// zeros; one hash call per option length lists exactly the words present.

#define ICRC_SWAP(c) ((c)[7:0] ++ (c)[15:8] ++ (c)[23:16] ++ (c)[31:24])
#define ICRC_MAX 64w0x100000000

// The field lists are generated from the model's mask table (ICRC_*_FIELDS in
// include/generated/headers.p4): a variant field is a constant of ones.
#define ICRC_IPV4(ip) ICRC_LRH_ONES, ICRC_IPV4_FIELDS(ip)
#define ICRC_IPV6(ip) ICRC_LRH_ONES, ICRC_IPV6_FIELDS(ip)
#define ICRC_UDP_BTH(u, b) ICRC_UDP_FIELDS(u), ICRC_BTH_FIELDS(b)
// The first k option words (a leading comma each): ICRC_OPTS_k(o).
#define ICRC_OPTS_0(o)
#define ICRC_OPTS_1(o) ICRC_OPTS_0(o), (o)[0].word
#define ICRC_OPTS_2(o) ICRC_OPTS_1(o), (o)[1].word
#define ICRC_OPTS_3(o) ICRC_OPTS_2(o), (o)[2].word
#define ICRC_OPTS_4(o) ICRC_OPTS_3(o), (o)[3].word
#define ICRC_OPTS_5(o) ICRC_OPTS_4(o), (o)[4].word
#define ICRC_OPTS_6(o) ICRC_OPTS_5(o), (o)[5].word
#define ICRC_OPTS_7(o) ICRC_OPTS_6(o), (o)[6].word
#define ICRC_OPTS_8(o) ICRC_OPTS_7(o), (o)[7].word
#define ICRC_OPTS_9(o) ICRC_OPTS_8(o), (o)[8].word
#define ICRC_OPTS_10(o) ICRC_OPTS_9(o), (o)[9].word
#define ICRC_MAD(h) (h).deth.qkey, (h).deth._rsvd0, (h).deth.src_qp, \
    (h).mad.base_version, (h).mad.mgmt_class, (h).mad.class_version, (h).mad.method, (h).mad.status, \
    (h).mad.class_specific, (h).mad.tid, (h).mad.attr_id, (h).mad._rsvd0, (h).mad.attr_mod, \
    (h).cm.lo, (h).cm.hi

// icrc.verify_icrc of a CM MAD (what classify() found: BTH, DETH, 256-byte MAD, ICRC)
control CtcmVerifyIcrc(in headers_t hdr, out bit<1> ok) {
    apply {
        bit<32> crc = 0;
        if (hdr.ipv4.isValid() && hdr.ipv4.ihl == 5) {
            hash(crc, HashAlgorithm.crc32, 32w0,
                 { ICRC_IPV4(hdr.ipv4) ICRC_OPTS_0(hdr.ipv4_opt), ICRC_UDP_BTH(hdr.udp, hdr.bth), ICRC_MAD(hdr) },
                 ICRC_MAX);
        } else if (hdr.ipv4.isValid() && hdr.ipv4.ihl == 6) {
            hash(crc, HashAlgorithm.crc32, 32w0,
                 { ICRC_IPV4(hdr.ipv4) ICRC_OPTS_1(hdr.ipv4_opt), ICRC_UDP_BTH(hdr.udp, hdr.bth), ICRC_MAD(hdr) },
                 ICRC_MAX);
        } else if (hdr.ipv4.isValid() && hdr.ipv4.ihl == 7) {
            hash(crc, HashAlgorithm.crc32, 32w0,
                 { ICRC_IPV4(hdr.ipv4) ICRC_OPTS_2(hdr.ipv4_opt), ICRC_UDP_BTH(hdr.udp, hdr.bth), ICRC_MAD(hdr) },
                 ICRC_MAX);
        } else if (hdr.ipv4.isValid() && hdr.ipv4.ihl == 8) {
            hash(crc, HashAlgorithm.crc32, 32w0,
                 { ICRC_IPV4(hdr.ipv4) ICRC_OPTS_3(hdr.ipv4_opt), ICRC_UDP_BTH(hdr.udp, hdr.bth), ICRC_MAD(hdr) },
                 ICRC_MAX);
        } else if (hdr.ipv4.isValid() && hdr.ipv4.ihl == 9) {
            hash(crc, HashAlgorithm.crc32, 32w0,
                 { ICRC_IPV4(hdr.ipv4) ICRC_OPTS_4(hdr.ipv4_opt), ICRC_UDP_BTH(hdr.udp, hdr.bth), ICRC_MAD(hdr) },
                 ICRC_MAX);
        } else if (hdr.ipv4.isValid() && hdr.ipv4.ihl == 10) {
            hash(crc, HashAlgorithm.crc32, 32w0,
                 { ICRC_IPV4(hdr.ipv4) ICRC_OPTS_5(hdr.ipv4_opt), ICRC_UDP_BTH(hdr.udp, hdr.bth), ICRC_MAD(hdr) },
                 ICRC_MAX);
        } else if (hdr.ipv4.isValid() && hdr.ipv4.ihl == 11) {
            hash(crc, HashAlgorithm.crc32, 32w0,
                 { ICRC_IPV4(hdr.ipv4) ICRC_OPTS_6(hdr.ipv4_opt), ICRC_UDP_BTH(hdr.udp, hdr.bth), ICRC_MAD(hdr) },
                 ICRC_MAX);
        } else if (hdr.ipv4.isValid() && hdr.ipv4.ihl == 12) {
            hash(crc, HashAlgorithm.crc32, 32w0,
                 { ICRC_IPV4(hdr.ipv4) ICRC_OPTS_7(hdr.ipv4_opt), ICRC_UDP_BTH(hdr.udp, hdr.bth), ICRC_MAD(hdr) },
                 ICRC_MAX);
        } else if (hdr.ipv4.isValid() && hdr.ipv4.ihl == 13) {
            hash(crc, HashAlgorithm.crc32, 32w0,
                 { ICRC_IPV4(hdr.ipv4) ICRC_OPTS_8(hdr.ipv4_opt), ICRC_UDP_BTH(hdr.udp, hdr.bth), ICRC_MAD(hdr) },
                 ICRC_MAX);
        } else if (hdr.ipv4.isValid() && hdr.ipv4.ihl == 14) {
            hash(crc, HashAlgorithm.crc32, 32w0,
                 { ICRC_IPV4(hdr.ipv4) ICRC_OPTS_9(hdr.ipv4_opt), ICRC_UDP_BTH(hdr.udp, hdr.bth), ICRC_MAD(hdr) },
                 ICRC_MAX);
        } else if (hdr.ipv4.isValid() && hdr.ipv4.ihl == 15) {
            hash(crc, HashAlgorithm.crc32, 32w0,
                 { ICRC_IPV4(hdr.ipv4) ICRC_OPTS_10(hdr.ipv4_opt), ICRC_UDP_BTH(hdr.udp, hdr.bth), ICRC_MAD(hdr) },
                 ICRC_MAX);
        } else {
            hash(crc, HashAlgorithm.crc32, 32w0,
                 { ICRC_IPV6(hdr.ipv6), ICRC_UDP_BTH(hdr.udp, hdr.bth), ICRC_MAD(hdr) }, ICRC_MAX);
        }
        ok = ICRC_SWAP(crc) == hdr.icrc.value ? 1w1 : 1w0;
    }
}
