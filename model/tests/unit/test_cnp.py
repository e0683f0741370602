"""CNP generation: the published Mellanox example, the template, scapy agreement."""

import ipaddress
import random

import pytest
from hypothesis import given, settings, strategies as st
from scapy.contrib.roce import BTH, CNPPadding, cnp as scapy_cnp
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6

import ctcm
from ctcm.dataplane.cnp import CNP_IPV4_LENGTH, CNP_IPV6_LENGTH, CnpGenerator, fill_cnp_template, generate_cnp

# Mellanox "RoCEv2 CNP packet format example" (facts sheet; the C library's unit test).
PUBLISHED = bytes.fromhex(
    "4589003C98C640002011692716161608" "16161607DBAE12B7002800008100FFFF"
    "400000D2000000000000000000000000" "0000000000000000DAFC1BEF"
)


def published_template():
    return fill_cnp_template(tos=0x89, ttl=0x20, ip_id=0x98C6, sport=56238)


def test_published_example_with_checksum():
    out = generate_cnp(published_template(), 0xD2, src_ip="22.22.22.8", dst_ip="22.22.22.7", ip_checksum=True)
    assert bytes(out) == PUBLISHED


def test_published_example_default_zero_checksum():
    out = generate_cnp(published_template(), 0xD2, src_ip="22.22.22.8", dst_ip="22.22.22.7")
    assert bytes(out) == PUBLISHED[:10] + b"\0\0" + PUBLISHED[12:]


def test_published_example_scapy_agrees():
    # scapy.contrib.roce reproduces the same example independently.
    p = IP(src="22.22.22.8", dst="22.22.22.7", id=0x98C6, flags="DF", ttl=0x20, tos=0x89) / \
        UDP(sport=56238, dport=4791, chksum=0) / scapy_cnp(0xD2)
    assert bytes(p) == PUBLISHED


def test_c_aliases_flow():
    """C usage: fill template, caller writes addresses, ctcm_generate_cnp."""
    buf = bytearray(64)
    ctcm.ctcm_fill_cnp_template(None, buf, tos=0x89, ttl=0x20, ip_id=0x98C6, sport=56238)
    buf = buf[:CNP_IPV4_LENGTH]
    buf[12:16] = ipaddress.ip_address("22.22.22.8").packed
    buf[16:20] = ipaddress.ip_address("22.22.22.7").packed
    ctcm.ctcm_generate_cnp(None, buf, 0xD2)
    assert bytes(buf) == PUBLISHED[:10] + b"\0\0" + PUBLISHED[12:]


def test_template_defaults_match_c_library():
    t = fill_cnp_template()
    assert len(t) == CNP_IPV4_LENGTH == 60
    p = IP(bytes(t))
    assert (p.version, p.ihl, p.tos, p.len, p.id, p.flags, p.ttl, p.proto, p.chksum) == \
        (4, 5, 0xC2, 60, 0, 2, 255, 17, 0)
    assert (p[UDP].sport, p[UDP].dport, p[UDP].len, p[UDP].chksum) == (0xF000, 4791, 40, 0)
    b = p[BTH]
    assert (b.opcode, b.becn, b.fecn, b.pkey, b.dqpn, b.psn) == (0x81, 1, 0, 0xFFFF, 0, 0)
    assert bytes(p[CNPPadding]) [:16] == bytes(16)
    # C constants: BTH + CNP payload + ICRC = 32 bytes after UDP.
    assert len(t) - 20 - 8 == 32  # CTCM_CNP_TOTAL_LENGTH in the C library's header


def test_ipv6_template():
    t = fill_cnp_template(6)
    assert len(t) == CNP_IPV6_LENGTH == 80
    p = IPv6(bytes(t))
    assert (p.tc, p.plen, p.nh, p.hlim) == (0xC2, 40, 17, 255)
    assert p[BTH].opcode == 0x81 and p[BTH].becn == 1


def _scapy_cnp(version, src, dst, qpn, tos, ttl, ip_id, sport):
    if version == 4:
        ip = IP(src=src, dst=dst, tos=tos, ttl=ttl, id=ip_id, flags="DF")
    else:
        ip = IPv6(src=src, dst=dst, tc=tos, hlim=ttl)
    return ip / UDP(sport=sport, dport=4791, chksum=0) / scapy_cnp(qpn)


@settings(max_examples=150, deadline=None)
@given(
    version=st.sampled_from([4, 6]),
    seed=st.integers(0, 2**32 - 1),
    qpn=st.integers(0, 0xFFFFFF),
    tos=st.integers(0, 255),
    ttl=st.integers(0, 255),
    ip_id=st.integers(0, 0xFFFF),
    sport=st.integers(0, 0xFFFF),
)
def test_generate_matches_scapy(version, seed, qpn, tos, ttl, ip_id, sport):
    r = random.Random(seed)
    if version == 4:
        src, dst = (str(ipaddress.IPv4Address(r.getrandbits(32))) for _ in range(2))
    else:
        src, dst = (str(ipaddress.IPv6Address(r.getrandbits(128))) for _ in range(2))
    t = fill_cnp_template(version, tos=tos, ttl=ttl, ip_id=ip_id, sport=sport)
    ours = generate_cnp(t, qpn, src_ip=src, dst_ip=dst, ip_checksum=(version == 4))
    ref = _scapy_cnp(version, src, dst, qpn, tos, ttl, ip_id, sport)
    assert bytes(ours) == bytes(ref)
    # The hot-path generator gives the same bytes.
    g = CnpGenerator(t, ip_checksum=True)
    fast = g.generate(ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed, qpn)
    assert fast == bytes(ours)


def test_generate_into_callers_buffer_and_in_place():
    t = fill_cnp_template(src_ip="10.0.0.1", dst_ip="10.0.0.2")
    out = bytearray(100)
    r = generate_cnp(t, 0x123456, out=out)
    assert r is out and out[60:] == bytes(40)
    assert bytes(out[:60]) == bytes(generate_cnp(t, 0x123456))
    assert t[20 + 8 + 5 : 20 + 8 + 8] == b"\0\0\0"  # the template itself is untouched
    generate_cnp(t, 0x123456, out=t)  # in place, like the C function on an mbuf
    assert bytes(t) == bytes(out[:60])


def test_generate_rejects_bad_input():
    t = fill_cnp_template()
    with pytest.raises(ValueError, match="dqpn"):
        generate_cnp(t, 1 << 24)
    with pytest.raises(ValueError, match="shorter"):
        generate_cnp(t, 1, out=bytearray(10))
    with pytest.raises(ValueError, match="IPv4"):
        generate_cnp(t, 1, src_ip="::1")


@pytest.mark.parametrize("version", [4, 6])
def test_batch_generator_equals_scalar(version):
    import numpy as np

    from ctcm.dataplane.cnp import CnpBatchGenerator

    r = random.Random(version)
    t = fill_cnp_template(version, tos=0x89, ttl=0x20, ip_id=0x98C6, sport=56238)
    alen = 4 if version == 4 else 16
    srcs = [r.randbytes(alen) for _ in range(500)]
    dsts = [r.randbytes(alen) for _ in range(500)]
    qpns = [r.getrandbits(24) for _ in range(500)]
    out = CnpBatchGenerator(t).generate(np.frombuffer(b"".join(srcs), np.uint8), np.frombuffer(b"".join(dsts), np.uint8), qpns)
    g = CnpGenerator(t, ip_checksum=True)
    for i in range(500):
        assert out[i].tobytes() == g.generate(srcs[i], dsts[i], qpns[i])
    if version == 4:  # and the published example, through the batch path
        one = CnpBatchGenerator(t).generate([[22, 22, 22, 8]], [[22, 22, 22, 7]], [0xD2])
        assert one[0].tobytes() == PUBLISHED
