"""Tracker.process_batch (vectorised parse + field extraction) gives exactly
the events, counters and tables of Tracker.process called frame by frame,
which is the reference."""


import pytest

from ctcm.dataplane.packet import build_cm
from ctcm.stimulus.traffic import damage, protocol_traffic
from ctcm.dataplane.tracker import FROM_HOST, FROM_NET, Geometry, Tracker


def traffic(seed, n=3000, **kw):
    p = dict(connections=60, concurrency=15, mra=0.2, reject=0.1, loss=0.05, retransmit=0.05, ipv6=0.4,
             malformed=0.02, non_roce=0.02, duration_us=20_000, **kw)
    return [((FROM_HOST if port == 1 else FROM_NET), f, t) for port, f, t in protocol_traffic(seed, n, **p)]


def mutate(items, seed):
    """Bit flips in CM-looking frames (changed IDs, attributes, versions), truncations, and
    frames sent the wrong way."""
    return damage(items, seed, flip=0.05, truncate=0.02, swap=0.02,
                  swap_to=lambda d: FROM_NET if d == FROM_HOST else FROM_HOST)


@pytest.fixture(autouse=True)
def python_path(monkeypatch):
    """These tests are about the Python batch path; test_kernel.py checks the compiled one."""
    monkeypatch.setenv("CTCM_KERNEL", "0")


def one_by_one(t, items):
    return [t.process(d, f, now_us=ts) for d, f, ts in items]


SMALL = Geometry(active_buckets=8, active_ways=2, passive_buckets=4, passive_ways=1, flow_buckets=4, flow_ways=2)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("mode,geometry", [("ideal", None), ("p4", None), ("p4", SMALL)])
def test_batch_equals_one_by_one(seed, mode, geometry):
    items = mutate(traffic(seed), seed)
    kw = {"geometry": geometry} if geometry else {}
    a, b = Tracker(mode, timewait_us=500, **kw), Tracker(mode, timewait_us=500, **kw)
    ref = one_by_one(a, items)
    got = b.process_batch([d for d, _f, _t in items], [f for _d, f, _t in items], [t for _d, _f, t in items])
    assert sum(e is not None for e in ref) > 100
    assert [str(e) for e in got] == [str(e) for e in ref]
    assert [(e.flow_added, e.flow_removed) if e else None for e in got] == \
           [(e.flow_added, e.flow_removed) if e else None for e in ref]
    assert b.counters == a.counters
    assert b.connections() == a.connections() and b.flows() == a.flows()


def test_batch_single_direction_and_time():
    host, peer = "10.0.0.1", "10.0.0.2"
    req = build_cm("REQ", host, peer, {"local_comm_id": 5, "local_qpn": 0x77})
    t = Tracker()
    evs = t.process_batch(FROM_HOST, [b"junk", req, req], now_us=9)
    assert evs[0] is None and [e.result for e in evs[1:]] == ["new", "retransmission"]
    assert t.connections()[0]["since_us"] == 9 and t.connections()[0]["local_qpn"] == "0x000077"
    assert t.process_batch(FROM_NET, []) == []
