"""tshark (Wireshark's dissector, independent code) agrees with the packet layer.

CM frames are encoded by ctcm, written to a pcap, dissected by tshark once,
and every field tshark reports is compared with both the values used to build
the frame and what ctcm's decoder returns. tshark 4.0 does not dissect MRA
bodies ("Dissector Not Implemented"): for MRA we compare tshark's raw MAD
payload bytes instead.
"""

import ipaddress
import random
import subprocess

import pytest

from ctcm.spec import headers as H
from ctcm.dataplane.cnp import fill_cnp_template, generate_cnp
from ctcm.dataplane.packet import build_cm, decode, ip_cm_private_data
from ctcm.io.pcapio import write_pcap

from conftest import require_tool

FIELDS = [
    "frame.number", "vlan.id", "infiniband.bth.opcode", "infiniband.bth.destqp", "infiniband.bth.psn",
    "infiniband.deth.srcqp", "infiniband.mad.attributeid", "infiniband.mad.transactionid", "infiniband.mad.data",
    "infiniband.cm.req", "infiniband.cm.req.serviceid", "infiniband.cm.req.localqpn", "infiniband.cm.req.startpsn",
    "infiniband.cm.req.ip_cm.ipv", "infiniband.cm.req.ip_cm.sport",
    "infiniband.cm.req.ip_cm.sip4", "infiniband.cm.req.ip_cm.dip4",
    "infiniband.cm.req.ip_cm.sip6", "infiniband.cm.req.ip_cm.dip6",
    "infiniband.cm.rep", "infiniband.cm.rep.remotecommid", "infiniband.cm.rep.localqpn", "infiniband.cm.rep.startpsn",
    "infiniband.cm.rtu.localcommid", "infiniband.cm.rtu.remotecommid",
    "infiniband.cm.rej.localcommid", "infiniband.cm.rej.remotecommid", "infiniband.cm.rej.msgrej",
    "infiniband.cm.rej.reason",
    "infiniband.cm.dreq.localcommid", "infiniband.cm.dreq.remotecommid", "infiniband.cm.req.remoteqpneecn",
    "infiniband.cm.drsp.localcommid", "infiniband.cm.drsp.remotecommid",
    "infiniband.invariant.crc", "_ws.malformed", "_ws.expert.severity", "_ws.expert.message", "ipv6.src",
]

MSGS = ["REQ", "MRA", "REJ", "REP", "RTU", "DREQ", "DREP"]


def make_frames(n=280, seed=1234):
    r = random.Random(seed)
    out = []
    for i in range(n):
        msg = MSGS[i % len(MSGS)]
        v6 = r.random() < 0.4
        if v6:
            src, dst = (str(ipaddress.IPv6Address((0xFD00 << 112) | r.getrandbits(64))) for _ in range(2))
        else:
            src, dst = (str(ipaddress.IPv4Address(r.getrandbits(32) | 0x0A000000 & 0xFFFFFFFF)) for _ in range(2))
        f = {"local_comm_id": r.getrandbits(32)}
        if msg != "REQ":
            f["remote_comm_id"] = r.getrandbits(32)
        if msg == "REQ":
            port = r.randrange(1, 65536)
            f.update(service_id=0x0000000001060000 | port, local_qpn=r.getrandbits(24),
                     starting_psn=r.getrandbits(24), local_qkey=r.getrandbits(32),
                     private_data=ip_cm_private_data(src, dst, r.randrange(65536)))
        elif msg == "REP":
            f.update(local_qpn=r.getrandbits(24), starting_psn=r.getrandbits(24))
        elif msg == "REJ":
            f.update(message_rejected=r.randrange(3), reason=r.randrange(1, 34))
        elif msg == "MRA":
            f.update(message_mraed=r.randrange(3), service_timeout=r.getrandbits(5))
        elif msg == "DREQ":
            f.update(remote_qpn=r.getrandbits(24))
        kw = dict(tid=r.getrandbits(64), psn=r.getrandbits(24), src_qp=r.choice([1, r.getrandbits(24)]))
        if r.random() < 0.3:
            kw["vlan"] = r.randrange(1, 4095)
        out.append((msg, f, kw, build_cm(msg, src, dst, f, **kw)))
    return out


def run_tshark(tmp_path, frames):
    tshark = require_tool("tshark", "tshark")
    path = tmp_path / "cm.pcap"
    write_pcap(str(path), [(i, 0, fr) for i, fr in enumerate(frames)])
    args = [tshark, "-n", "-r", str(path), "-T", "fields", "-E", "separator=\t", "-E", "occurrence=f"]
    for f in FIELDS:
        args += ["-e", f]
    res = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    rows = [dict(zip(FIELDS, line.split("\t"))) for line in res.stdout.splitlines()]
    assert len(rows) == len(frames)
    return rows


def num(s: str) -> int:
    return int(s, 0)


@pytest.fixture(scope="module")
def dissected(tmp_path_factory):
    frames = make_frames()
    rows = run_tshark(tmp_path_factory.mktemp("tshark"), [f[3] for f in frames])
    return frames, rows


def test_no_malformed_or_errors(dissected):
    frames, rows = dissected
    for (msg, _f, _kw, _b), row in zip(frames, rows):
        assert row["_ws.malformed"] == "", (msg, row)
        # No expert errors, except UDP's: RoCEv2 NICs send UDP checksum 0 over
        # IPv6 too (it is masked out of the ICRC), which tshark flags for IPv6.
        if row["_ws.expert.severity"] == "8388608":
            assert row["ipv6.src"] and row["_ws.expert.message"] == "Illegal checksum value (0)", (msg, row)


def test_transport_and_mad_fields(dissected):
    frames, rows = dissected
    for (msg, f, kw, frame), row in zip(frames, rows):
        d = decode(frame)
        assert num(row["infiniband.bth.opcode"]) == 0x64 == d.bth["opcode"]
        assert num(row["infiniband.bth.destqp"]) == 1 == d.bth["dqpn"]
        assert num(row["infiniband.bth.psn"]) == kw["psn"] == d.bth["psn"]
        assert num(row["infiniband.deth.srcqp"]) == kw["src_qp"] == d.deth["src_qp"]
        assert num(row["infiniband.mad.attributeid"]) == H.CM_ATTR_IDS[msg] == d.mad["attr_id"]
        assert num(row["infiniband.mad.transactionid"]) == kw["tid"] == d.mad["tid"]
        assert num(row["infiniband.invariant.crc"]) == int.from_bytes(frame[-4:], "big")
        assert d.icrc_ok
        if "vlan" in kw:
            assert num(row["vlan.id"]) == kw["vlan"] == d.vlan["vid"]
        # The MAD payload tshark extracts is the CM body ctcm encoded.
        assert bytes.fromhex(row["infiniband.mad.data"].replace(":", "")) == H.CM_MESSAGES[H.CM_ATTR_IDS[msg]].encode(f)


# message -> [(tshark field, ctcm field)]
CM_FIELDS = {
    "REQ": [("infiniband.cm.req", "local_comm_id"), ("infiniband.cm.req.serviceid", "service_id"),
            ("infiniband.cm.req.localqpn", "local_qpn"), ("infiniband.cm.req.startpsn", "starting_psn")],
    "REP": [("infiniband.cm.rep", "local_comm_id"), ("infiniband.cm.rep.remotecommid", "remote_comm_id"),
            ("infiniband.cm.rep.localqpn", "local_qpn"), ("infiniband.cm.rep.startpsn", "starting_psn")],
    "RTU": [("infiniband.cm.rtu.localcommid", "local_comm_id"), ("infiniband.cm.rtu.remotecommid", "remote_comm_id")],
    "REJ": [("infiniband.cm.rej.localcommid", "local_comm_id"), ("infiniband.cm.rej.remotecommid", "remote_comm_id"),
            ("infiniband.cm.rej.msgrej", "message_rejected"), ("infiniband.cm.rej.reason", "reason")],
    "DREQ": [("infiniband.cm.dreq.localcommid", "local_comm_id"), ("infiniband.cm.dreq.remotecommid", "remote_comm_id"),
             ("infiniband.cm.req.remoteqpneecn", "remote_qpn")],
    "DREP": [("infiniband.cm.drsp.localcommid", "local_comm_id"), ("infiniband.cm.drsp.remotecommid", "remote_comm_id")],
}


def test_cm_fields(dissected):
    frames, rows = dissected
    seen = set()
    for (msg, f, _kw, frame), row in zip(frames, rows):
        d = decode(frame)
        assert d.cm_name == msg
        for tf, cf in CM_FIELDS.get(msg, []):
            assert row[tf] != "", (msg, tf)
            assert num(row[tf]) == f[cf] == d.cm[cf], (msg, tf)
            seen.add(tf)
        if msg == "MRA":  # not dissected by tshark 4.0: check the raw body bytes
            body = bytes.fromhex(row["infiniband.mad.data"].replace(":", ""))
            assert body[8] >> 6 == f["message_mraed"] == d.cm["message_mraed"]
            assert body[9] >> 3 == f["service_timeout"] == d.cm["service_timeout"]
    assert seen == {tf for v in CM_FIELDS.values() for tf, _ in v}


def test_ip_cm_private_data(dissected):
    frames, rows = dissected
    n = 0
    for (msg, f, _kw, frame), row in zip(frames, rows):
        if msg != "REQ":
            continue
        n += 1
        d = decode(frame)
        pd = f["private_data"]
        assert num(row["infiniband.cm.req.ip_cm.ipv"]) == d.ip_cm["ip_version"]
        assert num(row["infiniband.cm.req.ip_cm.sport"]) == int.from_bytes(pd[2:4], "big") == d.ip_cm["src_port"]
        if d.ip_cm["ip_version"] == 4:
            assert row["infiniband.cm.req.ip_cm.sip4"] == str(ipaddress.IPv4Address(d.ip_cm["src_ip"][12:]))
            assert row["infiniband.cm.req.ip_cm.dip4"] == str(ipaddress.IPv4Address(d.ip_cm["dst_ip"][12:]))
            assert row["infiniband.cm.req.ip_cm.sip4"] == H.IPV4["src"].format(d.ip["src"])
        else:
            assert ipaddress.ip_address(row["infiniband.cm.req.ip_cm.sip6"]) == ipaddress.IPv6Address(d.ip_cm["src_ip"])
            assert ipaddress.ip_address(row["infiniband.cm.req.ip_cm.dip6"]) == ipaddress.IPv6Address(d.ip_cm["dst_ip"])
            assert ipaddress.IPv6Address(d.ip_cm["src_ip"]) == ipaddress.IPv6Address(d.ip["src"])
    assert n >= 30


def test_published_cnp_in_tshark(tmp_path):
    t = fill_cnp_template(tos=0x89, ttl=0x20, ip_id=0x98C6, sport=56238)
    cnp = generate_cnp(t, 0xD2, src_ip="22.22.22.8", dst_ip="22.22.22.7", ip_checksum=True)
    frame = bytes.fromhex("020000000002020000000001" "0800") + bytes(cnp)
    rows = run_tshark(tmp_path, [frame])
    assert num(rows[0]["infiniband.bth.opcode"]) == 0x81
    assert num(rows[0]["infiniband.bth.destqp"]) == 0xD2
    assert rows[0]["_ws.malformed"] == ""
