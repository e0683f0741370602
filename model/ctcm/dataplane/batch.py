"""Vectorised classifier: :func:`classify` for a batch of frames, with numpy.

The pure-Python :func:`ctcm.dataplane.packet.classify` is the reference. This module
runs the same checks over a batch at once on the first bytes of every frame
(enough for Ethernet, 802.1Q, IPv4 with options or IPv6, UDP, BTH, DETH and
the MAD header). Frames that take any branch other than "clean RoCE" or
"clean CM" (malformed, not RoCE, headers beyond the window) are handed to the
reference classifier, so the results are identical (a property test checks)
and the reasons are the reference's.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from ctcm.spec import headers as H
from ctcm.dataplane.packet import _BTH_LEN, CM, ROCE, Parsed, _summary_head, classify, summarize
from ctcm.spec import (
    CM_CLASS_VERSION, ETH_P_8021Q, ETH_P_IPV4, ETH_P_IPV6, ICRC_LENGTH, IPPROTO_UDP, MAD_BASE_VERSION, MGMT_CLASS_CM,
    OPCODE_UD_SEND_ONLY, QP1, ROCEV2_PORT,
)

__all__ = ["BatchResult", "Scratch", "classify_batch", "summarize_many"]

W = 144  # bytes looked at per frame: 18 (L2) + 60 (IPv4 max) + 8 + 12 + 8 + 24 = 130


class BatchResult:
    """Per-frame arrays (int64): kind, l3, ip_version, l4, bth, mad, end, attr_id; plus
    ``parsed(i)`` for a :class:`Parsed` (reasons for the frames the reference classified).

    :meth:`byte` reads header bytes (the first W of every frame, 0 past a
    frame's end) without going back to the frames; ``length``: the frames' lengths."""

    def __init__(self, n):
        self.kind = np.zeros(n, np.int64)
        self.l3 = np.full(n, -1, np.int64)
        self.ip_version = np.zeros(n, np.int64)
        self.l4 = np.full(n, -1, np.int64)
        self.bth = np.full(n, -1, np.int64)
        self.mad = np.full(n, -1, np.int64)
        self.end = np.full(n, -1, np.int64)
        self.attr_id = np.zeros(n, np.int64)
        self.reference: dict[int, Parsed] = {}
        self.length = np.zeros(n, np.int64)
        self._cols = _Cols(np.zeros(W, np.uint8), np.zeros(n, np.int64))

    def __len__(self):
        return len(self.kind)

    def byte(self, idx, off):
        """uint8 array: byte ``off`` (0 <= off < W; an int or an array like idx) of
        the frames ``idx`` (an index array); 0 past a frame's end."""
        return self._cols.buf[self._cols.start[idx] + off]

    def parsed_list(self, idx) -> list[Parsed]:
        """``[self.parsed(i) for i in idx]`` (idx: a list or range of indices), faster."""
        idx = list(idx)
        if not idx:
            return []
        cols = [a[idx].tolist() for a in (self.kind, self.l3, self.ip_version, self.l4, self.bth,
                                           self.mad, self.end, self.attr_id)]
        ref = self.reference
        return [ref[i] if i in ref else Parsed(k, "", l3, v, l4, b, m, e, a)
                for i, k, l3, v, l4, b, m, e, a in zip(idx, *cols)]

    def parsed(self, i: int) -> Parsed:
        if i in self.reference:
            return self.reference[i]
        return Parsed(int(self.kind[i]), "", int(self.l3[i]), int(self.ip_version[i]), int(self.l4[i]),
                      int(self.bth[i]), int(self.mad[i]), int(self.end[i]), int(self.attr_id[i]))


class _Cols:
    """The frames' first W bytes, zero padded, as columns: ``cols[:, off]`` is the
    uint8 array of byte ``off`` of every frame (what ``matrix[:, off]`` of an
    (n, W) matrix of the padded frames would be). ``buf`` holds the frames one
    after the other, each followed by enough zero bytes to have W readable bytes
    (W minus the shortest frame's length); ``start``: where each frame begins.
    ``cols[idx]``: the same for the frames ``idx``."""

    __slots__ = ("buf", "start", "_pos")

    def __init__(self, buf, start):
        self.buf = buf
        self.start = start
        self._pos = None  # scratch index array, reused (no allocation per column)

    def __getitem__(self, key):
        if isinstance(key, tuple):
            rows, off = key
            assert rows == slice(None) and 0 <= off < W
            if self._pos is None:
                self._pos = np.empty_like(self.start)
            return self.buf.take(np.add(self.start, off, out=self._pos))
        return _Cols(self.buf, self.start[key])


def _u16(sub, off):
    return sub[:, off].astype(np.int64) << 8 | sub[:, off + 1]


# Header offsets, from the field tables.
_V4_TOTAL, _V4_FRAG, _V4_PROTO = H.IPV4["total_length"].byte, H.IPV4["flags"].byte, H.IPV4["protocol"].byte
_V6_PLEN, _V6_NEXT = H.IPV6["payload_length"].byte, H.IPV6["next_header"].byte
_UDP_DPORT, _UDP_LEN = H.UDP["dport"].byte, H.UDP["length"].byte
_DQPN = H.BTH["dqpn"].byte
_BASE_VERSION, _MGMT_CLASS, _CLASS_VERSION = H.MAD["base_version"].byte, H.MAD["mgmt_class"].byte, H.MAD["class_version"].byte
_ATTR_ID = H.MAD["attr_id"].byte
_ETHERTYPE, _L3 = H.ETHERNET["ethertype"].byte, H.ETHERNET.length
_VLAN_ETHERTYPE, _L3_VLAN = H.ETHERNET.length + H.VLAN["ethertype"].byte, H.ETHERNET.length + H.VLAN.length
_IHL_MASK = H.IPV4["ihl"].mask
_ACKREQ, _PSN, _PSN_LEN = H.BTH["ackreq"].byte, H.BTH["psn"].byte, H.BTH["psn"].width // 8


def _group(sub, length, l3: int, l4: int, v4: bool, idx, res: BatchResult, clean) -> None:
    """Checks of classify() for frames sharing one layout; fills res for the clean ones."""
    if v4:
        total = _u16(sub, l3 + _V4_TOTAL)
        ok = ((length >= l3 + H.IPV4.length) & (sub[:, l3] >> 4 == 4) & (total >= l4 - l3) & (l3 + total <= length)
              & (sub[:, l3 + _V4_PROTO] == IPPROTO_UDP) & ((_u16(sub, l3 + _V4_FRAG) & 0x3FFF) == 0))
        ip_end = l3 + total
    else:
        ip_end = l3 + H.IPV6.length + _u16(sub, l3 + _V6_PLEN)
        ok = (length >= l3 + H.IPV6.length) & (sub[:, l3] >> 4 == 6) & (ip_end <= length) & (sub[:, l3 + _V6_NEXT] == IPPROTO_UDP)
    ulen = _u16(sub, l4 + _UDP_LEN)
    bth = l4 + H.UDP.length
    end = l4 + ulen - ICRC_LENGTH
    ok &= (ip_end - l4 >= H.UDP.length) & (_u16(sub, l4 + _UDP_DPORT) == ROCEV2_PORT) & (ulen >= H.UDP.length) & (l4 + ulen <= ip_end) & (end - bth >= _BTH_LEN)
    to_qp1 = ((sub[:, bth] == OPCODE_UD_SEND_ONLY) & (sub[:, bth + _DQPN] == QP1 >> 16) & (sub[:, bth + _DQPN + 1] == (QP1 >> 8) & 0xFF)
              & (sub[:, bth + _DQPN + 2] == QP1 & 0xFF))
    mad = bth + _BTH_LEN + H.DETH.length
    mad_ok = end - mad == H.MAD_LENGTH
    mgmt = sub[:, mad + _MGMT_CLASS]
    cm = (to_qp1 & mad_ok & (mgmt == MGMT_CLASS_CM) & (sub[:, mad + _BASE_VERSION] == MAD_BASE_VERSION)
          & (sub[:, mad + _CLASS_VERSION] == CM_CLASS_VERSION))
    ok &= ~to_qp1 | cm | (mad_ok & (mgmt != MGMT_CLASS_CM))
    clean[idx] = ok
    res.kind[idx] = np.where(cm, CM, ROCE)
    res.l3[idx] = l3
    res.ip_version[idx] = 4 if v4 else 6
    res.l4[idx] = l4
    res.bth[idx] = bth
    res.mad[idx] = np.where(to_qp1, mad, -1)
    res.end[idx] = end
    res.attr_id[idx] = np.where(cm, _u16(sub, mad + _ATTR_ID), 0)


class Scratch:
    """A reusable buffer for :func:`classify_batch`: big batches then copy the
    frames into memory already mapped instead of a fresh multi-megabyte block per
    call (page faults are a good part of the cost otherwise). A
    :class:`BatchResult` made with a scratch reads its header bytes from it: its
    :meth:`~BatchResult.byte` is valid until the next call with the same scratch
    (the other fields stay valid)."""

    __slots__ = ("buf",)

    def __init__(self):
        self.buf = np.zeros(0, np.uint8)


_CHUNK = 256  # frames per join when filling a scratch buffer


def _pack(frames: list, gap: int, total: int, scratch: Scratch | None):
    """The frames one after the other, each followed by ``gap`` zero bytes
    (``total`` bytes), as a uint8 array."""
    sep = bytes(gap)
    if scratch is None:
        frames.append(b"")  # the gap after the last frame too
        try:
            return np.frombuffer(sep.join(frames), np.uint8)
        finally:
            frames.pop()
    if scratch.buf.size < total:
        scratch.buf = np.empty(total + total // 4, np.uint8)
    buf = scratch.buf
    pos = 0
    for a in range(0, len(frames), _CHUNK):
        chunk = frames[a : a + _CHUNK]
        chunk.append(b"")
        raw = sep.join(chunk)
        buf[pos : pos + len(raw)] = np.frombuffer(raw, np.uint8)
        pos += len(raw)
    assert pos == total
    return buf[:total]


def classify_batch(frames, scratch: Scratch | None = None) -> BatchResult:
    """:func:`classify` of every frame (see the module doc); ``scratch``: see
    :class:`Scratch`."""
    frames = list(frames)
    n = len(frames)
    res = BatchResult(n)
    if n == 0:
        return res
    # Frames one after the other, each followed by enough zero bytes to make W:
    # byte `off` < W of frame i is buf[start[i] + off], 0 past the frame's end (as
    # if every frame were padded to W bytes). One join, no per-frame copies.
    length = np.fromiter(map(len, frames), np.int64, n)
    gap = max(0, W - int(length.min()))
    buf = _pack(frames, gap, int(length.sum()) + n * gap, scratch)
    start = np.zeros(n, np.int64)
    np.cumsum(length[:-1] + gap, out=start[1:])
    b = _Cols(buf, start)
    res.length, res._cols = length, b
    # Frames are grouped by header layout (L3 offset, IP version, IPv4 IHL): within
    # a group every field sits at a fixed column, so the checks are column slices.
    et = _u16(b, _ETHERTYPE)
    vlan = et == ETH_P_8021Q
    et = np.where(vlan, _u16(b, _VLAN_ETHERTYPE), et)
    vihl = np.where(vlan, b[:, _L3_VLAN], b[:, _L3])
    # key = IP version * 10000 + IPv4 header length * 100 + L3 offset (0: not IP)
    key = np.where(et == ETH_P_IPV4, 40000 + (vihl & _IHL_MASK).astype(np.int32) * 400,
                   np.where(et == ETH_P_IPV6, 60000 + H.IPV6.length * 100, -100)) + np.where(vlan, _L3_VLAN, _L3)
    clean = np.zeros(n, bool)
    k0 = int(key[0])
    same = bool((key == k0).all())  # the usual case: one layout
    for k in [k0] if same else np.unique(key).tolist():
        if k < 40000:
            continue  # not IP: the reference classifier says why
        l3, hlen, v4 = k % 100, (k // 100) % 100, k < 60000
        if hlen < H.IPV4.length:
            continue
        l4 = l3 + hlen
        if l4 + 8 + 12 + 8 + 24 > W:
            continue
        if same:  # no copies
            _group(b, length, l3, l4, v4, slice(None), res, clean)
        else:
            sel = key == k
            idx = np.flatnonzero(sel)
            _group(b[idx], length[idx], l3, l4, v4, idx, res, clean)
    for i in np.flatnonzero(~clean).tolist():
        p = classify(frames[i])
        res.reference[i] = p
        res.kind[i], res.l3[i], res.ip_version[i], res.l4[i] = p.kind, p.l3, p.ip_version, p.l4
        res.bth[i], res.mad[i], res.end[i], res.attr_id[i] = p.bth, p.mad, p.end, p.attr_id
    return res


def summarize_many(frames, cache: dict | None = None) -> list[str]:
    """``[summarize(f) for f in frames]``, for many frames at once (vectors).

    Classification is vectorised (:func:`classify_batch`). RoCE
    frames without a MAD (data, CNPs) are summarised from a cache keyed by
    their bytes from the IP header to the BTH PSN: those bytes give the whole
    summary but the PSN and the ICRC verdict, and the CRC state over them, so
    per frame only the PSN is read and the CRC finished over the rest. Every
    other frame goes through :func:`summarize`. Pass the same (initially
    empty) ``cache`` dict to calls over parts of one frame sequence to share it."""
    frames = frames if isinstance(frames, list) else list(frames)
    res = classify_batch(frames)
    kinds, l3s, bths, mads, ends = (a.tolist() for a in (res.kind, res.l3, res.bth, res.mad, res.end))
    if cache is None:
        cache = {}
    crc32 = zlib.crc32
    icrc_at = struct.Struct("<I").unpack_from
    out = []
    add = out.append
    for i, (f, kind, l3, b, m, e) in enumerate(zip(frames, kinds, l3s, bths, mads, ends)):
        if kind != ROCE or m >= 0 or b < 0 or e < b + _BTH_LEN or len(f) < e + 4 or type(f) is not bytes:
            add(summarize(f, res.parsed(i)))
            continue
        key = f[l3 : b + _ACKREQ]
        hit = cache.get(key)
        if hit is None:
            hit = cache[key] = _summary_head(f, l3, b)
        head, crc = hit
        # the PSN is 24 bits: "{:#08x}" is "0x" and its 6 hex digits
        psn = f[b + _PSN : b + _PSN + _PSN_LEN].hex()
        if crc32(f[b + _ACKREQ : e], crc) == icrc_at(f, e)[0]:
            add(f"{head}{psn}")
        else:
            add(f"{head}{psn} | BAD-ICRC")
    return out
