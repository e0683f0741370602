"""classify/decode never raise and answer sensibly on damaged input."""


import pytest
from hypothesis import given, settings, strategies as st
from scapy.contrib.roce import BTH
from scapy.layers.l2 import Ether

from ctcm.spec import headers as H
from ctcm.dataplane.packet import CM, MALFORMED, NOT_ROCE, ROCE, build_cm, build_roce, classify, decode

CM_FRAME = build_cm("REQ", "10.0.0.1", "10.0.0.2", {"local_comm_id": 7, "local_qpn": 9}, tid=3)
CM6_FRAME = build_cm("DREQ", "fd00::1", "fd00::2", {"local_comm_id": 7, "remote_comm_id": 8}, vlan=5)


def check(frame):
    p = classify(frame)
    d = decode(frame)
    assert d.parsed == p
    assert isinstance(d.summary(), str)
    if p.kind == MALFORMED:
        assert p.reason
    return p, d


@settings(max_examples=500, deadline=None)
@given(st.binary(min_size=0, max_size=400))
def test_random_bytes(data):
    check(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=400))
def test_random_bytes_after_roce_headers(data):
    # Valid Ethernet/IP/UDP 4791 headers in front of random bytes: every path below UDP.
    frame = bytearray(CM_FRAME[:42] + data)
    frame[16:18] = (len(frame) - 14).to_bytes(2, "big")
    frame[38:40] = (len(frame) - 34).to_bytes(2, "big")
    check(bytes(frame))


@pytest.mark.parametrize("frame", [CM_FRAME, CM6_FRAME], ids=["ipv4", "ipv6-vlan"])
def test_every_truncation(frame):
    for n in range(len(frame)):
        p, _ = check(frame[:n])
        assert p.kind in (MALFORMED, NOT_ROCE), (n, p)
        assert p.kind != CM


@pytest.mark.parametrize("frame", [CM_FRAME, CM6_FRAME], ids=["ipv4", "ipv6-vlan"])
def test_trailing_padding_is_ignored_but_short_udp_is_not(frame):
    p, d = check(frame + bytes(30))  # Ethernet padding / trailer beyond the IP length
    assert p.kind == CM and d.icrc_ok
    bad = bytearray(frame)
    l4 = classify(frame).l4
    bad[l4 + 4 : l4 + 6] = (int.from_bytes(bad[l4 + 4 : l4 + 6], "big") + 8).to_bytes(2, "big")
    p, _ = check(bytes(bad))
    assert p.kind == MALFORMED and "UDP length" in p.reason


@settings(max_examples=400, deadline=None)
@given(bit=st.integers(0, len(CM_FRAME) * 8 - 1))
def test_single_bit_flips(bit):
    f = bytearray(CM_FRAME)
    f[bit // 8] ^= 0x80 >> (bit % 8)
    p, d = check(bytes(f))
    byte = bit // 8
    if byte >= len(CM_FRAME) - 4:
        assert p.kind == CM and d.icrc_ok is False  # the ICRC itself
    if byte == 14 and bit % 8 < 4:
        assert p.kind == MALFORMED and "version" in p.reason


def test_ip_options_ihl_gt_5_and_scapy_icrc():
    opts = b"\x01\x01\x01\x00" * 3
    frame = build_cm("RTU", "10.0.0.1", "10.0.0.2", {"local_comm_id": 1, "remote_comm_id": 2}, ip_options=opts)
    p, d = check(frame)
    assert p.kind == CM and p.l4 == 14 + 32 and d.icrc_ok and d.ip_options == opts
    s = Ether(frame)
    s[BTH].icrc = None
    assert bytes(s) == frame  # scapy's ICRC over the same packet agrees


def test_versions_and_classes():
    f = bytearray(CM_FRAME)
    f[14] = 0x65  # IP version 6 under ethertype 0x0800
    assert classify(bytes(f)).kind == MALFORMED
    f = bytearray(CM_FRAME)
    f[14] = 0x44  # IHL 4
    assert "IHL" in classify(bytes(f)).reason
    f = bytearray(CM_FRAME)
    f[62] = 2  # MAD base version
    assert classify(bytes(f)).kind == MALFORMED and "base version" in classify(bytes(f)).reason
    f = bytearray(CM_FRAME)
    f[64] = 1  # CM class version
    assert "class version" in classify(bytes(f)).reason
    f = bytearray(CM_FRAME)
    f[63] = 0x03  # management class SA: a MAD to QP1, not CM
    assert classify(bytes(f)).kind == ROCE
    f = bytearray(CM_FRAME)
    f[36:38] = (4789).to_bytes(2, "big")
    assert classify(bytes(f)).kind == NOT_ROCE
    f = bytearray(CM_FRAME)
    f[12:14] = b"\x08\x06"
    assert classify(bytes(f)).kind == NOT_ROCE
    data = build_roce("10.0.0.1", "10.0.0.2", {"opcode": 4, "dqpn": 1}, bytes(264))
    assert classify(data).kind == ROCE  # RC to QP1 is not a MAD


def test_oversized_mad_is_malformed():
    f = build_roce("10.0.0.1", "10.0.0.2", {"opcode": 0x64, "dqpn": 1}, CM_FRAME[54:-4] + bytes(4))
    p = classify(f)
    assert p.kind == MALFORMED and "260 bytes, expected 256" in p.reason


@pytest.mark.parametrize("header", H.ALL_HEADERS, ids=lambda h: h.name)
def test_too_wide_values_name_the_field(header):
    for f in header.fields:
        bad = bytes(f.width // 8 + 1) if f.is_bytes else 1 << f.width
        with pytest.raises(ValueError, match=f"{header.name}\\.{f.name}"):
            header.encode({f.name: bad})
