"""Pipeline model: forwarding, CM tracking by port, CNPs checked against scapy, pacing."""

import pytest
from scapy.contrib.roce import cnp as scapy_cnp
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether

from ctcm.dataplane.packet import build_cm, build_roce
from ctcm.dataplane.config import Config, ConfigError
from ctcm.dataplane.pipeline import Pipeline

H_MAC, P_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"


def handshake(pipe, host="10.0.0.1", peer="10.0.0.2", hqpn=0x101, pqpn=0x201, hid=0x11, pid=0x22, vlan=None, t0=0):
    kw = dict(vlan=vlan)
    pipe.process(1, build_cm("REQ", host, peer, {"local_comm_id": hid, "local_qpn": hqpn}, src_mac=H_MAC, dst_mac=P_MAC, **kw), t0)
    pipe.process(2, build_cm("REP", peer, host, {"local_comm_id": pid, "remote_comm_id": hid, "local_qpn": pqpn}, src_mac=P_MAC, dst_mac=H_MAC, **kw), t0 + 1)
    pipe.process(1, build_cm("RTU", host, peer, {"local_comm_id": hid, "remote_comm_id": pid}, src_mac=H_MAC, dst_mac=P_MAC, **kw), t0 + 2)


def data(src, dst, dqpn, ce=True, vlan=None):
    return build_roce(src, dst, {"opcode": 0x04, "dqpn": dqpn, "psn": 5}, bytes(32), ecn=3 if ce else 2, dscp=26,
                      src_mac=H_MAC, dst_mac=P_MAC, vlan=vlan)


@pytest.mark.parametrize("mode", ["ideal", "p4"])
def test_cnp_bytes_match_scapy_ipv4(mode):
    pipe = Pipeline(Config(mode=mode))
    handshake(pipe)
    pkt = data("10.0.0.1", "10.0.0.2", 0x201)
    out = pipe.process(1, pkt, 10).outputs
    assert out[0] == (2, pkt)  # forwarded unchanged, first
    assert len(out) == 2 and out[1][0] == 1
    ref = Ether(src=P_MAC, dst=H_MAC) / IP(src="10.0.0.2", dst="10.0.0.1", tos=0xC2, ttl=255, id=0, flags="DF") / \
        UDP(sport=0xF000, dport=4791, chksum=0) / scapy_cnp(0x101)
    assert out[1][1] == bytes(ref)  # scapy fills the IPv4 checksum and the ICRC itself
    assert pipe.counters["cnp_sent"] == 1


def test_cnp_bytes_match_scapy_ipv6_vlan():
    pipe = Pipeline()
    handshake(pipe, "fd00::1", "fd00::2", vlan=7)
    out = pipe.process(1, data("fd00::1", "fd00::2", 0x201, vlan=7), 10).outputs
    ref = Ether(src=P_MAC, dst=H_MAC) / Dot1Q(vlan=7) / IPv6(src="fd00::2", dst="fd00::1", tc=0xC2, hlim=255) / \
        UDP(sport=0xF000, dport=4791, chksum=0) / scapy_cnp(0x101)
    assert out[1] == (1, bytes(ref))


def test_no_cnp_cases():
    pipe = Pipeline()
    handshake(pipe)
    assert len(pipe.process(1, data("10.0.0.1", "10.0.0.2", 0x201, ce=False), 5).outputs) == 1   # not CE
    assert len(pipe.process(2, data("10.0.0.2", "10.0.0.1", 0x101), 5).outputs) == 1              # from the network
    assert len(pipe.process(1, data("10.0.0.1", "10.0.0.3", 0x201), 5).outputs) == 1              # untracked peer
    assert len(pipe.process(1, data("10.0.0.1", "10.0.0.2", 0x202), 5).outputs) == 1              # untracked QPN
    c = pipe.counters
    assert (c["cnp_sent"], c["ce_untracked"], c["ce_packets"]) == (0, 2, 2)


def test_pacing_per_flow():
    pipe = Pipeline(Config(cnp_interval_us=50))
    handshake(pipe)
    handshake(pipe, hqpn=0x102, pqpn=0x202, hid=0x12, pid=0x23)
    sent = [len(pipe.process(1, data("10.0.0.1", "10.0.0.2", 0x201), t).outputs) == 2 for t in (100, 120, 149, 150, 199, 200)]
    assert sent == [True, False, False, True, False, True]
    assert len(pipe.process(1, data("10.0.0.1", "10.0.0.2", 0x202), 201).outputs) == 2  # other flow, own pacing
    assert pipe.counters["cnp_suppressed"] == 3


def test_pacing_state_forgotten_with_the_flow():
    pipe = Pipeline(Config(cnp_interval_us=1000, timewait_us=0))
    handshake(pipe)
    assert len(pipe.process(1, data("10.0.0.1", "10.0.0.2", 0x201), 10).outputs) == 2
    pipe.process(1, build_cm("DREQ", "10.0.0.1", "10.0.0.2", {"local_comm_id": 0x11, "remote_comm_id": 0x22}), 20)
    pipe.process(2, build_cm("DREP", "10.0.0.2", "10.0.0.1", {"local_comm_id": 0x22, "remote_comm_id": 0x11}), 30)
    handshake(pipe, t0=35)  # same flow again, new connection
    assert len(pipe.process(1, data("10.0.0.1", "10.0.0.2", 0x201), 40).outputs) == 2


def test_bad_icrc_cm_changes_nothing():
    pipe = Pipeline()
    f = build_cm("REQ", "10.0.0.2", "10.0.0.1", {"local_comm_id": 1, "local_qpn": 2}, icrc_value=0x12345678)
    assert pipe.process(2, f, 0).outputs == [(1, f)]
    assert pipe.counters["icrc_errors"] == 1 and pipe.tracker.connections() == []


def test_malformed_and_non_roce_forwarded():
    pipe = Pipeline(Config(port_pairs={3: 7}))
    junk = b"\x01" * 10
    assert pipe.process(3, junk, 0).outputs == [(7, junk)]
    arp = b"\xff" * 6 + b"\x02" * 6 + b"\x08\x06" + bytes(46)
    assert pipe.process(7, arp, 0).outputs == [(3, arp)]
    assert pipe.process(5, arp, 0).outputs == []
    c = pipe.counters
    assert (c["malformed"], c["not_roce"], c["dropped_unknown_port"], c["packets"]) == (1, 1, 1, 3)


def test_direction_from_port():
    pipe = Pipeline(Config(port_pairs={1: 2, 3: 4}))
    f = build_cm("REQ", "10.0.0.1", "10.0.0.2", {"local_comm_id": 1, "local_qpn": 2})
    pipe.process(3, f, 0)
    assert pipe.tracker.connections()[0]["opened_by"] == "host"
    pipe.process(4, build_cm("REQ", "10.0.0.2", "10.0.0.1", {"local_comm_id": 5, "local_qpn": 6}), 0)
    assert {c["opened_by"] for c in pipe.tracker.connections()} == {"host", "network"}


def test_bad_config():
    with pytest.raises(ConfigError, match="twice"):
        Config(port_pairs={1: 1})
    with pytest.raises(ConfigError):
        Config(cnp_interval_us=-1)
    for bad in (True, 1.0, "1", -1, 511):
        with pytest.raises(ConfigError, match="port"):
            Config(port_pairs={bad: 2})


@pytest.mark.parametrize("mode", ["ideal", "p4"])
def test_batch_processing_equals_one_by_one(mode):
    from ctcm.stimulus.randgen import RandomParams, generate

    stim = generate(RandomParams(seed=9, packets=3000, connections=80, concurrency=10, ce_ratio=0.2,
                                 malformed=0.02, non_roce=0.02, ipv6=0.3))
    items = [(s.port if i % 97 else 5, s.frame, s.t_us) for i, s in enumerate(stim)]  # a few unknown ports
    one = Pipeline(Config(mode=mode, cnp_interval_us=30))
    expected = []
    for port, f, t in items:
        r = one.process(port, f, t)
        expected.append((r.outputs, [str(e) for e in r.events], r.verdict))
    two = Pipeline(Config(mode=mode, cnp_interval_us=30))
    got = [(o, [str(e) for e in ev], v) for o, ev, v in two.process_batch(items)]
    assert got == expected
    assert two.snapshot() == one.snapshot()
    assert one.counters["cnp_sent"] > 10 and one.counters["tracker.new"] > 10


from hypothesis import given, settings, strategies as st  # noqa: E402

_SEEDS = [build_cm("REQ", "10.0.0.2", "10.0.0.1", {"local_comm_id": 2, "local_qpn": 3})] + \
    [build_cm(m, "10.0.0.2", "10.0.0.1", {"local_comm_id": 2, "remote_comm_id": 1})
     for m in ("REP", "RTU", "DREQ", "DREP", "REJ", "MRA")] + [data("10.0.0.1", "10.0.0.2", 3)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(_SEEDS)), st.integers(1, 3), st.integers(-1, 5000),
                          st.integers(0, 400), st.binary(max_size=64)), max_size=40))
def test_pipeline_fuzz_accounts_for_every_packet(steps):
    pipe = Pipeline(Config(mode="p4", cnp_interval_us=3))
    for t, (i, port, flip, cut, junk) in enumerate(steps):
        f = bytearray(_SEEDS[i] if i < len(_SEEDS) else junk)
        if f and flip >= 0:
            f[flip % len(f)] ^= 1 << (flip % 8)
        if cut < 200:
            f = f[: len(f) - cut % 50]
        pipe.process(port, bytes(f), t)
    c = pipe.counters
    assert c["packets"] == len(steps)
    assert c["not_roce"] + c["roce"] + c["cm"] + c["malformed"] + c["unsupported"] + c["dropped_unknown_port"] == c["packets"]
    assert c["forwarded"] == c["packets"] - c["dropped_unknown_port"]
    assert c["cnp_sent"] + c["cnp_suppressed"] + c["ce_untracked"] == c["ce_packets"]


# --- headers not followed: QinQ and IPv6 extension headers (frames built by scapy) ---
from scapy.contrib.roce import BTH  # noqa: E402
from scapy.layers.inet6 import IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting  # noqa: E402
from scapy.layers.l2 import Dot1AD  # noqa: E402
from scapy.packet import Raw  # noqa: E402

from ctcm.dataplane.packet import UNSUPPORTED, classify, decode  # noqa: E402


def _roce_ce(l3):
    return bytes(Ether(src=H_MAC, dst=P_MAC) / l3 / UDP(sport=0xC000, dport=4791, chksum=0) / BTH(opcode=4, dqpn=0x201)
                 / Raw(bytes(36)))


UNSUPPORTED_FRAMES = {
    "802.1ad outer tag": bytes(Ether(src=H_MAC, dst=P_MAC) / Dot1AD(vlan=10) / Dot1Q(vlan=20)
                               / IP(src="10.0.0.1", dst="10.0.0.2", tos=3) / UDP(dport=4791) / BTH(opcode=4, dqpn=0x201)
                               / Raw(bytes(36))),
    "two 802.1Q tags": bytes(Ether(src=H_MAC, dst=P_MAC) / Dot1Q(vlan=10) / Dot1Q(vlan=20)
                             / IP(src="10.0.0.1", dst="10.0.0.2", tos=3) / UDP(dport=4791) / BTH(opcode=4, dqpn=0x201)
                             / Raw(bytes(36))),
    "IPv6 hop-by-hop": _roce_ce(IPv6(src="fd00::1", dst="fd00::2", tc=3) / IPv6ExtHdrHopByHop()),
    "IPv6 routing": _roce_ce(IPv6(src="fd00::1", dst="fd00::2", tc=3) / IPv6ExtHdrRouting()),
    "IPv6 fragment": _roce_ce(IPv6(src="fd00::1", dst="fd00::2", tc=3) / IPv6ExtHdrFragment()),
    "IPv6 destination options": _roce_ce(IPv6(src="fd00::1", dst="fd00::2", tc=3) / IPv6ExtHdrDestOpt()),
}


@pytest.mark.parametrize("name", sorted(UNSUPPORTED_FRAMES))
def test_headers_not_followed_are_counted_as_unsupported(name):
    """Never folded into "not RoCE": their own kind, counter and verdict; forwarded
    unchanged; no CNP even on a tracked flow with CE (the RoCE inside is not read)."""
    f = UNSUPPORTED_FRAMES[name]
    p = classify(f)
    assert p.kind == UNSUPPORTED, (name, p)
    assert "not followed" in p.reason
    assert "UNSUPPORTED" in decode(f).summary()
    pipe = Pipeline()
    handshake(pipe)
    r = pipe.process(1, f, 10)
    assert r.outputs == [(2, f)] and r.verdict.startswith("unsupported: ")
    c = pipe.counters
    assert (c["unsupported"], c["not_roce"], c["roce"], c["cnp_sent"]) == (1, 0, 0, 0)
    # the same through the batch path
    two = Pipeline()
    handshake(two)
    assert two.process_batch([(1, f, 10)]) == [r]
    assert two.counters == c


def test_other_ipv6_next_headers_stay_not_roce():
    f = _roce_ce(IPv6(src="fd00::1", dst="fd00::2", nh=6))  # TCP: not an extension header
    assert classify(f).reason == "not UDP"
