"""The pipeline model: what the P4 program does, packet in -> packets out.

One pass per packet, in this order (the P4 program follows the same order):

1. The ingress port must be in the port map (host-side port <-> network-side
   port); a packet from an unmapped port is dropped and counted.
2. Every packet is forwarded unchanged to the peer port (first output).
3. ``classify``: malformed frames are counted (and forwarded); CM MADs have
   their ICRC checked: a bad ICRC is counted and the MAD changes no state;
   good CM MADs update the tracker, direction taken from the ingress port
   (host side = FROM_HOST).
4. A RoCEv2 data packet (not a CM MAD, not a CNP) from the host side whose
   IP ECN is CE (11) and whose (destination IP, BTH destination QPN) is in
   the flow map makes a CNP towards the ingress (host) port (second
   output): Ethernet addresses swapped, the same 802.1Q tag if any, IP
   source = the packet's destination and destination = its source, BTH
   destination QPN = the tracked local QPN, IPv4 checksum filled (bmv2 has
   no offload), ICRC computed. IPv4 packets get an IPv4 CNP, IPv6 an IPv6 one.
5. Optional pacing: at most one CNP per flow per ``cnp_interval_us`` of model
   time (0 = a CNP for every CE packet). The pacing timestamp lives with the
   flow entry: it is forgotten when the flow entry is removed.

Time is model time in integer microseconds, from the stimulus timestamps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import itemgetter

import numpy as np

from .cnp import CnpGenerator, fill_cnp_template
from .gcpause import gc_paused
from .constants import CNP_TOS, CNP_TTL, CNP_UDP_SPORT
from .packet import CM, MALFORMED, NOT_ROCE, OPCODE_CNP, ROCE, ECN_CE, classify
from .icrc import verify_icrc
from .tracker import FROM_HOST, FROM_NET, Tracker, normalize_ip

__all__ = ["PipelineConfig", "Pipeline", "BatchOutput", "PIPELINE_COUNTERS"]

#: Counters of the pipeline itself (the tracker's are merged in, prefixed "tracker.").
PIPELINE_COUNTERS = (
    "packets", "dropped_unknown_port", "forwarded", "not_roce", "roce", "cm", "malformed",
    "icrc_errors", "ce_packets", "ce_untracked", "cnp_sent", "cnp_suppressed",
)


@dataclass
class PipelineConfig:
    """Configuration of one pipeline instance.

    ``port_pairs`` maps each host-side port to its network-side peer.
    """

    port_pairs: dict[int, int] = field(default_factory=lambda: {1: 2})
    mode: str = "ideal"
    geometry: object = None
    timewait_us: int | None = None
    cnp_interval_us: int = 0
    cnp_tos: int = CNP_TOS
    cnp_ttl: int = CNP_TTL
    cnp_sport: int = CNP_UDP_SPORT

    def __post_init__(self):
        hosts = set(self.port_pairs)
        nets = set(self.port_pairs.values())
        if hosts & nets or len(nets) != len(self.port_pairs):
            raise ValueError(f"port map {self.port_pairs}: every port must appear once")
        if self.cnp_interval_us < 0:
            raise ValueError("cnp_interval_us must be >= 0")


_first = itemgetter(0)
_second = itemgetter(1)


class BatchOutput:
    """Results of :meth:`Pipeline.process_batch_arrays` for n packets.

    ``frames``: the input frames (as given); ``egress``: int64 array, the port
    each packet is forwarded to (-1 when dropped: unknown ingress port; also
    when that port is not an int64, with a port map of other objects);
    ``special``: {index: (outputs, events, verdict)} for every packet whose
    result is not just "forwarded unchanged to egress[i], no events, empty
    verdict" (dropped and malformed packets, CM MADs, CE data from the host
    side, with or without a CNP). Every other packet i has the result
    ``([(egress[i], bytes(frames[i]))], [], "")``.
    """

    __slots__ = ("frames", "egress", "special")

    def __init__(self, frames, egress, special):
        self.frames = frames
        self.egress = egress
        self.special = special

    def __len__(self) -> int:
        return len(self.frames)

    def result(self, i: int) -> tuple[list, list, str]:
        """(outputs, events, verdict) of packet i, as :meth:`Pipeline.process` gives them."""
        r = self.special.get(i)
        if r is not None:
            return r
        if not 0 <= i < len(self.frames):
            raise IndexError(i)
        return [(int(self.egress[i]), bytes(self.frames[i]))], [], ""

    def cnps(self) -> list[tuple[int, int, bytes]]:
        """(packet index, port, CNP frame) of every CNP, in order."""
        return [(i, *o) for i in sorted(self.special) for o in self.special[i][0][1:]]

    def to_list(self) -> list[tuple[list, list, str]]:
        """Every packet's (outputs, events, verdict), in order."""
        frames = self.frames
        if set(map(type, frames)) != {bytes}:  # else bytes(f) is f: skip the calls
            frames = list(map(bytes, frames))
        out = [([pair], [], "") for pair in zip(self.egress.tolist(), frames)]
        for i, r in self.special.items():
            out[i] = r
        return out


class Pipeline:
    """Bump-in-the-wire CM tracker + CNP generator (see module doc)."""

    def __init__(self, config: PipelineConfig | None = None, **kw):
        self.config = config = config or PipelineConfig(**kw)
        tkw = {"mode": config.mode}
        if config.geometry is not None:
            tkw["geometry"] = config.geometry
        if config.timewait_us is not None:
            tkw["timewait_us"] = config.timewait_us
        self.tracker = Tracker(**tkw)
        # ingress port -> (egress port, direction)
        self._ports = {}
        for h, n in config.port_pairs.items():
            self._ports[h] = (n, FROM_HOST)
            self._ports[n] = (h, FROM_NET)
        tkw = dict(tos=config.cnp_tos, ttl=config.cnp_ttl, sport=config.cnp_sport)
        self._cnp4 = CnpGenerator(fill_cnp_template(4, **tkw), ip_checksum=True)
        self._cnp6 = CnpGenerator(fill_cnp_template(6, **tkw), ip_checksum=False)
        self._last_cnp: dict[tuple[bytes, int], int] = {}
        self._scratch = None  # classify_batch's reusable buffer (batch path)
        self._counters = dict.fromkeys(PIPELINE_COUNTERS, 0)
        self.events = []  # tracker events of the last process() call
        self.verdict = ""  # what the last process() call did, beyond forwarding

    # -- public -----------------------------------------------------------
    @property
    def counters(self) -> dict[str, int]:
        out = dict(self._counters)
        for k, v in self.tracker.counters.items():
            out[f"tracker.{k}"] = v
        return out

    def snapshot(self) -> dict:
        """Counters, connections and flows (deterministic, YAML/JSON friendly)."""
        return {
            "counters": self.counters,
            "connections": self.tracker.connections(),
            "flows": self.tracker.flows(),
        }

    def process_batch(self, stimulus) -> list[tuple[list, list, str]]:
        """Many packets: ``stimulus`` is (port, frame, now_us) items; returns, per
        packet, (outputs, tracker events, verdict), exactly as :meth:`process`
        would give them one by one. Built on :meth:`process_batch_arrays`."""
        with gc_paused():
            return self.process_batch_arrays(stimulus).to_list()

    def process_batch_arrays(self, stimulus) -> "BatchOutput":
        """The fast batch path: ``stimulus`` is (port, frame, now_us) items (a list
        is used as is); returns a :class:`BatchOutput` whose per-packet results,
        counters and state are exactly those of :meth:`process` called one by one.

        Classification is vectorised (:mod:`ctcm.batch`), and so are the
        decisions of the packets that only get forwarded (port map lookup, ECN
        CE, BTH opcode, counters). Only the packets that read or change state
        take the per-packet path, in stimulus order: CM MADs from a mapped port
        and RoCE data from a host-side port with ECN CE that are not CNPs."""
        with gc_paused():
            return self._process_batch_arrays(stimulus)

    def _process_batch_arrays(self, stimulus) -> "BatchOutput":
        from .batch import W, Scratch, classify_batch

        items = stimulus if isinstance(stimulus, list) else list(stimulus)
        n = len(items)
        if n == 0:
            return BatchOutput([], np.zeros(0, np.int64), {})
        frames = list(map(_second, items))
        if self._scratch is None:
            self._scratch = Scratch()
        res = classify_batch(frames, self._scratch)  # res is used in this call only
        lut = self._port_arrays(list(map(_first, items)))
        if lut is None:  # ports that are not all ints: the reference path for every packet
            special = {}
            egress = np.full(n, -1, np.int64)
            for i, p in enumerate(res.parsed_list(range(n))):
                port, frame, now_us = items[i]
                outs = self.process(port, frame, now_us, p)
                special[i] = (outs, self.events, self.verdict)
                if outs and type(outs[0][0]) is int and -1 <= outs[0][0] < 1 << 63:
                    egress[i] = outs[0][0]
            return BatchOutput(frames, egress, special)
        egress, known, host = lut
        kind = res.kind
        slow = known & (kind == CM)
        # RoCE data from the host side: ECN CE and not a CNP -> flow lookup (state).
        cand = np.flatnonzero(known & host & (kind == ROCE))
        if cand.size:
            l3, bth = res.l3[cand], res.bth[cand]
            inside = (l3 >= 0) & (l3 + 1 < W) & (bth >= 0) & (bth < W)
            tos = res.byte(cand, np.where(inside, l3 + 1, 0))
            ecn = np.where(res.ip_version[cand] == 4, tos & 3, (tos >> 4) & 3)
            opcode = res.byte(cand, np.where(inside, bth, 0))
            slow[cand[~inside | ((ecn == ECN_CE) & (opcode != OPCODE_CNP))]] = True
        # Counters of the packets that stay on the vector path.
        fast = ~slow
        fwd = fast & known
        c = self._counters
        n_fast, n_fwd = int(np.count_nonzero(fast)), int(np.count_nonzero(fwd))
        by_kind = np.bincount(kind[fwd], minlength=4).tolist()
        c["packets"] += n_fast
        c["forwarded"] += n_fwd
        c["dropped_unknown_port"] += n_fast - n_fwd
        c["not_roce"] += by_kind[NOT_ROCE]
        c["roce"] += by_kind[ROCE]
        c["malformed"] += by_kind[MALFORMED]
        c["cm"] += by_kind[CM]  # 0: CM MADs from mapped ports are all on the slow path
        special = {}
        if n_fast != n_fwd:
            for i in np.flatnonzero(~known).tolist():
                special[i] = ([], [], f"dropped: port {items[i][0]} is not in the port map")
        if by_kind[MALFORMED]:
            for i in np.flatnonzero(fwd & (kind == MALFORMED)).tolist():
                special[i] = ([(int(egress[i]), bytes(frames[i]))], [], f"malformed: {res.parsed(i).reason}")
        # State: in stimulus order, the reference path.
        process = self.process
        todo = np.flatnonzero(slow).tolist()
        for i, p in zip(todo, res.parsed_list(todo)):
            port, frame, now_us = items[i]
            outs = process(port, frame, now_us, p)
            special[i] = (outs, self.events, self.verdict)
        if not slow[-1]:  # as after process() of the last packet
            self.events = []
            self.verdict = special[n - 1][2] if n - 1 in special else ""
        return BatchOutput(frames, egress, special)

    def _port_arrays(self, ports: list):
        """(egress, known, host) arrays for a batch's ingress ports; None when a
        port is not an int (or equal to one): then the per-packet path decides."""
        try:
            arr = np.fromiter(ports, np.int64, len(ports))
        except (TypeError, ValueError, OverflowError):
            return None
        # Equal values hash alike: the port map lookup of process() gives the
        # same answer for them (True, 1.0, numpy ints); "1", 1.5 etc. differ.
        if arr.tolist() != ports:
            return None
        try:
            return self._port_lookup(arr)
        except (TypeError, ValueError, OverflowError):  # a port map that is not all ints
            return None

    def _port_lookup(self, ports):
        lo, hi = int(ports.min()), int(ports.max())
        if lo >= 0 and hi < 1 << 16:  # small ports: lookup tables indexed by port
            size = hi + 1
            t_eg = np.full(size, -1, np.int64)
            t_known = np.zeros(size, bool)
            t_host = np.zeros(size, bool)
            for p, (e, d) in self._ports.items():
                if 0 <= p < size:
                    t_eg[p], t_known[p], t_host[p] = e, True, d == FROM_HOST
            return t_eg[ports], t_known[ports], t_host[ports]
        egress = np.full(len(ports), -1, np.int64)
        known = np.zeros(len(ports), bool)
        host = np.zeros(len(ports), bool)
        for p, (e, d) in self._ports.items():
            m = ports == p
            egress[m], known[m], host[m] = e, True, d == FROM_HOST
        return egress, known, host

    def process(self, port: int, frame: bytes, now_us: int = 0, parsed=None) -> list[tuple[int, bytes]]:
        """One packet in; the list of (egress port, frame) out, in order.

        ``parsed``: the frame's :func:`classify` result when the caller has it."""
        c = self._counters
        c["packets"] += 1
        self.events = []
        self.verdict = ""
        peer = self._ports.get(port)
        if peer is None:
            c["dropped_unknown_port"] += 1
            self.verdict = f"dropped: port {port} is not in the port map"
            return []
        egress, direction = peer
        out = [(egress, bytes(frame))]
        c["forwarded"] += 1
        p = parsed if parsed is not None else classify(frame)
        kind = p.kind
        if kind == NOT_ROCE:
            c["not_roce"] += 1
            return out
        if kind == MALFORMED:
            c["malformed"] += 1
            self.verdict = f"malformed: {p.reason}"
            return out
        if kind == CM:
            c["cm"] += 1
            if not verify_icrc(frame, p.l3, p.end):
                c["icrc_errors"] += 1
                self.verdict = "bad ICRC: counted, no state change"
                return out
            ev = self.tracker.process(direction, frame, p, now_us)
            if ev is not None:
                self.events.append(ev)
                if ev.flow_removed is not None:
                    self._last_cnp.pop(ev.flow_removed, None)
            return out
        c["roce"] += 1
        if direction != FROM_HOST or frame[p.bth] == OPCODE_CNP:
            return out
        l3 = p.l3
        if p.ip_version == 4:
            if frame[l3 + 1] & 3 != ECN_CE:
                return out
            src, dst = frame[l3 + 12 : l3 + 16], frame[l3 + 16 : l3 + 20]
        else:
            if (frame[l3 + 1] >> 4) & 3 != ECN_CE:
                return out
            src, dst = frame[l3 + 8 : l3 + 24], frame[l3 + 24 : l3 + 40]
        c["ce_packets"] += 1
        b = p.bth
        dqpn = frame[b + 5] << 16 | frame[b + 6] << 8 | frame[b + 7]
        lqpn = self.tracker.query(dst, dqpn)
        if not lqpn:
            c["ce_untracked"] += 1
            self.verdict = "CE on an untracked flow: no CNP"
            return out
        interval = self.config.cnp_interval_us
        if interval:
            key = (normalize_ip(dst), dqpn)
            last = self._last_cnp.get(key)
            if last is not None and now_us - last < interval:
                c["cnp_suppressed"] += 1
                self.verdict = f"CNP suppressed by pacing (last {now_us - last} µs ago)"
                return out
            self._last_cnp[key] = now_us
        gen = self._cnp4 if p.ip_version == 4 else self._cnp6
        # Ethernet: swap addresses, keep the 802.1Q tag and ethertype.
        l2 = frame[6:12] + frame[0:6] + frame[12:l3]
        out.append((port, l2 + gen.generate(dst, src, lqpn)))
        c["cnp_sent"] += 1
        self.verdict = f"CE on a tracked flow: CNP to local QPN {lqpn:#08x}"
        return out

