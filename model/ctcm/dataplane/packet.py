"""Packet layer: fast classifier, full decoder and frame builders.

* :func:`classify` is the hot path (``ctcm_parse_packets``): it finds the IP,
  UDP, BTH and MAD offsets of a frame using only byte indexing and
  ``struct``, and answers NOT_ROCE / ROCE / CM / MALFORMED without building
  per-header objects. It never raises.
* :func:`decode` builds a :class:`Decoded` view of every layer through the
  field tables of :mod:`ctcm.spec.headers`; it never raises either.
* :func:`build_roce`, :func:`build_cm` and :func:`ip_cm_private_data` encode
  frames through the same tables, with a correct ICRC.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import struct

from ctcm.spec import headers as H
from ctcm.dataplane.icrc import icrc, icrc_bytes
from ctcm.spec import (
    CM_CLASS_VERSION, ECN_CE, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IPV4, ETH_P_IPV6, GSI_QKEY, ICRC_LENGTH, IPPROTO_UDP,
    MAD_BASE_VERSION, MAD_METHOD_SEND, MGMT_CLASS_CM, OPCODE_CNP, OPCODE_RC_SEND_ONLY, OPCODE_UD_SEND_ONLY, QP1,
    ROCEV2_PORT, IPV6_EXTENSION_HEADERS, Kind,
)  # protocol numbers: shared with the batch classifier and the P4 parser

__all__ = [
    "NOT_ROCE", "ROCE", "CM", "MALFORMED", "UNSUPPORTED", "ecn", "ip_src_dst",
    "Parsed", "classify", "Decoded", "decode",
    "build_roce", "build_cm", "ip_cm_private_data", "ipv4_checksum", "ones_sum", "checksum_fold",
    "ROCEV2_PORT", "OPCODE_UD_SEND_ONLY", "OPCODE_RC_SEND_ONLY", "OPCODE_CNP", "GSI_QKEY",
    "MGMT_CLASS_CM", "QP1",
]

# Classification results (spec.Kind).
NOT_ROCE, ROCE, CM, MALFORMED, UNSUPPORTED = (int(k) for k in Kind)

# Offsets taken from the field tables (written once, there).
_ETH_LEN = H.ETHERNET.length
_ETHERTYPE = H.ETHERNET["ethertype"].byte
_VLAN_ETHERTYPE = _ETH_LEN + H.VLAN["ethertype"].byte   # the inner ethertype after an 802.1Q tag
_VLAN_LEN = H.VLAN.length
_IP4_LEN = H.IPV4.length                   # without options
_IP4_TOTAL_LENGTH = H.IPV4["total_length"].byte
_IP4_FLAGS = H.IPV4["flags"].byte            # flags and fragment offset: 16 bits
_IP4_PROTOCOL = H.IPV4["protocol"].byte
_IP4_CHECKSUM = H.IPV4["checksum"].byte
_IP6_LEN = H.IPV6.length
_IP6_PAYLOAD_LENGTH = H.IPV6["payload_length"].byte
_IP6_NEXT_HEADER = H.IPV6["next_header"].byte
_UDP_LEN = H.UDP.length
_UDP_DPORT = H.UDP["dport"].byte
_UDP_LENGTH = H.UDP["length"].byte
_BTH_OPCODE = H.BTH["opcode"].byte
_DQPN = H.BTH["dqpn"].byte
_PSN = H.BTH["psn"].byte
_ACKREQ = H.BTH["ackreq"].byte
_CLASS_VERSION = H.MAD["class_version"].byte
_IP4_FRAGMENT_BITS = (1 << (H.IPV4["flags"].width + H.IPV4["frag_offset"].width - 2)) - 1  # MF and the offset
_MGMT_CLASS = H.MAD["mgmt_class"].byte
_ATTR_ID = H.MAD["attr_id"].byte
_BTH_LEN = H.BTH.length
_DETH_LEN = H.DETH.length
_ICRC_LEN = ICRC_LENGTH
_MAD_LEN = H.MAD_LENGTH

#: IP version -> (source offset, destination offset, address length) in the IP header.
IP_ADDR_OFFSETS = {
    4: (H.IPV4["src"].byte, H.IPV4["dst"].byte, H.IPV4["src"].width // 8),
    6: (H.IPV6["src"].byte, H.IPV6["dst"].byte, H.IPV6["src"].width // 8),
}


# ECN: IPv4's own field; IPv6's low two bits of the traffic class (RFC 3168), which
# end in the traffic class's last byte.
_IP4_ECN, _IP4_ECN_SHIFT = H.IPV4["ecn"].byte, H.IPV4["ecn"].shift
_IP6_ECN = H.IPV6["traffic_class"].byte + H.IPV6["traffic_class"].nbytes - 1
_IP6_ECN_SHIFT = H.IPV6["traffic_class"].shift
_ECN_MASK = H.IPV4["ecn"].mask


def ecn(buf, l3: int, ip_version: int) -> int:
    """The ECN codepoint of the IP header at ``l3`` (ECN_CE = 3: congestion experienced)."""
    if ip_version == 4:
        return buf[l3 + _IP4_ECN] >> _IP4_ECN_SHIFT & _ECN_MASK
    return buf[l3 + _IP6_ECN] >> _IP6_ECN_SHIFT & _ECN_MASK


def ip_src_dst(buf, l3: int, ip_version: int) -> tuple[bytes, bytes]:
    """(source, destination) address bytes of the IP header at ``l3``."""
    s, d, n = IP_ADDR_OFFSETS[ip_version]
    return bytes(buf[l3 + s : l3 + s + n]), bytes(buf[l3 + d : l3 + d + n])


class Parsed:
    """Offsets of one classified frame (what ``ctcm_parse_packets`` records).

    ``kind`` is NOT_ROCE, ROCE, CM or MALFORMED; ``reason`` explains
    NOT_ROCE/MALFORMED. For RoCE frames: ``l3`` (IP header), ``ip_version``,
    ``l4`` (UDP header), ``bth``, ``end`` (start of the ICRC). For CM MADs
    also ``mad`` (MAD common header) and ``attr_id``. Offsets not known are -1.
    """

    __slots__ = ("kind", "reason", "l3", "ip_version", "l4", "bth", "mad", "end", "attr_id")

    def __init__(self, kind, reason="", l3=-1, ip_version=0, l4=-1, bth=-1, mad=-1, end=-1, attr_id=0):
        self.kind = kind
        self.reason = reason
        self.l3 = l3
        self.ip_version = ip_version
        self.l4 = l4
        self.bth = bth
        self.mad = mad
        self.end = end
        self.attr_id = attr_id

    def __repr__(self) -> str:
        parts = [f"{a}={getattr(self, a)!r}" for a in self.__slots__ if getattr(self, a) not in (-1, "", 0) or a == "kind"]
        return f"Parsed({', '.join(parts)})"

    def __eq__(self, other):
        return isinstance(other, Parsed) and all(getattr(self, a) == getattr(other, a) for a in self.__slots__)


def _malformed(reason, **kw):
    return Parsed(MALFORMED, reason, **kw)


def classify(buf) -> Parsed:
    """Classify an Ethernet frame; never raises (any bytes-like input)."""
    try:
        return _classify(buf)
    except Exception as e:  # pragma: no cover - defensive: _classify checks lengths
        return _malformed(f"classifier error: {e}")


def _classify(buf) -> Parsed:
    n = len(buf)
    if n < _ETH_LEN:
        return _malformed(f"truncated Ethernet header ({n} bytes)")
    et = buf[_ETHERTYPE] << 8 | buf[_ETHERTYPE + 1]
    l3 = _ETH_LEN
    if et == ETH_P_8021Q:
        if n < _ETH_LEN + _VLAN_LEN:
            return _malformed("truncated 802.1Q tag")
        et = buf[_VLAN_ETHERTYPE] << 8 | buf[_VLAN_ETHERTYPE + 1]
        l3 = _ETH_LEN + _VLAN_LEN
    if et == ETH_P_8021AD or et == ETH_P_8021Q:
        return Parsed(UNSUPPORTED, "QinQ: stacked VLAN tags are not followed")
    if et == ETH_P_IPV4:
        if n < l3 + _IP4_LEN:
            return _malformed("truncated IPv4 header", l3=l3, ip_version=4)
        vihl = buf[l3]
        if vihl >> 4 != 4:
            return _malformed(f"IPv4 ethertype with IP version {vihl >> 4}", l3=l3, ip_version=4)
        ihl = (vihl & 0x0F) * 4
        if ihl < _IP4_LEN:
            return _malformed(f"IPv4 IHL {ihl // 4} below 5", l3=l3, ip_version=4)
        total = buf[l3 + _IP4_TOTAL_LENGTH] << 8 | buf[l3 + _IP4_TOTAL_LENGTH + 1]
        if total < ihl or l3 + total > n:
            return _malformed(f"IPv4 total length {total} does not fit the frame", l3=l3, ip_version=4)
        if buf[l3 + _IP4_PROTOCOL] != IPPROTO_UDP:
            return Parsed(NOT_ROCE, "not UDP", l3=l3, ip_version=4)
        if (buf[l3 + _IP4_FLAGS] << 8 | buf[l3 + _IP4_FLAGS + 1]) & _IP4_FRAGMENT_BITS:
            return Parsed(NOT_ROCE, "IPv4 fragment", l3=l3, ip_version=4)
        ipv = 4
        l4 = l3 + ihl
        ip_end = l3 + total
    elif et == ETH_P_IPV6:
        if n < l3 + _IP6_LEN:
            return _malformed("truncated IPv6 header", l3=l3, ip_version=6)
        if buf[l3] >> 4 != 6:
            return _malformed(f"IPv6 ethertype with IP version {buf[l3] >> 4}", l3=l3, ip_version=6)
        ip_end = l3 + _IP6_LEN + (buf[l3 + _IP6_PAYLOAD_LENGTH] << 8 | buf[l3 + _IP6_PAYLOAD_LENGTH + 1])
        if ip_end > n:
            return _malformed("IPv6 payload length does not fit the frame", l3=l3, ip_version=6)
        nh = buf[l3 + _IP6_NEXT_HEADER]
        if nh != IPPROTO_UDP:
            if nh in IPV6_EXTENSION_HEADERS:
                return Parsed(UNSUPPORTED, f"IPv6 extension header {nh}: not followed", l3=l3, ip_version=6)
            return Parsed(NOT_ROCE, "not UDP", l3=l3, ip_version=6)
        ipv = 6
        l4 = l3 + _IP6_LEN
    else:
        return Parsed(NOT_ROCE, f"ethertype {et:#06x}")
    if ip_end - l4 < _UDP_LEN:
        return _malformed("truncated UDP header", l3=l3, ip_version=ipv, l4=l4)
    if (buf[l4 + _UDP_DPORT] << 8 | buf[l4 + _UDP_DPORT + 1]) != ROCEV2_PORT:
        return Parsed(NOT_ROCE, "UDP port is not 4791", l3=l3, ip_version=ipv, l4=l4)
    ulen = buf[l4 + _UDP_LENGTH] << 8 | buf[l4 + _UDP_LENGTH + 1]
    if ulen < _UDP_LEN or l4 + ulen > ip_end:
        return _malformed(f"UDP length {ulen} does not fit the IP packet", l3=l3, ip_version=ipv, l4=l4)
    bth = l4 + _UDP_LEN
    end = l4 + ulen - _ICRC_LEN
    if end - bth < _BTH_LEN:
        return _malformed("too short for BTH and ICRC", l3=l3, ip_version=ipv, l4=l4, bth=bth)
    if (buf[bth + _BTH_OPCODE] != OPCODE_UD_SEND_ONLY
            or (buf[bth + _DQPN] << 16 | buf[bth + _DQPN + 1] << 8 | buf[bth + _DQPN + 2]) != QP1):
        return Parsed(ROCE, "", l3, ipv, l4, bth, -1, end)
    mad = bth + _BTH_LEN + _DETH_LEN
    if end - mad != _MAD_LEN:
        return _malformed(
            f"MAD to QP1 is {end - mad} bytes, expected {_MAD_LEN}", l3=l3, ip_version=ipv, l4=l4, bth=bth, end=end
        )
    if buf[mad + _MGMT_CLASS] != MGMT_CLASS_CM:
        return Parsed(ROCE, "", l3, ipv, l4, bth, mad, end)
    if buf[mad] != MAD_BASE_VERSION:
        return _malformed(f"CM MAD base version {buf[mad]}, expected 1", l3=l3, ip_version=ipv, l4=l4, bth=bth, mad=mad, end=end)
    if buf[mad + _CLASS_VERSION] != CM_CLASS_VERSION:
        return _malformed(f"CM class version {buf[mad + _CLASS_VERSION]}, expected {CM_CLASS_VERSION}", l3=l3, ip_version=ipv, l4=l4, bth=bth, mad=mad, end=end)
    return Parsed(CM, "", l3, ipv, l4, bth, mad, end, (buf[mad + _ATTR_ID] << 8 | buf[mad + _ATTR_ID + 1]))


# --- full decode ------------------------------------------------------------

class Decoded:
    """Every layer of a frame, decoded through the field tables.

    Attributes are ``None`` when the layer is absent. ``layers`` lists
    ``(Header, values)`` in wire order (used by summaries and diffs).
    """

    def __init__(self, frame: bytes, parsed: Parsed):
        self.frame = bytes(frame)
        self.parsed = parsed
        self.layers: list[tuple[H.Header, dict]] = []
        self.eth = self.vlan = self.ip = self.udp = self.bth = self.deth = self.mad = None
        self.ip_options = b""
        self.cm = None
        self.cm_name = None
        self.ip_cm = None
        self.payload = b""
        self.icrc = None
        self.icrc_ok = None

    @property
    def kind(self) -> int:
        return self.parsed.kind

    @property
    def reason(self) -> str:
        return self.parsed.reason

    def summary(self) -> str:
        """One line: the facts a reader wants from this frame."""
        p = self.parsed
        parts = []
        if self.ip is not None:
            fmt = H.IPV4 if p.ip_version == 4 else H.IPV6
            parts.append(f"{fmt['src'].format(self.ip['src'])} > {fmt['dst'].format(self.ip['dst'])}")
            ecn = self.ip["ecn"] if p.ip_version == 4 else self.ip["traffic_class"] & 3
            if ecn == ECN_CE:
                parts.append("CE")
        if self.bth is not None:
            op = self.bth["opcode"]
            name = {OPCODE_CNP: "CNP", OPCODE_UD_SEND_ONLY: "UD_SEND_ONLY", OPCODE_RC_SEND_ONLY: "RC_SEND_ONLY"}.get(op, f"op={op:#04x}")
            parts.append(f"BTH {name} dqpn={self.bth['dqpn']:#08x} psn={self.bth['psn']:#08x}")
        if self.cm_name is not None:
            cm = self.cm or {}
            s = f"CM {self.cm_name}"
            for k in ("local_comm_id", "remote_comm_id", "request_id"):
                if k in cm:
                    s += f" {k.replace('_comm_id', '')}={cm[k]:#010x}"
            for k in ("local_qpn", "remote_qpn", "qpn"):
                if k in cm:
                    s += f" {k}={cm[k]:#08x}"
            if "message_mraed" in cm:
                s += f" mraed={cm['message_mraed']}"
            if "message_rejected" in cm:
                s += f" rejected={cm['message_rejected']} reason={cm['reason']}"
            parts.append(s)
        return _summary_end(parts, self.icrc_ok, p)


def _summary_end(parts: list, icrc_ok, p: Parsed) -> str:
    """The common end of both summaries: ICRC and classification verdicts."""
    if icrc_ok is False:
        parts.append("BAD-ICRC")
    if p.kind == MALFORMED:
        parts.append(f"MALFORMED: {p.reason}")
    elif p.kind == NOT_ROCE:
        parts.append(f"not RoCE ({p.reason})")
    elif p.kind == UNSUPPORTED:
        parts.append(f"UNSUPPORTED: {p.reason}")
    return " | ".join(parts) if parts else "empty"


def decode(frame) -> Decoded:
    """Decode every layer that is present and complete; never raises."""
    p = classify(frame)
    d = Decoded(frame, p)
    buf = d.frame
    n = len(buf)

    def take(header, off):
        if off < 0 or n - off < header.length:
            return None
        v = header.decode(buf, off)
        d.layers.append((header, v))
        return v

    d.eth = take(H.ETHERNET, 0)
    if d.eth is None:
        return d
    if d.eth["ethertype"] == ETH_P_8021Q:
        d.vlan = take(H.VLAN, 14)
    if p.l3 < 0:
        return d
    if p.ip_version == 4:
        d.ip = take(H.IPV4, p.l3)
        if d.ip is not None and d.ip["ihl"] > 5:
            d.ip_options = buf[p.l3 + _IP4_LEN : p.l3 + d.ip["ihl"] * 4]
    else:
        d.ip = take(H.IPV6, p.l3)
    if p.l4 < 0:
        return d
    d.udp = take(H.UDP, p.l4)
    if p.bth < 0 or p.kind == NOT_ROCE:
        return d
    d.bth = take(H.BTH, p.bth)
    if p.end >= 0 and n >= p.end + 4:
        d.icrc = struct.unpack_from("<I", buf, p.end)[0]
        d.icrc_ok = d.icrc == icrc(buf, p.l3, p.end)
    if d.bth is None:
        return d
    if d.bth["opcode"] == OPCODE_CNP:
        take(H.CNP_PAYLOAD, p.bth + _BTH_LEN)
        return d
    if d.bth["opcode"] == OPCODE_UD_SEND_ONLY:
        d.deth = take(H.DETH, p.bth + _BTH_LEN)
    if p.mad < 0:
        d.payload = buf[p.bth + _BTH_LEN : p.end] if p.end > p.bth else b""
        return d
    d.mad = take(H.MAD, p.mad)
    if d.mad is None or d.mad["mgmt_class"] != MGMT_CLASS_CM:
        return d
    attr = d.mad["attr_id"]
    hdr = H.CM_MESSAGES.get(attr)
    d.cm_name = hdr.name.removeprefix("CM_") if hdr else f"attr {attr:#06x}"
    if hdr is not None:
        d.cm = take(hdr, p.mad + H.MAD.length)
        if d.cm is not None and attr == H.ATTR_REQ:
            d.ip_cm = H.IP_CM.decode(d.cm["private_data"])
    return d


# --- builders ---------------------------------------------------------------

def ones_sum(data) -> int:
    """Sum of the big-endian 16-bit words of ``data`` (odd length: a zero byte
    added), before folding: partial sums of an Internet checksum add up."""
    if len(data) % 2:
        data = bytes(data) + b"\0"
    return sum(struct.unpack(f"!{len(data) // 2}H", data))


def checksum_fold(s):
    """The Internet checksum (RFC 1071) from a sum of 16-bit words below 2**32:
    carries folded back twice, then complemented. Also works element-wise on
    numpy integer arrays (the batch CNP generator)."""
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4_checksum(header) -> int:
    """Internet checksum of an IPv4 header whose checksum field is zero."""
    return checksum_fold(ones_sum(header))


def _ip(addr) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if isinstance(addr, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return addr
    if isinstance(addr, (bytes, bytearray)):
        return ipaddress.ip_address(bytes(addr))
    return ipaddress.ip_address(addr)


def _mac(m) -> int:
    if isinstance(m, int):
        return m
    return int(str(m).replace(":", "").replace("-", ""), 16)


def build_roce(
    src_ip,
    dst_ip,
    bth: dict,
    payload: bytes = b"",
    *,
    src_mac="02:00:00:00:00:01",
    dst_mac="02:00:00:00:00:02",
    vlan: int | None = None,
    pcp: int = 0,
    dscp: int = 0,
    ecn: int = 0,
    ttl: int = 64,
    ip_id: int = 0,
    df: bool = True,
    ip_options: bytes = b"",
    flow_label: int = 0,
    sport: int = 0xC000,
    udp_checksum: int = 0,
    ip_checksum: bool = True,
    icrc_value: int | None = None,
) -> bytes:
    """An Ethernet/IP/UDP(4791)/BTH/payload/ICRC frame.

    ``bth`` holds BTH field values (table names); ``payload`` is everything
    between the BTH and the ICRC (DETH, MAD...). The ICRC is computed unless
    ``icrc_value`` is given (to craft a bad one).
    """
    src, dst = _ip(src_ip), _ip(dst_ip)
    if src.version != dst.version:
        raise ValueError("source and destination IP versions differ")
    bth_bytes = H.BTH.encode({"pkey": 0xFFFF, **bth})
    udp_len = 8 + len(bth_bytes) + len(payload) + 4
    udp = H.UDP.encode(sport=sport, dport=ROCEV2_PORT, length=udp_len, checksum=udp_checksum)
    if src.version == 4:
        if len(ip_options) % 4:
            raise ValueError("IPv4 options must be a multiple of 4 bytes")
        ihl = 5 + len(ip_options) // 4
        iph = bytearray(H.IPV4.encode(
            version=4, ihl=ihl, dscp=dscp, ecn=ecn, total_length=ihl * 4 + udp_len, id=ip_id,
            flags=2 if df else 0, ttl=ttl, protocol=IPPROTO_UDP, src=int(src), dst=int(dst),
        ) + ip_options)
        if ip_checksum:
            iph[_IP4_CHECKSUM : _IP4_CHECKSUM + 2] = ipv4_checksum(iph).to_bytes(2, "big")
        ethertype = ETH_P_IPV4
    else:
        iph = bytearray(H.IPV6.encode(
            version=6, traffic_class=(dscp << 2) | ecn, flow_label=flow_label, payload_length=udp_len,
            next_header=IPPROTO_UDP, hop_limit=ttl, src=src.packed, dst=dst.packed,
        ))
        ethertype = ETH_P_IPV6
    if vlan is None:
        eth = H.ETHERNET.encode(dst=_mac(dst_mac), src=_mac(src_mac), ethertype=ethertype)
    else:
        eth = H.ETHERNET.encode(dst=_mac(dst_mac), src=_mac(src_mac), ethertype=ETH_P_8021Q)
        eth += H.VLAN.encode(pcp=pcp, vid=vlan, ethertype=ethertype)
    frame = bytearray(eth + iph + udp + bth_bytes + payload + b"\0\0\0\0")
    l3 = len(eth)
    end = len(frame) - 4
    if icrc_value is None:
        frame[end:] = icrc_bytes(frame, l3, end)
    else:
        frame[end:] = struct.pack("<I", icrc_value)
    return bytes(frame)


def ip_cm_private_data(src_ip, dst_ip, src_port: int, extra: bytes = b"") -> bytes:
    """REQ private data starting with the RDMA CM IP header (annex A11)."""
    src, dst = _ip(src_ip), _ip(dst_ip)
    hdr = H.IP_CM.encode(
        major_version=0, minor_version=0, ip_version=src.version, src_port=src_port,
        src_ip=src.packed.rjust(16, b"\0"), dst_ip=dst.packed.rjust(16, b"\0"),
    )
    return hdr + extra


def build_cm(
    msg: str,
    src_ip,
    dst_ip,
    fields: dict | None = None,
    *,
    tid: int = 0,
    method: int = MAD_METHOD_SEND,
    src_qp: int = QP1,
    qkey: int = GSI_QKEY,
    psn: int = 0,
    mad: dict | None = None,
    **roce_kw,
) -> bytes:
    """A CM MAD frame: ``msg`` is "REQ", "REP", ... (or an attribute ID)."""
    attr = msg if isinstance(msg, int) else H.CM_ATTR_IDS[msg.upper()]
    body_hdr = H.CM_MESSAGES.get(attr)
    body = body_hdr.encode(fields or {}) if body_hdr else bytes(H.CM_BODY_LENGTH)
    mad_hdr = H.MAD.encode({
        "base_version": MAD_BASE_VERSION, "mgmt_class": MGMT_CLASS_CM, "class_version": CM_CLASS_VERSION,
        "method": method, "tid": tid, "attr_id": attr, **(mad or {}),
    })
    deth = H.DETH.encode(qkey=qkey, src_qp=src_qp)
    return build_roce(src_ip, dst_ip, {"opcode": OPCODE_UD_SEND_ONLY, "dqpn": QP1, "psn": psn}, deth + mad_hdr + body, **roce_kw)


# --- fast one-line summary (vectors, CLI) -------------------------------------------

_OPNAMES = {OPCODE_CNP: "CNP", OPCODE_UD_SEND_ONLY: "UD_SEND_ONLY", OPCODE_RC_SEND_ONLY: "RC_SEND_ONLY"}
_CM_BODY = H.MAD.length


def _summary_cm_fields():
    """Per attribute: [(label, byte offset in body, nbytes, shift, mask, width)] in summary order."""
    out = {}
    for attr, hdr in H.CM_MESSAGES.items():
        rows = []
        for k, label in (("local_comm_id", "local"), ("remote_comm_id", "remote"), ("request_id", "request_id"),
                         ("local_qpn", "local_qpn"), ("remote_qpn", "remote_qpn"), ("qpn", "qpn"),
                         ("message_mraed", "mraed"), ("message_rejected", "rejected"), ("reason", "reason")):
            if k in hdr:
                f = hdr[k]
                rows.append((label, f.byte, f.nbytes, f.shift, f.mask, f.width))
        out[attr] = rows
    return out


_SUMMARY_CM = _summary_cm_fields()


@functools.lru_cache(maxsize=65536)
def _ntoa(b: bytes) -> str:
    return socket.inet_ntoa(b)  # same text as ipaddress.IPv4Address, faster


@functools.lru_cache(maxsize=65536)
def _ipstr(b: bytes) -> str:
    return str(ipaddress.ip_address(b))


def summarize(frame, parsed: Parsed | None = None) -> str:
    """The same line as ``decode(frame).summary()``, without decoding every field."""
    p = parsed if parsed is not None else classify(frame)
    n = len(frame)
    l3 = p.l3
    parts = _summary_ip(frame, l3, p.ip_version) if l3 >= 0 else []
    icrc_ok = None
    if p.bth >= 0 and p.kind != NOT_ROCE:
        b = p.bth
        if n >= b + 12:
            parts.append(f"{_summary_bth(frame, b)}psn={int.from_bytes(frame[b + _PSN : b + _PSN + 3], 'big'):#08x}")
        if p.end >= 0 and n >= p.end + 4:
            icrc_ok = struct.unpack_from("<I", frame, p.end)[0] == icrc(frame, l3, p.end)
        m = p.mad
        if m >= 0 and n >= m + H.MAD.length and frame[m + _MGMT_CLASS] == MGMT_CLASS_CM:
            attr = frame[m + _ATTR_ID] << 8 | frame[m + _ATTR_ID + 1]
            rows = _SUMMARY_CM.get(attr)
            hdr = H.CM_MESSAGES.get(attr)
            s = f"CM {hdr.name.removeprefix('CM_') if hdr else f'attr {attr:#06x}'}"
            if rows is not None and n >= m + H.MAD_LENGTH:
                body = m + _CM_BODY
                for label, off, nb, shift, mask, width in rows:
                    v = (int.from_bytes(frame[body + off : body + off + nb], "big") >> shift) & mask
                    if label in ("local", "remote", "request_id"):
                        s += f" {label}={v:#010x}"
                    elif width == 24:
                        s += f" {label}={v:#08x}"
                    elif label == "rejected":
                        s += f" rejected={v}"
                    else:
                        s += f" {label}={v}"
            parts.append(s)
    return _summary_end(parts, icrc_ok, p)


def _summary_head(frame: bytes, l3: int, b: int) -> tuple[str, int]:
    """For a RoCE frame without a MAD: the summary up to ``psn=0x`` and the ICRC
    CRC state over the bytes before the BTH's AckReq byte (see :func:`summarize`)."""
    parts = _summary_ip(frame, l3, frame[l3] >> 4)
    parts.append(_summary_bth(frame, b) + "psn=0x")
    return " | ".join(parts), icrc(frame, l3, b + _ACKREQ)


def _summary_ip(frame, l3: int, version: int) -> list[str]:
    """Summary parts of the IP header at ``l3``: addresses, and "CE" if marked."""
    if version == 4 and len(frame) >= l3 + _IP4_LEN:
        src, dst = ip_src_dst(frame, l3, 4)
        parts = [f"{_ntoa(src)} > {_ntoa(dst)}"]
    elif version == 6 and len(frame) >= l3 + _IP6_LEN:
        src, dst = ip_src_dst(frame, l3, 6)
        parts = [f"{_ipstr(src)} > {_ipstr(dst)}"]
    else:
        return []
    if ecn(frame, l3, version) == ECN_CE:
        parts.append("CE")
    return parts


def _summary_bth(frame, b: int) -> str:
    """The BTH summary up to its PSN: ``BTH <opcode> dqpn=0x... ``."""
    op = frame[b]
    name = _OPNAMES.get(op) or f"op={op:#04x}"
    return f"BTH {name} dqpn={int.from_bytes(frame[b + _DQPN : b + _DQPN + 3], 'big'):#08x} "
