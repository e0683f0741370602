"""Strict pcap / pcapng reading and deterministic, atomic writing.

Why not scapy's readers: on a truncated or corrupt pcapng they warn and stop
early, so a damaged capture would silently lose packets. Here every damage is
a :class:`CaptureError` naming the file and the byte offset, and writers
produce byte-identical files for identical input (no host, OS or clock
strings) through a temporary file renamed into place.

Timestamps are integer microseconds (model time). Only Ethernet link type (1)
is accepted.
"""

from __future__ import annotations

import functools
import os
import struct
import tempfile
from dataclasses import dataclass, field

__all__ = ["CaptureError", "Capture", "read_capture", "write_pcap", "write_pcapng", "atomic_write", "new_file_mode"]

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101          # raw IPv4 or IPv6 (DLT_RAW)
LINKTYPE_LINUX_SLL = 113    # Linux cooked capture (tcpdump -i any, older libpcap)
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276   # Linux cooked capture v2 (tcpdump -i any, libpcap >= 1.10)
#: link types read, by name; every frame is given to the model as Ethernet
LINK_TYPES = {LINKTYPE_ETHERNET: "Ethernet", LINKTYPE_RAW: "raw IP", 12: "raw IP", 14: "raw IP",
              LINKTYPE_LINUX_SLL: "Linux cooked (SLL)", LINKTYPE_LINUX_SLL2: "Linux cooked v2 (SLL2)",
              LINKTYPE_IPV4: "raw IPv4", LINKTYPE_IPV6: "raw IPv6"}
_PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1),      # microseconds, little endian
    b"\xa1\xb2\xc3\xd4": (">", 1),
    b"\x4d\x3c\xb2\xa1": ("<", 1000),   # nanoseconds
    b"\xa1\xb2\x3c\x4d": (">", 1000),
}
_SHB = 0x0A0D0D0A
_IDB, _SPB, _EPB = 1, 3, 6


class CaptureError(Exception):
    """A capture file cannot be read; the message is one line for users."""


@dataclass
class Capture:
    path: str
    format: str  # "pcap" or "pcapng"
    interfaces: list[str] = field(default_factory=list)
    #: (timestamp µs, interface index, frame bytes), frames as Ethernet
    packets: list[tuple[int, int, bytes]] = field(default_factory=list)
    #: per packet: its length on the wire (as Ethernet); more than len(frame) when cut by the snaplen
    wire_lengths: list[int] = field(default_factory=list)
    #: link type per interface
    link_types: list[int] = field(default_factory=list)
    #: packets skipped: {link type: count} (interfaces of a link type not read)
    skipped: dict = field(default_factory=dict)

    @property
    def cut(self) -> int:
        """Frames cut by the snaplen (captured length below the length on the wire)."""
        return sum(1 for (_t, _i, f), w in zip(self.packets, self.wire_lengths) if len(f) < w)


def read_capture(path: str) -> Capture:
    """A whole capture in memory (see :class:`CaptureReader` to stream one)."""
    r = CaptureReader(path)
    cap = Capture(path, r.format)
    with r:
        for ts, iface, frame, wire in r:
            cap.packets.append((ts, iface, frame))
            cap.wire_lengths.append(wire)
    cap.interfaces, cap.link_types, cap.skipped = r.interfaces, r.link_types, r.skipped
    return cap


_ZERO_MAC = bytes(6)


def to_ethernet(linktype: int, data: bytes, wire: int) -> tuple[bytes, int] | None:
    """A frame of ``linktype`` as an Ethernet frame (and its length on the
    wire as such): Linux cooked headers become an Ethernet header with the
    sender's address as source (destination zero); raw IP gets zero
    addresses. None when the link-layer header itself is cut."""
    if linktype == LINKTYPE_ETHERNET:
        return data, wire
    if linktype == LINKTYPE_LINUX_SLL:
        if len(data) < 16:
            return None
        alen = int.from_bytes(data[4:6], "big")
        src = data[6:12] if alen == 6 else _ZERO_MAC
        return _ZERO_MAC + src + data[14:16] + data[16:], wire - 2
    if linktype == LINKTYPE_LINUX_SLL2:
        if len(data) < 20:
            return None
        src = data[12:18] if data[11] == 6 else _ZERO_MAC
        return _ZERO_MAC + src + data[0:2] + data[20:], wire - 6
    if linktype in (LINKTYPE_RAW, 12, 14, LINKTYPE_IPV4, LINKTYPE_IPV6):
        if not data:
            return None
        version = {LINKTYPE_IPV4: 4, LINKTYPE_IPV6: 6}.get(linktype, data[0] >> 4)
        etype = b"\x86\xdd" if version == 6 else b"\x08\x00"
        return _ZERO_MAC + _ZERO_MAC + etype + data, wire + 14
    raise ValueError(linktype)


class CaptureReader:
    """A pcap or pcapng file read packet by packet (memory does not grow with
    the file). Iterating gives (timestamp µs, interface index, frame as
    Ethernet, length on the wire). ``interfaces`` and ``link_types`` grow as
    interface blocks are read; packets of interfaces whose link type is not
    in :data:`LINK_TYPES` are skipped and counted in ``skipped`` (a pcap
    file of such a link type is refused). Damage is a :class:`CaptureError`
    naming the byte offset. ``linktype``: read a pcap file's packets as this
    link type whatever its header says (bmv2's pcap-file mode writes 0 for
    Ethernet)."""

    def __init__(self, path: str, linktype: int | None = None):
        self.path = path
        self.linktype = linktype
        try:
            self.f = open(path, "rb")  # noqa: SIM115 (closed by close())
        except OSError as e:
            raise CaptureError(f"{path}: {e.strerror or e}") from None
        self.interfaces: list[str] = []
        self.link_types: list[int] = []
        self.skipped: dict[int, int] = {}
        head = self.f.read(4)
        if len(head) < 4:
            self.close()
            raise CaptureError(f"{path}: not a pcap or pcapng file ({len(head)} bytes)")
        if head in _PCAP_MAGICS:
            self.format = "pcap"
        elif struct.unpack("<I", head)[0] == _SHB:
            self.format = "pcapng"
        else:
            self.close()
            raise CaptureError(f"{path}: not a pcap or pcapng file (magic {head.hex()})")
        self.head = head

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.f.close()

    def __iter__(self):
        return self._pcap() if self.format == "pcap" else self._pcapng()

    def _pcap(self):
        path, f = self.path, self.f
        e, div = _PCAP_MAGICS[self.head]
        rest = f.read(20)
        if len(rest) < 20:
            raise CaptureError(f"{path}: truncated pcap file header")
        linktype = struct.unpack_from(e + "I", rest, 16)[0] & 0x0FFFFFFF
        if self.linktype is not None:
            linktype = self.linktype
        if linktype not in LINK_TYPES:
            raise CaptureError(f"{path}: link type {linktype} is not one this tool reads "
                               f"(Ethernet, Linux cooked SLL/SLL2, raw IP)")
        self.interfaces.append("eth0")
        self.link_types.append(linktype)
        rec = struct.Struct(e + "IIII")
        read, unpack, conv = f.read, rec.unpack, to_ethernet
        off = 24
        while True:
            h = read(16)
            if not h:
                return
            if len(h) < 16:
                raise CaptureError(f"{path}: truncated pcap record header at byte {off}")
            sec, frac, incl, orig = unpack(h)
            off += 16
            data = read(incl)
            if len(data) < incl:
                raise CaptureError(f"{path}: truncated packet at byte {off} ({incl} bytes announced, "
                                   f"{len(data)} left)")
            off += incl
            ts = sec * 1_000_000 + frac // div
            if linktype == LINKTYPE_ETHERNET:
                yield ts, 0, data, max(orig, incl)
                continue
            got = conv(linktype, data, max(orig, incl))
            if got is None:
                self.skipped[linktype] = self.skipped.get(linktype, 0) + 1
                continue
            yield ts, 0, got[0], got[1]

    def _pcapng(self):
        path, f = self.path, self.f
        read = f.read
        off = 0
        e = "<"
        first = self.head
        # per section: list of (linktype, ticks per second)
        ifaces: list[tuple[int, int]] = []
        while True:
            h = first + read(8 - len(first)) if first else read(8)
            first = b""
            if not h:
                return
            if len(h) < 8:
                raise CaptureError(f"{path}: truncated pcapng block at byte {off}")
            btype = struct.unpack_from(e + "I", h)[0]
            if btype == _SHB:
                bom = read(4)
                if bom == b"\x4d\x3c\x2b\x1a":
                    e = "<"
                elif bom == b"\x1a\x2b\x3c\x4d":
                    e = ">"
                else:
                    raise CaptureError(f"{path}: bad pcapng byte-order magic at byte {off + 8}")
                blen = struct.unpack_from(e + "I", h, 4)[0]
                if blen < 16 or blen % 4:
                    raise CaptureError(f"{path}: truncated or corrupt pcapng block at byte {off} (length {blen})")
                rest = read(blen - 12)
                if len(rest) < blen - 12:
                    raise CaptureError(f"{path}: truncated or corrupt pcapng block at byte {off} (length {blen})")
                body = bom + rest[:-4]
                trailer = rest[-4:]
                ifaces = []
            else:
                blen = struct.unpack_from(e + "I", h, 4)[0]
                if blen < 12 or blen % 4:
                    raise CaptureError(f"{path}: truncated or corrupt pcapng block at byte {off} (length {blen})")
                rest = read(blen - 8)
                if len(rest) < blen - 8:
                    raise CaptureError(f"{path}: truncated or corrupt pcapng block at byte {off} (length {blen})")
                body = rest[:-4]
                trailer = rest[-4:]
            if struct.unpack(e + "I", trailer)[0] != blen:
                raise CaptureError(f"{path}: corrupt pcapng block at byte {off} (trailing length mismatch)")
            if btype == _IDB:
                if len(body) < 8:
                    raise CaptureError(f"{path}: short interface block at byte {off}")
                linktype = struct.unpack_from(e + "H", body)[0]
                name, tps = f"if{len(self.interfaces)}", 1_000_000
                for code, val in _options(path, off, body[8:], e):
                    if code == 2:
                        name = val.decode("utf-8", "replace")
                    elif code == 9 and val:
                        r = val[0]
                        tps = 2 ** (r & 0x7F) if r & 0x80 else 10 ** r
                ifaces.append((linktype, tps))
                self.interfaces.append(name)
                self.link_types.append(linktype)
            elif btype in (_EPB, _SPB):
                if btype == _EPB:
                    if len(body) < 20:
                        raise CaptureError(f"{path}: short packet block at byte {off}")
                    ifid, hi, lo, incl, orig = struct.unpack_from(e + "IIIII", body)
                    pkt_off = 20
                else:
                    if len(body) < 4:
                        raise CaptureError(f"{path}: short packet block at byte {off}")
                    ifid, hi, lo, pkt_off = 0, 0, 0, 4
                    orig = struct.unpack_from(e + "I", body)[0]
                    incl = min(orig, len(body) - 4)
                if ifid >= len(ifaces):
                    raise CaptureError(f"{path}: packet at byte {off} names interface {ifid}, which is not declared")
                if pkt_off + incl > len(body):
                    raise CaptureError(f"{path}: truncated packet data at byte {off}")
                linktype, tps = ifaces[ifid]
                data = body[pkt_off : pkt_off + incl]
                wire = max(orig, incl)
                if linktype != LINKTYPE_ETHERNET:
                    got = to_ethernet(linktype, data, wire) if linktype in LINK_TYPES else None
                    if got is None:
                        self.skipped[linktype] = self.skipped.get(linktype, 0) + 1
                        off += blen
                        continue
                    data, wire = got
                ticks = (hi << 32) | lo
                # interface index over the whole file (sections append)
                yield ticks * 1_000_000 // tps, len(self.interfaces) - len(ifaces) + ifid, data, wire
            off += blen


def _options(path, off, raw, e):
    i = 0
    while i + 4 <= len(raw):
        code, length = struct.unpack_from(e + "HH", raw, i)
        if code == 0:
            return
        if i + 4 + length > len(raw):
            raise CaptureError(f"{path}: corrupt option in block at byte {off}")
        yield code, raw[i + 4 : i + 4 + length]
        i += 4 + (length + 3) // 4 * 4


def new_file_mode() -> int:
    """The mode ``open()`` gives a new file under the current umask (0644 for
    umask 022). Temporary files are made 0600; this is what they get before
    they are renamed into place."""
    m = os.umask(0o022)
    os.umask(m)
    return 0o666 & ~m


def atomic_write(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=d)
    try:
        os.fchmod(fd, new_file_mode())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def pcap_bytes(packets) -> bytes:
    """Classic pcap (µs, little endian, Ethernet); packets: (ts_us, iface, bytes)."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, LINKTYPE_ETHERNET)]
    for ts, _iface, frame in packets:
        out.append(struct.pack("<IIII", ts // 1_000_000, ts % 1_000_000, len(frame), len(frame)))
        out.append(bytes(frame))
    return b"".join(out)


def _block(btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack("<II", btype, n) + body + struct.pack("<I", n)


def _opt(code: int, val: bytes) -> bytes:
    return struct.pack("<HH", code, len(val)) + val + b"\0" * (-len(val) % 4)


def pcapng_bytes(packets, interfaces: list[str], comments=None) -> bytes:
    """pcapng with one interface per name (µs resolution), little endian.

    packets: (ts_us, interface index, bytes); comments: optional list of
    per-packet strings (or None) written as opt_comment.
    """
    return b"".join(pcapng_chunks(packets, interfaces, comments))


_EPB_HEAD = struct.Struct("<IIIIIII")  # block type, length, interface, ts high, ts low, captured, original


@functools.lru_cache(maxsize=4096)
def _epb_tail(pad: int, comment_len: int) -> struct.Struct:
    """After the frame: padding, then (with a comment) opt_comment, its padding and
    opt_endofopt; then the block length again."""
    if comment_len:
        return struct.Struct(f"<{pad}xHH{comment_len}s{-comment_len % 4}x4xI")
    return struct.Struct(f"<{pad}xI")


def pcapng_chunks(packets, interfaces: list[str], comments=None, chunk: int = 20_000):
    """:func:`pcapng_bytes` as a sequence of byte strings (for streaming to a file)."""
    records = ((ts, iface, frame, comments[i] if comments else None) for i, (ts, iface, frame) in enumerate(packets))
    return pcapng_record_chunks(records, interfaces, chunk)


def pcapng_record_chunks(records, interfaces: list[str], chunk: int = 20_000):
    """pcapng byte strings, ``chunk`` packets at a time, for ``records``:
    (ts_us, interface index, frame bytes, comment or None) items.

    Each Enhanced Packet Block is the same as ``_block(_EPB, ...)`` of the
    packet header, frame and options, assembled with two struct packs."""
    yield pcapng_header(interfaces)
    yield from pcapng_records(records, chunk)


def pcapng_header(interfaces: list[str]) -> bytes:
    """The section header and one Ethernet interface block per name (µs)."""
    out = [_block(_SHB, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))]
    for name in interfaces:
        opts = _opt(2, name.encode()) + _opt(9, b"\x06") + _opt(0, b"")
        out.append(_block(_IDB, struct.pack("<HHI", LINKTYPE_ETHERNET, 0, 0) + opts))
    return b"".join(out)


def pcapng_records(records, chunk: int = 20_000):
    """The Enhanced Packet Blocks of ``records`` (see :func:`pcapng_record_chunks`),
    ``chunk`` packets per byte string."""
    out: list = []
    head, tail = _EPB_HEAD.pack, _epb_tail
    add = out.append
    for ts, iface, frame, c in records:
        n = len(frame)
        pad = -n % 4
        if c:
            cb = c.encode()
            cl = len(cb)
            blen = 40 + n + pad + cl + (-cl % 4)
            add(head(_EPB, blen, iface, ts >> 32, ts & 0xFFFFFFFF, n, n))
            add(frame if type(frame) is bytes else bytes(frame))
            add(tail(pad, cl).pack(1, cl, cb, blen))
        else:
            blen = 32 + n + pad
            add(head(_EPB, blen, iface, ts >> 32, ts & 0xFFFFFFFF, n, n))
            add(frame if type(frame) is bytes else bytes(frame))
            add(tail(pad, 0).pack(blen))
        if len(out) >= 3 * chunk:
            yield b"".join(out)
            out.clear()
    if out:
        yield b"".join(out)


def write_pcap(path: str, packets) -> None:
    atomic_write(path, pcap_bytes(packets))


def write_pcapng(path: str, packets, interfaces: list[str], comments=None) -> None:
    atomic_write(path, pcapng_bytes(packets, interfaces, comments))
