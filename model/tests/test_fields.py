"""Field-table machinery and the tables themselves."""

import pytest

from ctcm import headers as H
from ctcm.fields import Field, Header


def test_tables_lengths_and_no_overlap():
    assert H.MAD.length == 24 and H.CM_BODY_LENGTH == 232
    for h in H.CM_MESSAGES.values():
        assert h.length == 232
    assert (H.BTH.length, H.DETH.length, H.UDP.length, H.IPV4.length, H.IPV6.length) == (12, 8, 8, 20, 40)


def test_header_rejects_bad_tables():
    with pytest.raises(ValueError, match="overlap"):
        Header("X", 4, [Field("a", 0, 0, 12), Field("b", 1, 0, 8)])
    with pytest.raises(ValueError, match="past the end"):
        Header("X", 2, [Field("a", 1, 4, 16)])
    with pytest.raises(ValueError, match="whole bytes"):
        Header("X", 16, [Field("a", 0, 4, 72)])
    with pytest.raises(ValueError, match="duplicate"):
        Header("X", 4, [Field("a", 0, 0, 8), Field("a", 1, 0, 8)])


def test_bit_fields_cross_byte_boundaries():
    # REQ primary flow label is 20 bits at 88:0; packet rate 6 bits at 91:2.
    b = H.CM_REQ.encode(primary_flow_label=0xABCDE, primary_packet_rate=0x3F, local_eecn=0x123456)
    assert b[88:92] == bytes([0xAB, 0xCD, 0xE0, 0x3F])
    assert b[36:39] == bytes([0x12, 0x34, 0x56])
    d = H.CM_REQ.decode(b)
    assert (d["primary_flow_label"], d["primary_packet_rate"], d["local_eecn"]) == (0xABCDE, 0x3F, 0x123456)


def test_known_wire_positions():
    """Spot checks written from the facts sheet, not from the tables."""
    b = H.CM_REP.encode(local_qpn=0xABCDEF, starting_psn=0x010203, srq=1, rnr_retry_count=7)
    assert b[12:15] == bytes.fromhex("abcdef") and b[20:23] == bytes.fromhex("010203")
    assert b[27] == 0b1111_0000
    b = H.CM_MRA.encode(message_mraed=1, service_timeout=0x1F)
    assert b[8] == 0x40 and b[9] == 0xF8
    b = H.CM_REJ.encode(message_rejected=2, reject_info_length=0x7F, reason=28)
    assert b[8:12] == bytes([0x80, 0xFE, 0x00, 28])
    b = H.BTH.encode(fecn=1, becn=1, dqpn=1, ackreq=1, psn=0xFFFFFF)
    assert b == bytes.fromhex("00000000c0000001 80ffffff".replace(" ", ""))


def test_encode_errors_name_the_field():
    with pytest.raises(ValueError, match=r"CM_REQ\.local_qpn.*24 bits"):
        H.CM_REQ.encode(local_qpn=1 << 24)
    with pytest.raises(ValueError, match="unknown field 'nope'"):
        H.CM_REQ.encode(nope=1)
    with pytest.raises(ValueError, match=r"private_data: 93 bytes"):
        H.CM_REQ.encode(private_data=bytes(93))
    with pytest.raises(ValueError, match="local_comm_id"):
        H.CM_REQ.encode(local_comm_id=-1)
    with pytest.raises(ValueError, match="expected an integer"):
        H.CM_REQ.encode(local_comm_id="x")


def test_text_values():
    b = H.IPV4.encode(src="10.1.2.3")
    assert b[12:16] == bytes([10, 1, 2, 3])
    b = H.IP_CM.encode(src_ip="10.1.2.3", dst_ip="fe80::1")
    assert b[4:20] == bytes(12) + bytes([10, 1, 2, 3])
    assert H.IP_CM.format(H.IP_CM.decode(b))["dst_ip"] == "fe80::1"


def test_decode_short_buffer_raises_valueerror():
    with pytest.raises(ValueError, match="need 12 bytes"):
        H.BTH.decode(b"\0" * 11)
