"""One behaviour per test.

Every test writes a small scenario (vectors/scenarios/ format), lets the
model compute what comes out (so expected packets are the model's, never
typed), checks that the model's expectation is the behaviour the test is
about (``assert_cnps``, model counters), then replays it on the target and
compares frame by frame (the oracle's field-level diff) and the counters.

Time-dependent tests (TIMEWAIT, pacing) use intervals far from the targets'
jitter: TIMEWAIT 300 ms with messages 50 ms inside it or 200 ms past it,
pacing 200 ms with CE packets 20 ms or 500 ms apart.
"""

from __future__ import annotations

import ptf

from ctcm.dataplane.packet import build_roce
from ctcm_ptf.base import CtcmTest, Step
from ctcm_ptf.modelutil import make_pipeline, outputs_of

C1 = "c1: {host: host, peer: peer, opener: host, host_qpn: 0x000101, peer_qpn: 0x000201, " \
     "host_comm_id: 0x11110001, peer_comm_id: 0x22220001}"
P1 = "p1: {host: host, peer: peer, opener: peer, host_qpn: 0x000111, peer_qpn: 0x000311, " \
     "host_comm_id: 0x11110011, peer_comm_id: 0x22220011}"
OPEN_C1 = """
- {t: 0, cm: REQ, conn: c1}
- {t: 10, cm: REP, conn: c1}
- {t: 20, cm: RTU, conn: c1}
"""
OPEN_P1 = """
- {t: 0, cm: REQ, conn: p1}
- {t: 10, cm: REP, conn: p1}
- {t: 20, cm: RTU, conn: p1}
"""


class ActiveOpenCnp(CtcmTest):
    """REQ from the host, REP, RTU: CE data from the host makes a CNP to the host's QP."""

    def runTest(self):
        vec = self.model(OPEN_C1 + "- {t: 100, data: c1, from: host, ce: true}", C1)
        self.assert_cnps(vec, {4: 0x101})
        self.replay_vector(vec)


class PassiveOpenCnp(CtcmTest):
    """REQ from the network, REP from the host, RTU: CE data makes a CNP."""

    def runTest(self):
        vec = self.model(OPEN_P1 + "- {t: 100, data: p1, from: host, ce: true}", P1)
        self.assert_cnps(vec, {4: 0x111})
        self.replay_vector(vec)


class NonCeDataNoCnp(CtcmTest):
    """Data without CE on a tracked flow is forwarded both ways, no CNP."""

    def runTest(self):
        vec = self.model(OPEN_C1 + "- {t: 100, data: c1, from: host, count: 2}\n- {t: 110, data: c1, from: peer}", C1)
        self.assert_cnps(vec, {4: None, 5: None, 6: None})
        self.replay_vector(vec)


class CeUntrackedFlowNoCnp(CtcmTest):
    """CE data towards a peer never connected: no CNP (ce_untracked)."""

    def runTest(self):
        conns = C1 + "\nu1: {host: host, peer: peer2, opener: host, host_qpn: 0x000173, peer_qpn: 0x000973, " \
                     "host_comm_id: 0x11110073, peer_comm_id: 0x99990073}"
        vec = self.model(OPEN_C1 + "- {t: 100, data: u1, from: host, ce: true}", conns)
        self.assert_cnps(vec, {4: None})
        self.assertEqual(vec.final["counters"]["ce_untracked"], 1)
        self.replay_vector(vec)


class CeKnownPeerUnknownQpnNoCnp(CtcmTest):
    """CE data to a tracked peer IP but a QPN no connection uses: no CNP."""

    def runTest(self):
        vec = self.model(OPEN_C1 + "- {t: 100, data: c1, from: host, ce: true, dqpn: 0x000999}", C1)
        self.assert_cnps(vec, {4: None})
        self.replay_vector(vec)


class CeFromNetworkNoCnp(CtcmTest):
    """CE data arriving from the network side makes no CNP."""

    def runTest(self):
        vec = self.model(OPEN_C1 + "- {t: 100, data: c1, from: peer, ce: true}", C1)
        self.assert_cnps(vec, {4: None})
        self.replay_vector(vec)


class NoCnpAfterTeardownByHost(CtcmTest):
    """DREQ from the host, DREP from the peer: the flow is gone, no CNP."""

    def runTest(self):
        vec = self.model(OPEN_C1 + """
- {t: 100, cm: DREQ, conn: c1, from: host}
- {t: 110, cm: DREP, conn: c1, from: peer}
- {t: 120, data: c1, from: host, ce: true}""", C1)
        self.assert_cnps(vec, {6: None})
        self.replay_vector(vec)


class NoCnpAfterTeardownByPeer(CtcmTest):
    """DREQ from the peer, DREP from the host: no CNP."""

    def runTest(self):
        vec = self.model(OPEN_P1 + """
- {t: 100, data: p1, from: host, ce: true}
- {t: 200, cm: DREQ, conn: p1, from: peer}
- {t: 210, cm: DREP, conn: p1, from: host}
- {t: 220, data: p1, from: host, ce: true}""", P1)
        self.assert_cnps(vec, {4: 0x111, 7: None})
        self.replay_vector(vec)


class NoCnpAfterReject(CtcmTest):
    """REQ, REP, then REJ of the REP by the host: the connection is removed, no CNP."""

    def runTest(self):
        vec = self.model("""
- {t: 0, cm: REQ, conn: c1}
- {t: 10, cm: REP, conn: c1}
- {t: 20, cm: REJ, conn: c1, from: host, rejected: REP, reason: 8}
- {t: 30, data: c1, from: host, ce: true}""", C1)
        self.assert_cnps(vec, {4: None})
        self.assertEqual(vec.final["connections"], [])
        self.replay_vector(vec)


class MraThenEstablished(CtcmTest):
    """MRA of the REQ and of the REP on the way: the connection still opens; CNP."""

    def runTest(self):
        vec = self.model("""
- {t: 0, cm: REQ, conn: c1}
- {t: 10, cm: MRA, conn: c1, from: peer, mraed: REQ}
- {t: 20, cm: REP, conn: c1}
- {t: 30, cm: MRA, conn: c1, from: host, mraed: REP}
- {t: 40, cm: RTU, conn: c1}
- {t: 100, data: c1, from: host, ce: true}""", C1)
        self.assert_cnps(vec, {6: 0x101})
        self.replay_vector(vec)


class RetransmissionsAbsorbed(CtcmTest):
    """Retransmitted REQ, REP and RTU change nothing; the flow still gets its CNP."""

    def runTest(self):
        vec = self.model("""
- {t: 0, cm: REQ, conn: c1}
- {t: 5, cm: REQ, conn: c1}
- {t: 10, cm: REP, conn: c1}
- {t: 15, cm: REP, conn: c1}
- {t: 20, cm: RTU, conn: c1}
- {t: 25, cm: RTU, conn: c1}
- {t: 100, data: c1, from: host, ce: true}""", C1)
        self.assertEqual(vec.final["counters"]["tracker.retransmission"], 3)
        self.assert_cnps(vec, {7: 0x101})
        self.replay_vector(vec)


class TimewaitAbsorbsThenExpires(CtcmTest):
    """TIMEWAIT (300 ms): a DREQ 50 ms after the DREP is absorbed, one 500 ms after is unknown."""

    options = {"timewait_us": 300_000}

    def runTest(self):
        vec = self.model(OPEN_C1 + """
- {t: 100000, cm: DREQ, conn: c1, from: peer}
- {t: 110000, cm: DREP, conn: c1, from: host}
- {t: 160000, cm: DREQ, conn: c1, from: peer, note: absorbed in TIMEWAIT}
- {t: 610000, cm: DREQ, conn: c1, from: peer, note: TIMEWAIT over - unknown}""", C1)
        c = vec.final["counters"]
        self.assertEqual(c["tracker.retransmission"], 1)
        self.assertEqual(c["tracker.unknown"], 1)
        self.replay_vector(vec)


class VlanCnp(CtcmTest):
    """A connection on VLAN 100: the CNP carries the same 802.1Q tag."""

    def runTest(self):
        conns = C1.replace("}", ", vlan: 100}")
        vec = self.model(OPEN_C1 + "- {t: 100, data: c1, from: host, ce: true}", conns)
        self.assert_cnps(vec, {4: 0x101})
        cnp = vec.packets[3]["expect"][1][1]
        self.assertEqual(cnp[12:14], b"\x81\x00", "model: the CNP is VLAN-tagged")
        self.replay_vector(vec)


class Ipv6Cnp(CtcmTest):
    """An IPv6 connection: the CNP is IPv6."""

    def runTest(self):
        conns = C1.replace("host: host, peer: peer", "host: host6, peer: peer6")
        vec = self.model(OPEN_C1 + "- {t: 100, data: c1, from: host, ce: true}", conns)
        self.assert_cnps(vec, {4: 0x101})
        cnp = vec.packets[3]["expect"][1][1]
        self.assertEqual(cnp[12:14], b"\x86\xdd", "model: the CNP is IPv6")
        self.replay_vector(vec)


class CnpPacing(CtcmTest):
    """Pacing 200 ms per flow: CE packets 20 ms apart get one CNP, 500 ms later another;
    a second flow is paced on its own."""

    options = {"cnp_interval_us": 200_000}

    def runTest(self):
        conns = C1 + "\nc2: {host: host, peer: peer, opener: host, host_qpn: 0x000102, peer_qpn: 0x000202, " \
                     "host_comm_id: 0x11110002, peer_comm_id: 0x22220002}"
        vec = self.model("""
- {t: 0, cm: REQ, conn: c1}
- {t: 10, cm: REP, conn: c1}
- {t: 20, cm: RTU, conn: c1}
- {t: 30, cm: REQ, conn: c2}
- {t: 40, cm: REP, conn: c2}
- {t: 50, cm: RTU, conn: c2}
- {t: 100000, data: c1, from: host, ce: true, count: 3, gap_us: 20000}
- {t: 150000, data: c2, from: host, ce: true}
- {t: 600000, data: c1, from: host, ce: true, count: 2, gap_us: 20000}""", conns)
        self.assert_cnps(vec, {7: 0x101, 8: None, 9: None, 10: 0x102, 11: 0x101, 12: None})
        self.assertEqual(vec.final["counters"]["cnp_suppressed"], 3)
        self.replay_vector(vec)


class NonRocePassThrough(CtcmTest):
    """ARP, plain UDP, TCP and ICMPv6 pass through unchanged, both ways."""

    def runTest(self):
        vec = self.model("""
- {t: 0, non_roce: arp, port: host}
- {t: 10, non_roce: ipv4-udp, port: net}
- {t: 20, non_roce: ipv4-tcp, port: host}
- {t: 30, non_roce: ipv6-icmp, port: net}""", C1)
        for p in vec.packets:
            self.assertEqual([b for _, b in p["expect"]], [p["frame"]], "model: forwarded unchanged")
        self.replay_vector(vec)


class MalformedPassThrough(CtcmTest):
    """Malformed frames are forwarded unchanged and counted; tracking survives them.
    (A frame shorter than an Ethernet header, the model's short-ethernet case, cannot
    be sent on an interface: the malformed vector's replay skips it.)"""

    def runTest(self):
        vec = self.model("""
- {t: 0, cm: REQ, conn: c1}
- {t: 10, cm: REP, conn: c1}
- {t: 20, malformed: truncated-cm, conn: c1, from: peer}
- {t: 30, malformed: bad-mad-version, conn: c1, from: peer}
- {t: 40, malformed: bad-ip-version, conn: c1, from: host}
- {t: 50, malformed: udp-length, conn: c1, from: peer}
- {t: 70, cm: RTU, conn: c1}
- {t: 80, data: c1, from: host, ce: true}""", C1)
        for p in vec.packets[2:6]:
            self.assertEqual([b for _, b in p["expect"]], [p["frame"]], "model: forwarded unchanged")
        self.assert_cnps(vec, {8: 0x101})
        self.replay_vector(vec)


class UnsupportedHeadersPassThrough(CtcmTest):
    """QinQ (802.1ad outer tag) and an IPv6 extension header before UDP: headers the
    pipeline does not follow. Forwarded unchanged, counted as ``unsupported``, never
    looked into: no CNP although the RoCE inside is CE on a tracked flow."""

    def runTest(self):
        from scapy.contrib.roce import BTH
        from scapy.layers.inet import IP, UDP
        from scapy.layers.inet6 import IPv6, IPv6ExtHdrHopByHop
        from scapy.layers.l2 import Dot1AD, Dot1Q, Ether
        from scapy.packet import Raw

        roce = UDP(sport=0xC000, dport=4791, chksum=0) / BTH(opcode=4, dqpn=0x201) / Raw(bytes(36))
        eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        qinq = eth / Dot1AD(vlan=10) / Dot1Q(vlan=20) / IP(src="10.0.0.1", dst="10.0.0.2", tos=3) / roce
        v6ext = eth / IPv6(src="fd00::1", dst="fd00::2", tc=3) / IPv6ExtHdrHopByHop() / roce
        vec = self.model(OPEN_C1 + f"- {{t: 100, raw: '{bytes(qinq).hex()}', port: host}}\n"
                                   f"- {{t: 110, raw: '{bytes(v6ext).hex()}', port: host}}", C1)
        self.assert_cnps(vec, {4: None, 5: None})
        self.assertEqual(vec.final["counters"]["unsupported"], 2)
        self.replay_vector(vec)


class BadIcrcChangesNothing(CtcmTest):
    """A REQ with a wrong ICRC opens nothing; a DREQ with one closes nothing."""

    def runTest(self):
        vec = self.model("""
- {t: 0, cm: REQ, conn: p1, bad_icrc: true}
- {t: 10, cm: REQ, conn: p1}
- {t: 20, cm: REP, conn: p1}
- {t: 30, cm: RTU, conn: p1}
- {t: 40, cm: DREQ, conn: p1, from: peer, bad_icrc: true}
- {t: 50, data: p1, from: host, ce: true}""", P1)
        self.assertEqual(vec.final["counters"]["icrc_errors"], 2)
        self.assert_cnps(vec, {6: 0x111})
        self.replay_vector(vec)


# Table geometry tests: the same geometries as the p4-collision and p4-full-table
# vectors (one switch build each), connections chosen for their buckets there.
COLLISION = {"mode": "p4", "geometry": {"active_buckets": 4, "active_ways": 1, "passive_buckets": 4, "passive_ways": 1,
                          "flow_buckets": 4, "flow_ways": 1}}
FULL = {"mode": "p4", "geometry": {"active_buckets": 1, "active_ways": 4, "passive_buckets": 1, "passive_ways": 2,
                     "flow_buckets": 64, "flow_ways": 2}}


class TableCollisionRefused(CtcmTest):
    """4x1 tables: a REQ whose ACTIVE bucket is taken is refused (no CNP for it); a
    connection whose FLOW bucket is taken is tracked but makes no CNP."""

    options = COLLISION

    def runTest(self):
        conns = """
a: {host: host, peer: peer, opener: host, host_qpn: 0x000101, peer_qpn: 0x000301, host_comm_id: 0x11110001, peer_comm_id: 0x22220001}
b: {host: host, peer: peer, opener: host, host_qpn: 0x000103, peer_qpn: 0x000305, host_comm_id: 0x11110003, peer_comm_id: 0x22220003}
c: {host: host, peer: peer, opener: host, host_qpn: 0x000102, peer_qpn: 0x000303, host_comm_id: 0x11110002, peer_comm_id: 0x22220002}"""
        vec = self.model("""
- {t: 0, cm: REQ, conn: a}
- {t: 10, cm: REP, conn: a}
- {t: 20, cm: RTU, conn: a}
- {t: 30, cm: REQ, conn: b}
- {t: 40, cm: REP, conn: b}
- {t: 50, cm: RTU, conn: b}
- {t: 60, cm: REQ, conn: c}
- {t: 70, cm: REP, conn: c}
- {t: 80, cm: RTU, conn: c}
- {t: 200, data: a, from: host, ce: true}
- {t: 210, data: b, from: host, ce: true}
- {t: 220, data: c, from: host, ce: true}""", conns)
        c = vec.final["counters"]
        self.assertEqual(c["tracker.table_refusals"], 1)
        self.assertEqual(c["tracker.flow_refusals"], 1)
        self.assert_cnps(vec, {10: 0x101, 11: None, 12: None})
        self.replay_vector(vec)


class FullTableReclaimsTimewait(CtcmTest):
    """ACTIVE table of 4 slots: a 5th REQ is refused while all are live, refused while
    a slot is in TIMEWAIT (300 ms), and takes that slot once TIMEWAIT is over."""

    options = dict(FULL, timewait_us=300_000)

    def runTest(self):
        conns = "\n".join(
            f"h{i}: {{host: host, peer: peer, opener: host, host_qpn: 0x00011{i}, peer_qpn: 0x00021{i}, "
            f"host_comm_id: 0x1111001{i}, peer_comm_id: 0x2222001{i}}}" for i in range(1, 6))
        vec = self.model("""
- {t: 0, cm: REQ, conn: h1}
- {t: 1, cm: REQ, conn: h2}
- {t: 2, cm: REQ, conn: h3}
- {t: 3, cm: REQ, conn: h4}
- {t: 4, cm: REQ, conn: h5, note: full - refused}
- {t: 10, cm: REP, conn: h1}
- {t: 20, cm: RTU, conn: h1}
- {t: 100000, cm: DREQ, conn: h1, from: host}
- {t: 110000, cm: DREP, conn: h1, from: peer}
- {t: 160000, cm: REQ, conn: h5, note: TIMEWAIT not over - refused}
- {t: 610000, cm: REQ, conn: h5, note: TIMEWAIT over - reclaimed}
- {t: 620000, cm: REP, conn: h5}
- {t: 630000, cm: RTU, conn: h5}
- {t: 640000, data: h5, from: host, ce: true}""", conns)
        c = vec.final["counters"]
        self.assertEqual(c["tracker.table_refusals"], 2)
        self.assertEqual(c["tracker.timewait_expired"], 1)
        self.assert_cnps(vec, {14: 0x115})
        self.replay_vector(vec)


class UnknownIngressPortDropped(CtcmTest):
    """A frame from a port outside the port map (port 3) is dropped and counted."""

    UNMAPPED = 3

    def runTest(self):
        if (0, self.UNMAPPED) not in ptf.config["port_map"]:
            self.skipTest(f"no port {self.UNMAPPED} wired to the target")
        frame = build_roce("10.0.0.1", "10.0.0.2", {"opcode": 0x04, "dqpn": 0x201}, bytes(64), ecn=3)
        pipe = make_pipeline(self.cfg)
        outs = outputs_of(pipe.process(self.UNMAPPED, frame, 0))
        self.assertEqual(outs, [], "model: dropped")
        self.assertEqual(pipe.snapshot()["counters"]["dropped_unknown_port"], 1)
        self.replay([Step(1, 0, self.UNMAPPED, frame, outs)], pipe.snapshot()["counters"], "UnknownIngressPortDropped")
