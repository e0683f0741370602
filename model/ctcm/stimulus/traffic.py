"""Traffic and damage for tests, fuzzing, benchmarks and the soak run (one place).

* :func:`protocol_traffic`: realistic seeded traffic from :mod:`ctcm.stimulus.randgen`
  (connections that open, carry data, tear down; loss, retransmission, MRA,
  REJ, IPv6, non-RoCE and malformed frames), as (port, frame, time) items;
* :func:`damage`: random bit flips, truncations, junk frames and (for
  tracker-level items) the wrong direction, at given rates;
* :func:`mutate_fields`: field-aware mutation through the header tables
  (edge values where the length and version checks live), extension,
  truncation, bit flips, with the ICRC made right again half the time so that
  damaged-but-valid CM reaches the tracker.
"""

from __future__ import annotations

import random

from ctcm.spec import headers as H
from ctcm.dataplane.icrc import icrc
from ctcm.dataplane.packet import ETH_P_8021Q, classify
from ctcm.stimulus.randgen import RandomParams, generate

__all__ = ["protocol_traffic", "damage", "mutate_fields", "header_layers"]


def protocol_traffic(seed: int, packets: int, **params) -> list[tuple[int, bytes, int]]:
    """(port, frame, t_us) items of seeded random protocol traffic (RandomParams)."""
    return [(s.port, s.frame, s.t_us) for s in generate(RandomParams(seed=seed, packets=packets, **params))]


def damage(items, seed: int, *, flip: float = 0.0, truncate: float = 0.0, junk: float = 0.0,
           swap: float = 0.0, swap_to=None) -> list:
    """A copy of (port or direction, frame, time) items with random damage: a bit
    flipped (``flip``), the frame cut short (``truncate``), replaced by random
    bytes (``junk``), or sent the other way (``swap``: ``swap_to(x)`` gives the
    other port or direction)."""
    r = random.Random(seed)
    out = []
    for d, f, t in items:
        x = r.random()
        if x < flip and f:
            b = bytearray(f)
            b[r.randrange(len(b))] ^= 1 << r.randrange(8)
            f = bytes(b)
        elif x < flip + truncate:
            f = f[: r.randrange(len(f) + 1)]
        elif x < flip + truncate + junk:
            f = r.randbytes(r.randrange(0, 400))
        elif x < flip + truncate + junk + swap and swap_to is not None:
            d = swap_to(d)
        out.append((d, f, t))
    return out


def header_layers(frame: bytes) -> list:
    """(Header, offset) of every table-described header classify() locates in a frame."""
    p = classify(frame)
    out = [(H.ETHERNET, 0)]
    if frame[12:14] == ETH_P_8021Q.to_bytes(2, "big"):
        out.append((H.VLAN, 14))
    if p.l3 >= 0:
        out.append((H.IPV4 if p.ip_version == 4 else H.IPV6, p.l3))
    if p.l4 >= 0:
        out.append((H.UDP, p.l4))
    if p.bth >= 0:
        out += [(H.BTH, p.bth), (H.DETH, p.bth + H.BTH.length)]
    if p.mad >= 0:
        out.append((H.MAD, p.mad))
        body = H.CM_MESSAGES.get(p.attr_id)
        if body is not None:
            out.append((body, p.mad + H.MAD.length))
    return [(h, o) for h, o in out if o + h.length <= len(frame)]


def mutate_fields(frame: bytes, r: random.Random) -> bytes:
    """One to three mutations of a frame (see the module doc)."""
    f = bytearray(frame)
    for _ in range(r.choice((1, 1, 1, 2, 3))):
        op = r.random()
        layers = header_layers(bytes(f))
        if op < 0.5 and layers:
            header, off = r.choice(layers)
            field = r.choice(header.fields)
            if field.is_bytes:
                value = r.randbytes(field.width // 8)
            else:
                # edge values are where length and version checks live
                value = r.choice((0, 1, field.mask, field.mask - 1, r.randrange(field.mask + 1)))
            header.encode_into(f, off, {field.name: value})
        elif op < 0.65:
            f += r.randbytes(r.randrange(1, 300))  # extension
        elif op < 0.8 and f:
            del f[r.randrange(len(f)):]  # truncation
        elif f:
            i = r.randrange(len(f))
            f[i] ^= 1 << r.randrange(8)
    p = classify(bytes(f))
    if p.end >= 0 and p.end + 4 <= len(f) and r.random() < 0.5:
        # a sender that damaged its own fields: the ICRC is right for them
        f[p.end : p.end + 4] = icrc(f, p.l3, p.end).to_bytes(4, "little")
    return bytes(f)
