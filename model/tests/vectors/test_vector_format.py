"""The hand-emitted vector YAML reads back exactly; the fast summary equals the decoder's."""

import random

import yaml
from hypothesis import given, settings, strategies as st

from ctcm.dataplane.packet import build_cm, decode, summarize
from ctcm.stimulus.randgen import RandomParams, generate
from ctcm.vectors.run import run_stimulus, vector_yaml


def test_yaml_reads_back():
    stim = generate(RandomParams(seed=5, packets=400, connections=40, concurrency=8, malformed=0.05, non_roce=0.05))
    vec = run_stimulus("rt", 'a "quoted" description: with # and µs', {"mode": "ideal"}, {"host": 1, "net": 2}, stim)
    vec.packets[0]["note"] = "note: with, commas # and 'quotes'"
    doc = yaml.safe_load(vector_yaml(vec))
    assert doc["format"] == "ctcm-vector/1" and doc["description"] == vec.description
    assert doc["options"] == {"mode": "ideal"} and doc["ports"] == {"host": 1, "net": 2}
    assert doc["packets"][0]["note"] == vec.packets[0]["note"]
    assert len(doc["packets"]) == len(vec.packets)
    for got, p in zip(doc["packets"], vec.packets):
        assert (got["id"], got["t_us"], got["port"]) == (p["id"], p["t_us"], p["port"])
        assert bytes.fromhex(got["bytes"]) == p["frame"]
        assert got["summary"] == decode(p["frame"]).summary()
        assert got.get("events", []) == p["events"]
        assert [(e["port"], bytes.fromhex(e["bytes"])) for e in got["expect"]] == p["expect"]
    assert doc["final"] == vec.final


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32), cut=st.integers(0, 400), flip=st.integers(-1, 3000))
def test_summarize_equals_decode_summary(seed, cut, flip):
    r = random.Random(seed)
    msg = r.choice(["REQ", "REP", "RTU", "MRA", "REJ", "DREQ", "DREP", "SIDR_REQ", "LAP"])
    v6 = r.random() < 0.5
    src, dst = ("fd00::1", "::ffff:10.0.0.2") if v6 else ("10.0.0.1", "10.0.0.2")
    f = bytearray(build_cm(msg, src, dst, {}, vlan=7 if r.random() < 0.3 else None))
    if flip >= 0:
        f[flip % len(f)] ^= 1 << (flip % 8)
    f = bytes(f[: len(f) - cut % 60]) if cut > 300 else bytes(f)
    assert summarize(f) == decode(f).summary()
