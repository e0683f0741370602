"""Tracker: every transition of the issue's table, the closed gaps, both table modes.

Expected states come from the specification (the C library's table plus the
gap closures), written here independently of ctcm.dataplane.tracker.TRANSITIONS.
"""

import pytest

import ctcm
from ctcm.dataplane.packet import build_cm
from ctcm.spec import Geometry, Outcome, State, active_key, bucket_of, flow_key
from ctcm.dataplane.tracker import FROM_HOST, FROM_NET, Tracker, normalize_ip

HOST, PEER = "10.0.0.1", "10.0.0.2"
HID, PID = 0x1111, 0x2222          # comm IDs: host's, peer's
HQPN, PQPN = 0x000AAA, 0x000BBB   # QPNs: host's, peer's


def msg(name, frm, fields=None, *, host=HOST, peer=PEER, hid=HID, pid=PID):
    """A CM frame sent by 'host' or 'peer' with the right comm IDs filled in."""
    src, dst = (host, peer) if frm == "host" else (peer, host)
    me, you = (hid, pid) if frm == "host" else (pid, hid)
    f = {"local_comm_id": me}
    if name != "REQ":
        f["remote_comm_id"] = you
    if name in ("REQ", "REP"):
        f["local_qpn"] = HQPN if frm == "host" else PQPN
    f.update(fields or {})
    return build_cm(name, src, dst, f)


def send(t, name, frm, fields=None, now=0, **kw):
    return t.process(FROM_HOST if frm == "host" else FROM_NET, msg(name, frm, fields, **kw), now_us=now)


def state(t):
    conns = t.connections()
    assert len(conns) <= 1
    return conns[0]["state"] if conns else None


MODES = ["ideal", "p4"]


@pytest.fixture(params=MODES)
def t(request):
    with Tracker(request.param, timewait_us=1000) as tr:
        yield tr


# Steps to reach each state. opener "host" = active open.
PATHS = {
    "REQ_SENT": [("REQ", "host")],
    "REQ_RCVD": [("REQ", "peer")],
    "MRA_REQ_RCVD": [("REQ", "host"), ("MRA", "peer", {"message_mraed": 0})],
    "MRA_REQ_SENT": [("REQ", "peer"), ("MRA", "host", {"message_mraed": 0})],
    "REP_RCVD": [("REQ", "host"), ("REP", "peer")],
    "REP_SENT": [("REQ", "peer"), ("REP", "host")],
    "MRA_REP_SENT": [("REQ", "host"), ("REP", "peer"), ("MRA", "host", {"message_mraed": 1})],
    "MRA_REP_RCVD": [("REQ", "peer"), ("REP", "host"), ("MRA", "peer", {"message_mraed": 1})],
    "ESTABLISHED": [("REQ", "host"), ("REP", "peer"), ("RTU", "host")],
    "ESTABLISHED_P": [("REQ", "peer"), ("REP", "host"), ("RTU", "peer")],
    "DREQ_SENT": [("REQ", "host"), ("REP", "peer"), ("RTU", "host"), ("DREQ", "host")],
    "DREQ_RCVD": [("REQ", "host"), ("REP", "peer"), ("RTU", "host"), ("DREQ", "peer")],
    "TIMEWAIT": [("REQ", "host"), ("REP", "peer"), ("RTU", "host"), ("DREQ", "host"), ("DREP", "peer")],
}


def reach(t, name, now=0):
    for step in PATHS[name]:
        ev = send(t, step[0], step[1], step[2] if len(step) > 2 else None, now=now)
        assert ev.result in ("new", "transition"), (name, step, str(ev))
    assert state(t) == name.replace("_P", "")


# The specification: (from state, message, sender, extra fields) -> expected state (None = removed).
SPEC = [
    # sent by host
    ("REQ_RCVD", "REP", "host", None, "REP_SENT"),
    ("MRA_REQ_SENT", "REP", "host", None, "REP_SENT"),
    ("REP_RCVD", "RTU", "host", None, "ESTABLISHED"),
    ("MRA_REP_SENT", "RTU", "host", None, "ESTABLISHED"),
    ("ESTABLISHED", "DREQ", "host", None, "DREQ_SENT"),
    ("DREQ_RCVD", "DREQ", "host", None, "DREQ_SENT"),
    ("DREQ_SENT", "DREP", "host", None, "TIMEWAIT"),
    ("DREQ_RCVD", "DREP", "host", None, "TIMEWAIT"),
    ("REQ_RCVD", "MRA", "host", {"message_mraed": 0}, "MRA_REQ_SENT"),
    ("REP_RCVD", "MRA", "host", {"message_mraed": 1}, "MRA_REP_SENT"),
    *[(s, "REJ", "host", None, None) for s in ("REQ_SENT", "REQ_RCVD", "MRA_REQ_RCVD", "MRA_REQ_SENT",
                                               "MRA_REP_SENT", "MRA_REP_RCVD", "REP_SENT", "REP_RCVD")],
    # received from the network
    ("REQ_SENT", "REP", "peer", None, "REP_RCVD"),
    ("MRA_REQ_RCVD", "REP", "peer", None, "REP_RCVD"),
    ("REP_SENT", "RTU", "peer", None, "ESTABLISHED"),
    ("MRA_REP_RCVD", "RTU", "peer", None, "ESTABLISHED"),
    ("REP_SENT", "DREQ", "peer", None, "DREQ_RCVD"),
    ("MRA_REP_RCVD", "DREQ", "peer", None, "DREQ_RCVD"),
    ("ESTABLISHED", "DREQ", "peer", None, "DREQ_RCVD"),
    ("DREQ_SENT", "DREQ", "peer", None, "DREQ_RCVD"),
    ("DREQ_SENT", "DREP", "peer", None, "TIMEWAIT"),
    ("DREQ_RCVD", "DREP", "peer", None, "TIMEWAIT"),
    ("REQ_SENT", "MRA", "peer", {"message_mraed": 0}, "MRA_REQ_RCVD"),
    ("REP_SENT", "MRA", "peer", {"message_mraed": 1}, "MRA_REP_RCVD"),
    *[(s, "REJ", "peer", None, None) for s in ("REQ_SENT", "REQ_RCVD", "MRA_REQ_RCVD", "MRA_REQ_SENT",
                                               "MRA_REP_SENT", "MRA_REP_RCVD", "REP_SENT", "REP_RCVD",
                                               "DREQ_SENT", "ESTABLISHED")],
]


@pytest.mark.parametrize("start,name,frm,fields,expected", SPEC,
                         ids=[f"{s}-{'send' if f == 'host' else 'recv'}-{m}" for s, m, f, _x, _e in SPEC])
def test_transition(t, start, name, frm, fields, expected):
    reach(t, start)
    ev = send(t, name, frm, fields, now=5)
    assert ev.result == "transition", str(ev)
    assert state(t) == expected
    assert ev.new_state == (State[expected] if expected else Outcome.GONE)


# Retransmissions: absorbed, state unchanged.
RETRANS = [
    ("REQ_SENT", "REQ", "host", None), ("REQ_RCVD", "REQ", "peer", None),
    ("REP_SENT", "REP", "host", None), ("REP_RCVD", "REP", "peer", None),
    ("ESTABLISHED", "RTU", "host", None), ("ESTABLISHED_P", "RTU", "peer", None),
    ("ESTABLISHED", "REP", "peer", None),
    ("DREQ_SENT", "DREQ", "host", None), ("DREQ_RCVD", "DREQ", "peer", None),
    ("MRA_REQ_SENT", "MRA", "host", {"message_mraed": 0}), ("MRA_REP_RCVD", "MRA", "peer", {"message_mraed": 1}),
    ("TIMEWAIT", "DREQ", "host", None), ("TIMEWAIT", "DREQ", "peer", None),
    ("TIMEWAIT", "DREP", "host", None), ("TIMEWAIT", "DREP", "peer", None),
]


@pytest.mark.parametrize("start,name,frm,fields", RETRANS, ids=[f"{s}-{m}-{f}" for s, m, f, _x in RETRANS])
def test_retransmission_is_idempotent(t, start, name, frm, fields):
    reach(t, start)
    before = (t.connections(), t.flows())
    ev = send(t, name, frm, fields, now=5)
    assert ev.result == "retransmission", str(ev)
    assert (t.connections(), t.flows()) == before
    assert t.counters["retransmission"] == 1


UNEXPECTED = [
    ("REQ_SENT", "RTU", "host"), ("REQ_SENT", "DREQ", "host"), ("ESTABLISHED", "REJ", "host"),
    ("REP_RCVD", "RTU", "peer"), ("REQ_SENT", "DREP", "peer"), ("ESTABLISHED", "REQ", "host"),
    ("DREQ_SENT", "RTU", "host"), ("TIMEWAIT", "REJ", "peer"), ("REQ_RCVD", "DREQ", "peer"),
]


@pytest.mark.parametrize("start,name,frm", UNEXPECTED, ids=[f"{s}-{m}-{f}" for s, m, f in UNEXPECTED])
def test_unexpected_changes_nothing(t, start, name, frm):
    reach(t, start)
    before = (t.connections(), t.flows())
    ev = send(t, name, frm, now=5)
    assert ev.result == "unexpected", str(ev)
    assert (t.connections(), t.flows()) == before
    assert t.counters["unexpected"] == 1


@pytest.mark.parametrize("name,frm", [("REP", "peer"), ("RTU", "host"), ("DREQ", "peer"), ("DREP", "host"),
                                      ("REJ", "peer"), ("MRA", "peer"), ("REP", "host")])
def test_unknown_connection_creates_no_state(t, name, frm):
    ev = send(t, name, frm)
    assert ev.result == "unknown"
    assert t.connections() == [] and t.flows() == []
    assert t.counters["unknown"] == 1


def test_flow_map_and_queries(t):
    assert t.query_ipv4(PEER, PQPN) == 0
    reach(t, "ESTABLISHED")
    assert t.query_ipv4(PEER, PQPN) == HQPN
    assert t.query_ipv4(int.from_bytes(bytes([10, 0, 0, 2]), "big"), PQPN) == HQPN
    assert t.query(bytes([10, 0, 0, 2]), PQPN) == HQPN
    assert t.query_ipv4(PEER, PQPN + 1) == 0 and t.query_ipv4("10.0.0.3", PQPN) == 0
    assert t.flows() == [{"remote_ip": PEER, "remote_qpn": f"{PQPN:#08x}", "local_qpn": f"{HQPN:#08x}"}]
    send(t, "DREQ", "peer")
    assert t.query_ipv4(PEER, PQPN) == HQPN  # draining: still tracked in DREQ_RCVD
    send(t, "DREP", "host")
    assert t.query_ipv4(PEER, PQPN) == 0 and t.flows() == []


def test_passive_open_flow(t):
    reach(t, "ESTABLISHED_P")
    assert t.query_ipv4(PEER, PQPN) == HQPN
    c = t.connections()[0]
    assert (c["opened_by"], c["local_comm_id"], c["remote_comm_id"]) == ("network", f"{HID:#010x}", f"{PID:#010x}")


def test_ipv6(t):
    h6, p6 = "fd00::1", "fd00::2"
    for name, frm in (("REQ", "host"), ("REP", "peer"), ("RTU", "host")):
        assert send(t, name, frm, host=h6, peer=p6).result in ("new", "transition")
    assert t.query_ipv6(p6, PQPN) == HQPN
    assert t.query(normalize_ip(p6), PQPN) == HQPN
    assert t.query_ipv4(PEER, PQPN) == 0
    with pytest.raises(ValueError):
        t.query_ipv4(p6, PQPN)


def test_timewait_expiry_on_model_time(t):
    reach(t, "TIMEWAIT", now=100)
    assert send(t, "DREQ", "peer", now=100 + 999).result == "retransmission"
    assert state(t) == "TIMEWAIT"
    assert send(t, "DREQ", "peer", now=100 + 1000).result == "unknown"
    assert state(t) is None and t.counters["timewait_expired"] == 1


def test_expire_sweep(t):
    reach(t, "TIMEWAIT", now=0)
    assert t.expire(999) == 0 and len(t) == 1
    assert t.expire(1000) == 1 and len(t) == 0


def test_simultaneous_dreqs(t):
    reach(t, "ESTABLISHED")
    assert send(t, "DREQ", "host").new_state == State.DREQ_SENT
    assert send(t, "DREQ", "peer").new_state == State.DREQ_RCVD
    assert send(t, "DREP", "host").new_state == State.TIMEWAIT
    assert send(t, "DREP", "peer").result == "retransmission"


def test_reject_of_req_by_host_found_by_remote_key(t):
    """The host's REJ carries a comm ID the tracker never saw; the remote key finds it."""
    reach(t, "REQ_RCVD")
    ev = send(t, "REJ", "host", {"message_rejected": 0}, hid=0xDEAD)
    assert ev.result == "transition" and state(t) is None


def test_mra_of_lap_and_sidr_are_ignored(t):
    reach(t, "ESTABLISHED")
    assert send(t, "MRA", "peer", {"message_mraed": 2}).result == "ignored"
    f = build_cm("SIDR_REQ", PEER, HOST, {"request_id": 5})
    assert t.process(FROM_NET, f).result == "ignored"
    assert t.counters["cm_SIDR_REQ"] == 1 and state(t) == "ESTABLISHED"


def test_non_cm_is_ignored_cheaply(t):
    from ctcm.dataplane.packet import build_roce
    assert t.process(FROM_HOST, build_roce(HOST, PEER, {"opcode": 4, "dqpn": 5}, b"x" * 8)) is None
    assert t.process(FROM_HOST, b"\x00" * 5) is None
    assert sum(t.counters.values()) == 0


def test_flow_key_conflict(t):
    reach(t, "ESTABLISHED")
    # A second connection to the same (peer IP, peer QPN): the key is taken.
    for name, frm in (("REQ", "host"), ("REP", "peer"), ("RTU", "host")):
        send(t, name, frm, {"local_qpn": 0x777} if (name, frm) == ("REQ", "host") else None, hid=0x3333, pid=0x4444)
    assert t.counters["flow_conflicts"] == 1 and len(t.flows()) == 1
    assert t.query_ipv4(PEER, PQPN) == HQPN


def test_zero_qpn_makes_no_flow(t):
    for name, frm in (("REQ", "host"), ("REP", "peer"), ("RTU", "host")):
        send(t, name, frm, {"local_qpn": 0} if name == "REP" else None)
    assert state(t) == "ESTABLISHED" and t.flows() == [] and t.counters["flow_zero_qpn"] == 1


def test_counters_account_for_every_message(t):
    reach(t, "ESTABLISHED")
    send(t, "RTU", "host")
    send(t, "REQ", "host", hid=9)
    send(t, "DREP", "peer", pid=77)
    results = ("new", "transition", "retransmission", "unexpected", "unknown", "refused", "ignored")
    cm = sum(v for k, v in t.counters.items() if k.startswith("cm_"))
    assert sum(t.counters[r] for r in results) == cm == 6


# --- p4 mode: geometry, collisions, full tables ---------------------------------

def ids_in_bucket(bucket, buckets, n, start=0x1000):
    out, i = [], start
    while len(out) < n:
        if bucket_of(active_key(i), buckets) == bucket:
            out.append(i)
        i += 1
    return out


def test_p4_forced_collision_one_way():
    a, b = ids_in_bucket(2, 4, 2)
    t = Tracker("p4", geometry=Geometry(active_buckets=4, active_ways=1))
    assert send(t, "REQ", "host", hid=a).result == "new"
    ev = send(t, "REQ", "host", hid=b)
    assert ev.result == "refused" and t.counters["table_refusals"] == 1 and len(t) == 1
    # The refused connection is unknown from then on.
    assert send(t, "REP", "peer", hid=b).result == "unknown"
    # The ideal mode tracks both.
    i = Tracker("ideal")
    assert send(i, "REQ", "host", hid=a).result == send(i, "REQ", "host", hid=b).result == "new"


def test_p4_collision_absorbed_by_second_way():
    a, b, c = ids_in_bucket(1, 4, 3)
    t = Tracker("p4", geometry=Geometry(active_buckets=4, active_ways=2))
    assert [send(t, "REQ", "host", hid=x).result for x in (a, b, c)] == ["new", "new", "refused"]


def test_p4_full_table_and_timewait_reuse():
    g = Geometry(active_buckets=1, active_ways=2, passive_buckets=1, passive_ways=1)
    t = Tracker("p4", geometry=g, timewait_us=100)
    assert t.capacity == 3
    for hid in (1, 2):
        for name, frm in (("REQ", "host"), ("REP", "peer"), ("RTU", "host")):
            send(t, name, frm, hid=hid, pid=hid + 100, now=0)
    assert send(t, "REQ", "host", hid=3, now=0).result == "refused"
    assert send(t, "REQ", "peer", pid=500, now=0).result == "new"
    assert send(t, "REQ", "peer", pid=501, now=0).result == "refused"
    send(t, "DREQ", "host", hid=1, pid=101, now=10)
    send(t, "DREP", "peer", hid=1, pid=101, now=10)
    assert send(t, "REQ", "host", hid=3, now=109).result == "refused"
    assert send(t, "REQ", "host", hid=3, now=110).result == "new"
    assert t.counters["timewait_expired"] == 1 and len(t) == 3


def test_p4_flow_table_full():
    t = Tracker("p4", geometry=Geometry(flow_buckets=1, flow_ways=1))
    reach(t, "ESTABLISHED")
    for name, frm in (("REQ", "host"), ("REP", "peer"), ("RTU", "host")):
        send(t, name, frm, {"local_qpn": 0x999} if name == "REP" else None, hid=7, pid=8)
    assert t.counters["flow_refusals"] == 1 and t.counters["flow_conflicts"] == 0
    assert t.query_ipv4(PEER, 0x999) == 0 and t.query_ipv4(PEER, PQPN) == HQPN


def test_geometry_validation():
    with pytest.raises(ValueError, match="power of two"):
        Geometry(active_buckets=3)
    with pytest.raises(ValueError, match="ways"):
        Geometry(flow_ways=0)
    with pytest.raises(ValueError, match="mode"):
        Tracker("fast")


def test_flow_key_bytes_are_as_documented():
    assert flow_key(normalize_ip("10.0.0.2"), 0xABCDEF) == bytes(10) + b"\xff\xff" + bytes([10, 0, 0, 2, 0xAB, 0xCD, 0xEF])


def test_c_api_names():
    ctx = ctcm.ctcm_create()
    frames = [msg("REQ", "host"), msg("REP", "peer"), msg("RTU", "host")]
    assert ctcm.ctcm_process_packets(ctx, ctcm.CTCM_FROM_HOST, [frames[0]]) == 1
    parsed = ctcm.ctcm_parse_packets(ctx, frames[1:2])
    assert parsed[0].kind == ctcm.CM
    assert ctcm.ctcm_process_packets(ctx, ctcm.CTCM_FROM_NET, [(frames[1], parsed[0])]) == 1
    assert ctcm.ctcm_process_packets(ctx, ctcm.CTCM_FROM_HOST, [frames[2], b"junk"]) == 1
    assert ctcm.ctcm_query_ipv4(ctx, PEER, PQPN) == HQPN
    ctcm.ctcm_destroy(ctx)
    with ctcm.ctcm_create() as t2:
        assert t2.query_ipv4(PEER, PQPN) == 0
    ctcm.ctcm_destroy(t2)
