"""The P4Runtime control plane (ctcm.targets.p4runtime) against bmv2's own
P4Runtime server (simple_switch_grpc, no interfaces, loopback only).

What the switch must hold after programming is p4/README.md's contract,
written out here by hand (as in test_program.py), and read back over
P4Runtime as raw entities (table, match key and action parameters resolved
with the P4Info's text, not with the client's lookups); counters are checked
reset after two are set. Negative controls: a config's value too wide for its P4 parameter and a
P4Info without the contract's table each fail in one line, before anything is
written. Needs simple_switch_grpc, the p4runtime extra and `make p4`'s build."""

from __future__ import annotations

import os
import re

import pytest
from conftest import require_tool

from ctcm.dataplane.config import Config
from ctcm.spec import Counter
from ctcm.targets.bmv2 import Bmv2Switch, TargetError, free_port
from ctcm.targets.program import PORT_MAP, PortEntry, Program, program
from ctcm.targets.replay import json_for

P4INFO_SUFFIX = ".p4info.txtpb"


@pytest.fixture
def switch(tmp_path):
    require_tool("simple_switch_grpc", "bmv2 with P4Runtime (p4/README.md, Toolchain)")
    try:
        from ctcm.targets.p4runtime import protos

        protos()
    except TargetError as e:
        pytest.skip(str(e)) if not os.environ.get("CI") else pytest.fail(str(e))
    js = json_for("default")
    if not os.path.isfile(js[:-len(".json")] + P4INFO_SUFFIX):
        msg = "build/p4/default has no P4Info: run `make p4`"
        pytest.fail(msg) if os.environ.get("CI") else pytest.skip(msg)
    work = tmp_path / "switch"
    work.mkdir()
    sw = Bmv2Switch(js, {}, grpc_port=free_port(), workdir=str(work), console=str(work / "console.log"))
    sw.start()
    yield sw, js, js[:-len(".json")] + P4INFO_SUFFIX
    sw.stop()
    assert not sw.running()
    assert [f for f in os.listdir(work) if f != "console.log"] == []


def _ids(p4info_text: str, kind: str) -> dict[str, int]:
    return {name: int(i) for i, name in re.findall(
        rf'^{kind} {{\n\s+preamble {{\n\s+id: (\d+)\n\s+name: "([^"]+)"', p4info_text, re.M)}


def test_program_and_read_back(switch):
    from ctcm.targets.p4runtime import P4RuntimeClient, protos

    sw, js, info = switch
    c = P4RuntimeClient(sw.grpc_address, sw.device_id, info)
    try:
        c.set_pipeline(js)
        cfg = Config(port_pairs=((1, 2), (5, 6)), timewait_us=300, cnp_interval_us=7)
        c.program(program(Config(port_pairs=((3, 4),))))  # replaced by the next one
        c.program(program(cfg))
        pb = protos()[0]
        text = open(info).read()
        tables, actions = _ids(text, "tables"), _ids(text, "actions")
        got = set()
        for e in c._read("port_map", pb.Entity(table_entry=pb.TableEntry(table_id=tables[PORT_MAP]))):
            t = e.table_entry
            assert t.action.action.action_id == actions["CtcmIngress.set_peer"]
            got.add((int.from_bytes(t.match[0].exact.value, "big"),
                     *(int.from_bytes(p.value, "big") for p in t.action.action.params)))
        # table_add CtcmIngress.port_map CtcmIngress.set_peer h => n 1 h+1 ; n => h 0 0
        assert got == {(1, 2, 1, 2), (2, 1, 0, 0), (5, 6, 1, 6), (6, 5, 0, 0)}
        # table_set_default CtcmIngress.options CtcmIngress.set_options 300 7
        (d,) = c._read("options", pb.Entity(table_entry=pb.TableEntry(
            table_id=tables["CtcmIngress.options"], is_default_action=True)))
        assert d.table_entry.action.action.action_id == actions["CtcmIngress.set_options"]
        assert [int.from_bytes(p.value, "big") for p in d.table_entry.action.action.params] == [300, 7]
        # mirroring_add h+1 h: one clone session per host port, to that port
        sessions = set()
        for s in (2, 6):
            for e in c._read("clone sessions", pb.Entity(packet_replication_engine_entry=pb.PacketReplicationEngineEntry(
                    clone_session_entry=pb.CloneSessionEntry(session_id=s)))):
                cs = e.packet_replication_engine_entry.clone_session_entry
                sessions.add((cs.session_id, *(r.egress_port for r in cs.replicas)))
        assert sessions == {(2, 1), (6, 5)}
        # counters: set two cells over P4Runtime, read them by key, reset all
        for index, value in ((0, 5), (int(Counter.CNP_SENT), 7)):
            ent = c._counter_entity(index, zero=True)
            ent.counter_entry.data.packet_count = value
            c._write("counter", pb.Update(type=pb.Update.MODIFY, entity=ent))
        counts = c.counters()
        assert set(counts) == {k.key for k in Counter}
        assert {k: v for k, v in counts.items() if v} == {"packets": 5, "cnp_sent": 7}
        c.reset_counters()
        assert set(c.counters().values()) == {0}
    finally:
        c.close()


def test_bad_value_and_p4info_fail_in_one_line(switch, tmp_path):
    from ctcm.targets.p4runtime import P4RuntimeClient

    sw, js, info = switch
    c = P4RuntimeClient(sw.grpc_address, sw.device_id, info)
    try:
        c.set_pipeline(js)
        with pytest.raises(TargetError, match=r"set_peer\(peer\): 512 does not fit in 9 bits"):
            c.program(Program((PortEntry(1, 512, 1, 2),), (), (1, 1)))
    finally:
        c.close()
    bad = tmp_path / "bad.p4info.txtpb"
    bad.write_text(open(info).read().replace(f'name: "{PORT_MAP}"', 'name: "CtcmIngress.other"'))
    c = P4RuntimeClient(sw.grpc_address, sw.device_id, str(bad))
    try:
        with pytest.raises(TargetError, match=f"no table {PORT_MAP}$"):
            c.program(program(Config(port_pairs=((1, 2),))))
    finally:
        c.close()
    c = P4RuntimeClient("127.0.0.1:1", 1, info, timeout=1)
    with pytest.raises(TargetError, match="no P4Runtime server answers at 127.0.0.1:1"):
        c.connect()


_PROBE = ("from ctcm.targets.p4runtime import protos\nfrom ctcm.targets.bmv2 import TargetError\n"
          "try:\n    protos()\nexcept TargetError as e:\n    print('ERR', e)\nelse:\n"
          "    from google.protobuf.internal import api_implementation\n    print('OK', api_implementation.Type())\n")


@pytest.mark.parametrize("env, first, want", [
    (None, "", "OK python"),  # the client selects the pure-Python runtime itself
    ("upb", "", "ERR the p4runtime protos need PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python (it is 'upb' here)"),
    (None, "import google.protobuf.descriptor_pb2\n",
     "ERR the p4runtime protos need PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python (protobuf was imported")])
def test_protobuf_runtime(env, first, want):
    """p4runtime 1.6.0's generated code under protobuf's C runtime: one line, never a traceback."""
    import subprocess
    import sys

    pytest.importorskip("p4.v1", reason="the p4runtime extra is not installed")
    e = {k: v for k, v in os.environ.items() if k != "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"}
    if env:
        e["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"] = env
    r = subprocess.run([sys.executable, "-c", first + _PROBE], capture_output=True, text=True, env=e, timeout=60)
    assert r.returncode == 0 and r.stderr == "" and r.stdout.startswith(want), r.stdout + r.stderr
