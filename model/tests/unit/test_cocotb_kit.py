"""The pure-Python half of the cocotb kit (ctcm.cocotb): vector readers, the
slow path, the scoreboard. The simulation half runs in `make rtl`."""

from __future__ import annotations

import ipaddress
import os

import pytest

from ctcm.cocotb import Scoreboard, SlowPath, TableFull, expected_by_port, iter_stimuli, read_head, vector_config
from ctcm.dataplane.packet import classify, decode
from ctcm.dataplane.tracker import normalize_ip
from ctcm.oracle.compare import OracleError
from ctcm.oracle.files import load_expected

VECTORS = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, os.pardir, "vectors")


def vec(name: str) -> str:
    return os.path.normpath(os.path.join(VECTORS, name + ".yaml"))


@pytest.mark.parametrize("name", ["ce-data", "ipv6", "stress-small"])
def test_stimuli_same_from_pcapng_hex_and_yaml(name):
    p = list(iter_stimuli(vec(name), "pcapng"))
    assert p == list(iter_stimuli(vec(name), "hex")) == list(iter_stimuli(vec(name), "yaml"))
    assert [s.id for s in p] == list(range(1, len(p) + 1)) and p[0].t_us == 0


def test_config_is_the_recorded_one():
    c = vector_config(read_head(vec("cnp-pacing")))
    assert c.cnp_interval_us == 200000 and c.port_pairs == ((1, 2),)
    assert vector_config(read_head(vec("p4-collision"))).mode == "p4"


def test_expected_streamed_equals_whole():
    assert expected_by_port(vec("stress-small")) == load_expected(vec("stress-small"))


def test_not_a_vector_is_one_line(tmp_path):
    bad = tmp_path / "x.yaml"
    bad.write_text("name: x\n")
    with pytest.raises(OracleError, match="not a ctcm vector"):
        read_head(str(bad))
    (tmp_path / "x.stimulus.hex").write_text("0000 0001 zz\n")
    with pytest.raises(OracleError, match=r"x.stimulus.hex:1: "):
        list(iter_stimuli(str(bad), "hex"))
    with pytest.raises(OracleError, match="no 'packets' list"):
        list(iter_stimuli(str(bad), "yaml"))
    bad.write_text("name: x\npackets:\n- id: 1\n  t_us: 0\n  port: 1\n  bytes: \"0011\"\n- id: 2\n  t_us: soon\n")
    it = iter_stimuli(str(bad), "yaml")
    assert next(it).frame == b"\x00\x11"
    with pytest.raises(OracleError, match="packet 2: needs t_us, port and bytes"):
        next(it)


def _replay(name, table_size=64):
    path = vec(name)
    slow = SlowPath(vector_config(read_head(path)), table_size)
    table = {}
    for s in iter_stimuli(path):
        _res, writes = slow.step(s.port, s.frame, s.t_us)
        for w in writes:
            if w.valid:
                table[w.index] = (w.remote_ip, w.remote_qpn, w.local_qpn)
            else:
                del table[w.index]
    return slow, table


@pytest.mark.parametrize("name", ["ce-data", "teardown", "stress-small", "p4-collision"])
def test_slow_path_table_is_the_model_flow_table(name):
    """After the replay, the DUT's table (the writes applied) holds exactly the model's flows."""
    slow, table = _replay(name)
    flows = {(normalize_ip(ipaddress.ip_address(f["remote_ip"]).packed), int(f["remote_qpn"], 16),
              int(f["local_qpn"], 16)) for f in slow.pipeline.tracker.flows()}
    assert set(table.values()) == flows
    assert len(table) == len(flows)


def test_slow_path_refuses_a_table_too_small():
    with pytest.raises(TableFull, match="more than 1 flows"):
        _replay("ce-data", table_size=1)


def test_scoreboard_passes_the_expected_and_diffs_a_bad_icrc():
    path = vec("ce-data")
    exp = expected_by_port(path)
    sb = Scoreboard(exp)
    for port, es in exp.items():
        for e in es:
            sb.observe(port, e.frame)
    assert sb.report().ok and sb.first_error is None
    sb = Scoreboard(exp)
    for port, es in exp.items():
        for e in es:
            f = bytearray(e.frame)
            if decode(f).summary().find("CNP") >= 0:
                end = classify(bytes(f)).end
                f[end:end + 4] = f[end:end + 4][::-1]
            sb.observe(port, bytes(f))
    rep = sb.report()
    assert not rep.ok and rep.count("differs") == 2
    assert "ICRC expected" in sb.first_error and "ICRC expected" in rep.format()
