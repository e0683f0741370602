"""Vectorised classifier: :func:`classify` for a batch of frames, with numpy.

The pure-Python :func:`ctcm.packet.classify` is the reference. This module
runs the same checks over a batch at once on the first bytes of every frame
(enough for Ethernet, 802.1Q, IPv4 with options or IPv6, UDP, BTH, DETH and
the MAD header). Frames that take any branch other than "clean RoCE" or
"clean CM" (malformed, not RoCE, headers beyond the window) are handed to the
reference classifier, so the results are identical (a property test checks)
and the reasons are the reference's.
"""

from __future__ import annotations

import numpy as np

from .packet import CM, NOT_ROCE, ROCE, Parsed, classify

__all__ = ["BatchResult", "classify_batch"]

W = 144  # bytes looked at per frame: 18 (L2) + 60 (IPv4 max) + 8 + 12 + 8 + 24 = 130


class BatchResult:
    """Per-frame arrays (int64): kind, l3, ip_version, l4, bth, mad, end, attr_id; plus
    ``parsed(i)`` for a :class:`Parsed` (reasons for the frames the reference classified)."""

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

    def __len__(self):
        return len(self.kind)

    def parsed(self, i: int) -> Parsed:
        if i in self.reference:
            return self.reference[i]
        return Parsed(int(self.kind[i]), "", int(self.l3[i]), int(self.ip_version[i]), int(self.l4[i]),
                      int(self.bth[i]), int(self.mad[i]), int(self.end[i]), int(self.attr_id[i]))


def classify_batch(frames) -> BatchResult:
    frames = list(frames)
    n = len(frames)
    res = BatchResult(n)
    if n == 0:
        return res
    zero = b"\0"
    raw = b"".join([f[:W].ljust(W, zero) for f in frames])
    b = np.frombuffer(raw, np.uint8).reshape(n, W)
    length = np.fromiter(map(len, frames), np.int64, n)
    rows = np.arange(n)

    def g(off):  # one byte per frame at per-frame offsets (clipped; validity checked separately)
        return b[rows, np.clip(off, 0, W - 1)].astype(np.int64)

    def g16(off):
        return g(off) << 8 | g(off + 1)

    et = b[:, 12].astype(np.int64) << 8 | b[:, 13]
    vlan = et == 0x8100
    l3 = np.where(vlan, 18, 14)
    et = np.where(vlan, b[:, 16].astype(np.int64) << 8 | b[:, 17], et)
    v4 = et == 0x0800
    v6 = et == 0x86DD
    vihl = g(l3)
    ihl = (vihl & 0x0F) * 4
    total = g16(l3 + 2)
    ok4 = (v4 & (length >= l3 + 20) & (vihl >> 4 == 4) & (ihl >= 20) & (total >= ihl) & (l3 + total <= length)
           & (g(l3 + 9) == 17) & ((g16(l3 + 6) & 0x3FFF) == 0))
    ip_end6 = l3 + 40 + g16(l3 + 4)
    ok6 = v6 & (length >= l3 + 40) & (vihl >> 4 == 6) & (ip_end6 <= length) & (g(l3 + 6) == 17)
    l4 = np.where(ok4, l3 + ihl, l3 + 40)
    ip_end = np.where(ok4, l3 + total, ip_end6)
    ulen = g16(l4 + 4)
    bth = l4 + 8
    end = l4 + ulen - 4
    ok = ((ok4 | ok6) & (ip_end - l4 >= 8) & (g16(l4 + 2) == 4791) & (ulen >= 8) & (l4 + ulen <= ip_end)
          & (end - bth >= 12) & (bth + 12 <= W))
    op = g(bth)
    dqpn = g(bth + 5) << 16 | g(bth + 6) << 8 | g(bth + 7)
    to_qp1 = (op == 0x64) & (dqpn == 1)
    mad = bth + 20
    mad_ok = (end - mad == 256) & (mad + 24 <= W)
    mgmt = g(mad + 1)
    cm = to_qp1 & mad_ok & (mgmt == 7) & (g(mad) == 1) & (g(mad + 2) == 2)
    other_mad = to_qp1 & mad_ok & (mgmt != 7)
    clean = ok & (~to_qp1 | cm | other_mad)
    res.kind[:] = np.where(cm, CM, ROCE)
    res.l3[:] = l3
    res.ip_version[:] = np.where(ok4, 4, 6)
    res.l4[:] = l4
    res.bth[:] = bth
    res.mad[:] = np.where(to_qp1, mad, -1)
    res.end[:] = end
    res.attr_id[:] = np.where(cm, g16(mad + 16), 0)
    for i in np.flatnonzero(~clean).tolist():
        p = classify(frames[i])
        res.reference[i] = p
        res.kind[i], res.l3[i], res.ip_version[i], res.l4[i] = p.kind, p.l3, p.ip_version, p.l4
        res.bth[i], res.mad[i], res.end[i], res.attr_id[i] = p.bth, p.mad, p.end, p.attr_id
    return res
