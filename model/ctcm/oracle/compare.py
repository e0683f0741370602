"""The oracle: compare what a device under test produced with a golden vector.

``ctcm compare VECTOR.yaml --observed OBSERVED`` (and the PTF suite, through
:func:`compare_outputs`) reports, per egress port:

* ``reordered``: packets that match an expected packet byte for byte but come
  out of order within the port (the fewest such packets: the longest run in
  expected order stays "in order");
* ``differs``: an expected packet and an observed one that are the same packet
  with changes, with a field-level diff of the decoded headers;
* ``missing`` / ``extra``: expected and not seen / seen and not expected.

Pairing rule for ``differs``: after exact matches are taken out, the remaining
expected and observed packets of a port are walked in order; an expected
packet is paired with the next remaining observed packet (after the last
paired one) whose bytes agree with it in at least half of the positions
(over the longer of the two). Anything left is missing or extra.

Reading vector files and captures, the streaming compare and ``ctcm compare``
are in :mod:`ctcm.oracle.files`.
"""

from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass, field


from ctcm.dataplane.packet import decode

__all__ = ["OracleError", "Expected", "Mismatch", "Report", "compare", "compare_outputs", "field_diff"]




class OracleError(Exception):
    """An input the oracle cannot read; one line for users."""


@dataclass
class Expected:
    stimulus: int  # stimulus id (1-based)
    output: int    # output index within that stimulus (1-based)
    frame: bytes
    summary: str = ""


@dataclass
class Mismatch:
    kind: str  # missing | extra | differs | reordered
    port: int
    expected: Expected | None = None
    observed_index: int | None = None  # 1-based position among the port's observed packets
    details: list[str] = field(default_factory=list)

    def format(self) -> str:
        where = f"port {self.port}"
        if self.expected is not None:
            e = self.expected
            summary = e.summary if e.summary not in ("", "(unchanged)") else decode(e.frame).summary()
            head = f"{self.kind.upper():9s} {where} stimulus {e.stimulus} output {e.output}: {summary}"
        else:
            head = f"{self.kind.upper():9s} {where} observed #{self.observed_index}"
        if self.kind == "reordered":
            head += f" (observed as #{self.observed_index} on the port)"
        lines = [head] + [f"    {d}" for d in self.details]
        return "\n".join(lines)


@dataclass
class Report:
    expected_count: int = 0
    observed_count: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches and self.expected_count == self.observed_count

    def count(self, kind: str) -> int:
        return sum(1 for m in self.mismatches if m.kind == kind)

    def verdict(self) -> str:
        c = {k: self.count(k) for k in ("missing", "extra", "differs", "reordered")}
        word = "PASS" if self.ok else "FAIL"
        return (f"{word}: {self.expected_count} expected, {self.observed_count} observed: {c['missing']} missing, "
                f"{c['extra']} extra, {c['differs']} differing, {c['reordered']} reordered")

    def format(self) -> str:
        return "\n".join([m.format() for m in self.mismatches] + [self.verdict()])

    def to_dict(self) -> dict:
        return {
            "ok": self.ok, "expected": self.expected_count, "observed": self.observed_count,
            "mismatches": [
                {"kind": m.kind, "port": m.port,
                 "stimulus": m.expected.stimulus if m.expected else None,
                 "output": m.expected.output if m.expected else None,
                 "observed_index": m.observed_index, "details": m.details}
                for m in self.mismatches
            ],
        }


# --- field-level diff -------------------------------------------------------------

def field_diff(expected: bytes, observed: bytes) -> list[str]:
    """Lines naming every decoded field that differs, then any other differing bytes."""
    de, do = decode(expected), decode(observed)
    out: list[str] = []
    covered: set[int] = set()
    e_layers = _layer_offsets(de)
    o_layers = {h.name: (off, v) for h, off, v in _layer_offsets(do)}
    for h, off, ev in e_layers:
        if h.name not in o_layers:
            out.append(f"{h.name}: expected, but not decoded in the observed packet")
            continue
        ooff, ov = o_layers.pop(h.name)
        for f in h.fields:
            a, b = ev[f.name], ov[f.name]
            if a == b:
                continue
            if f.is_bytes:
                i = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), 0)
                out.append(f"{h.name}.{f.name} differs at byte {i} of the field "
                           f"(packet byte {off + f.byte + i}): expected {a[i]:02x} got {b[i]:02x}")
            else:
                out.append(f"{h.name}.{f.name} expected {f.format(a)} got {f.format(b)}")
            covered.update(range(off + f.byte, off + f.byte + f.nbytes))
    for name in o_layers:
        out.append(f"{name}: in the observed packet, not expected")
    if de.icrc is not None and do.icrc is not None and de.parsed.end == do.parsed.end and de.icrc != do.icrc:
        out.append(f"ICRC expected {_icrc_hex(de.icrc)} got {_icrc_hex(do.icrc)}")
        covered.update(range(de.parsed.end, de.parsed.end + 4))
    if do.icrc_ok is False and de.icrc_ok:
        out.append("observed ICRC does not match the observed packet's contents")
    if len(expected) != len(observed):
        out.append(f"length expected {len(expected)} got {len(observed)}")
    other = [i for i, (x, y) in enumerate(zip(expected, observed)) if x != y and i not in covered]
    if other:
        i = other[0]
        out.append(f"byte {i} ({_region(de, i)}) expected {expected[i]:02x} got {observed[i]:02x}"
                   + (f" (+{len(other) - 1} more bytes)" if len(other) > 1 else ""))
    if not out and expected != observed:
        out.append("packets differ")
    return out


def _icrc_hex(v: int) -> str:
    return struct.pack("<I", v).hex()


def _layer_offsets(d):
    """(Header, offset, values) of a Decoded, in wire order."""
    p = d.parsed
    offsets = {"Ethernet": 0, "Dot1Q": 14}
    if p.l3 >= 0:
        offsets["IPv4"] = offsets["IPv6"] = p.l3
    if p.l4 >= 0:
        offsets["UDP"] = p.l4
    if p.bth >= 0:
        offsets["BTH"] = p.bth
        offsets["DETH"] = offsets["CNPPadding"] = p.bth + 12
    if p.mad >= 0:
        offsets["MAD"] = p.mad
    out = []
    for h, v in d.layers:
        off = offsets.get(h.name, p.mad + 24 if h.name.startswith("CM_") else -1)
        out.append((h, off, v))
    return out


def _region(d, i: int) -> str:
    name = "Ethernet"
    for h, off, _v in _layer_offsets(d):
        if off <= i:
            name = h.name
    p = d.parsed
    if p.end >= 0 and i >= p.end:
        return "ICRC" if i < p.end + 4 else "trailer"
    if p.bth >= 0 and d.mad is None and d.bth is not None and i >= p.bth + 12 and name in ("BTH", "DETH"):
        return "payload"
    return f"{name} reserved or payload"


# --- matching ------------------------------------------------------------------------

def _lis(seq: list[int]) -> set[int]:
    """Indices (into seq) of one longest strictly increasing subsequence."""

    tails, tails_idx, prev = [], [], [-1] * len(seq)
    for i, x in enumerate(seq):
        k = bisect.bisect_left(tails, x)
        if k == len(tails):
            tails.append(x)
            tails_idx.append(i)
        else:
            tails[k] = x
            tails_idx[k] = i
        prev[i] = tails_idx[k - 1] if k else -1
    keep, i = set(), tails_idx[-1] if tails_idx else -1
    while i >= 0:
        keep.add(i)
        i = prev[i]
    return keep


def _similar(a: bytes, b: bytes) -> bool:
    n = max(len(a), len(b))
    same = sum(1 for x, y in zip(a, b) if x == y)
    return n > 0 and same * 2 >= n


def compare(expected: dict[int, list[Expected]], observed: dict[int, list[bytes]]) -> Report:
    rep = Report(sum(len(v) for v in expected.values()), sum(len(v) for v in observed.values()))
    for port in sorted(set(expected) | set(observed)):
        exp = expected.get(port, [])
        obs = observed.get(port, [])
        by_bytes: dict[bytes, list[int]] = {}
        for i, e in enumerate(exp):
            by_bytes.setdefault(e.frame, []).append(i)
        pairs = []  # (expected index, observed index)
        free_obs = []
        for j, o in enumerate(obs):
            lst = by_bytes.get(bytes(o))
            if lst:
                pairs.append((lst.pop(0), j))
            else:
                free_obs.append(j)
        matched_e = {i for i, _ in pairs}
        keep = _lis([i for i, _ in pairs])
        for k, (i, j) in enumerate(pairs):
            if k not in keep:
                rep.mismatches.append(Mismatch("reordered", port, exp[i], j + 1,
                                               [f"expected position {i + 1} on the port, observed at {j + 1}"]))
        free_exp = [i for i in range(len(exp)) if i not in matched_e]
        start = 0
        used = set()
        for i in free_exp:
            for k in range(start, len(free_obs)):
                j = free_obs[k]
                if _similar(exp[i].frame, obs[j]):
                    rep.mismatches.append(Mismatch("differs", port, exp[i], j + 1, field_diff(exp[i].frame, bytes(obs[j]))))
                    used.add(j)
                    start = k + 1
                    break
            else:
                rep.mismatches.append(Mismatch("missing", port, exp[i]))
        for j in free_obs:
            if j not in used:
                rep.mismatches.append(Mismatch("extra", port, None, j + 1, [decode(bytes(obs[j])).summary()]))
    order = {"differs": 0, "missing": 1, "extra": 2, "reordered": 3}
    rep.mismatches.sort(key=lambda m: (m.port, order[m.kind], m.expected.stimulus if m.expected else 0,
                                       m.observed_index or 0))
    return rep


def compare_outputs(expected_outputs, observed_outputs) -> Report:
    """One stimulus' outputs: lists of (port, bytes)."""
    exp: dict[int, list[Expected]] = {}
    for k, (port, f) in enumerate(expected_outputs, 1):
        exp.setdefault(port, []).append(Expected(0, k, bytes(f)))
    obs: dict[int, list[bytes]] = {}
    for port, f in observed_outputs:
        obs.setdefault(port, []).append(bytes(f))
    return compare(exp, obs)
