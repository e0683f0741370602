"""RoCEv2 Congestion Notification Packets, as the C library builds them.

``fill_cnp_template`` returns the reusable template (IP header without
addresses, UDP, BTH with opcode 0x81 and BECN, 16 reserved bytes, ICRC
space) starting at the IP header, like ``ctcm_fill_cnp_template`` fills an
mbuf. ``generate_cnp`` fills addresses (optionally), the destination QPN,
optionally the IPv4 header checksum (the C library leaves it to NIC offload)
and the ICRC, into a copy or into a caller's buffer.

:class:`CnpGenerator` is the hot-path form used by the pipeline: the CRC of
the constant prefix is computed once per template.
"""

from __future__ import annotations

import ipaddress
import struct
import zlib

from ctcm import spec as C
from ctcm.spec import headers as H
from ctcm.dataplane.icrc import icrc
from ctcm.dataplane.packet import IPPROTO_UDP, OPCODE_CNP, ROCEV2_PORT, checksum_fold, ipv4_checksum, ones_sum

_crc32 = zlib.crc32
_pack_le = struct.Struct("<I").pack

__all__ = ["fill_cnp_template", "generate_cnp", "CnpGenerator", "CNP_IPV4_LENGTH", "CNP_IPV6_LENGTH"]

_L4_LEN = H.UDP.length + H.BTH.length + H.CNP_PAYLOAD.length + C.ICRC_LENGTH  # 40
CNP_IPV4_LENGTH = H.IPV4.length + _L4_LEN  # 60
CNP_IPV6_LENGTH = H.IPV6.length + _L4_LEN  # 80


def fill_cnp_template(
    ip_version: int = 4,
    *,
    tos: int = C.CNP_TOS,
    ttl: int = C.CNP_TTL,
    ip_id: int = 0,
    df: bool = True,
    sport: int = C.CNP_UDP_SPORT,
    pkey: int = C.CNP_PKEY,
    flow_label: int = 0,
    src_ip=None,
    dst_ip=None,
) -> bytearray:
    """A CNP template starting at the IP header (60 bytes IPv4, 80 IPv6).

    Defaults are the C library's: TOS 0xC2 (DSCP 48, ECT(0)), DF, TTL 255,
    UDP 0xF000 -> 4791 with checksum 0, BTH opcode 0x81, BECN 1, P_Key
    0xFFFF, PSN 0, destination QPN 0, 16 zero bytes, ICRC 0. Addresses are
    zero unless given; the IPv4 header checksum is 0.
    """
    udp = H.UDP.encode(sport=sport, dport=ROCEV2_PORT, length=_L4_LEN, checksum=0)
    bth = H.BTH.encode(opcode=OPCODE_CNP, becn=1, pkey=pkey)
    tail = udp + bth + bytes(H.CNP_PAYLOAD.length) + bytes(4)
    if ip_version == 4:
        ip = H.IPV4.encode(
            version=4, ihl=5, dscp=tos >> 2, ecn=tos & 3, total_length=CNP_IPV4_LENGTH, id=ip_id,
            flags=2 if df else 0, ttl=ttl, protocol=IPPROTO_UDP,
        )
    elif ip_version == 6:
        ip = H.IPV6.encode(
            version=6, traffic_class=tos, flow_label=flow_label, payload_length=_L4_LEN,
            next_header=IPPROTO_UDP, hop_limit=ttl,
        )
    else:
        raise ValueError(f"IP version must be 4 or 6, not {ip_version}")
    buf = bytearray(ip + tail)
    if src_ip is not None or dst_ip is not None:
        _set_addresses(buf, src_ip, dst_ip)
    return buf


def _set_addresses(buf: bytearray, src_ip, dst_ip) -> None:
    version = buf[0] >> 4
    hdr = H.IPV4 if version == 4 else H.IPV6
    for name, addr in (("src", src_ip), ("dst", dst_ip)):
        if addr is None:
            continue
        a = addr if isinstance(addr, (bytes, bytearray)) else ipaddress.ip_address(addr).packed
        if len(a) != hdr[name].width // 8:
            raise ValueError(f"{hdr.name}.{name}: {addr!r} is not an IPv{version} address")
        f = hdr[name]
        buf[f.byte : f.byte + len(a)] = a


def generate_cnp(
    template,
    dest_qpn: int,
    *,
    src_ip=None,
    dst_ip=None,
    ip_checksum: bool = False,
    out: bytearray | None = None,
) -> bytearray:
    """Fill destination QPN (and addresses, checksum) and the ICRC.

    Works on a copy of ``template`` unless ``out`` is given: then the template
    is copied into ``out`` (which may be the template itself, like the C
    function that edits the mbuf in place) and ``out`` is returned.
    """
    if not 0 <= dest_qpn <= 0xFFFFFF:
        raise ValueError(f"BTH.dqpn: value {dest_qpn:#x} does not fit in 24 bits")
    n = len(template)
    if out is None:
        buf = bytearray(template)
    else:
        if len(out) < n:
            raise ValueError(f"output buffer of {len(out)} bytes is shorter than the {n}-byte template")
        if out is not template:
            out[:n] = template
        buf = out
    _set_addresses(buf, src_ip, dst_ip)
    version = buf[0] >> 4
    ip = _IP_HEADER[version]
    q = ip.length + H.UDP.length + _DQPN
    buf[q : q + _DQPN_LEN] = dest_qpn.to_bytes(_DQPN_LEN, "big")
    if version == 4:
        buf[_CSUM : _CSUM + _CSUM_LEN] = bytes(_CSUM_LEN)
        if ip_checksum:
            buf[_CSUM : _CSUM + _CSUM_LEN] = ipv4_checksum(bytes(buf[: ip.length])).to_bytes(_CSUM_LEN, "big")
    end = n - C.ICRC_LENGTH
    struct.pack_into("<I", buf, end, icrc(buf, 0, end))
    return buf


class CnpGenerator:
    """Per-template precomputation for many CNPs (the pipeline's hot path).

    ``generate(src, dst, dqpn)`` takes packed addresses (4 or 16 bytes) and
    returns the CNP from the IP header on, with the ICRC and, when
    ``ip_checksum`` is set, the IPv4 header checksum.
    """

    def __init__(self, template=None, *, ip_version: int = 4, ip_checksum: bool = True):
        t = bytes(template if template is not None else fill_cnp_template(ip_version))
        self.template = t
        self.version = t[0] >> 4
        self.ip_checksum = ip_checksum and self.version == 4
        ip = _IP_HEADER[self.version]
        a0, a1 = ip["src"].byte, ip.length    # the addresses start at a0; UDP at a1
        dq = a1 + H.UDP.length + _DQPN        # the destination QPN
        # the ICRC's CRC state over what precedes the addresses, variant bits as ones
        self._crc0 = zlib.crc32(_LRH_ONES + _masked(t[:a1], H.icrc_mask(ip))[:a0])
        self._mid_masked = _masked(t[a1 : a1 + _UDP_BTH], _UDP_BTH_MASK)[: dq - a1]
        self._prefix = t[:a0]
        self._mid = t[a1:dq]
        self._tail = t[dq + _DQPN_LEN : len(t) - C.ICRC_LENGTH]
        if self.version == 4:
            # the IPv4 header checksum: a partial sum of the header before the addresses
            self._csum_base = ones_sum(t[:_CSUM] + t[_CSUM + _CSUM_LEN : a0])
            self._prefix_csum, self._between = t[:_CSUM], t[_CSUM + _CSUM_LEN : a0]

    def generate(self, src: bytes, dst: bytes, dqpn: int) -> bytes:
        q = dqpn.to_bytes(_DQPN_LEN, "big")
        sd = src + dst
        crc = _crc32(b"".join((sd, self._mid_masked, q, self._tail)), self._crc0)
        if self.ip_checksum:
            a = int.from_bytes(sd, "big")  # the two IPv4 addresses: 4 words
            s = self._csum_base + (a >> 48) + (a >> 32 & 0xFFFF) + (a >> 16 & 0xFFFF) + (a & 0xFFFF)
            return b"".join((self._prefix_csum, checksum_fold(s).to_bytes(_CSUM_LEN, "big"), self._between, sd, self._mid,
                             q, self._tail, _pack_le(crc)))
        return b"".join((self._prefix, sd, self._mid, q, self._tail, _pack_le(crc)))


def _masked(data: bytes, mask: bytes) -> bytes:
    """``data`` with the bits of ``mask`` set (the ICRC's variant fields as ones)."""
    n = len(data)
    return (int.from_bytes(data, "big") | int.from_bytes(mask[:n], "big")).to_bytes(n, "big")


_IP_HEADER = {4: H.IPV4, 6: H.IPV6}
_LRH_ONES = b"\xff" * H.ICRC_LRH_ONES
_UDP_BTH = H.UDP.length + H.BTH.length
_UDP_BTH_MASK = H.icrc_mask(H.UDP) + H.icrc_mask(H.BTH)
_DQPN = H.BTH["dqpn"].byte
_DQPN_LEN = H.BTH["dqpn"].width // 8
_CSUM, _CSUM_LEN = H.IPV4["checksum"].byte, H.IPV4["checksum"].nbytes


class CnpBatchGenerator:
    """Many CNPs at once with numpy, using the linearity of CRC-32.

    The ICRC is affine over GF(2): for a fixed template, the ICRC of a CNP is
    the template's ICRC XOR one table entry per varying byte (4 or 16 bytes
    of each address, 3 of the destination QPN), each table computed once
    with :func:`ctcm.dataplane.icrc.icrc`. ``generate(srcs, dsts, qpns)`` takes arrays
    of packed addresses (N x 4 or N x 16 uint8) and QPNs (N) and returns an
    N x L uint8 array of CNPs, identical to :meth:`CnpGenerator.generate`
    (a test checks).
    """

    def __init__(self, template=None, *, ip_version: int = 4, ip_checksum: bool = True):
        import numpy as np

        t = bytearray(template if template is not None else fill_cnp_template(ip_version))
        self.version = t[0] >> 4
        self.ip_checksum = ip_checksum and self.version == 4
        ip = _IP_HEADER[self.version]
        a0, alen = ip["src"].byte, ip["src"].width // 8
        self._a0, self._alen, self._q0 = a0, alen, ip.length + H.UDP.length + _DQPN
        for i in range(a0, a0 + 2 * alen):
            t[i] = 0
        t[self._q0 : self._q0 + _DQPN_LEN] = bytes(_DQPN_LEN)
        if self.version == 4:
            t[_CSUM : _CSUM + _CSUM_LEN] = bytes(_CSUM_LEN)
        self.template = bytes(t)
        end = len(t) - C.ICRC_LENGTH
        base = icrc(t, 0, end)
        positions = list(range(a0, a0 + 2 * alen)) + list(range(self._q0, self._q0 + _DQPN_LEN))
        tables = np.zeros((len(positions), 256), np.uint32)
        for k, pos in enumerate(positions):
            for v in range(256):
                t[pos] = v
                tables[k, v] = icrc(t, 0, end) ^ base
            t[pos] = 0
        self._base, self._tables, self._end = base, tables, end
        self._csum_base = ones_sum(bytes(t[:a0])) if self.version == 4 else 0  # addresses: per CNP

    def generate(self, srcs, dsts, qpns):
        import numpy as np

        srcs = np.asarray(srcs, np.uint8).reshape(-1, self._alen)
        dsts = np.asarray(dsts, np.uint8).reshape(-1, self._alen)
        qpns = np.asarray(qpns, np.uint32)
        n = len(qpns)
        if not (len(srcs) == len(dsts) == n):
            raise ValueError("srcs, dsts and qpns must have the same length")
        if n and int(qpns.max()) > 0xFFFFFF:
            raise ValueError("BTH.dqpn: a value does not fit in 24 bits")
        q = np.stack([(qpns >> 16) & 0xFF, (qpns >> 8) & 0xFF, qpns & 0xFF], axis=1).astype(np.uint8)
        var = np.concatenate([srcs, dsts, q], axis=1)  # N x (2*alen + 3), in table order
        crc = np.full(n, self._base, np.uint32)
        for k in range(var.shape[1]):
            crc ^= self._tables[k][var[:, k]]
        out = np.tile(np.frombuffer(self.template, np.uint8), (n, 1))
        a0, alen = self._a0, self._alen
        out[:, a0 : a0 + alen] = srcs
        out[:, a0 + alen : a0 + 2 * alen] = dsts
        out[:, self._q0 : self._q0 + _DQPN_LEN] = q
        out[:, self._end : self._end + C.ICRC_LENGTH] = crc.astype("<u4").view(np.uint8).reshape(n, C.ICRC_LENGTH)
        if self.ip_checksum:
            w = var[:, : 2 * alen].astype(np.uint32)  # the two addresses: big-endian 16-bit words
            s = self._csum_base + (w[:, 0::2] << 8 | w[:, 1::2]).sum(axis=1, dtype=np.uint32)
            s = checksum_fold(s)
            out[:, _CSUM] = s >> 8
            out[:, _CSUM + 1] = s & 0xFF
        return out
