"""The field tables: every header and CM message, written once.

Sources: IBTA vol. 1 ch. 9 (BTH, DETH), ch. 13 (MAD), ch. 12 (CM messages),
annex A11 (RDMA CM IP private data), annex A17 (RoCEv2); offsets as in the
project's RoCEv2/CM facts sheet and the Linux kernel's ib_cm field
declarations. CM message offsets are relative to the 232-byte message body
that follows the 24-byte MAD common header.

Notation in each row: F(name, byte, bit, width_bits, fmt).
"""

from __future__ import annotations

from ctcm.spec.fields import FMT_BYTES, FMT_DEC, FMT_IPV4, FMT_IPV6, FMT_MAC, Field as F, Header

# --- L2 ------------------------------------------------------------------
ETHERNET = Header("Ethernet", 14, [
    F("dst", 0, 0, 48, FMT_MAC),
    F("src", 6, 0, 48, FMT_MAC),
    F("ethertype", 12, 0, 16),
], "Ethernet II header.")

VLAN = Header("Dot1Q", 4, [
    F("pcp", 0, 0, 3, FMT_DEC),
    F("dei", 0, 3, 1, FMT_DEC),
    F("vid", 0, 4, 12, FMT_DEC),
    F("ethertype", 2, 0, 16),
], "The 4 bytes after an 802.1Q TPID (0x8100): TCI and the inner ethertype.")

# --- L3/L4 ---------------------------------------------------------------
IPV4 = Header("IPv4", 20, [
    F("version", 0, 0, 4, FMT_DEC),
    F("ihl", 0, 4, 4, FMT_DEC),
    F("dscp", 1, 0, 6, FMT_DEC),
    F("ecn", 1, 6, 2, FMT_DEC),
    F("total_length", 2, 0, 16, FMT_DEC),
    F("id", 4, 0, 16),
    F("flags", 6, 0, 3),
    F("frag_offset", 6, 3, 13, FMT_DEC),
    F("ttl", 8, 0, 8, FMT_DEC),
    F("protocol", 9, 0, 8, FMT_DEC),
    F("checksum", 10, 0, 16),
    F("src", 12, 0, 32, FMT_IPV4),
    F("dst", 16, 0, 32, FMT_IPV4),
], "IPv4 header without options (options, when IHL > 5, follow it).")

IPV6 = Header("IPv6", 40, [
    F("version", 0, 0, 4, FMT_DEC),
    F("traffic_class", 0, 4, 8),
    F("flow_label", 1, 4, 20),
    F("payload_length", 4, 0, 16, FMT_DEC),
    F("next_header", 6, 0, 8, FMT_DEC),
    F("hop_limit", 7, 0, 8, FMT_DEC),
    F("src", 8, 0, 128, FMT_IPV6),
    F("dst", 24, 0, 128, FMT_IPV6),
], "IPv6 fixed header.")

UDP = Header("UDP", 8, [
    F("sport", 0, 0, 16, FMT_DEC),
    F("dport", 2, 0, 16, FMT_DEC),
    F("length", 4, 0, 16, FMT_DEC),
    F("checksum", 6, 0, 16),
], "UDP header; RoCEv2 uses destination port 4791.")

# --- InfiniBand transport ------------------------------------------------
BTH = Header("BTH", 12, [
    F("opcode", 0, 0, 8),
    F("solicited", 1, 0, 1, FMT_DEC),
    F("migreq", 1, 1, 1, FMT_DEC),
    F("padcount", 1, 2, 2, FMT_DEC),
    F("version", 1, 4, 4, FMT_DEC),
    F("pkey", 2, 0, 16),
    F("fecn", 4, 0, 1, FMT_DEC),
    F("becn", 4, 1, 1, FMT_DEC),
    F("resv6", 4, 2, 6),
    F("dqpn", 5, 0, 24),
    F("ackreq", 8, 0, 1, FMT_DEC),
    F("resv7", 8, 1, 7),
    F("psn", 9, 0, 24),
], "Base Transport Header (IBTA 9.2). Field names follow scapy.contrib.roce.")

DETH = Header("DETH", 8, [
    F("qkey", 0, 0, 32),
    F("src_qp", 5, 0, 24),
], "Datagram Extended Transport Header (IBTA 9.3.3).")

CNP_PAYLOAD = Header("CNPPadding", 16, [], "16 reserved bytes after a CNP's BTH.")

MAD = Header("MAD", 24, [
    F("base_version", 0, 0, 8, FMT_DEC),
    F("mgmt_class", 1, 0, 8),
    F("class_version", 2, 0, 8, FMT_DEC),
    F("method", 3, 0, 8),
    F("status", 4, 0, 16),
    F("class_specific", 6, 0, 16),
    F("tid", 8, 0, 64),
    F("attr_id", 16, 0, 16),
    F("attr_mod", 20, 0, 32),
], "MAD common header (IBTA 13.4.3).")

MAD_LENGTH = 256
CM_BODY_LENGTH = MAD_LENGTH - MAD.length  # 232


def _path(prefix: str, base: int) -> list[F]:
    """Primary (base 52) or alternate (base 96) path fields of a REQ."""
    return [
        F(f"{prefix}_local_lid", base + 0, 0, 16),
        F(f"{prefix}_remote_lid", base + 2, 0, 16),
        F(f"{prefix}_local_gid", base + 4, 0, 128, FMT_IPV6),
        F(f"{prefix}_remote_gid", base + 20, 0, 128, FMT_IPV6),
        F(f"{prefix}_flow_label", base + 36, 0, 20),
        F(f"{prefix}_packet_rate", base + 39, 2, 6, FMT_DEC),
        F(f"{prefix}_traffic_class", base + 40, 0, 8),
        F(f"{prefix}_hop_limit", base + 41, 0, 8, FMT_DEC),
        F(f"{prefix}_sl", base + 42, 0, 4, FMT_DEC),
        F(f"{prefix}_subnet_local", base + 42, 4, 1, FMT_DEC),
        F(f"{prefix}_local_ack_timeout", base + 43, 0, 5, FMT_DEC),
    ]


# --- CM messages (IBTA 12.6), offsets relative to the 232-byte body --------
CM_REQ = Header("CM_REQ", CM_BODY_LENGTH, [
    F("local_comm_id", 0, 0, 32),
    F("service_id", 8, 0, 64),
    F("local_ca_guid", 16, 0, 64),
    F("local_qkey", 28, 0, 32),
    F("local_qpn", 32, 0, 24),
    F("responder_resources", 35, 0, 8, FMT_DEC),
    F("local_eecn", 36, 0, 24),
    F("initiator_depth", 39, 0, 8, FMT_DEC),
    F("remote_eecn", 40, 0, 24),
    F("remote_cm_response_timeout", 43, 0, 5, FMT_DEC),
    F("transport_service_type", 43, 5, 2, FMT_DEC),
    F("end_to_end_flow_control", 43, 7, 1, FMT_DEC),
    F("starting_psn", 44, 0, 24),
    F("local_cm_response_timeout", 47, 0, 5, FMT_DEC),
    F("retry_count", 47, 5, 3, FMT_DEC),
    F("pkey", 48, 0, 16),
    F("path_mtu", 50, 0, 4, FMT_DEC),
    F("rdc_exists", 50, 4, 1, FMT_DEC),
    F("rnr_retry_count", 50, 5, 3, FMT_DEC),
    F("max_cm_retries", 51, 0, 4, FMT_DEC),
    F("srq", 51, 4, 1, FMT_DEC),
    F("extended_transport_type", 51, 5, 3, FMT_DEC),
    *_path("primary", 52),
    *_path("alternate", 96),
    F("sap_supported", 139, 5, 1, FMT_DEC),
    F("private_data", 140, 0, 92 * 8, FMT_BYTES),
], "Connection Request (attribute 0x0010).")

CM_MRA = Header("CM_MRA", CM_BODY_LENGTH, [
    F("local_comm_id", 0, 0, 32),
    F("remote_comm_id", 4, 0, 32),
    F("message_mraed", 8, 0, 2, FMT_DEC),
    F("service_timeout", 9, 0, 5, FMT_DEC),
    F("private_data", 10, 0, 222 * 8, FMT_BYTES),
], "Message Receipt Acknowledgement (0x0011). message_mraed: 0 REQ, 1 REP, 2 LAP.")

CM_REJ = Header("CM_REJ", CM_BODY_LENGTH, [
    F("local_comm_id", 0, 0, 32),
    F("remote_comm_id", 4, 0, 32),
    F("message_rejected", 8, 0, 2, FMT_DEC),
    F("reject_info_length", 9, 0, 7, FMT_DEC),
    F("reason", 10, 0, 16, FMT_DEC),
    F("additional_reject_info", 12, 0, 72 * 8, FMT_BYTES),
    F("private_data", 84, 0, 148 * 8, FMT_BYTES),
], "Reject (0x0012). message_rejected: 0 REQ, 1 REP, 2 other.")

CM_REP = Header("CM_REP", CM_BODY_LENGTH, [
    F("local_comm_id", 0, 0, 32),
    F("remote_comm_id", 4, 0, 32),
    F("local_qkey", 8, 0, 32),
    F("local_qpn", 12, 0, 24),
    F("local_eecn", 16, 0, 24),
    F("starting_psn", 20, 0, 24),
    F("responder_resources", 24, 0, 8, FMT_DEC),
    F("initiator_depth", 25, 0, 8, FMT_DEC),
    F("target_ack_delay", 26, 0, 5, FMT_DEC),
    F("failover_accepted", 26, 5, 2, FMT_DEC),
    F("end_to_end_flow_control", 26, 7, 1, FMT_DEC),
    F("rnr_retry_count", 27, 0, 3, FMT_DEC),
    F("srq", 27, 3, 1, FMT_DEC),
    F("local_ca_guid", 28, 0, 64),
    F("private_data", 36, 0, 196 * 8, FMT_BYTES),
], "Reply to a REQ (0x0013).")

CM_RTU = Header("CM_RTU", CM_BODY_LENGTH, [
    F("local_comm_id", 0, 0, 32),
    F("remote_comm_id", 4, 0, 32),
    F("private_data", 8, 0, 224 * 8, FMT_BYTES),
], "Ready To Use (0x0014).")

CM_DREQ = Header("CM_DREQ", CM_BODY_LENGTH, [
    F("local_comm_id", 0, 0, 32),
    F("remote_comm_id", 4, 0, 32),
    F("remote_qpn", 8, 0, 24),
    F("private_data", 12, 0, 220 * 8, FMT_BYTES),
], "Disconnection Request (0x0015). remote_qpn is the remote QPN/EECN.")

CM_DREP = Header("CM_DREP", CM_BODY_LENGTH, [
    F("local_comm_id", 0, 0, 32),
    F("remote_comm_id", 4, 0, 32),
    F("private_data", 8, 0, 224 * 8, FMT_BYTES),
], "Disconnection Reply (0x0016).")

# Recognised by attribute ID; the tracker does not act on them. Only their
# identifying fields are declared, the rest of the body is kept as raw bytes.
CM_SIDR_REQ = Header("CM_SIDR_REQ", CM_BODY_LENGTH, [
    F("request_id", 0, 0, 32),
    F("pkey", 4, 0, 16),
    F("service_id", 8, 0, 64),
    F("private_data", 16, 0, 216 * 8, FMT_BYTES),
], "Service ID Resolution Request (0x0017).")

CM_SIDR_REP = Header("CM_SIDR_REP", CM_BODY_LENGTH, [
    F("request_id", 0, 0, 32),
    F("status", 4, 0, 8, FMT_DEC),
    F("additional_info_length", 5, 0, 8, FMT_DEC),
    F("qpn", 8, 0, 24),
    F("service_id", 12, 0, 64),
    F("qkey", 20, 0, 32),
    F("additional_info", 24, 0, 72 * 8, FMT_BYTES),
    F("private_data", 96, 0, 136 * 8, FMT_BYTES),
], "Service ID Resolution Reply (0x0018).")

CM_LAP = Header("CM_LAP", CM_BODY_LENGTH, [
    F("local_comm_id", 0, 0, 32),
    F("remote_comm_id", 4, 0, 32),
    F("body", 8, 0, 224 * 8, FMT_BYTES),
], "Load Alternate Path (0x0019); recognised only.")

CM_APR = Header("CM_APR", CM_BODY_LENGTH, [
    F("local_comm_id", 0, 0, 32),
    F("remote_comm_id", 4, 0, 32),
    F("body", 8, 0, 224 * 8, FMT_BYTES),
], "Alternate Path Response (0x001A); recognised only.")

# RDMA CM IP addressing header at the start of REQ private data (annex A11).
IP_CM = Header("IP_CM", 36, [
    F("major_version", 0, 0, 4, FMT_DEC),
    F("minor_version", 0, 4, 4, FMT_DEC),
    F("ip_version", 1, 0, 4, FMT_DEC),
    F("src_port", 2, 0, 16, FMT_DEC),
    F("src_ip", 4, 0, 128, FMT_IPV6),
    F("dst_ip", 20, 0, 128, FMT_IPV6),
], "RDMA CM IP private-data header; an IPv4 address is the last 4 of its 16 bytes.")

# Attribute IDs and names.
ATTR_REQ, ATTR_MRA, ATTR_REJ, ATTR_REP, ATTR_RTU, ATTR_DREQ, ATTR_DREP = range(0x10, 0x17)
ATTR_SIDR_REQ, ATTR_SIDR_REP, ATTR_LAP, ATTR_APR = range(0x17, 0x1B)

CM_MESSAGES: dict[int, Header] = {
    ATTR_REQ: CM_REQ,
    ATTR_MRA: CM_MRA,
    ATTR_REJ: CM_REJ,
    ATTR_REP: CM_REP,
    ATTR_RTU: CM_RTU,
    ATTR_DREQ: CM_DREQ,
    ATTR_DREP: CM_DREP,
    ATTR_SIDR_REQ: CM_SIDR_REQ,
    ATTR_SIDR_REP: CM_SIDR_REP,
    ATTR_LAP: CM_LAP,
    ATTR_APR: CM_APR,
}
#: "REQ" -> 0x10 ...
CM_ATTR_IDS: dict[str, int] = {h.name[3:]: a for a, h in CM_MESSAGES.items()}
#: 0x10 -> "REQ" ...
CM_ATTR_NAMES: dict[int, str] = {a: n for n, a in CM_ATTR_IDS.items()}

# --- ICRC (IBTA annex A17): the "variant" fields it covers as ones -------------------
#: The one mask table: by header, the fields the ICRC covers as all ones. The model's
#: ICRC (dataplane.icrc), the CNP generator and the P4 program's ICRC field lists
#: (generated ICRC_*_FIELDS macros) all take it from here.
ICRC_VARIANT_FIELDS: dict[str, tuple[str, ...]] = {
    "IPv4": ("dscp", "ecn", "ttl", "checksum"),
    "IPv6": ("traffic_class", "flow_label", "hop_limit"),
    "UDP": ("checksum",),
    "BTH": ("fecn", "becn", "resv6"),
}
#: Bytes of ones that stand for the LRH at the start of the ICRC's input (A17.8.1).
ICRC_LRH_ONES = 8


def icrc_mask(h: Header) -> bytes:
    """The ICRC mask of a header: per byte, the bits the ICRC covers as ones."""
    m = 0
    for name in ICRC_VARIANT_FIELDS.get(h.name, ()):
        f = h[name]
        m |= f.mask << (h.length * 8 - f.end_bit)
    return m.to_bytes(h.length, "big")


#: Every table, in wire order, for docs and consistency tests.
ALL_HEADERS = (ETHERNET, VLAN, IPV4, IPV6, UDP, BTH, DETH, CNP_PAYLOAD, MAD, *CM_MESSAGES.values(), IP_CM)

__all__ = [n for n in dir() if n.isupper() and len(n) > 1 and not n.startswith("_")]


def headers_markdown() -> str:
    """docs/headers.md: every table, generated (a test keeps the file current)."""
    out = [
        "# Header and message field tables",
        "",
        "Generated from `model/ctcm/spec/headers.py` by `make docs`; do not edit.",
        "Byte offsets are relative to the start of each header (CM messages: to the",
        "232-byte body after the MAD header); bit 0 is the most significant bit of the byte.",
        "Bytes not listed are reserved (zero when encoded, ignored when decoded).",
        "",
    ]
    for h in ALL_HEADERS:
        out += [f"## {h.name} ({h.length} bytes)", "", h.doc, "", "| field | byte | bit | width (bits) |",
                "|---|---:|---:|---:|"]
        out += [f"| {f.name} | {f.byte} | {f.bit} | {f.width} |" for f in h.fields]
        out.append("")
    return "\n".join(out)
