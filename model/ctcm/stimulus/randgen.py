"""Randomised scenario generator: a seed and counts -> an interleaved stimulus.

Every connection lives through: open (REQ, optionally MRA, REP, RTU, with
losses and retransmissions), a data phase (RoCE data both ways, some CE
marked), and a close (DREQ, DREP, from either side, sometimes both at once),
or a reject (REJ of the REQ or of the REP, by either side). Connections start
over the run so that at most ``concurrency`` are open at once. Non-RoCE and
malformed packets are sprinkled in. Identical parameters give an identical
stimulus (random.Random(seed) is the only source of randomness).
"""

from __future__ import annotations

import heapq
import ipaddress
import itertools
import random
import zlib
from dataclasses import asdict, dataclass
from dataclasses import fields as dc_fields

from ctcm.dataplane.config import MAX_PORT
from ctcm.io.gcpause import gc_paused
from ctcm.dataplane.icrc import ICRC_LENGTH, icrc
from ctcm.dataplane.packet import classify
from ctcm.spec import headers as H
from ctcm.stimulus.scenario import (
    MAX_TIME_US, RDMA_IP_PS_TCP, Conn, Host, Scenario, ScenarioError, Stimulus, check_name, check_options, cm_frame,
    data_frame, malformed_frame, non_roce_frame, parse_scenario,
)
from ctcm.io.yamlsrc import Ctx, Map, SourceError, load_yaml_text, plain, read_text

_PSN, _PSN_LEN, _PSN_MASK = H.BTH["psn"].byte, H.BTH["psn"].width // 8, H.BTH["psn"].mask

__all__ = ["RandomParams", "generate", "generate_chunks"]

_crc32 = zlib.crc32


@dataclass
class RandomParams:
    seed: int = 1
    packets: int = 10_000          # stop once this many stimulus packets exist
    connections: int = 100         # total connections over the run
    concurrency: int = 20          # at most this many alive at once
    loss: float = 0.02             # chance a CM message is lost (then retransmitted)
    retransmit: float = 0.02       # chance a CM message is duplicated anyway
    reject: float = 0.05           # chance a connection is rejected
    mra: float = 0.05              # chance of an MRA before REP / RTU
    ce_ratio: float = 0.01         # share of data packets marked CE
    non_roce: float = 0.005        # share of non-RoCE packets
    malformed: float = 0.001       # share of malformed packets
    ipv6: float = 0.2              # share of IPv6 connections
    data_per_conn: int = 0         # 0: spread packets evenly over connections
    duration_us: int = 10_000_000  # the stimulus spans about this much time
    ports: tuple = (1, 2)          # (host port, net port)

    def __post_init__(self):
        """Refuse values the generator cannot honour (ValueError naming the field)."""
        for name, lo, hi in (("packets", 1, 1 << 48), ("connections", 1, 1 << 32), ("concurrency", 1, 1_000_000),
                             ("duration_us", 1, MAX_TIME_US // 2), ("seed", 0, (1 << 64) - 1),
                             ("data_per_conn", 0, 1 << 32)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ValueError(f"{name} must be an integer in {lo}..{hi}, got {v!r}")
        for name in ("loss", "retransmit", "reject", "mra", "ce_ratio", "non_roce", "malformed", "ipv6"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise ValueError(f"{name} must be a probability in [0, 1], got {v!r}")
        if self.loss == 1:
            raise ValueError("loss must be below 1 (every CM message would be lost forever)")
        if self.non_roce + self.malformed > 1:
            raise ValueError("non_roce + malformed must not exceed 1")
        ports = tuple(self.ports)
        if len(ports) != 2 or any(isinstance(x, bool) or not isinstance(x, int) or not 0 <= x <= MAX_PORT
                                  for x in ports) or ports[0] == ports[1]:
            raise ValueError(f"ports must be two different port numbers 0..{MAX_PORT} (host, net), got {self.ports!r}")
        self.ports = ports

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ports"] = list(self.ports)
        return d


class _DataTemplate:
    """A data frame of one connection/direction; PSN, ECN and ICRC patched per packet.

    The bytes before the PSN and the CRC state over them are computed once per
    ECN value (``_patched``); :meth:`make` only appends the PSN, the constant
    rest and the ICRC."""

    def __init__(self, conn: Conn, side: str):
        frames = [data_frame(conn, side, 0, ce) for ce in (False, True)]
        p = classify(frames[0])
        self.l3 = p.l3
        self.psn_off = p.bth + _PSN
        self.end = p.end
        self.rest = frames[0][self.psn_off + _PSN_LEN : self.end]
        # indexed by the CE flag: (bytes before the PSN, ICRC CRC state over them)
        self.head = tuple((f[: self.psn_off], icrc(f, self.l3, self.psn_off)) for f in frames)

    def make(self, psn: int, ce: bool) -> bytes:
        head, crc = self.head[ce]
        # The ICRC covers the PSN and everything after it up to the ICRC, unmasked.
        tail = (psn & _PSN_MASK).to_bytes(_PSN_LEN, "big") + self.rest
        return head + tail + _crc32(tail, crc).to_bytes(ICRC_LENGTH, "little")


def _conn(r: random.Random, i: int, host4, host6, p: RandomParams) -> Conn:
    v6 = r.random() < p.ipv6
    if v6:
        hip = host6
        pip = ipaddress.IPv6Address((0xFD00 << 112) | (2 << 64) | r.getrandbits(32))
    else:
        hip = host4
        pip = ipaddress.IPv4Address((10 << 24) | (1 << 16) | r.randrange(1, 1 << 16))
    host = Host("host", hip, "02:00:00:00:00:01", "host")
    peer = Host(f"peer{i}", pip, "02:00:00:00:00:02", "net")
    qpn = {"host": r.randrange(2, 1 << 24), "peer": r.randrange(2, 1 << 24)}
    cid = {"host": r.getrandbits(32), "peer": r.getrandbits(32)}
    psn = {"host": r.getrandbits(24), "peer": r.getrandbits(24)}
    c = Conn(f"c{i}", host, peer, "host" if r.random() < 0.6 else "peer", qpn, cid, psn,
             RDMA_IP_PS_TCP | r.randrange(1024, 65536), None, i)
    c.data_psn = dict(psn)
    return c


def _other(side):
    return "peer" if side == "host" else "host"


def generate(p: RandomParams, progress=None) -> list[Stimulus]:
    """The stimulus for ``p`` (deterministic).

    Stops at ``p.packets`` packets, or earlier when all ``p.connections``
    connections have ended (raise ``connections`` for longer runs).
    """
    with gc_paused():
        out: list[Stimulus] = []
        for chunk in _generate(p, progress, 1 << 62):
            out.extend(chunk)
        return out


def generate_chunks(p: RandomParams, progress=None, chunk: int = 50_000):
    """:func:`generate` as a stream of lists of at most about ``chunk``
    stimulus packets (the same packets), made as they are consumed: memory
    does not grow with ``p.packets``."""
    return _generate(p, progress, chunk)


def _generate(p: RandomParams, progress, chunk: int):
    r = random.Random(p.seed)
    host4 = ipaddress.IPv4Address("10.0.0.1")
    host6 = ipaddress.IPv6Address("fd00::1")
    port = {"host": p.ports[0], "peer": p.ports[1]}
    out: list[Stimulus] = []
    heap: list = []  # (time, seq, kind, payload)
    seq = itertools.count(1)  # ties in time keep the order of pushing
    per_conn = p.data_per_conn or max(1, int(p.packets * 0.95) // max(1, p.connections))
    lifetime = max(1, p.duration_us * p.concurrency // max(1, p.connections))
    rtt = 20

    def push(t, kind, payload, heappush=heapq.heappush):
        heappush(heap, (t, next(seq), kind, payload))

    def cm(t, conn, msg, side, **ev):
        """Queue a CM message with loss/retransmission; returns the time it is delivered."""
        while r.random() < p.loss:  # lost before the wire: retransmitted after a timeout
            t += 1000
        push(t, "cm", (conn, msg, side, ev))
        if r.random() < p.retransmit:
            push(t + 500, "cm", (conn, msg, side, ev))
        return t

    started = 0
    alive = 0

    def start(t):
        nonlocal started, alive
        conn = _conn(r, started, host4, host6, p)
        started += 1
        alive += 1
        o = conn.opener
        a = _other(o)
        t = cm(t, conn, "REQ", o)
        if r.random() < p.reject:
            rej_rep = r.random() < 0.5
            if rej_rep:
                t = cm(t + rtt, conn, "REP", a)
                t = cm(t + rtt, conn, "REJ", o, rejected="REP")
            else:
                t = cm(t + rtt, conn, "REJ", a, rejected="REQ")
            push(t + 1, "end", conn)
            return
        if r.random() < p.mra:
            t = cm(t + rtt, conn, "MRA", a, mraed="REQ")
        t = cm(t + rtt, conn, "REP", a)
        if r.random() < p.mra:
            t = cm(t + rtt, conn, "MRA", o, mraed="REP")
        t = cm(t + rtt, conn, "RTU", o)
        n = max(1, int(r.expovariate(1 / per_conn)))
        span = max(1, int(r.uniform(0.5, 1.5) * lifetime))
        tmpl = {"host": _DataTemplate(conn, "host"), "peer": _DataTemplate(conn, "peer")}
        gap = max(1, span // n)
        push(t + rtt, "data", (conn, tmpl, n, gap))
        t_close = t + rtt + n * gap + rtt
        closer = "host" if r.random() < 0.5 else "peer"
        t2 = cm(t_close, conn, "DREQ", closer)
        if r.random() < 0.05:  # simultaneous DREQs
            cm(t_close + 1, conn, "DREQ", _other(closer))
        t2 = cm(t2 + rtt, conn, "DREP", _other(closer))
        push(t2 + 1, "end", conn)

    t0 = 0
    for _ in range(min(p.concurrency, p.connections)):
        start(t0)
        t0 += r.randrange(1, 1 + lifetime // max(1, p.concurrency))
    # the hot loop: bound methods and parameters in locals
    rand, heappop, append = r.random, heapq.heappop, out.append
    ce_ratio, non_roce, non_roce_or_malformed = p.ce_ratio, p.non_roce, p.non_roce + p.malformed
    done = 0  # packets yielded before ``out``
    packets = p.packets
    while heap and done + len(out) < packets:
        t, _, kind, payload = heappop(heap)
        if kind == "data":
            conn, tmpl, n, gap = payload
            side = "host" if rand() < 0.5 else "peer"
            psn = conn.data_psn[side]
            conn.data_psn[side] = (psn + 1) & 0xFFFFFF
            append(Stimulus(t, port[side], tmpl[side].make(psn, rand() < ce_ratio)))
            if n > 1:
                push(t + gap, "data", (conn, tmpl, n - 1, gap))
            x = rand()
            if x < non_roce:
                append(Stimulus(t, port["host" if x < non_roce / 2 else "peer"],
                                non_roce_frame(r.choice(("arp", "ipv4-udp", "ipv4-tcp", "ipv6-icmp")), done + len(out))))
            elif x < non_roce_or_malformed:
                append(Stimulus(t, port["peer"], malformed_frame(
                    r.choice(("truncated-cm", "bad-mad-version", "bad-ip-version", "udp-length")), conn, "peer")))
        elif kind == "cm":
            conn, msg, side, ev = payload
            append(Stimulus(t, port[side], cm_frame(conn, msg, side, ev)))
        else:  # end
            alive -= 1
            if started < p.connections:
                start(t + r.randrange(1, 100))
        if progress is not None and (done + len(out)) % 10000 == 0:
            progress(done + len(out))
        if len(out) >= chunk:
            done += len(out)
            yield out
            out = []
            append = out.append
    if out:
        yield out


@dataclass
class RandomScenario:
    """A scenario file with a ``random:`` block: generated traffic."""

    name: str
    description: str
    options: dict
    params: RandomParams


def load_source(path: str) -> Scenario | RandomScenario:
    """A scenario file: a :class:`~ctcm.stimulus.scenario.Scenario`, or a :class:`RandomScenario`
    for a file with a ``random:`` block. Errors: one-line ``ScenarioError``."""
    text = read_text(path, ScenarioError)
    try:
        doc = load_yaml_text(text, path, ScenarioError)
    except SourceError:
        doc = None
    if not (isinstance(doc, dict) and "random" in doc):
        return parse_scenario(text, path)  # (also gives the located YAML errors)
    ctx = Ctx(path, ScenarioError)
    ctx.only(doc, {"name", "description", "options", "random"})
    name = check_name(ctx, doc, ctx.req(doc, "name", str))
    ctx.typed(doc, "description", str)
    options = check_options(ctx, ctx.typed(doc, "options", dict, Map()))
    rnd = ctx.typed(doc, "random", dict)
    known = {f.name for f in dc_fields(RandomParams)}
    ctx.only(rnd, known)
    kw = {}
    for k, v in rnd.items():
        if k == "ports":
            if not (isinstance(v, list) and len(v) == 2 and all(type(x) is int for x in v)):
                raise ctx.err(rnd, "ports must be [host port, net port]")
            v = tuple(v)
        elif isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ctx.err(rnd, f"{k!r} must be a number, got {v!r}")
        kw[k] = v
    try:
        params = RandomParams(**kw)
    except ValueError as e:
        raise ctx.err(rnd, str(e)) from None
    return RandomScenario(name, doc.get("description", ""), plain(options), params)
