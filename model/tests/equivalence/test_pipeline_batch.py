"""The batch paths of the pipeline (process_batch, process_batch_arrays) give
exactly what process() gives one packet at a time: outputs, events, verdicts,
counters, connections, flows and pacing state. process() is the reference."""

import random

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from ctcm.dataplane.packet import build_cm, build_roce
from ctcm.dataplane.config import Config
from ctcm.dataplane.pipeline import BatchOutput, Pipeline
from ctcm.stimulus.randgen import RandomParams, generate

H_MAC, P_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"


def ev_key(e):
    return (type(e).__name__, str(e), tuple(repr(getattr(e, a, None)) for a in getattr(e, "__slots__", ())))


def norm(results):
    return [(outs, [ev_key(e) for e in evs], verdict) for outs, evs, verdict in results]


def reference(items, **cfg):
    """Per-packet process(): results, the pipeline afterwards."""
    pipe = Pipeline(Config(**cfg))
    out = []
    for port, frame, t in items:
        out.append(pipe.process(port, frame, t))
    return norm(out), pipe


def check_same(ref_pipe, pipe):
    assert pipe.snapshot() == ref_pipe.snapshot()
    assert pipe.tracker._T.last_cnp == ref_pipe.tracker._T.last_cnp  # pacing state


def accounted(c):
    assert c["not_roce"] + c["roce"] + c["cm"] + c["malformed"] + c["unsupported"] + c["dropped_unknown_port"] == c["packets"]
    assert c["forwarded"] == c["packets"] - c["dropped_unknown_port"]
    assert c["cnp_sent"] + c["cnp_suppressed"] + c["ce_untracked"] == c["ce_packets"]


def extra_frames(r: random.Random, n: int):
    """CNPs (CE or not), CE data, from both sides, with and without VLAN, v4/v6, junk."""
    out = []
    for _ in range(n):
        v6 = r.random() < 0.3
        src, dst = ("fd00::1", "fd00::2") if v6 else ("10.0.0.1", "10.0.0.2")
        kw = dict(vlan=r.choice([None, 5]), ecn=r.randrange(4), src_mac=H_MAC, dst_mac=P_MAC)
        if not v6 and r.random() < 0.2:
            kw["ip_options"] = b"\x01" * (4 * r.randint(1, 10))
        x = r.random()
        if x < 0.4:
            f = build_roce(src, dst, {"opcode": 0x81, "dqpn": r.randrange(1 << 24)}, bytes(16), **kw)
        elif x < 0.8:
            f = build_roce(src, dst, {"opcode": r.choice([4, 0x0A, 0x64]), "dqpn": r.randrange(1 << 24)},
                           r.randbytes(r.choice([0, 8, 200])), **kw)
        elif x < 0.9:
            bad = {"icrc_value": 0x12345678} if r.random() < 0.5 else {}
            f = build_cm(r.choice(["REQ", "DREQ", "MRA"]), src, dst, {"local_comm_id": r.randrange(9)}, **kw, **bad)
        else:
            f = r.randbytes(r.randrange(0, 160))
        out.append(f)
    return out


def stimulus(seed, packets=2500, ports=(1, 2), unknown=(5,), **kw):
    r = random.Random(seed)
    params = dict(seed=seed, packets=packets, connections=60, concurrency=12, ce_ratio=0.25, malformed=0.03,
                  non_roce=0.03, ipv6=0.3, ports=ports, duration_us=50_000)
    params.update(kw)
    stim = generate(RandomParams(**params))
    items = [(s.port, s.frame, s.t_us) for s in stim]
    # unknown ports, and CNPs / CE data / junk from either side, spliced in
    for f in extra_frames(r, len(items) // 20):
        i = r.randrange(len(items) + 1)
        items.insert(i, (r.choice(ports), f, items[min(i, len(items) - 1)][2]))
    for k in range(len(items) // 50):
        i = r.randrange(len(items))
        items[i] = (r.choice(unknown), items[i][1], items[i][2])
    return items


def run_batches(pipe, items, sizes, arrays):
    out = []
    i = 0
    r = random.Random(len(items))
    while i < len(items):
        k = sizes if isinstance(sizes, int) else r.randint(*sizes)
        chunk = items[i : i + k]
        if arrays:
            bo = pipe.process_batch_arrays(chunk)
            assert isinstance(bo, BatchOutput) and len(bo) == len(chunk)
            out += [bo.result(j) for j in range(len(chunk))]
        else:
            out += pipe.process_batch(iter(chunk))  # any iterable
        i += k
    return norm(out)


@pytest.mark.parametrize("mode", ["ideal", "p4"])
@pytest.mark.parametrize("interval", [0, 300])
@pytest.mark.parametrize("seed", [1, 2])
def test_batch_equals_per_packet(mode, interval, seed):
    items = stimulus(seed)
    cfg = dict(mode=mode, cnp_interval_us=interval)
    expected, ref = reference(items, **cfg)
    c = ref.counters
    # the traffic exercises every branch (checked on the reference, not the code under test)
    assert c["cnp_sent"] > 20 and c["ce_untracked"] > 5 and c["malformed"] > 5 and c["not_roce"] > 5
    assert c["dropped_unknown_port"] > 5 and c["tracker.new"] > 10 and c["icrc_errors"] > 0
    if interval:
        assert c["cnp_suppressed"] > 0
    accounted(c)
    for arrays in (False, True):
        for sizes in (len(items), (1, 400)):
            pipe = Pipeline(Config(**cfg))
            got = run_batches(pipe, items, sizes, arrays)
            assert got == expected
            check_same(ref, pipe)
            accounted(pipe.counters)


@pytest.mark.parametrize("arrays", [False, True])
def test_batch_many_port_pairs_and_odd_ports(arrays):
    # two port pairs, stimulus on both; unknown ports small, negative and huge (no lookup table)
    pairs = {1: 2, 30: 7}
    items = stimulus(3, packets=1500, ports=(30, 7), unknown=(5, 0, -3, 70000, 2**40))
    items += stimulus(4, packets=1500, ports=(1, 2), unknown=(8,))
    expected, ref = reference(items, port_pairs=pairs, cnp_interval_us=300)
    assert ref.counters["cnp_sent"] > 10 and ref.counters["dropped_unknown_port"] > 10
    pipe = Pipeline(Config(port_pairs=pairs, cnp_interval_us=300))
    assert run_batches(pipe, items, 700, arrays) == expected
    check_same(ref, pipe)


def test_batch_output_arrays():
    items = stimulus(5, packets=1200)
    expected, ref = reference(items, cnp_interval_us=300)
    pipe = Pipeline(Config(cnp_interval_us=300))
    bo = pipe.process_batch_arrays(items)
    assert norm(bo.to_list()) == expected
    check_same(ref, pipe)
    # egress: the first output's port, -1 when dropped
    assert bo.egress.tolist() == [outs[0][0] if outs else -1 for outs, _e, _v in expected]
    assert bo.frames == [f for _p, f, _t in items]
    # every packet outside `special` is a plain forward
    for i, (outs, evs, verdict) in enumerate(expected):
        if i not in bo.special:
            assert (len(outs), evs, verdict) == (1, [], "")
    # cnps(): every second output, in order
    assert [(i, p, f) for i, p, f in bo.cnps()] == \
        [(i, *o) for i, (outs, _e, _v) in enumerate(expected) for o in outs[1:]]
    assert len(bo.cnps()) == ref.counters["cnp_sent"] > 0
    with pytest.raises(IndexError):
        bo.result(len(items))


def test_empty_batch_and_state_across_calls():
    pipe = Pipeline()
    assert pipe.process_batch([]) == []
    assert len(pipe.process_batch_arrays(iter([]))) == 0
    assert pipe.counters["packets"] == 0


def test_odd_port_objects_and_frame_types():
    """Ingress ports that are not ints (str, numpy ints, floats, True) are not in
    the port map: dropped by both paths alike; bytearray frames."""
    items = stimulus(6, packets=600)
    r = random.Random(6)
    odd = []
    for port, f, t in items:
        x = r.random()
        if x < 0.05:
            port = str(port)          # not in the port map: dropped
        elif x < 0.1:
            port = np.int64(port)     # not an int port number either
        elif x < 0.15:
            port = float(port)
        if r.random() < 0.1:
            f = bytearray(f)
        odd.append((port, f, t))
    for batch in (odd, [(p, f, t) for p, f, t in odd if not isinstance(p, str)], [(True, b"\x00" * 20, 0)]):
        expected, ref = reference(batch, cnp_interval_us=5)
        pipe = Pipeline(Config(cnp_interval_us=5))
        assert norm(pipe.process_batch(batch)) == expected
        check_same(ref, pipe)
        pipe = Pipeline(Config(cnp_interval_us=5))
        bo = pipe.process_batch_arrays(batch)
        assert norm([bo.result(i) for i in range(len(batch))]) == expected
        check_same(ref, pipe)
    assert ref.counters["dropped_unknown_port"] == 1 and ref.counters["packets"] == 1


_HOST, _PEER = "10.0.0.1", "10.0.0.2"
_SEEDS = [
    build_cm("REQ", _HOST, _PEER, {"local_comm_id": 1, "local_qpn": 3}),
    build_cm("REP", _PEER, _HOST, {"local_comm_id": 2, "remote_comm_id": 1, "local_qpn": 4}),
    build_cm("RTU", _HOST, _PEER, {"local_comm_id": 1, "remote_comm_id": 2}),
    build_cm("DREQ", _HOST, _PEER, {"local_comm_id": 1, "remote_comm_id": 2}),
    build_cm("DREP", _PEER, _HOST, {"local_comm_id": 2, "remote_comm_id": 1}),
    build_roce(_HOST, _PEER, {"opcode": 4, "dqpn": 4}, bytes(8), ecn=3),
    build_roce(_HOST, _PEER, {"opcode": 4, "dqpn": 4}, bytes(8), ecn=2),
    build_roce(_HOST, _PEER, {"opcode": 0x81, "dqpn": 4}, bytes(16), ecn=3),
    build_roce("fd00::1", "fd00::2", {"opcode": 4, "dqpn": 4}, bytes(8), ecn=3, vlan=3),
    b"\xff" * 6 + b"\x02" * 6 + b"\x08\x06" + bytes(46),
]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(_SEEDS)), st.sampled_from([1, 2, 3]), st.integers(-1, 3000),
                          st.integers(0, 400), st.binary(max_size=200), st.integers(0, 3)), max_size=60),
       st.sampled_from(["ideal", "p4"]), st.sampled_from([0, 2]), st.integers(1, 60))
def test_batch_fuzz(steps, mode, interval, chunk):
    items = []
    t = 0
    for i, port, flip, cut, junk, dt in steps:
        f = bytearray(_SEEDS[i] if i < len(_SEEDS) else junk)
        if f and flip >= 0:
            f[flip % len(f)] ^= 1 << (flip % 8)
        if cut < 100:
            f = f[: len(f) - cut % 50]
        t += dt
        items.append((port, bytes(f), t))
    expected, ref = reference(items, mode=mode, cnp_interval_us=interval, timewait_us=0)
    for arrays in (False, True):
        pipe = Pipeline(Config(mode=mode, cnp_interval_us=interval, timewait_us=0))
        assert run_batches(pipe, items, chunk, arrays) == expected
        check_same(ref, pipe)
        accounted(pipe.counters)


def test_only_stateful_packets_take_the_per_packet_path():
    """process() runs for CM MADs and host-side CE data only (the rest is vectorised)."""
    items = stimulus(8, packets=1500)
    _expected, ref = reference(items, cnp_interval_us=300)
    pipe = Pipeline(Config(cnp_interval_us=300))
    calls = []
    real = pipe.process

    def counting(*a):
        calls.append(a[0])
        return real(*a)

    pipe.process = counting
    pipe.process_batch_arrays(items)
    c = ref.counters
    assert len(calls) == c["cm"] + c["ce_packets"] < len(items) // 3
    check_same(ref, pipe)
