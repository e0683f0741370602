"""The scapy layers and the field tables agree, field by field.

scapy's BitField packing and scapy.contrib.roce's BTH are independent code:
building with one and decoding with the other catches offset and width errors.
"""

import random

import pytest
from hypothesis import given, settings, strategies as st
from scapy.contrib.roce import BTH
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether

from ctcm.spec import headers as H
from ctcm.dataplane.packet import CM, build_cm, classify, decode
from ctcm.io.scapy_layers import CM_LAYERS, DETH, MAD

def scapy_width(sf) -> int:
    """Width in bits of a scapy field (BitField: size; fixed-length string: its length)."""
    if hasattr(sf, "size"):
        return sf.size
    if hasattr(sf, "length_from") and isinstance(sf.default, bytes):
        return len(sf.default) * 8
    return sf.sz * 8


TABLES = [(H.DETH, DETH), (H.MAD, MAD)] + [(H.CM_MESSAGES[a], c) for a, c in CM_LAYERS.items()]
IDS = [h.name for h, _ in TABLES]


def random_values(header, r: random.Random) -> dict:
    return {f.name: (r.randbytes(f.width // 8) if f.is_bytes else r.getrandbits(f.width)) for f in header.fields}


@pytest.mark.parametrize("header,layer", TABLES, ids=IDS)
def test_layer_has_every_field_with_its_width(header, layer):
    fields = {f.name: f for f in layer.fields_desc}
    for f in header.fields:
        assert f.name in fields, f"{layer.__name__} lacks {f.name}"
        assert scapy_width(fields[f.name]) == f.width, f.name
    assert len(bytes(layer())) == header.length


@pytest.mark.parametrize("header,layer", TABLES, ids=IDS)
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32))
def test_scapy_build_table_decode(header, layer, seed):
    vals = random_values(header, random.Random(seed))
    raw = bytes(layer(**vals))
    assert len(raw) == header.length
    assert header.decode(raw) == vals


@pytest.mark.parametrize("header,layer", TABLES, ids=IDS)
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32))
def test_table_encode_scapy_dissect(header, layer, seed):
    vals = random_values(header, random.Random(seed))
    p = layer(header.encode(vals))
    for name, v in vals.items():
        assert p.getfieldval(name) == v, name


BTH_FIELDS = [f.name for f in BTH.fields_desc if f.name != "icrc"]


def test_bth_table_matches_scapy_contrib_roce():
    assert [f.name for f in H.BTH.fields] == BTH_FIELDS
    for f in H.BTH.fields:
        sf = next(x for x in BTH.fields_desc if x.name == f.name)
        assert scapy_width(sf) == f.width, f.name


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32))
def test_bth_roundtrip_with_scapy(seed):
    r = random.Random(seed)
    vals = {f.name: r.getrandbits(f.width) for f in H.BTH.fields}
    raw = bytes(BTH(**vals, icrc=0))[:12]
    assert H.BTH.decode(raw) == vals
    p = BTH(H.BTH.encode(vals) + b"\0\0\0\0")
    assert {k: p.getfieldval(k) for k in vals} == vals


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize("vlan", [None, 42])
@pytest.mark.parametrize("attr", sorted(CM_LAYERS), ids=lambda a: H.CM_ATTR_NAMES[a])
def test_full_frame_scapy_equals_build_cm(version, vlan, attr):
    r = random.Random(attr * 10 + version)
    hdr = H.CM_MESSAGES[attr]
    vals = random_values(hdr, r)
    src, dst = ("10.1.2.3", "10.4.5.6") if version == 4 else ("fd00::3", "fd00::6")
    ours = build_cm(H.CM_ATTR_NAMES[attr], src, dst, vals, tid=0x1234, psn=77, vlan=vlan, ttl=64, ip_id=9,
                    sport=0xC123, src_mac="02:00:00:00:00:01", dst_mac="02:00:00:00:00:02")
    l2 = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    if vlan is not None:
        l2 = l2 / Dot1Q(vlan=vlan)
    ip = IP(src=src, dst=dst, ttl=64, id=9, flags="DF") if version == 4 else IPv6(src=src, dst=dst, hlim=64)
    p = l2 / ip / UDP(sport=0xC123, dport=4791, chksum=0) / BTH(opcode=0x64, dqpn=1, psn=77) / DETH() / \
        MAD(tid=0x1234) / CM_LAYERS[attr](**vals)
    theirs = bytes(p)
    assert theirs == ours
    c = classify(theirs)
    assert c.kind == CM and c.attr_id == attr
    # Dissection: scapy finds the right CM layer with the encoded values.
    q = Ether(ours)
    layer = q[CM_LAYERS[attr]]
    assert {k: layer.getfieldval(k) for k in vals} == vals
    assert decode(theirs).cm == vals
