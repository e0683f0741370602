"""The p4 machine compiled by numba (ctcm.dataplane.storage.compiled) against the same
machine in plain Python: Tracker.process() frame by frame. Same events (with their flows),
counters, tables, connection count and time, on random, damaged and crafted
traffic, with tables small enough to collide, fill and reclaim TIMEWAIT."""

import os
import random
import zlib

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from ctcm.dataplane import storage
from ctcm.dataplane.packet import build_cm
from ctcm.stimulus.traffic import damage as shared_damage
from ctcm.stimulus.traffic import protocol_traffic
from ctcm.spec import Geometry
from ctcm.dataplane.tracker import FROM_HOST, FROM_NET, Tracker


@pytest.fixture(autouse=True)
def compiled(monkeypatch):
    """Every batch takes the compiled path (numba required; CI installs it)."""
    if not storage.numba_available():
        msg = "numba not installed (pip install 'ctcm[fast]')"
        if os.environ.get("CI"):
            pytest.fail(msg + "; CI must install it")
        pytest.skip(msg)
    monkeypatch.setattr(storage, "MIN_COMPILED", 0)


def traffic(seed, n=2500, **kw):
    p = dict(connections=80, concurrency=20, mra=0.2, reject=0.1, loss=0.05, retransmit=0.08, ipv6=0.4,
             malformed=0.02, non_roce=0.02, duration_us=20_000)
    p.update(kw)
    return [((FROM_HOST if port == 1 else FROM_NET), f, t) for port, f, t in protocol_traffic(seed, n, **p)]


def damage(items, seed, rate=0.1):
    return shared_damage(items, seed, flip=rate / 2, truncate=rate * 0.2, swap=rate * 0.3, swap_to=_other)


def _other(d):
    return FROM_NET if d == FROM_HOST else FROM_HOST


def same(items, geometry, timewait_us=500, chunk=None):
    kw = {"geometry": geometry} if geometry else {}
    ref, got = Tracker("p4", timewait_us=timewait_us, **kw), Tracker("p4", timewait_us=timewait_us, **kw)
    want = [ref.process(d, f, now_us=t) for d, f, t in items]
    chunk = chunk or len(items) or 1
    events = []
    for a in range(0, len(items), chunk):
        part = items[a : a + chunk]
        events += got.process_batch([d for d, _, _ in part], [f for _, f, _ in part], [t for _, _, t in part])
    assert [str(e) for e in events] == [str(e) for e in want]
    assert [(e.flow_added, e.flow_removed) if e else None for e in events] == \
           [(e.flow_added, e.flow_removed) if e else None for e in want]
    assert [(e.old_state, e.new_state) if e else None for e in events] == \
           [(e.old_state, e.new_state) if e else None for e in want]
    assert got.counters == ref.counters
    assert got.connections() == ref.connections() and got.flows() == ref.flows()
    assert len(got) == len(ref) and got.now == ref.now
    assert all(bytes(a) == bytes(b) for a, b in zip(got._T, ref._T))  # every table, byte for byte
    return ref


TINY = Geometry(active_buckets=2, active_ways=2, passive_buckets=2, passive_ways=1, flow_buckets=2, flow_ways=1)
SMALL = Geometry(active_buckets=8, active_ways=2, passive_buckets=4, passive_ways=2, flow_buckets=4, flow_ways=2)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("geometry", [None, SMALL, TINY], ids=["default", "small", "tiny"])
def test_compiled_equals_reference(seed, geometry):
    ref = same(damage(traffic(seed), seed), geometry)
    c = ref.counters
    assert c["transition"] > (20 if geometry is TINY else 50) and c["ignored"] + c["unknown"] + c["unexpected"] > 10
    if geometry is TINY:
        assert c["table_refusals"] and c["flow_refusals"] and c["timewait_expired"]


def test_compiled_in_chunks_keeps_state_across_calls():
    same(damage(traffic(7, 4000), 7), SMALL, chunk=333)


def test_compiled_with_long_ip_options_and_odd_messages():
    """MADs beyond the batch parser's header window (long IPv4 options) are
    read in Python and merged in order; MRA of a LAP, SIDR, unknown attributes."""
    host, peer = "10.0.0.1", "10.0.0.2"
    opts = b"\x01" * 40
    items = []
    for i in range(1, 40):
        kw = {"ip_options": opts} if i % 3 == 0 else {}
        items += [
            (FROM_HOST, build_cm("REQ", host, peer, {"local_comm_id": i, "local_qpn": 0x100 + i}, **kw), i * 10),
            (FROM_NET, build_cm("REP", peer, host, {"local_comm_id": 1000 + i, "remote_comm_id": i,
                                                     "local_qpn": 0x200 + i}, **kw), i * 10 + 1),
            (FROM_NET, build_cm("MRA", peer, host, {"local_comm_id": 1000 + i, "remote_comm_id": i,
                                                     "message_mraed": 2}, **kw), i * 10 + 2),
            (FROM_HOST, build_cm("RTU", host, peer, {"local_comm_id": i, "remote_comm_id": 1000 + i}, **kw), i * 10 + 3),
            (FROM_NET, build_cm("SIDR_REQ", peer, host, {}, **kw), i * 10 + 4),
            (FROM_NET, build_cm(0x0030, peer, host, {}, **kw), i * 10 + 5),
        ]
    ref = same(items, None)
    assert ref.counters["flow_inserts"] == 39 and ref.counters["ignored"] == 3 * 39


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32), st.integers(0, 3000), st.sampled_from([None, SMALL, TINY]))
def test_compiled_equals_reference_property(seed, timewait, geometry):
    items = damage(traffic(seed, n=600, connections=30, concurrency=10), seed, rate=0.2)
    same(items, geometry, timewait_us=timewait)


def test_crc_matches_zlib():
    storage.compiled()
    r = random.Random(1)
    key = np.zeros(20, np.uint8)
    for n in (4, 19, 20):
        for _ in range(200):
            data = r.randbytes(n)
            key[:n] = np.frombuffer(data, np.uint8)
            assert storage._nb_crc(key, n) == zlib.crc32(data)


def test_compiled_buckets_are_the_spec_keys():
    """The numba key builders hash exactly spec.active_key / passive_key / flow_key."""
    from ctcm import spec
    from ctcm.dataplane.storage import p4_geometry

    storage.compiled()
    r = random.Random(2)
    g = Geometry(active_buckets=1024, passive_buckets=512, flow_buckets=2048, flow_ways=3)
    G = p4_geometry(g)
    for _ in range(300):
        ident, ip, qpn = r.getrandbits(32), r.randbytes(16), r.getrandbits(24)
        assert storage._nb_active_base(G, ident) == spec.bucket_of(spec.active_key(ident), 1024) * g.active_ways
        assert storage._nb_passive_base(G, np.frombuffer(ip, np.uint8), ident) == (
            g.active_slots + spec.bucket_of(spec.passive_key(ip, ident), 512) * g.passive_ways)
        assert storage._nb_flow_key_base(G, np.frombuffer(ip, np.uint8), 0, qpn) == (
            spec.bucket_of(spec.flow_key(ip, qpn), 2048) * 3)


def test_small_batches_and_ideal_mode_stay_in_python(monkeypatch):
    monkeypatch.setattr(storage, "MIN_COMPILED", 10**9)
    called = []
    monkeypatch.setattr(storage, "compiled", lambda: called.append(1))
    items = traffic(2, 500)
    same(items, SMALL)
    t = Tracker("ideal")
    t.process_batch([d for d, _, _ in items], [f for _, f, _ in items], [x for _, _, x in items])
    assert not called


def test_disabled_by_environment(monkeypatch):
    monkeypatch.setenv("CTCM_KERNEL", "0")
    assert not storage.numba_available()


# --- a small universe: few comm IDs, QPNs and peers, so that messages hit the
# same keys, collide, conflict on flows and reach TIMEWAIT boundaries exactly.

_MSGS = ["REQ", "REP", "RTU", "MRA", "REJ", "DREQ", "DREP", "LAP"]
_PEERS = ["10.0.0.2", "10.0.0.3", "fd00::2"]
_FRAMES: dict = {}


def _frame(msg, d, peer, local, remote, qpn, mraed):
    key = (msg, d, peer, local, remote, qpn, mraed)
    f = _FRAMES.get(key)
    if f is None:
        host = "fd00::1" if ":" in peer else "10.0.0.1"
        src, dst = (host, peer) if d == FROM_HOST else (peer, host)
        fields = {"local_comm_id": local}
        if msg != "REQ":
            fields["remote_comm_id"] = remote
        if msg in ("REQ", "REP"):
            fields["local_qpn"] = qpn
        if msg == "MRA":
            fields["message_mraed"] = mraed
        f = _FRAMES[key] = build_cm(msg, src, dst, fields)
    return f


small_step = st.tuples(st.sampled_from(_MSGS), st.sampled_from([FROM_HOST, FROM_NET]), st.sampled_from(_PEERS),
                       st.integers(1, 5), st.integers(1, 5), st.integers(0, 3), st.integers(0, 3), st.integers(0, 4))


@settings(max_examples=120, deadline=None)
@given(st.lists(small_step, min_size=1, max_size=120), st.integers(0, 6), st.sampled_from([SMALL, TINY]))
def test_compiled_equals_reference_on_a_small_universe(steps, timewait, geometry):
    items, t = [], 0
    for msg, d, peer, local, remote, qpn, mraed, dt in steps:
        t += dt
        items.append((d, _frame(msg, d, peer, local, remote, qpn, mraed), t))
    same(items, geometry, timewait_us=timewait)


# --- connections that follow the protocol (interleaved, retransmitted,
# rejected), on a small universe of IDs and QPNs: they reach ESTABLISHED and
# TIMEWAIT often, collide on flow keys and reuse TIMEWAIT slots.

_conn = st.tuples(st.sampled_from(["host", "net"]), st.integers(1, 4), st.integers(1, 4), st.sampled_from(_PEERS),
                  st.integers(1, 3), st.integers(1, 3))


def _message(conn, msg, side, mraed=0):
    opener, hid, pid, peer, hq, pq = conn
    d = FROM_HOST if side == "host" else FROM_NET
    own, other, qpn = (hid, pid, hq) if side == "host" else (pid, hid, pq)
    return d, _frame(msg, d, peer, own, other, qpn, mraed)


def _script(conn, closer):
    opener = conn[0]
    answer = "net" if opener == "host" else "host"
    other = "net" if closer == "host" else "host"
    return [("REQ", opener), ("REP", answer), ("RTU", opener), ("DREQ", closer), ("DREP", other)]


@settings(max_examples=150, deadline=None)
@given(st.lists(_conn, min_size=1, max_size=6),
       st.lists(st.tuples(st.integers(0, 5), st.integers(0, 12), st.sampled_from(["host", "net"]), st.integers(0, 3)),
                min_size=1, max_size=150),
       st.integers(0, 5), st.sampled_from([SMALL, TINY]))
def test_compiled_equals_reference_on_protocol_traffic(conns, steps, timewait, geometry):
    pos = [0] * len(conns)
    last = [None] * len(conns)
    items, t = [], 0
    for ci, kind, side, dt in steps:
        ci %= len(conns)
        c = conns[ci]
        t += dt
        if kind <= 7:  # the next message of its script (a new connection after DREP)
            msg, s = _script(c, side)[pos[ci] % 5]
            pos[ci] += 1
            last[ci] = _message(c, msg, s)
        elif kind == 8:  # a retransmission of its last message
            pass
        elif kind == 9:
            last[ci] = _message(c, "REJ", side)
            pos[ci] = 0
        else:  # an MRA of the REQ, the REP, or a LAP
            last[ci] = _message(c, "MRA", side, mraed=kind - 10)
        if last[ci]:
            items.append((*last[ci], t))
    same(items, geometry, timewait_us=timewait)


def _open(hid, pid, peer, hq, pq, t):
    c = ("host", hid, pid, peer, hq, pq)
    return [(*_message(c, m, s), t) for m, s in (("REQ", "host"), ("REP", "net"), ("RTU", "host"))]


def _close(hid, pid, peer, hq, pq, t):
    c = ("host", hid, pid, peer, hq, pq)
    return [(*_message(c, m, s), t) for m, s in (("DREQ", "host"), ("DREP", "net"))]


ONE_BUCKET = Geometry(active_buckets=1, active_ways=2, passive_buckets=1, passive_ways=1, flow_buckets=1, flow_ways=2)


def test_compiled_reclaims_timewait_slots_at_the_boundary():
    items = _open(1, 11, "10.0.0.2", 1, 1, 0) + _open(2, 12, "10.0.0.3", 2, 2, 0)
    items += _close(1, 11, "10.0.0.2", 1, 1, 10) + _close(2, 12, "10.0.0.3", 2, 2, 10)
    items += _open(3, 13, "10.0.0.2", 3, 3, 14)  # 4 us after TIMEWAIT: the table is full
    items += _open(4, 14, "10.0.0.2", 4, 4, 15)  # 5 us: a TIMEWAIT slot is taken over
    items += _open(5, 15, "10.0.0.2", 5, 5, 15)  # and the other one
    ref = same(items, ONE_BUCKET, timewait_us=5)
    c = ref.counters
    assert c["table_refusals"] == 1 and c["timewait_expired"] == 2 and len(ref) == 2


def test_compiled_flow_keys_with_the_same_qpn_and_other_peers():
    items = _open(1, 11, "10.0.0.2", 1, 7, 0) + _open(2, 12, "10.0.0.3", 2, 7, 1)  # remote QPN 7 twice
    items += _open(3, 13, "10.0.0.2", 3, 7, 2)  # (10.0.0.2, 7) again: a flow conflict
    items += _close(2, 12, "10.0.0.3", 2, 7, 3)  # removes the flow of 10.0.0.3, not 10.0.0.2's
    items += _open(4, 14, "10.0.0.2", 0, 9, 4)  # local QPN 0: no flow
    g = Geometry(active_buckets=4, active_ways=2, passive_buckets=1, passive_ways=1, flow_buckets=1, flow_ways=2)
    ref = same(items, g, timewait_us=100)
    c = ref.counters
    assert c["flow_conflicts"] == 1 and c["flow_zero_qpn"] == 1
    assert [f["remote_ip"] for f in ref.flows()] == ["10.0.0.2"]
