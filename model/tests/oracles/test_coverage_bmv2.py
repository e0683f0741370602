"""P4 coverage and the model/bmv2 agreement on a real simple_switch trace log.

simple_switch runs the default build (compiled into a temporary directory when
build/p4/default is missing or older than p4/) in pcap-file mode (--use-files) on the
stimulus of vectors/active-open.yaml (frames 50 ms apart, in time order
across the two port files), with the port map and the CNP mirroring session
of p4/config.yaml added through simple_switch_CLI while it waits. What its
log shows is then checked against the model: the agreement holds, and it
fails when the log is stripped of one transition lookup or one counter."""

import json
import os
import re
import signal
import socket
import subprocess
import time

import pytest
import yaml

from conftest import require_tool
from ctcm.cli import main
from ctcm.coverage.agree import agreement
from ctcm.coverage.model import observe_vector
from ctcm.coverage.p4 import TRANSITIONS_TABLE, p4_coverage, read_log, universe
from ctcm.gen.p4gen import build
from ctcm.spec import Geometry
from ctcm.io.pcapio import pcap_bytes

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "..")
VECTOR = os.path.join(ROOT, "vectors", "active-open.yaml")
JSON = os.path.join(ROOT, "build", "p4", "default", "ctcm.json")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def bmv2_log(tmp_path_factory):
    require_tool("simple_switch", "bmv2 (see README)")
    cli = require_tool("simple_switch_CLI", "bmv2 (see README)")
    d = tmp_path_factory.mktemp("bmv2")
    json_path = _fresh_build(d)
    with open(VECTOR, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    for port in (1, 2):
        pk = [(50_000 * k, 0, bytes.fromhex(p["bytes"])) for k, p in enumerate(doc["packets"]) if p["port"] == port]
        (d / f"p{port}_in.pcap").write_bytes(pcap_bytes(pk))
    for wait in (3, 10):  # a loaded machine may program the switch after it began reading: again, waiting longer
        log = _run_switch(d, json_path, cli, wait, len(doc["packets"]))
        if log:
            return json_path, log
    pytest.fail("simple_switch_CLI programmed the switch only after it had started reading the stimulus, twice")


def _run_switch(d, json_path, cli, wait, n):
    """simple_switch on d/p1_in.pcap, d/p2_in.pcap after ``wait`` s, programmed meanwhile; its
    trace log once n packets went through, None when the programming came too late."""
    thrift = _free_port()
    log = d / f"switch-{wait}"
    cmd = ["simple_switch", "--use-files", str(wait), "-i", f"1@{d}/p1", "-i", f"2@{d}/p2", "--thrift-port",
           str(thrift), "--device-id", str(200 + os.getpid() % 30000), "--notifications-addr", f"ipc://{d}/notify.ipc",
           "--log-file", str(log), "--log-level", "trace", "--log-flush", "--log-file-max-size", str(1 << 40),
           json_path]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        cmds = ("table_add CtcmIngress.port_map CtcmIngress.set_peer 1 => 2 1 2\n"
                "table_add CtcmIngress.port_map CtcmIngress.set_peer 2 => 1 0 0\nmirroring_add 2 1\n")
        while True:  # until the Thrift server answers
            r = subprocess.run([cli, "--thrift-port", str(thrift)], input=cmds, capture_output=True, text=True)
            if r.returncode == 0 and r.stdout.count("Entry has been added") == 2:
                break
            if time.monotonic() - t0 > wait:
                return None
            time.sleep(0.05)
        if time.monotonic() - t0 > wait - 0.5:
            return None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            text = open(f"{log}.txt", encoding="utf-8", errors="replace").read() if os.path.exists(f"{log}.txt") else ""
            if len(re.findall(r"Pipeline 'ingress': end", text)) >= n:
                break
            time.sleep(0.2)
        else:
            pytest.fail("simple_switch did not process the stimulus in 30 s")
        time.sleep(0.3)  # egress of the last packet
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert "drop_unknown_port" not in open(f"{log}.txt", encoding="utf-8").read().split("Processing packet", 1)[-1]
    return f"{log}.txt"


def _fresh_build(tmp) -> str:
    """build/p4/default/ctcm.json when newer than every p4 source, else the default geometry compiled into tmp."""
    sources = [os.path.join(r, f) for r, _d, fs in os.walk(os.path.join(ROOT, "p4")) for f in fs if f.endswith(".p4")]
    if os.path.isfile(JSON) and all(os.path.getmtime(JSON) >= os.path.getmtime(p) for p in sources):
        return JSON
    require_tool("p4c", "p4c (see README)")
    return build(Geometry(), out_root=str(tmp / "p4"))


def test_agreement_on_a_real_log(bmv2_log):
    h = read_log([bmv2_log[1]])
    cov = observe_vector(VECTOR)
    a = agreement("active-open", cov, h)
    assert h.packets == 11
    assert a["transitions_checked"] == 4 and a["counters_checked"] >= 10
    assert a["transitions_not_on_bmv2"] == [] and a["counters_not_on_bmv2"] == [], a


def test_agreement_fails_without_a_lookup_or_a_counter(bmv2_log, tmp_path):
    """The same log with the transitions-table hit of (net, REP, REQ_SENT) turned
    into a miss, and another with the cm_RTU counter updates removed: each is named."""
    text = open(bmv2_log[1], encoding="utf-8").read()
    key = "* direction           : 01\n* msg                 : 01\n* state               : 01\n"
    assert key in text
    pos = text.index(key)
    hit = f"Table '{TRANSITIONS_TABLE}': hit with handle"
    i = text.index(hit, pos)
    broken = text[:i] + f"Table '{TRANSITIONS_TABLE}': miss" + text[i + len(hit) + 3:]
    (tmp_path / "a.txt").write_text(broken)
    a = agreement("active-open", observe_vector(VECTOR), read_log([tmp_path / "a.txt"]))
    assert a["transitions_not_on_bmv2"] == ["net REP in REQ_SENT -> REP_RCVD (transition)"]
    rtu = 17  # spec.Counter.CM_RTU
    (tmp_path / "b.txt").write_text(re.sub(rf".*Updated counter 'ctcm_counters' at index {rtu}\n", "", text))
    b = agreement("active-open", observe_vector(VECTOR), read_log([tmp_path / "b.txt"]))
    assert b["counters_not_on_bmv2"] == ["tracker.cm_RTU"] and not b["transitions_not_on_bmv2"]


def test_p4_statements_and_branches_from_the_log(bmv2_log):
    json_path, log = bmv2_log
    u = universe(json_path)
    cov = p4_coverage([(json_path, [log])])
    files = cov.files()
    assert {"ctcm.p4", "include/tracker.p4", "include/icrc.p4", "include/cnp.p4"} <= set(files)
    # every source line the log names is a statement of the JSON; some ran, not all
    h = read_log([log])
    assert h.statements and h.statements <= set(u.statements)
    assert 0 < len(cov.statements_hit) < len(cov.statements)
    track = cov.per_file("include/tracker.p4")
    assert 0 < track["branches_hit"] < track["branches"]
    # active-open sends CE data on a tracked flow: the CNP branch ran, both ways of "ecn == CE" too
    cond = {(b[2], v) for b in cov.branches if b[0] == "ctcm.p4" for v in (True, False) if (*b, v) in cov.branches_hit}
    assert any("ECN" in c or "ecn" in c for c, v in cond if v) and any("ecn" in c for c, v in cond if not v)
    assert any(f == "include/cnp.p4" for f, _l in cov.statements_hit)


def test_cli_takes_a_log_named_after_its_vector(bmv2_log, tmp_path, capsys):
    json_path, log = bmv2_log
    named = tmp_path / "active-open.txt"
    named.write_text(open(log, encoding="utf-8").read())
    assert main(["coverage", VECTOR, "--p4-log", json_path, str(named), "--json", str(tmp_path / "c.json")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^Agreement active-open: 4 transitions, \d+ counters checked on bmv2 \(11 packets\): OK$", out, re.M)
    doc = json.load(open(tmp_path / "c.json"))
    assert doc["p4"]["totals"]["statements_hit"] > 0 and doc["agreement"][0]["vector"] == "active-open"
