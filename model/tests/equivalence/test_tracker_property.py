"""Property tests: random and mutated CM traffic against the tracker's invariants."""

from hypothesis import given, settings, strategies as st

from ctcm.dataplane.packet import build_cm
from ctcm.spec import Geometry, Result
from ctcm.dataplane.tracker import FROM_HOST, FROM_NET, Tracker

HOST = "10.0.0.1"
PEERS = ["10.0.0.2", "10.0.0.3", "fd00::2"]
MSGS = ["REQ", "REP", "RTU", "DREQ", "DREP", "REJ", "MRA"]
FLOW_STATES = {"ESTABLISHED", "DREQ_SENT", "DREQ_RCVD"}


def frame(msg, frm, conn, extra):
    peer = PEERS[conn % len(PEERS)]
    host = "fd00::1" if ":" in peer else HOST
    hid, pid = 0x1000 + conn, 0x2000 + conn
    src, dst = (host, peer) if frm == 0 else (peer, host)
    me, you = (hid, pid) if frm == 0 else (pid, hid)
    f = {"local_comm_id": me}
    if msg != "REQ":
        f["remote_comm_id"] = you
    if msg in ("REQ", "REP"):
        f["local_qpn"] = (0x100 + conn if frm == 0 else 0x200 + conn) if extra % 7 else 0
    if msg == "MRA":
        f["message_mraed"] = extra % 3
    return build_cm(msg, src, dst, f)


step = st.tuples(st.sampled_from(["next"] * 6 + ["repeat", "random"]), st.sampled_from(MSGS),
                 st.integers(0, 1), st.integers(0, 3), st.integers(0, 50), st.integers(0, 3000),
                 st.one_of(st.just(-1), st.just(-1), st.just(-1), st.integers(0, 2400)))
# (kind, message, 0 = from host / 1 = from net, connection, extra, time step µs, bit to flip or -1)
# kind "next" follows the connection's lifecycle script, "repeat" resends its
# last message, "random" sends any message in any direction.

ACTIVE = [("REQ", 0), ("REP", 1), ("RTU", 0), ("DREQ", 0), ("DREP", 1)]
PASSIVE = [("REQ", 1), ("MRA", 0), ("REP", 0), ("RTU", 1), ("DREQ", 1), ("DREQ", 0), ("DREP", 0), ("DREP", 1)]


def messages(steps):
    """Turn steps into (message, from, conn, extra, dt, flip)."""
    pos, last = {}, {}
    for kind, msg, frm, conn, extra, dt, flip in steps:
        script = ACTIVE if conn % 2 == 0 else PASSIVE
        if kind == "next":
            i = pos.get(conn, 0)
            msg, frm = script[i % len(script)]
            pos[conn] = i + 1
            if msg == "MRA":
                extra = 0  # MRA of the REQ
            elif extra % 7 == 0:
                extra += 1  # keep QPNs non-zero on the scripted path
        elif kind == "repeat" and conn in last:
            msg, frm, extra = last[conn]
        last[conn] = (msg, frm, extra)
        yield msg, frm, conn, extra, dt, flip


def check_invariants(t: Tracker):
    conns = t.connections()
    flows = {(f["remote_ip"], f["remote_qpn"]): f["local_qpn"] for f in t.flows()}
    with_flow = {(c["remote_ip"], c["remote_qpn"]): c["local_qpn"] for c in conns if c["flow"]}
    assert flows == with_flow
    for c in conns:
        if c["flow"]:
            assert c["state"] in FLOW_STATES
            assert int(c["local_qpn"], 16) and int(c["remote_qpn"], 16)
    for (ip, rq), lq in flows.items():
        q = t.query_ipv6(ip, int(rq, 16)) if ":" in ip else t.query_ipv4(ip, int(rq, 16))
        assert q == int(lq, 16)
    cm = sum(v for k, v in t.counters.items() if k.startswith("cm_"))
    assert sum(t.counters[r.label] for r in Result) == cm
    if t.capacity is not None:
        assert len(t) <= t.capacity


@settings(max_examples=150, deadline=None)
@given(st.lists(step, min_size=10, max_size=80))
def test_random_traffic_keeps_invariants(steps):
    small = Tracker("p4", timewait_us=2000, geometry=Geometry(active_buckets=2, active_ways=1, passive_buckets=2,
                                                              passive_ways=1, flow_buckets=2, flow_ways=1))
    ideal = Tracker("ideal", timewait_us=2000)
    big = Tracker("p4", timewait_us=2000)
    now = 0
    for msg, frm, conn, extra, dt, flip in messages(steps):
        now += dt
        f = bytearray(frame(msg, frm, conn, extra))
        if flip >= 0:
            f[flip % len(f)] ^= 1 << (flip % 8)
        f = bytes(f)
        d = FROM_HOST if frm == 0 else FROM_NET
        events = []
        for t in (small, ideal, big):
            events.append(t.process(d, f, now_us=now))
            check_invariants(t)
        # With room to spare, the p4 tables behave exactly like the ideal ones.
        if big.counters["table_refusals"] == 0 and big.counters["flow_refusals"] == ideal.counters["flow_refusals"]:
            assert str(events[1]) == str(events[2])
    if big.counters["table_refusals"] == 0:
        assert ideal.connections() == big.connections()
        assert ideal.flows() == big.flows()


def test_the_generator_reaches_established():
    """Guard against a vacuous property test: scripted steps do open connections."""
    t = Tracker("ideal")
    steps = [("next", "REQ", 0, 0, 1, 1, -1)] * 3 + [("next", "REQ", 0, 1, 1, 1, -1)] * 4
    for msg, frm, conn, extra, dt, flip in messages(steps):
        t.process(FROM_HOST if frm == 0 else FROM_NET, frame(msg, frm, conn, extra))
    assert t.counters["flow_inserts"] == 2 and len(t.flows()) == 2
