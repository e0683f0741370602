"""RoCEv2 invariant CRC (IBTA annex A17) with zlib.crc32.

The ICRC covers: 8 bytes of 0xFF standing for the LRH | the IP header with its
variant fields set to ones | the UDP header with its checksum set to ones |
the BTH with FECN, BECN and the 6 reserved bits set to ones | the rest of the
packet up to the ICRC. Which fields are variant is the field tables' one mask
table (:data:`ctcm.spec.headers.ICRC_VARIANT_FIELDS`, which also generates the
P4 program's ICRC field lists). The CRC value goes on the wire in
little-endian byte order.

Offsets: ``l3`` is where the IP header starts in ``buf``, ``end`` where the
ICRC starts (the end of the covered data). The UDP header is found after the
IP header (IPv4: IHL, options covered as they are; IPv6: its fixed header, no
extension headers in RoCEv2).
"""

from __future__ import annotations

import struct
import zlib

from ctcm.spec import ICRC_LENGTH
from ctcm.spec import headers as H

__all__ = ["icrc", "icrc_bytes", "verify_icrc", "ICRC_LENGTH"]

_crc32 = zlib.crc32
_CRC_LRH = zlib.crc32(b"\xff" * H.ICRC_LRH_ONES)


# Per header: (length, its ICRC mask as an int): OR-ing the header read as one
# big-endian int with the mask sets its variant bits to ones in one step.
_IP = {4: (H.IPV4.length, int.from_bytes(H.icrc_mask(H.IPV4), "big")),
       6: (H.IPV6.length, int.from_bytes(H.icrc_mask(H.IPV6), "big"))}
_UDP_BTH_LEN = H.UDP.length + H.BTH.length
_UDP_BTH_MASK = int.from_bytes(H.icrc_mask(H.UDP) + H.icrc_mask(H.BTH), "big")
_IHL_BYTE = H.IPV4["ihl"].byte
_IHL_MASK = H.IPV4["ihl"].mask
_from = int.from_bytes


def icrc(buf, l3: int, end: int) -> int:
    """ICRC (as an int) of the RoCEv2 packet whose IP header starts at ``l3``."""
    mv = memoryview(buf)
    version = buf[l3] >> 4
    ip = _IP.get(version)
    if ip is None:
        raise ValueError(f"ICRC: IP version {version} at offset {l3}")
    n, mask = ip
    crc = _crc32((_from(mv[l3 : l3 + n], "big") | mask).to_bytes(n, "big"), _CRC_LRH)
    if version == 4:
        l4 = l3 + (buf[l3 + _IHL_BYTE] & _IHL_MASK) * 4
        crc = _crc32(mv[l3 + n : l4], crc)  # options: covered as they are
    else:
        l4 = l3 + n
    m = l4 + _UDP_BTH_LEN
    if end < m:  # a CRC state part-way into the BTH (the vector summaries resume from it)
        k = end - l4
        return _crc32((_from(mv[l4:end], "big") | _UDP_BTH_MASK >> 8 * (_UDP_BTH_LEN - k)).to_bytes(k, "big"), crc)
    crc = _crc32((_from(mv[l4:m], "big") | _UDP_BTH_MASK).to_bytes(_UDP_BTH_LEN, "big"), crc)
    return _crc32(mv[m:end], crc)


def icrc_bytes(buf, l3: int, end: int) -> bytes:
    """The ICRC bytes as sent on the wire."""
    return struct.pack("<I", icrc(buf, l3, end))


def verify_icrc(buf, l3: int, end: int) -> bool:
    """True when the ICRC bytes at ``end`` are the packet's correct ICRC."""
    if len(buf) < end + ICRC_LENGTH:
        return False
    return struct.unpack_from("<I", buf, end)[0] == icrc(buf, l3, end)
