"""ICRC against scapy.contrib.roce (independent code) on random RoCEv2 packets."""

import ipaddress
import random

from hypothesis import given, settings, strategies as st
from scapy.contrib.roce import BTH
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw

from ctcm import classify, icrc, icrc_bytes, verify_icrc


def scapy_frame(r: random.Random, version: int, vlan: bool, payload_len: int):
    if version == 4:
        opts = b""
        if r.random() < 0.3:  # IHL > 5: options (NOPs + end) up to 40 bytes
            opts = b"\x01" * (4 * r.randint(1, 10) - 1) + b"\x00"
        ip = IP(src=str(ipaddress.IPv4Address(r.getrandbits(32))), dst=str(ipaddress.IPv4Address(r.getrandbits(32))),
                tos=r.getrandbits(8), ttl=r.getrandbits(8), id=r.getrandbits(16), flags="DF", options=opts)
    else:
        ip = IPv6(src=str(ipaddress.IPv6Address(r.getrandbits(128))), dst=str(ipaddress.IPv6Address(r.getrandbits(128))),
                  tc=r.getrandbits(8), fl=r.getrandbits(20), hlim=r.getrandbits(8))
    bth = BTH(opcode=r.getrandbits(8), solicited=r.getrandbits(1), migreq=r.getrandbits(1), padcount=r.getrandbits(2),
              version=r.getrandbits(4), pkey=r.getrandbits(16), fecn=r.getrandbits(1), becn=r.getrandbits(1),
              resv6=r.getrandbits(6), dqpn=r.getrandbits(24), ackreq=r.getrandbits(1), resv7=r.getrandbits(7),
              psn=r.getrandbits(24))
    l2 = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    if vlan:
        l2 = l2 / Dot1Q(vlan=r.randint(1, 4094))
    pkt = l2 / ip / UDP(sport=r.getrandbits(16), dport=4791, chksum=r.getrandbits(16)) / bth / Raw(r.randbytes(payload_len))
    return bytes(pkt)


@settings(max_examples=400, deadline=None)
@given(seed=st.integers(0, 2**64), version=st.sampled_from([4, 6]), vlan=st.booleans(), plen=st.integers(0, 1100))
def test_icrc_matches_scapy(seed, version, vlan, plen):
    r = random.Random(seed)
    frame = scapy_frame(r, version, vlan, plen)
    p = classify(frame)
    assert p.kind in (1, 2), p  # ROCE (or CM by chance)
    assert p.l3 == (18 if vlan else 14)
    assert p.end == len(frame) - 4
    assert icrc_bytes(frame, p.l3, p.end) == frame[-4:]
    assert verify_icrc(frame, p.l3, p.end)


def test_variant_fields_are_masked_and_others_are_not():
    r = random.Random(7)
    for version in (4, 6):
        frame = bytearray(scapy_frame(r, version, False, 64))
        p = classify(frame)
        base = icrc(frame, p.l3, p.end)
        l3, l4, bth = p.l3, p.l4, p.bth
        if version == 4:
            masked = [l3 + 1, l3 + 8, l3 + 10, l3 + 11]  # TOS, TTL, checksum
            covered = [l3 + 0, l3 + 4, l3 + 9, l3 + 12, l3 + 19]
        else:
            masked = [l3 + 1, l3 + 2, l3 + 3, l3 + 7]  # TC/flow label, hop limit
            covered = [l3 + 4, l3 + 6, l3 + 8, l3 + 39]
        masked += [l4 + 6, l4 + 7, bth + 4]  # UDP checksum, FECN/BECN/resv6
        covered += [l4 + 0, l4 + 2, bth + 0, bth + 5, bth + 9, p.end - 1]
        for i in masked:
            f = bytearray(frame)
            f[i] ^= 0xFF
            assert icrc(f, p.l3, p.end) == base, f"byte {i} should be masked"
        for i in covered:
            f = bytearray(frame)
            f[i] ^= 0x01
            assert icrc(f, p.l3, p.end) != base, f"byte {i} should be covered"
        # IPv6: the version nibble is covered, the traffic-class nibble of byte 0 is not.
        if version == 6:
            f = bytearray(frame)
            f[l3] ^= 0x0F
            assert icrc(f, p.l3, p.end) == base
