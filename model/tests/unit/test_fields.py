"""Field-table machinery and the tables themselves."""

import pytest

from ctcm.spec import headers as H
from ctcm.spec.fields import Field, Header


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


def _value_for(f, r):
    """A random value for field ``f``: mostly in range, sometimes not, sometimes text."""
    x = r.random()
    if f.is_bytes:
        n = f.width // 8
        if x < 0.1:
            return bytes(r.randrange(256) for _ in range(n + 1))  # too long
        if x < 0.2:
            return r.randrange(2**31)  # wrong type
        return bytes(r.randrange(256) for _ in range(r.randrange(n + 1)))  # short ones are padded
    if x < 0.05:
        return f.mask + 1 + r.randrange(1000)
    if x < 0.1:
        return -1 - r.randrange(5)
    if x < 0.13:
        return r.random() < 0.5  # bools are not integers here
    if x < 0.16:
        return "zz"
    return r.randrange(f.mask + 1)


@pytest.mark.parametrize("header", H.ALL_HEADERS, ids=lambda h: h.name)
def test_encode_equals_encode_into_a_zeroed_buffer(header):
    """encode() builds the header as one integer; encode_into() writes field by
    field into a buffer. Both must give the same bytes or the same error."""
    import random

    r = random.Random(header.name)
    for _ in range(300):
        names = [f.name for f in header.fields if r.random() < 0.7]
        if r.random() < 0.05:
            names.append("no_such_field")
        values = {n: _value_for(header.by_name[n], r) if n in header.by_name else 1 for n in names}
        try:
            buf = bytearray(header.length)
            header.encode_into(buf, 0, values)
            want = bytes(buf)
        except ValueError as e:
            with pytest.raises(ValueError) as got:
                header.encode(values)
            assert str(got.value) == str(e)
        else:
            assert header.encode(values) == want
