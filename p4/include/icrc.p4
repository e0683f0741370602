// RoCEv2 ICRC (IBTA annex A17): mirrors ctcm.icrc (model/ctcm/icrc.py).
//
// CRC-32 (v1model HashAlgorithm.crc32 = zlib.crc32) over: 64 one-bits (the LRH
// placeholder) | the IP header with its variant fields as ones (IPv4: TOS, TTL,
// header checksum; IPv6: traffic class, flow label, hop limit) | the UDP header
// with its checksum as ones | the BTH with byte 4 (FECN, BECN, 6 reserved bits)
// as ones | the rest up to the ICRC. The wire carries the CRC little endian, so
// the 32-bit field read big endian is the CRC byte-swapped (ICRC_SWAP).
//
// bmv2 skips the fields of invalid headers in a hash input, so the IPv4 option
// words (a header stack, 0..10 valid) are listed in full.

#define ICRC_SWAP(c) ((c)[7:0] ++ (c)[15:8] ++ (c)[23:16] ++ (c)[31:24])
#define ICRC_MAX 64w0x100000000

#define ICRC_IPV4(ip) 64w0xffffffffffffffff, \
    (ip).version, (ip).ihl, 8w0xff, (ip).total_length, (ip).id, (ip).flags, (ip).frag_offset, \
    8w0xff, (ip).protocol, 16w0xffff, (ip).src, (ip).dst
#define ICRC_IPV6(ip) 64w0xffffffffffffffff, \
    (ip).version, 28w0xfffffff, (ip).payload_length, (ip).next_header, 8w0xff, (ip).src, (ip).dst
#define ICRC_UDP_BTH(u, b) (u).sport, (u).dport, (u).length, 16w0xffff, \
    (b).opcode, (b).solicited, (b).migreq, (b).padcount, (b).version, (b).pkey, 8w0xff, (b).dqpn, \
    (b).ackreq, (b).resv7, (b).psn
#define ICRC_IPV4_OPTIONS(o) (o)[0].word, (o)[1].word, (o)[2].word, (o)[3].word, (o)[4].word, \
    (o)[5].word, (o)[6].word, (o)[7].word, (o)[8].word, (o)[9].word
#define ICRC_MAD(h) (h).deth.qkey, (h).deth._rsvd0, (h).deth.src_qp, \
    (h).mad.base_version, (h).mad.mgmt_class, (h).mad.class_version, (h).mad.method, (h).mad.status, \
    (h).mad.class_specific, (h).mad.tid, (h).mad.attr_id, (h).mad._rsvd0, (h).mad.attr_mod, \
    (h).cm.lo, (h).cm.hi

// icrc.verify_icrc of a CM MAD (what classify() found: BTH, DETH, 256-byte MAD, ICRC)
control CtcmVerifyIcrc(in headers_t hdr, out bit<1> ok) {
    apply {
        bit<32> crc;
        if (hdr.ipv4.isValid()) {
            hash(crc, HashAlgorithm.crc32, 32w0,
                 { ICRC_IPV4(hdr.ipv4), ICRC_IPV4_OPTIONS(hdr.ipv4_opt), ICRC_UDP_BTH(hdr.udp, hdr.bth),
                   ICRC_MAD(hdr) }, ICRC_MAX);
        } else {
            hash(crc, HashAlgorithm.crc32, 32w0,
                 { ICRC_IPV6(hdr.ipv6), ICRC_UDP_BTH(hdr.udp, hdr.bth), ICRC_MAD(hdr) }, ICRC_MAX);
        }
        ok = ICRC_SWAP(crc) == hdr.icrc.value ? 1w1 : 1w0;
    }
}
