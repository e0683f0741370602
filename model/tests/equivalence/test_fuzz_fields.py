"""Field-aware fuzzing: frames damaged through the header tables (wrong
lengths, versions, opcodes, attribute IDs, comm IDs...), extended, truncated
and bit-flipped, through the classifier, the decoder and the pipeline in both
table modes. Nothing raises, every packet is accounted for, state stays
within the tables, and the batch path agrees with the per-packet one."""

import random

from hypothesis import given, settings, strategies as st

from ctcm.spec import headers as H
from ctcm.dataplane.packet import CM, MALFORMED, build_cm, build_roce, classify, decode, summarize
from ctcm.dataplane.pipeline import Pipeline
from ctcm.dataplane.config import Config
from ctcm.stimulus.traffic import mutate_fields
from ctcm.spec import Geometry, Result

HOST, PEER = "10.0.0.1", "10.0.0.2"
HOST6, PEER6 = "fd00::1", "fd00::2"


def _ids(msg, local, remote, qpn):
    """The comm IDs (and QPN, for REQ/REP) a message of this type carries."""
    body = H.CM_MESSAGES[H.CM_ATTR_IDS[msg]]
    d = {"local_comm_id": local}
    if "remote_comm_id" in body.by_name:
        d["remote_comm_id"] = remote
    if "local_qpn" in body.by_name:
        d["local_qpn"] = qpn
    return d


def _frames():
    out = []
    for src, dst, kw in ((PEER, HOST, {}), (PEER6, HOST6, {"vlan": 9}), (PEER, HOST, {"ip_options": b"\x01" * 8})):
        out.append(build_cm("REQ", src, dst, {"local_comm_id": 2, "local_qpn": 0x33}, **kw))
        out += [build_cm(m, src, dst, _ids(m, 2, 1, 0x33), **kw) for m in ("REP", "RTU", "MRA", "REJ", "DREQ", "DREP", "LAP")]
        out += [build_cm(m, dst, src, _ids(m, 1, 2, 0x44), **kw) for m in ("REQ", "REP", "RTU", "DREQ", "DREP")]
        out.append(build_roce(dst, src, {"opcode": 0x04, "dqpn": 0x33, "psn": 5}, bytes(64), ecn=3, **kw))
        out.append(build_roce(src, dst, {"opcode": 0x81, "dqpn": 0x44}, bytes(16), **kw))  # a CNP
    return out


SEEDS = _frames()


def traffic(seed: int, n: int):
    r = random.Random(seed)
    out = []
    for t in range(n):
        f = r.choice(SEEDS)
        if r.random() < 0.6:
            f = mutate_fields(f, r)
        out.append((r.choice((1, 1, 2, 2, 3)), f, t * r.choice((1, 10, 400))))
    return out


SMALL = Geometry(active_buckets=2, active_ways=2, passive_buckets=2, passive_ways=1, flow_buckets=2, flow_ways=1)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32))
def test_mutated_frames_classify_and_decode(seed):
    r = random.Random(seed)
    f = mutate_fields(r.choice(SEEDS), r)
    p = classify(f)
    d = decode(f)
    assert d.parsed == p
    assert summarize(f) == d.summary()
    if p.kind == MALFORMED:
        assert p.reason
    if p.kind == CM:
        assert p.mad > p.bth > p.l4 > p.l3 > 0 and p.end <= len(f) - 4


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32), st.sampled_from(["ideal", "p4", "p4-small"]))
def test_mutated_traffic_through_the_pipeline(seed, mode):
    items = traffic(seed, 150)
    kw = {"mode": "p4", "geometry": SMALL} if mode == "p4-small" else {"mode": mode}
    one, two = Pipeline(Config(cnp_interval_us=5, timewait_us=300, **kw)), Pipeline(Config(cnp_interval_us=5, timewait_us=300, **kw))
    ref = []
    for port, f, t in items:
        r = one.process(port, f, t)
        ref.append((r.outputs, [str(e) for e in r.events], r.verdict))
        tr = one.tracker
        if tr.capacity is not None:
            assert len(tr) <= tr.capacity
        assert len(tr.flows()) <= len(tr)
    got = [(o, [str(e) for e in ev], v) for o, ev, v in two.process_batch(items)]
    assert got == ref
    assert two.snapshot() == one.snapshot()
    c = one.counters
    assert c["packets"] == len(items)
    assert c["not_roce"] + c["roce"] + c["cm"] + c["malformed"] + c["unsupported"] + c["dropped_unknown_port"] == c["packets"]
    assert c["forwarded"] == c["packets"] - c["dropped_unknown_port"]
    assert c["cnp_sent"] + c["cnp_suppressed"] + c["ce_untracked"] == c["ce_packets"]
    # every CM MAD with a good ICRC reached the tracker, and got exactly one result
    seen = sum(v for k, v in c.items() if k.startswith("tracker.cm_"))
    results = sum(c[f"tracker.{r.label}"] for r in Result)
    assert seen == results == c["cm"] - c["icrc_errors"]
