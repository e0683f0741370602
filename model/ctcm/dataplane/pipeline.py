"""The pipeline model: what the P4 program does, packet in -> packets out.

One pass per packet, in this order (the P4 program follows the same order):

1. The ingress port must be in the port map (host-side port <-> network-side
   port); a packet from an unmapped port is dropped and counted.
2. Every packet is forwarded unchanged to the peer port (first output).
3. ``classify``: malformed frames are counted (and forwarded), so are
   frames with headers not followed (QinQ, IPv6 extension headers:
   ``unsupported``); CM MADs have
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
   time (0 = a CNP for every CE packet). The pacing time is the tracker's
   ``last_cnp[slot]``, beside its tables as in the P4 program: cleared when
   the slot's flow entry is made or removed (machine.flow_insert, flow_remove).

Time is model time in integer microseconds, from the stimulus timestamps.
"""

from __future__ import annotations

from operator import itemgetter
from typing import NamedTuple

import numpy as np

from ctcm.dataplane.batch import W, Scratch, classify_batch
from ctcm.dataplane.cnp import CnpGenerator, fill_cnp_template
from ctcm.dataplane.config import MAX_PORT, Config
from ctcm.io.gcpause import gc_paused
from ctcm.dataplane.icrc import verify_icrc
from ctcm.dataplane.packet import CM, ECN_CE, MALFORMED, NOT_ROCE, OPCODE_CNP, ROCE, UNSUPPORTED, classify, ip_src_dst
from ctcm.spec import PIPELINE_COUNTERS, Direction
from ctcm.dataplane.tracker import Tracker

__all__ = ["Pipeline", "Result", "BatchOutput"]

FROM_HOST = Direction.FROM_HOST
# The pipeline's counters as plain ints (list indices: fast in the per-packet path).
(C_PACKETS, C_DROPPED_UNKNOWN_PORT, C_FORWARDED, C_NOT_ROCE, C_ROCE, C_CM, C_MALFORMED, C_UNSUPPORTED, C_ICRC_ERRORS,
 C_CE_PACKETS, C_CE_UNTRACKED, C_CNP_SENT, C_CNP_SUPPRESSED) = map(int, PIPELINE_COUNTERS)
assert [c.name for c in PIPELINE_COUNTERS] == ['PACKETS', 'DROPPED_UNKNOWN_PORT', 'FORWARDED', 'NOT_ROCE', 'ROCE', 'CM', 'MALFORMED', 'UNSUPPORTED', 'ICRC_ERRORS', 'CE_PACKETS', 'CE_UNTRACKED', 'CNP_SENT', 'CNP_SUPPRESSED']


class Result(NamedTuple):
    """What one packet did: the (egress port, frame) outputs in order (the
    forwarded packet first, then a CNP if any), the tracker's events, and a
    verdict saying what happened beyond forwarding ("" when nothing did)."""

    outputs: list
    events: list
    verdict: str


_first = itemgetter(0)
_second = itemgetter(1)


class BatchOutput:
    """Results of :meth:`Pipeline.process_batch_arrays` for n packets.

    ``frames``: the input frames (as given); ``egress``: int64 array, the port
    each packet is forwarded to (-1 when dropped: unknown ingress port);
    ``special``: {index: Result} for every packet whose
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

    def result(self, i: int) -> Result:
        """The :class:`Result` of packet i, as :meth:`Pipeline.process` gives it."""
        r = self.special.get(i)
        if r is not None:
            return r
        if not 0 <= i < len(self.frames):
            raise IndexError(i)
        return Result([(int(self.egress[i]), bytes(self.frames[i]))], [], "")

    def cnps(self) -> list[tuple[int, int, bytes]]:
        """(packet index, port, CNP frame) of every CNP, in order."""
        return [(i, *o) for i in sorted(self.special) for o in self.special[i][0][1:]]

    def to_list(self) -> list[Result]:
        """Every packet's :class:`Result`, in order."""
        frames = self.frames
        if set(map(type, frames)) != {bytes}:  # else bytes(f) is f: skip the calls
            frames = list(map(bytes, frames))
        out = [Result([pair], [], "") for pair in zip(self.egress.tolist(), frames)]
        for i, r in self.special.items():
            out[i] = r
        return out


class Pipeline:
    """Bump-in-the-wire CM tracker + CNP generator (see module doc), configured
    by the control-plane config (:class:`~ctcm.dataplane.config.Config`)."""

    def __init__(self, config: Config | None = None):
        self.config = config = config if config is not None else Config()
        self.tracker = Tracker(config.mode, timewait_us=config.timewait_us, geometry=config.geometry)
        self._ports = config.ports  # ingress port -> (egress port, direction)
        self._cnp4 = CnpGenerator(fill_cnp_template(4), ip_checksum=True)
        self._cnp6 = CnpGenerator(fill_cnp_template(6), ip_checksum=False)
        self._scratch = None  # classify_batch's reusable buffer (batch path)
        self._counters = self.tracker._counters  # one array indexed by spec.Counter (the P4's ctcm_counters)

    # -- public -----------------------------------------------------------
    @property
    def counters(self) -> dict[str, int]:
        """Every counter by its snapshot name (``packets``, ``tracker.cm_REQ`` ...), in
        :class:`~ctcm.spec.Counter` order (the P4 program's counter indices)."""
        out = {c.key: self._counters[c] for c in PIPELINE_COUNTERS}
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

    def process_batch(self, stimulus) -> list[Result]:
        """Many packets: ``stimulus`` is (port, frame, now_us) items; returns, per
        packet, the :class:`Result` that :meth:`process` would give one by one.
        Built on :meth:`process_batch_arrays`."""
        with gc_paused():
            return self.process_batch_arrays(stimulus).to_list()

    def process_batch_arrays(self, stimulus) -> "BatchOutput":
        """The fast batch path: ``stimulus`` is (port, frame, now_us) items (a list
        is used as is); returns a :class:`BatchOutput` whose per-packet results,
        counters and state are exactly those of :meth:`process` called one by one.

        Classification is vectorised (:mod:`ctcm.dataplane.batch`), and so are the
        decisions of the packets that only get forwarded (port map lookup, ECN
        CE, BTH opcode, counters). Only the packets that read or change state
        take the per-packet path, in stimulus order: CM MADs from a mapped port
        and RoCE data from a host-side port with ECN CE that are not CNPs."""
        with gc_paused():
            return self._process_batch_arrays(stimulus)

    def _split(self, items: list):
        """Classify a batch and split it: (frames, classification, egress, known
        port, kind, ``slow``: the packets that read or change state)."""
        frames = list(map(_second, items))
        if self._scratch is None:
            self._scratch = Scratch()
        res = classify_batch(frames, self._scratch)  # res is used in the caller's call only
        egress, known, host = self._port_arrays(list(map(_first, items)))
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
        return frames, res, egress, known, kind, slow

    def touches_state(self, items) -> list[bool]:
        """Per (port, frame, ...) item: whether the packet reads or changes the
        pipeline's state (CM MADs from a mapped port, CE RoCE data from a
        host-side port that is not a CNP): the packets whose order matters."""
        items = items if isinstance(items, list) else list(items)
        if not items:
            return []
        return self._split(items)[-1].tolist()

    def _process_batch_arrays(self, stimulus) -> "BatchOutput":
        items = stimulus if isinstance(stimulus, list) else list(stimulus)
        n = len(items)
        if n == 0:
            return BatchOutput([], np.zeros(0, np.int64), {})
        frames, res, egress, known, kind, slow = self._split(items)
        # Counters of the packets that stay on the vector path.
        fast = ~slow
        fwd = fast & known
        c = self._counters
        n_fast, n_fwd = int(np.count_nonzero(fast)), int(np.count_nonzero(fwd))
        by_kind = np.bincount(kind[fwd], minlength=5).tolist()
        c[C_PACKETS] += n_fast
        c[C_FORWARDED] += n_fwd
        c[C_DROPPED_UNKNOWN_PORT] += n_fast - n_fwd
        c[C_NOT_ROCE] += by_kind[NOT_ROCE]
        c[C_ROCE] += by_kind[ROCE]
        c[C_MALFORMED] += by_kind[MALFORMED]
        c[C_UNSUPPORTED] += by_kind[UNSUPPORTED]
        c[C_CM] += by_kind[CM]  # 0: CM MADs from mapped ports are all on the slow path
        special = {}
        if n_fast != n_fwd:
            for i in np.flatnonzero(~known).tolist():
                special[i] = Result([], [], _dropped(items[i][0]))
        for k, what in ((MALFORMED, "malformed"), (UNSUPPORTED, "unsupported")):
            if by_kind[k]:
                for i in np.flatnonzero(fwd & (kind == k)).tolist():
                    special[i] = Result([(int(egress[i]), bytes(frames[i]))], [], f"{what}: {res.parsed(i).reason}")
        # State: in stimulus order, the reference path.
        process = self.process
        todo = np.flatnonzero(slow).tolist()
        for i, p in zip(todo, res.parsed_list(todo)):
            port, frame, now_us = items[i]
            special[i] = process(port, frame, now_us, p)
        return BatchOutput(frames, egress, special)

    def _port_arrays(self, ports: list):
        """(egress, known, host) arrays for a batch's ingress ports (ports that
        are not int port numbers are unknown: dropped)."""
        n = len(ports)
        arr = None
        if set(map(type, ports)) == {int}:  # the usual case: checked at C speed
            try:
                arr = np.fromiter(ports, np.int64, n)
            except OverflowError:
                pass
        if arr is None:
            arr = np.fromiter((p if type(p) is int and 0 <= p < 1 << 16 else -1 for p in ports), np.int64, n)
        # lookup tables indexed by port (ports outside 0..MAX_PORT are unknown)
        size = MAX_PORT + 2
        t_eg = np.full(size, -1, np.int64)
        t_known = np.zeros(size, bool)
        t_host = np.zeros(size, bool)
        for p, (e, d) in self._ports.items():
            t_eg[p], t_known[p], t_host[p] = e, True, d == FROM_HOST
        idx = np.where((arr >= 0) & (arr <= MAX_PORT), arr, size - 1)
        return t_eg[idx], t_known[idx], t_host[idx]

    def process(self, port: int, frame: bytes, now_us: int = 0, parsed=None) -> Result:
        """One packet in: its :class:`Result` (outputs in order, events, verdict).

        ``parsed``: the frame's :func:`classify` result when the caller has it."""
        c = self._counters
        c[C_PACKETS] += 1
        peer = self._ports.get(port) if type(port) is int else None
        if peer is None:
            c[C_DROPPED_UNKNOWN_PORT] += 1
            return Result([], [], _dropped(port))
        egress, direction = peer
        out = [(egress, bytes(frame))]
        c[C_FORWARDED] += 1
        p = parsed if parsed is not None else classify(frame)
        kind = p.kind
        if kind == NOT_ROCE:
            c[C_NOT_ROCE] += 1
            return Result(out, [], "")
        if kind == MALFORMED:
            c[C_MALFORMED] += 1
            return Result(out, [], f"malformed: {p.reason}")
        if kind == UNSUPPORTED:  # QinQ, IPv6 extension headers: forwarded, counted, not looked into
            c[C_UNSUPPORTED] += 1
            return Result(out, [], f"unsupported: {p.reason}")
        if kind == CM:
            c[C_CM] += 1
            if not verify_icrc(frame, p.l3, p.end):
                c[C_ICRC_ERRORS] += 1
                return Result(out, [], "bad ICRC: counted, no state change")
            return Result(out, [self.tracker.process(direction, frame, p, now_us)], "")
        c[C_ROCE] += 1
        if direction != FROM_HOST or frame[p.bth] == OPCODE_CNP:
            return Result(out, [], "")
        l3 = p.l3
        tos = frame[l3 + 1] if p.ip_version == 4 else (frame[l3] << 4 | frame[l3 + 1] >> 4) & 0xFF
        if tos & 3 != ECN_CE:
            return Result(out, [], "")
        c[C_CE_PACKETS] += 1
        src, dst = ip_src_dst(frame, l3, p.ip_version)
        b = p.bth
        dqpn = frame[b + 5] << 16 | frame[b + 6] << 8 | frame[b + 7]
        tr = self.tracker
        i = tr.flow_slot(dst, dqpn)  # the flow entry's connection slot
        T = tr._T
        lqpn = T.conn_lqpn[i] if i >= 0 else 0
        if not lqpn:
            c[C_CE_UNTRACKED] += 1
            return Result(out, [], "CE on an untracked flow: no CNP")
        interval = self.config.cnp_interval_us
        if interval:  # pacing per slot: last_cnp = time of the flow's last CNP + 1, 0 = none
            last = T.last_cnp[i] - 1
            if last >= 0 and now_us - last < interval:
                c[C_CNP_SUPPRESSED] += 1
                return Result(out, [], f"CNP suppressed by pacing (last {now_us - last} µs ago)")
            T.last_cnp[i] = now_us + 1
        gen = self._cnp4 if p.ip_version == 4 else self._cnp6
        # Ethernet: swap addresses, keep the 802.1Q tag and ethertype.
        l2 = frame[6:12] + frame[0:6] + frame[12:l3]
        out.append((port, l2 + gen.generate(dst, src, lqpn)))
        c[C_CNP_SENT] += 1
        return Result(out, [], f"CE on a tracked flow: CNP to local QPN {lqpn:#08x}")


def _dropped(port) -> str:
    return f"dropped: port {port} is not in the port map"
