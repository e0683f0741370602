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

from .cnp import CnpGenerator, fill_cnp_template
from .constants import CNP_TOS, CNP_TTL, CNP_UDP_SPORT
from .packet import CM, MALFORMED, NOT_ROCE, OPCODE_CNP, ROCE, ECN_CE, classify
from .icrc import verify_icrc
from .tracker import FROM_HOST, FROM_NET, Tracker, normalize_ip

__all__ = ["PipelineConfig", "Pipeline", "PIPELINE_COUNTERS"]

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
        would give them one by one. Classification is vectorised
        (:mod:`ctcm.batch`); only CM MADs and host-side CE packets take the
        per-packet path."""
        from .batch import classify_batch

        items = list(stimulus)
        res = classify_batch([f for _p, f, _t in items])
        kinds, l3s, ipvs, bths = res.kind.tolist(), res.l3.tolist(), res.ip_version.tolist(), res.bth.tolist()
        c = self._counters
        ports = self._ports
        counter_of = {NOT_ROCE: "not_roce", MALFORMED: "malformed"}
        out = []
        for i, (port, frame, now_us) in enumerate(items):
            kind = kinds[i]
            peer = ports.get(port)
            if peer is not None and kind != CM:
                egress, direction = peer
                if kind != ROCE:
                    c["packets"] += 1
                    c["forwarded"] += 1
                    c[counter_of[kind]] += 1
                    out.append(([(egress, bytes(frame))], [], f"malformed: {res.parsed(i).reason}" if kind == MALFORMED else ""))
                    continue
                l3 = l3s[i]
                ce = (frame[l3 + 1] & 3 if ipvs[i] == 4 else (frame[l3 + 1] >> 4) & 3) == ECN_CE
                if not (ce and direction == FROM_HOST and frame[bths[i]] != OPCODE_CNP):
                    c["packets"] += 1
                    c["forwarded"] += 1
                    c["roce"] += 1
                    out.append(([(egress, bytes(frame))], [], ""))
                    continue
            outs = self.process(port, frame, now_us, res.parsed(i))
            out.append((outs, self.events, self.verdict))
        return out

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

