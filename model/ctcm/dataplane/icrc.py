"""RoCEv2 invariant CRC (IBTA annex A17) with zlib.crc32.

The ICRC covers: 8 bytes of 0xFF standing for the LRH | the IP header with its
variant fields set to ones (IPv4: TOS, TTL, header checksum; IPv6: traffic
class, flow label, hop limit) | the UDP header with its checksum set to ones |
the BTH with FECN, BECN and the 6 reserved bits (all of byte 4) set to ones |
the rest of the packet up to the ICRC. The CRC value goes on the wire in
little-endian byte order.

Offsets: ``l3`` is where the IP header starts in ``buf``, ``end`` where the
ICRC starts (the end of the covered data). The UDP header is found after the
IP header (IPv4: IHL; IPv6: 40 bytes, no extension headers in RoCEv2).
"""

from __future__ import annotations

import struct
import zlib

__all__ = ["icrc", "icrc_bytes", "verify_icrc", "ICRC_LENGTH"]

ICRC_LENGTH = 4
_CRC_FF8 = zlib.crc32(b"\xff" * 8)
_FF = b"\xff"
_FF2 = b"\xff\xff"
_FF4 = b"\xff\xff\xff\xff"
_crc32 = zlib.crc32


def icrc(buf, l3: int, end: int) -> int:
    """ICRC (as an int) of the RoCEv2 packet whose IP header starts at ``l3``."""
    mv = memoryview(buf)
    first = buf[l3]
    version = first >> 4
    if version == 4:
        ihl = (first & 0x0F) * 4
        crc = _crc32(mv[l3 : l3 + 1], _CRC_FF8)
        crc = _crc32(_FF, crc)  # TOS
        crc = _crc32(mv[l3 + 2 : l3 + 8], crc)
        crc = _crc32(_FF, crc)  # TTL
        crc = _crc32(mv[l3 + 9 : l3 + 10], crc)
        crc = _crc32(_FF2, crc)  # header checksum
        crc = _crc32(mv[l3 + 12 : l3 + ihl], crc)
        l4 = l3 + ihl
    elif version == 6:
        # version nibble kept, traffic class + flow label (28 bits) masked.
        crc = _crc32(bytes((first | 0x0F,)), _CRC_FF8)
        crc = _crc32(b"\xff\xff\xff", crc)
        crc = _crc32(mv[l3 + 4 : l3 + 7], crc)
        crc = _crc32(_FF, crc)  # hop limit
        crc = _crc32(mv[l3 + 8 : l3 + 40], crc)
        l4 = l3 + 40
    else:
        raise ValueError(f"ICRC: IP version {version} at offset {l3}")
    crc = _crc32(mv[l4 : l4 + 6], crc)
    crc = _crc32(_FF2, crc)  # UDP checksum
    bth = l4 + 8
    crc = _crc32(mv[bth : bth + 4], crc)
    crc = _crc32(_FF, crc)  # FECN, BECN, reserved
    crc = _crc32(mv[bth + 5 : end], crc)
    return crc


def icrc_bytes(buf, l3: int, end: int) -> bytes:
    """The 4 ICRC bytes as sent on the wire."""
    return struct.pack("<I", icrc(buf, l3, end))


def verify_icrc(buf, l3: int, end: int) -> bool:
    """True when the 4 bytes at ``end`` are the packet's correct ICRC."""
    if len(buf) < end + 4:
        return False
    return struct.unpack_from("<I", buf, end)[0] == icrc(buf, l3, end)
