"""The fields the tracker reads from a CM frame, as the P4 parser extracts them.

:func:`cm_fields` for one frame and :func:`cm_fields_batch` for many (numpy
gathers over the bytes :func:`ctcm.dataplane.batch.classify_batch` keeps); every
offset comes from the field tables (:mod:`ctcm.spec.headers`):

* the peer's IP (the destination of what the host sends, the source of what
  it receives), 16 bytes, IPv4 as IPv4-mapped IPv6;
* the message's local and remote comm IDs (at the same place in every
  message after the REQ; a REQ's remote comm ID is 0);
* the QPN a REQ or REP carries (else 0);
* an MRA's "message MRAed" (else 0).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ctcm.spec import headers as H
from ctcm.dataplane.batch import W, classify_batch
from ctcm.dataplane.packet import CM, IP_ADDR_OFFSETS
from ctcm.spec import ATTR_MRA, V4_MAPPED_PREFIX, Direction

__all__ = ["cm_fields", "cm_fields_batch", "peer_ip", "CmFields", "LOCAL_ID", "REMOTE_ID", "QPN_AT", "MRAED",
           "MRAED_SHIFT"]

# Offsets relative to the MAD start (from the field tables).
_BODY = H.MAD.length
LOCAL_ID = _BODY + H.CM_REP["local_comm_id"].byte
REMOTE_ID = _BODY + H.CM_REP["remote_comm_id"].byte
assert H.CM_REQ["local_comm_id"].byte == 0 and all(
    h["local_comm_id"].byte == 0 and h["remote_comm_id"].byte == 4
    for h in (H.CM_MRA, H.CM_REJ, H.CM_REP, H.CM_RTU, H.CM_DREQ, H.CM_DREP))
#: MAD offset of the 3-byte QPN a message records (REQ: local QPN, REP: local QPN)
QPN_AT = {H.ATTR_REQ: _BODY + H.CM_REQ["local_qpn"].byte, H.ATTR_REP: _BODY + H.CM_REP["local_qpn"].byte}
MRAED = _BODY + H.CM_MRA["message_mraed"].byte
MRAED_SHIFT = 8 - H.CM_MRA["message_mraed"].width
_LAST = max(LOCAL_ID + 4, REMOTE_ID + 4, *(q + 3 for q in QPN_AT.values()), MRAED + 1)


def peer_ip(buf, l3: int, ip_version: int, direction) -> bytes:
    """16-byte peer IP of a frame: its destination when the host sends it, else its source."""
    src, dst, n = IP_ADDR_OFFSETS[ip_version]
    a = l3 + (dst if direction == Direction.FROM_HOST else src)
    ip = bytes(buf[a : a + n])
    return V4_MAPPED_PREFIX + ip if n == 4 else ip


def cm_fields(buf, parsed, direction) -> tuple:
    """(attr, peer IP, local comm ID, remote comm ID, QPN, MRAed) of one CM frame."""
    mad, attr = parsed.mad, parsed.attr_id
    q = QPN_AT.get(attr)
    return (attr, peer_ip(buf, parsed.l3, parsed.ip_version, direction),
            int.from_bytes(buf[mad + LOCAL_ID : mad + LOCAL_ID + 4], "big"),
            int.from_bytes(buf[mad + REMOTE_ID : mad + REMOTE_ID + 4], "big"),
            int.from_bytes(buf[mad + q : mad + q + 3], "big") if q else 0,
            buf[mad + MRAED] >> MRAED_SHIFT if attr == ATTR_MRA else 0)


class CmFields(NamedTuple):
    """:func:`cm_fields` of the k CM frames of a batch, as arrays (frame order)."""

    index: np.ndarray      # frame index in the batch
    attr: np.ndarray       # attribute ID
    ip: np.ndarray         # peer IP, k x 16 bytes (IPv4-mapped)
    local_id: np.ndarray   # the message's local comm ID
    remote_id: np.ndarray  # the message's remote comm ID
    qpn: np.ndarray        # QPN of a REQ or REP, else 0
    mraed: np.ndarray      # an MRA's "message MRAed", else 0


def cm_fields_batch(frames: list, dirs: list, scratch=None) -> CmFields:
    """:func:`cm_fields` of every CM frame of a batch; a MAD whose fields lie
    beyond the bytes the batch classifier keeps (long IPv4 options) is read
    with :func:`cm_fields`."""
    res = classify_batch(frames, scratch)
    idx = np.flatnonzero(res.kind == CM)
    if not len(idx):
        z = np.zeros(0, np.int64)
        return CmFields(z, z, np.zeros((0, 16), np.uint8), z, z, z, z)
    mad, l3, attr = res.mad[idx], res.l3[idx], res.attr_id[idx]
    v4 = res.ip_version[idx] == 4
    host = np.fromiter(map(dirs.__getitem__, idx.tolist()), np.int8, len(idx)) == Direction.FROM_HOST
    (s4, d4, _), (s6, d6, _) = IP_ADDR_OFFSETS[4], IP_ADDR_OFFSETS[6]
    ipoff = l3 + np.where(v4, np.where(host, d4, s4), np.where(host, d6, s6))
    inside = mad + _LAST <= W
    fast = np.flatnonzero(inside)
    fi, fm, fa = idx[fast], mad[fast], attr[fast]

    def u(off, nbytes):
        v = res.byte(fi, off).astype(np.int64)
        for j in range(1, nbytes):
            v = v << 8 | res.byte(fi, off + j)
        return v

    ip = np.zeros((len(fast), 16), np.uint8)
    ip[:, :12] = np.frombuffer(V4_MAPPED_PREFIX, np.uint8)
    fv4, fo = v4[fast], ipoff[fast]
    for j in range(16):
        if j >= 12:
            ip[fv4, j] = res.byte(fi[fv4], fo[fv4] + j - 12)
        ip[~fv4, j] = res.byte(fi[~fv4], fo[~fv4] + j)
    (a_req, q_req), (a_rep, q_rep) = QPN_AT.items()
    is_req, is_rep = fa == a_req, fa == a_rep
    qpn = np.where(is_req | is_rep, u(np.where(is_req, fm + q_req, fm + q_rep), 3), 0)
    mraed = np.where(fa == ATTR_MRA, res.byte(fi, fm + MRAED) >> MRAED_SHIFT, 0).astype(np.int64)
    f = CmFields(fi.astype(np.int64), fa.astype(np.int64), ip, u(fm + LOCAL_ID, 4), u(fm + REMOTE_ID, 4),
                 qpn.astype(np.int64), mraed)
    slow = np.flatnonzero(~inside)
    if len(slow):  # rare: read one by one, then merged in frame order
        rows = [(i, *cm_fields(frames[i], res.parsed(i), dirs[i])) for i in idx[slow].tolist()]
        cols = list(zip(*rows))
        extra = CmFields(np.array(cols[0], np.int64), np.array(cols[1], np.int64),
                         np.frombuffer(b"".join(cols[2]), np.uint8).reshape(-1, 16),
                         *(np.array(c, np.int64) for c in cols[3:]))
        order = np.argsort(np.concatenate([f.index, extra.index]), kind="stable")
        f = CmFields(*(np.concatenate([a, b])[order] for a, b in zip(f, extra)))
    return f
