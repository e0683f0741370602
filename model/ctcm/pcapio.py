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
    #: (timestamp µs, interface index, frame bytes)
    packets: list[tuple[int, int, bytes]] = field(default_factory=list)


def read_capture(path: str) -> Capture:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CaptureError(f"{path}: {e.strerror or e}") from None
    if len(data) < 4:
        raise CaptureError(f"{path}: not a pcap or pcapng file ({len(data)} bytes)")
    if data[:4] in _PCAP_MAGICS:
        return _read_pcap(path, data)
    if struct.unpack_from("<I", data)[0] == _SHB:
        return _read_pcapng(path, data)
    raise CaptureError(f"{path}: not a pcap or pcapng file (magic {data[:4].hex()})")


def _read_pcap(path, data) -> Capture:
    e, div = _PCAP_MAGICS[data[:4]]
    if len(data) < 24:
        raise CaptureError(f"{path}: truncated pcap file header")
    linktype = struct.unpack_from(e + "I", data, 20)[0] & 0x0FFFFFFF
    if linktype != LINKTYPE_ETHERNET:
        raise CaptureError(f"{path}: link type {linktype} is not Ethernet (1)")
    cap = Capture(path, "pcap", ["eth0"])
    off, n = 24, len(data)
    rec = struct.Struct(e + "IIII")
    while off < n:
        if n - off < 16:
            raise CaptureError(f"{path}: truncated pcap record header at byte {off}")
        sec, frac, incl, _orig = rec.unpack_from(data, off)
        off += 16
        if incl > n - off:
            raise CaptureError(f"{path}: truncated packet at byte {off} ({incl} bytes announced, {n - off} left)")
        cap.packets.append((sec * 1_000_000 + frac // div, 0, data[off : off + incl]))
        off += incl
    return cap


def _read_pcapng(path, data) -> Capture:
    cap = Capture(path, "pcapng")
    off, n = 0, len(data)
    e = "<"
    # per section: list of (linktype, ticks per second)
    ifaces: list[tuple[int, int]] = []
    while off < n:
        if n - off < 12:
            raise CaptureError(f"{path}: truncated pcapng block at byte {off}")
        btype = struct.unpack_from(e + "I", data, off)[0]
        if btype == _SHB:
            bom = data[off + 8 : off + 12]
            if bom == b"\x4d\x3c\x2b\x1a":
                e = "<"
            elif bom == b"\x1a\x2b\x3c\x4d":
                e = ">"
            else:
                raise CaptureError(f"{path}: bad pcapng byte-order magic at byte {off + 8}")
            ifaces = []
        blen = struct.unpack_from(e + "I", data, off + 4)[0]
        if blen < 12 or blen % 4 or blen > n - off:
            raise CaptureError(f"{path}: truncated or corrupt pcapng block at byte {off} (length {blen})")
        if struct.unpack_from(e + "I", data, off + blen - 4)[0] != blen:
            raise CaptureError(f"{path}: corrupt pcapng block at byte {off} (trailing length mismatch)")
        body = data[off + 8 : off + blen - 4]
        if btype == _IDB:
            if len(body) < 8:
                raise CaptureError(f"{path}: short interface block at byte {off}")
            linktype = struct.unpack_from(e + "H", body)[0]
            name, tps = f"if{len(cap.interfaces)}", 1_000_000
            for code, val in _options(path, off, body[8:], e):
                if code == 2:
                    name = val.decode("utf-8", "replace")
                elif code == 9 and val:
                    r = val[0]
                    tps = 2 ** (r & 0x7F) if r & 0x80 else 10 ** r
            ifaces.append((linktype, tps))
            cap.interfaces.append(name)
        elif btype in (_EPB, _SPB):
            if btype == _EPB:
                if len(body) < 20:
                    raise CaptureError(f"{path}: short packet block at byte {off}")
                ifid, hi, lo, incl, _orig = struct.unpack_from(e + "IIIII", body)
                pkt_off = 20
            else:
                ifid, hi, lo, pkt_off = 0, 0, 0, 4
                incl = min(struct.unpack_from(e + "I", body)[0], len(body) - 4)
            if ifid >= len(ifaces):
                raise CaptureError(f"{path}: packet at byte {off} names interface {ifid}, which is not declared")
            if pkt_off + incl > len(body):
                raise CaptureError(f"{path}: truncated packet data at byte {off}")
            linktype, tps = ifaces[ifid]
            if linktype != LINKTYPE_ETHERNET:
                raise CaptureError(f"{path}: interface {ifid} link type {linktype} is not Ethernet (1)")
            ticks = (hi << 32) | lo
            ts = ticks * 1_000_000 // tps
            # interface index over the whole file (sections append)
            gid = len(cap.interfaces) - len(ifaces) + ifid
            cap.packets.append((ts, gid, body[pkt_off : pkt_off + incl]))
        off += blen
    return cap


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
    out = [_block(_SHB, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))]
    for name in interfaces:
        opts = _opt(2, name.encode()) + _opt(9, b"\x06") + _opt(0, b"")
        out.append(_block(_IDB, struct.pack("<HHI", LINKTYPE_ETHERNET, 0, 0) + opts))
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
    yield b"".join(out)


def write_pcap(path: str, packets) -> None:
    atomic_write(path, pcap_bytes(packets))


def write_pcapng(path: str, packets, interfaces: list[str], comments=None) -> None:
    atomic_write(path, pcapng_bytes(packets, interfaces, comments))
