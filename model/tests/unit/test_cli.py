"""Command line: real runs, and bad input -> one line, non-zero exit, no traceback, no half-written output."""

import json
import os
import subprocess
import sys

import pytest

VEC = os.path.join(os.path.dirname(__file__), "..", "..", "..", "vectors")


def ctcm(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "ctcm.cli", *args], capture_output=True, text=True, cwd=cwd)


def one_line_error(r, code):
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    return r.stderr


def test_track_events_and_table():
    r = ctcm("track", os.path.join(VEC, "mra.stimulus.pcapng"), "--host-iface", "p1")
    assert r.returncode == 0, r.stderr
    assert "MRA(REQ) transition REQ_SENT -> MRA_REQ_RCVD" in r.stdout
    assert r.stdout.count("ESTABLISHED") >= 2 and "cnp_sent = 2" in r.stdout


def test_track_json_by_host_ip(tmp_path):
    r = ctcm("track", os.path.join(VEC, "teardown.stimulus.pcapng"), "--host-ip", "10.0.0.1", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert {c["state"] for c in d["connections"]} == {"TIMEWAIT"}
    assert d["counters"]["tracker.new"] == 3


def test_track_p4_mode():
    r = ctcm("track", os.path.join(VEC, "p4-collision.stimulus.pcapng"), "--host-iface", "p1", "--mode", "p4", "--json")
    d = json.loads(r.stdout)
    assert d["counters"]["tracker.table_refusals"] == 0  # default geometry: no collision
    assert d["counters"]["cnp_sent"] == 4  # all four connections tracked


def test_decode():
    r = ctcm("decode", os.path.join(VEC, "malformed.stimulus.pcapng"))
    assert r.returncode == 0 and "MALFORMED: IPv4 ethertype with IP version 5" in r.stdout
    r = ctcm("decode", "-v", os.path.join(VEC, "ipv6.stimulus.pcapng"))
    assert "CM_REQ: local_comm_id=0x111100b1" in r.stdout


def test_cnp_command():
    r = ctcm("cnp", "--src", "22.22.22.8", "--dst", "22.22.22.7", "--dqpn", "0xd2", "--tos", "0x89", "--ttl", "0x20",
             "--ip-id", "0x98c6", "--sport", "56238", "--ip-checksum")
    assert r.stdout.strip() == "4589003c98c64000201169271616160816161607dbae12b7002800008100ffff" \
                               "400000d20000000000000000000000000000000000000000dafc1bef"


@pytest.mark.parametrize("content,needle", [
    (b"", "not a pcap or pcapng file (0 bytes)"),
    (b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00\x4d\x3c\x2b\x1a", "truncated"),
    (b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00" + bytes(12) + b"\x01\x00\x00\x00" + bytes(10), "truncated pcap record"),
])
def test_corrupt_captures(tmp_path, content, needle):
    p = tmp_path / "bad.pcap"
    p.write_bytes(content)
    for cmd in (["track", str(p), "--host-ip", "10.0.0.1"], ["decode", str(p)]):
        assert needle in one_line_error(ctcm(*cmd), 1)


def test_track_usage_errors():
    pcap = os.path.join(VEC, "mra.stimulus.pcapng")
    assert "--host-ip" in one_line_error(ctcm("track", pcap), 2)
    assert "not an IP address" in one_line_error(ctcm("track", pcap, "--host-ip", "nope"), 2)
    assert "no interface 'eth9'" in one_line_error(ctcm("track", pcap, "--host-iface", "eth9"), 2)


SCEN_OK = """name: t
hosts:
  h: {ip: 10.0.0.1, side: host}
  p: {ip: 10.0.0.2, side: net}
connections:
  c: {host: h, peer: p, host_qpn: 1, peer_qpn: 2, host_comm_id: 3, peer_comm_id: 4}
timeline:
  - {t: 0, cm: REQ, conn: c}
"""


@pytest.mark.parametrize("text,needle", [
    ("name: t\nhosts: [\n", ": invalid YAML: expected the node content"),
    (SCEN_OK.replace("cm: REQ", "cm: REQQ"), ":8: unknown CM message 'REQQ'"),
    (SCEN_OK.replace("conn: c}", "conn: c, colour: red}"), ":8: unknown field 'colour'"),
    (SCEN_OK.replace("host_qpn: 1", "host_qpn: 0x1000000"), ":6: connection 'c': host_qpn 0x1000000 does not fit in 24 bits"),
    (SCEN_OK.replace("timeline:\n", "timeline:\n  - {t: 5, checkpoint: a}\n"), ":9: time 0 goes backwards"),
    (SCEN_OK.replace("{t: 0,", "{t: -1,"), ":8: time -1 is out of range"),
    (SCEN_OK.replace("name: t\n", "name: t\noptions: {mode: p4, geometry: {active_buckets: 3}}\n"),
     ":2: geometry: active_buckets must be a power of two"),
    (SCEN_OK.replace("side: net", "side: wan"), ":4: host 'p': side must be host or net"),
])
def test_invalid_scenarios_name_file_and_line(tmp_path, text, needle):
    s = tmp_path / "s.yaml"
    s.write_text(text)
    out = tmp_path / "out"
    err = one_line_error(ctcm("vectors", str(s), "--out", str(out)), 1)
    assert err.startswith(f"ctcm vectors: {s}") and needle in err, err
    assert not out.exists() or os.listdir(out) == []


def test_vectors_and_random_commands(tmp_path):
    s = tmp_path / "s.yaml"
    s.write_text(SCEN_OK)
    r = ctcm("vectors", str(s), "--out", str(tmp_path), "--formats", "yaml,hex")
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(tmp_path)) == ["s.yaml", "t.expected.hex", "t.stimulus.hex", "t.yaml"]
    assert "unknown format" in one_line_error(ctcm("vectors", str(s), "--formats", "xml"), 2)
    r = ctcm("random", "--packets", "300", "--connections", "100", "--concurrency", "5", "--seed", "3",
             "--name", "r", "--out", str(tmp_path), "--quiet")
    assert r.returncode == 0, r.stderr
    assert len(open(tmp_path / "r.stimulus.hex").read().splitlines()) == 300 + 2
    r2 = ctcm("random", "--packets", "300", "--connections", "100", "--concurrency", "5", "--seed", "3",
              "--name", "r2", "--out", str(tmp_path), "--quiet")
    assert open(tmp_path / "r.stimulus.hex").read().splitlines()[2:] == open(tmp_path / "r2.stimulus.hex").read().splitlines()[2:]


def test_unwritable_output_is_one_line(tmp_path):
    s = tmp_path / "s.yaml"
    s.write_text(SCEN_OK)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    err = one_line_error(ctcm("vectors", str(s), "--out", str(blocker / "sub")), 1)
    assert "ctcm vectors:" in err


@pytest.mark.parametrize("args,needle", [
    (["--packets", "-5"], "--packets must be an integer in 1..281474976710656, got -5"),
    (["--connections", "0"], "--connections must be an integer in 1..4294967296, got 0"),
    (["--loss", "1.5"], "loss must be a probability in [0, 1], got 1.5"),
    (["--loss", "1"], "loss must be below 1"),
    (["--non-roce", "0.7", "--malformed", "0.5"], "--non-roce + --malformed must not exceed 1"),
    (["--formats", "yaml,csv"], "unknown format(s) csv"),
    (["--formats", ","], "unknown format(s) (none given)"),
])
def test_random_command_refuses_bad_parameters(tmp_path, args, needle):
    err = one_line_error(ctcm("random", "--packets", "100", "--out", str(tmp_path / "o"), *args), 2)
    assert err.startswith("ctcm random: ") and needle in err, err
    assert not (tmp_path / "o").exists()


def test_random_command_out_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    err = one_line_error(ctcm("random", "--packets", "100", "--out", str(tmp_path / "f")), 2)
    assert "--out" in err and "not a directory" in err
    assert (tmp_path / "f").read_text() == "x"


def test_random_scenario_with_bad_value_names_the_line(tmp_path):
    s = tmp_path / "r.yaml"
    s.write_text("name: r\nrandom:\n  seed: 2\n  ce_ratio: 2.0\n")
    err = one_line_error(ctcm("vectors", str(s), "--out", str(tmp_path / "o")), 1)
    assert f"{s}:" in err and "ce_ratio must be a probability" in err, err


def test_console_script_flushes_and_keeps_the_exit_status(tmp_path):
    """The installed `ctcm` exits through os._exit: its output must still be
    complete and its exit status that of the command."""
    exe = os.path.join(os.path.dirname(sys.executable), "ctcm")
    if not os.path.exists(exe):
        pytest.skip("the ctcm console script is not installed next to this Python")
    r = subprocess.run([exe, "decode", os.path.join(VEC, "stress-small.stimulus.pcapng")], capture_output=True, text=True)
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 600, (r.returncode, r.stderr)
    r = subprocess.run([exe, "random", "--packets", "0", "--out", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("ctcm random: --packets must be"), r.stderr


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_interrupted_random_leaves_no_files(tmp_path, sig):
    """Ctrl-C (SIGINT to the process group) or SIGTERM while a large vector is
    being written: the command ends at once, no file (not even the directory
    it made) is left."""
    import signal
    import time

    exe = os.path.join(os.path.dirname(sys.executable), "ctcm")
    if not os.path.exists(exe):
        pytest.skip("the ctcm console script is not installed next to this Python")
    out = tmp_path / "o"

    def default_sigint():  # (a background job may start with SIGINT ignored)
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    p = subprocess.Popen([exe, "random", "--packets", "2000000", "--out", str(out), "--quiet"],
                         preexec_fn=default_sigint, start_new_session=True, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not (out.exists() and any(n.startswith(".tmp-") for n in os.listdir(out))):
            time.sleep(0.1)
        time.sleep(1.0)  # well into writing
        if sig == "SIGINT":
            os.killpg(p.pid, signal.SIGINT)
        else:
            p.send_signal(signal.SIGTERM)
        code = p.wait(30)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert code == (130 if sig == "SIGINT" else 143), p.stderr.read()
    assert not out.exists(), os.listdir(out)
