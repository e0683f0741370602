"""Bad input anywhere gives one line on stderr, a non-zero exit and no output.

One property test for the command-line options and one for the scenario
fields: hypothesis throws generated bad values (wrong types, out of range,
malformed text) at each; the command must answer with exactly one stderr
line (``ctcm CMD: ...``, a scenario's naming ``FILE:LINE``), exit non-zero,
print nothing on stdout and leave its output directory as it was.
"""

from __future__ import annotations

import copy
import os
import shutil

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctcm.cli import main

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "..")
CAPTURE = os.path.join(ROOT, "vectors", "ce-data.stimulus.pcapng")
VECTOR = os.path.join(ROOT, "vectors", "ce-data.yaml")
OBSERVED = os.path.join(ROOT, "vectors", "ce-data.expected.pcapng")

# --- values ---------------------------------------------------------------------------------

junk_text = st.one_of(st.text(min_size=1, max_size=8).filter(lambda s: not s.strip().lstrip("-+").isdigit()
                                                            and s.strip().lower() not in ("nan", "inf", "infinity")),
                      st.just("0x"), st.just("1e3"), st.just(""))
wrong_type = st.one_of(st.text(max_size=6), st.floats(allow_nan=False), st.booleans(), st.none(),
                       st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(),
                                                                             max_size=1))


def _is_ip(s: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(s)
    except ValueError:
        return False
    return True


#: v1model ports are 9 bits and 511 is its drop port: a usable port is 0..510
MAX_PORT = 510
#: every CM message name a scenario's ``cm:`` accepts or might (IBTA CM, section 12.6)
CM_NAMES = {"REQ", "MRA", "REJ", "REP", "RTU", "DREQ", "DREP", "LAP", "APR", "SIDR_REQ", "SIDR_REP"}


def _valid_port_pair(v) -> bool:
    """A ``random: ports`` value the generator must accept: two different usable ports."""
    return (isinstance(v, list) and len(v) == 2 and all(type(x) is int and 0 <= x <= MAX_PORT for x in v)
            and v[0] != v[1])


def int_outside(lo=None, hi=None):
    """Integers outside [lo, hi]."""
    parts = []
    if lo is not None:
        parts.append(st.integers(max_value=lo - 1, min_value=lo - 10**20))
    if hi is not None:
        parts.append(st.integers(min_value=hi + 1, max_value=hi + 10**20))
    return st.one_of(*parts)


def int_text_outside(lo=None, hi=None):
    return st.one_of(int_outside(lo, hi).map(str), junk_text)


# --- command-line options ----------------------------------------------------------------------

MAX_T = (1 << 48) - 1
# (argv before the option, option, strategy of bad values as text)
OPTIONS = [
    (["track", CAPTURE, "--host-ip", "10.0.0.1"], "--timewait-us", int_text_outside(0, MAX_T)),
    (["track", CAPTURE, "--host-ip", "10.0.0.1"], "--cnp-interval-us", int_text_outside(0, MAX_T)),
    (["track", CAPTURE, "--host-ip", "10.0.0.1"], "--mode", junk_text.filter(lambda s: s not in ("ideal", "p4"))),
    (["track", CAPTURE], "--host-ip", junk_text.filter(lambda s: not _is_ip(s))),
    (["track", CAPTURE], "--host-iface", junk_text.filter(lambda s: s.strip() and not s.isdigit()
                                                          and s not in ("p1", "p2"))),
    (["track", CAPTURE, "--host-ip", "10.0.0.1"], "--config", st.just("/nonexistent/config.yaml")),
    (["decode"], "", st.sampled_from(["/nonexistent.pcap", VECTOR, __file__])),
    (["track", "--host-ip", "10.0.0.1"], "", st.sampled_from(["/nonexistent.pcap", VECTOR, __file__])),
    (["cnp", "--src", "1.1.1.1", "--dst", "1.1.1.2"], "--dqpn", int_text_outside(0, (1 << 24) - 1)),
    (["cnp", "--src", "1.1.1.1", "--dqpn", "1"], "--dst", junk_text),
    (["cnp", "--src", "1.1.1.1", "--dst", "1.1.1.2", "--dqpn", "1"], "--tos", int_text_outside(0, 255)),
    (["cnp", "--src", "1.1.1.1", "--dst", "1.1.1.2", "--dqpn", "1"], "--ttl", int_text_outside(0, 255)),
    (["cnp", "--src", "1.1.1.1", "--dst", "1.1.1.2", "--dqpn", "1"], "--ip-id", int_text_outside(0, 65535)),
    (["cnp", "--src", "1.1.1.1", "--dst", "1.1.1.2", "--dqpn", "1"], "--sport", int_text_outside(0, 65535)),
    (["random", "--packets", "100"], "--seed", int_text_outside(0, (1 << 64) - 1)),
    (["random"], "--packets", int_text_outside(1, None)),
    (["random", "--packets", "100"], "--connections", int_text_outside(1, 1 << 32)),
    (["random", "--packets", "100"], "--concurrency", int_text_outside(1, 1_000_000)),
    (["random", "--packets", "100"], "--duration-us", int_text_outside(1, MAX_T // 2)),
    (["random", "--packets", "100"], "--ce-ratio", st.one_of(st.floats(min_value=1.0001, max_value=1e9).map(str),
                                                             st.floats(max_value=-0.0001, min_value=-1e9).map(str),
                                                             junk_text)),
    (["random", "--packets", "100"], "--loss", st.sampled_from(["1", "1.5", "-0.1", "x"])),
    (["random", "--packets", "100"], "--name", st.sampled_from(["", "a/b", "..", ".", "/abs", "x" * 300])),
    (["random", "--packets", "100"], "--mode", junk_text.filter(lambda s: s not in ("ideal", "p4"))),
    (["random", "--packets", "100"], "--formats", st.sampled_from(["", "csv", "yaml,xml", ",,"])),
    (["vectors", os.path.join(ROOT, "vectors", "scenarios", "ce-data.yaml")], "--formats",
     st.sampled_from(["", "csv", "yaml,xml"])),
    (["compare", VECTOR, "--observed", OBSERVED], "--port", int_text_outside(0, None)),
    (["compare", VECTOR, "--observed", OBSERVED], "--port-map", st.sampled_from(["p1", "p1=x", "=", "p1=-1"])),
    (["compare", VECTOR], "--observed", st.sampled_from(["/nonexistent", __file__])),
]


def _one_line(capsys, code):
    out, err = capsys.readouterr()
    assert code not in (0, None), (out, err)
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("ctcm "), err
    assert "Traceback" not in err
    assert out == "", out
    return lines[0]


def _run(argv):
    try:
        return main(argv)
    except SystemExit as e:  # argparse
        return e.code


@pytest.mark.parametrize("before, option, values", OPTIONS, ids=[f"{b[0]}{o or ' FILE'}" for b, o, _ in OPTIONS])
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_bad_option_value(before, option, values, data, capsys, tmp_path_factory):
    value = data.draw(values)
    out = tmp_path_factory.mktemp("out")
    argv = list(before)
    if before[0] in ("random", "vectors") and option != "--out":
        argv += ["--out", str(out / "new"), "--quiet"]
    argv += [option, value] if option else [value]
    if option == "" and before[0] == "track":
        argv = ["track", value, *before[1:]]
    _one_line(capsys, _run(argv))
    assert os.listdir(out) == []


def test_out_is_a_file(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    for argv in (["random", "--packets", "10", "--out", str(f)], ["vectors", VECTOR, "--out", str(f)],
                 ["docs", "--out", str(f)]):
        _one_line(capsys, _run(argv))
    assert os.listdir(tmp_path) == ["file"]


def test_docs_into_a_new_directory_writes_nothing(tmp_path, capsys):
    d = tmp_path / "new"
    line = _one_line(capsys, _run(["docs", "--out", str(d)]))
    assert "tracker.md" in line
    assert not d.exists() or os.listdir(d) == []


def test_binary_and_non_utf8_scenario_files(tmp_path, capsys):
    for data in (b"\xff\xfe\x00\x01binary", bytes(range(256)), b"name: \xe9t\xe9\n", b"\x00" * 10):
        p = tmp_path / "s.yaml"
        p.write_bytes(data)
        line = _one_line(capsys, _run(["vectors", str(p), "--out", str(tmp_path / "o")]))
        assert str(p) in line
        assert not (tmp_path / "o").exists()


# --- scenario fields ----------------------------------------------------------------------------

BASE = {
    "name": "fuzz",
    "description": "every kind of event",
    "options": {"mode": "ideal", "timewait_us": 1000, "cnp_interval_us": 0},
    "ports": {"host": 1, "net": 2},
    "hosts": {"host": {"ip": "10.0.0.1", "mac": "02:00:00:00:00:01", "side": "host"},
              "peer": {"ip": "10.0.0.2", "mac": "02:00:00:00:00:02", "side": "net"}},
    "connections": {"c1": {"host": "host", "peer": "peer", "opener": "host", "host_qpn": 0x101, "peer_qpn": 0x201,
                           "host_comm_id": 0x11110001, "peer_comm_id": 0x22220001, "host_psn": 0, "peer_psn": 0,
                           "service_id": 0x0000000001060000 | 4791, "vlan": 100}},
    "timeline": [
        {"t": 0, "cm": "REQ", "conn": "c1", "note": "n"},
        {"t": 5, "cm": "MRA", "conn": "c1", "from": "peer", "mraed": "REQ", "service_timeout": 20},
        {"t": 10, "cm": "REP", "conn": "c1"},
        {"t": 15, "cm": "REJ", "conn": "c1", "from": "peer", "rejected": "REP", "reason": 28},
        {"t": 20, "cm": "RTU", "conn": "c1", "bad_icrc": False, "drop": False},
        {"t": 30, "data": "c1", "from": "host", "ce": True, "count": 3, "gap_us": 1, "dqpn": 0x999,
         "payload_len": 64, "opcode": 4},
        {"t": 40, "non_roce": "arp", "port": "host"},
        {"t": 50, "malformed": "truncated-cm", "conn": "c1", "from": "peer"},
        {"t": 60, "raw": "ffffffffffff0200000000010806", "port": "net"},
        {"t": 70, "checkpoint": "end"},
    ],
}
RANDOM_BASE = {"name": "fuzzr", "description": "random", "options": {"mode": "p4"},
               "random": {"seed": 1, "packets": 50, "connections": 5, "concurrency": 2, "ce_ratio": 0.1,
                          "duration_us": 1000, "ports": [1, 2]}}

# (document, path, strategy of bad values)
FIELDS = [
    (BASE, ("name",), st.one_of(st.sampled_from(["", "a/b", "..", "x" * 300]), wrong_type.filter(
        lambda v: not isinstance(v, str)))),
    (BASE, ("description",), wrong_type.filter(lambda v: not isinstance(v, str))),
    (BASE, ("options", "mode"), st.one_of(junk_text, wrong_type).filter(lambda v: v not in ("ideal", "p4"))),
    (BASE, ("options", "timewait_us"), st.one_of(int_outside(0, MAX_T), wrong_type)),
    (BASE, ("options", "cnp_interval_us"), st.one_of(int_outside(0, MAX_T), wrong_type)),
    (BASE, ("options", "geometry"), st.one_of(wrong_type.filter(lambda v: v != {}), st.just({"active_buckets": 3}),
                                              st.just({"x": 1}))),
    (BASE, ("ports", "host"), st.one_of(int_outside(0, MAX_PORT), wrong_type, st.just(2))),
    (BASE, ("ports", "net"), st.one_of(int_outside(0, MAX_PORT), wrong_type)),
    (BASE, ("hosts", "host", "ip"), st.one_of(junk_text.filter(lambda s: not _is_ip(s)), wrong_type.filter(
        lambda v: not (isinstance(v, str) and _is_ip(v))), st.just("10.0.0.256"))),
    (BASE, ("hosts", "peer", "mac"), st.one_of(st.sampled_from(["zz:00:00:00:00:01", "02:00", "", "0" * 13]),
                                                wrong_type.filter(lambda v: not isinstance(v, str)))),
    (BASE, ("hosts", "peer", "side"), st.one_of(junk_text, wrong_type).filter(lambda v: v not in ("host", "net"))),
    (BASE, ("connections", "c1", "host_qpn"), st.one_of(int_outside(0, (1 << 24) - 1), wrong_type)),
    (BASE, ("connections", "c1", "peer_comm_id"), st.one_of(int_outside(0, (1 << 32) - 1), wrong_type)),
    (BASE, ("connections", "c1", "host_psn"), st.one_of(int_outside(0, (1 << 24) - 1), wrong_type)),
    (BASE, ("connections", "c1", "service_id"), st.one_of(int_outside(0, (1 << 64) - 1), wrong_type)),
    (BASE, ("connections", "c1", "vlan"), st.one_of(int_outside(0, 4095), wrong_type.filter(lambda v: v is not None))),
    (BASE, ("connections", "c1", "opener"), st.one_of(junk_text, wrong_type).filter(lambda v: v not in ("host", "peer"))),
    (BASE, ("timeline", 0, "t"), st.one_of(int_outside(0, MAX_T), wrong_type)),
    (BASE, ("timeline", 9, "t"), st.one_of(int_outside(60, MAX_T), wrong_type)),
    (BASE, ("timeline", 0, "note"), wrong_type.filter(lambda v: not isinstance(v, str))),
    (BASE, ("timeline", 0, "cm"), st.one_of(junk_text, wrong_type).filter(lambda v: not (isinstance(v, str) and v in CM_NAMES))),
    (BASE, ("timeline", 0, "conn"), st.one_of(junk_text, wrong_type).filter(lambda v: v != "c1")),
    (BASE, ("timeline", 1, "mraed"), st.one_of(junk_text, wrong_type).filter(lambda v: v not in ("REQ", "REP", "LAP"))),
    (BASE, ("timeline", 1, "service_timeout"), st.one_of(int_outside(0, 31), wrong_type)),
    (BASE, ("timeline", 3, "reason"), st.one_of(int_outside(0, 65535), wrong_type)),
    (BASE, ("timeline", 3, "rejected"), st.one_of(junk_text, wrong_type).filter(lambda v: v not in ("REQ", "REP", "OTHER"))),
    (BASE, ("timeline", 4, "bad_icrc"), wrong_type.filter(lambda v: not isinstance(v, bool))),
    (BASE, ("timeline", 5, "count"), st.one_of(int_outside(1, 1 << 48), wrong_type)),
    (BASE, ("timeline", 5, "gap_us"), st.one_of(int_outside(0, MAX_T), wrong_type)),
    (BASE, ("timeline", 5, "payload_len"), st.one_of(int_outside(0, 4096), wrong_type)),
    (BASE, ("timeline", 5, "opcode"), st.one_of(int_outside(0, 255), wrong_type)),
    (BASE, ("timeline", 5, "dqpn"), st.one_of(int_outside(0, (1 << 24) - 1), wrong_type)),
    (BASE, ("timeline", 5, "ce"), wrong_type.filter(lambda v: not isinstance(v, bool))),
    (BASE, ("timeline", 5, "from"), st.one_of(junk_text, wrong_type).filter(lambda v: v not in ("host", "peer"))),
    (BASE, ("timeline", 6, "non_roce"), st.one_of(junk_text, wrong_type).filter(
        lambda v: v not in ("arp", "ipv4-udp", "ipv4-tcp", "ipv6-icmp"))),
    (BASE, ("timeline", 6, "port"), st.one_of(junk_text, wrong_type).filter(lambda v: v not in ("host", "net"))),
    (BASE, ("timeline", 7, "malformed"), st.one_of(junk_text, wrong_type)),
    (BASE, ("timeline", 8, "raw"), st.one_of(st.sampled_from(["abc", "zz", "ff" * 70000]), wrong_type.filter(
        lambda v: not isinstance(v, str)))),
    (BASE, ("timeline", 9, "checkpoint"), wrong_type.filter(lambda v: not isinstance(v, str))),
    (BASE, ("timeline", 5, "unknown_field"), st.integers()),
    (RANDOM_BASE, ("random", "packets"), st.one_of(int_outside(1, None), wrong_type)),
    (RANDOM_BASE, ("random", "connections"), st.one_of(int_outside(1, 1 << 32), wrong_type)),
    (RANDOM_BASE, ("random", "concurrency"), st.one_of(int_outside(1, 1_000_000), wrong_type)),
    (RANDOM_BASE, ("random", "seed"), st.one_of(int_outside(0, (1 << 64) - 1), wrong_type)),
    (RANDOM_BASE, ("random", "ce_ratio"), st.one_of(st.floats(min_value=1.001, max_value=1e9),
                                                    st.floats(max_value=-0.001, min_value=-1e9), wrong_type.filter(
        lambda v: not isinstance(v, float) or not 0 <= v <= 1))),
    (RANDOM_BASE, ("random", "duration_us"), st.one_of(int_outside(1, MAX_T // 2), wrong_type)),
    (RANDOM_BASE, ("random", "ports"), st.one_of(wrong_type.filter(lambda v: not _valid_port_pair(v)), st.just([1, 1]),
                                               st.just([0, MAX_PORT + 1]), st.just([1, 70000]), st.just([1]))),
    (RANDOM_BASE, ("name",), st.sampled_from(["", "a/b", ".."])),
]


def _set(doc, path, value):
    doc = copy.deepcopy(doc)
    d = doc
    for k in path[:-1]:
        d = d[k]
    d[path[-1]] = value
    return doc


@pytest.mark.parametrize("doc, path, values", FIELDS, ids=[".".join(map(str, p)) for _, p, _ in FIELDS])
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_bad_scenario_field(doc, path, values, data, capsys, tmp_path_factory):
    value = data.draw(values)
    d = tmp_path_factory.mktemp("sc")
    p = d / "s.yaml"
    p.write_text(yaml.safe_dump(_set(doc, path, value), allow_unicode=True, width=10**9))
    out = d / "out"
    line = _one_line(capsys, _run(["vectors", str(p), "--out", str(out), "--quiet"]))
    assert line.startswith(f"ctcm vectors: {p}:"), line
    assert not out.exists()


@pytest.mark.parametrize("doc", [BASE, RANDOM_BASE], ids=["timeline", "random"])
def test_the_base_scenarios_are_valid(doc, tmp_path, capsys):
    """(so the failures above come from the bad value)"""
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(doc))
    assert main(["vectors", str(p), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert len(os.listdir(tmp_path / "out")) == 5


def test_huge_count_is_refused_up_front(tmp_path, capsys):
    doc = _set(BASE, ("timeline", 5, "count"), 1 << 40)
    doc = _set(doc, ("timeline", 5, "gap_us"), 0)
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(doc))
    line = _one_line(capsys, _run(["vectors", str(p), "--out", str(tmp_path / "out")]))
    assert "not enough disk space" in line and "bytes per packet" in line
    assert not (tmp_path / "out").exists()
    shutil.rmtree(tmp_path, ignore_errors=True)
