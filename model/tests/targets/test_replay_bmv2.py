"""The offline replay on bmv2 (ctcm replay / ctcm.targets.replay): pcap files, no root.

Expected outputs, counters and tables are the committed vectors' (the model's);
the negative controls change one expected field or counter and must fail with
it named. Needs simple_switch and `make p4`'s builds (CI has both)."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
from conftest import require_tool

from ctcm.cli import main
from ctcm.dataplane.packet import classify
from ctcm.targets.replay import TimeDependent, json_for, replay_bmv2

VECTORS = os.path.normpath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, os.pardir, "vectors"))


@pytest.fixture(autouse=True)
def bmv2(tmp_path, monkeypatch):
    """simple_switch and the default build present; temporary files go to a
    directory of this test, checked empty afterwards, and no child process stays."""
    require_tool("simple_switch", "bmv2 (p4/README.md, Toolchain)")
    if not os.path.isfile(json_for("default")):
        msg = "build/p4/default/ctcm.json missing: run `make p4`"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    yield
    # (the switch's notification socket is in its work directory, under tmp too)
    assert os.listdir(tmp) == [], "the replay left files behind"
    assert _children() == [], "the replay left a process behind"


def _children() -> list[int]:
    me, out = os.getpid(), []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == me:
                        out.append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    return out


def _copy(name: str, dst) -> str:
    for suffix in (".yaml", ".stimulus.pcapng"):
        shutil.copy(os.path.join(VECTORS, name + suffix), dst / (name + suffix))
    return str(dst / f"{name}.yaml")


def test_active_open_matches():
    res = replay_bmv2(os.path.join(VECTORS, "active-open.yaml"))
    assert res.ok, res.format()
    assert (res.stimuli, res.report.expected_count, res.report.observed_count) == (11, 13, 13)
    assert res.counters_compared == 40 and res.connections == 1


def test_a_frame_shorter_than_ethernet_is_replayed():
    res = replay_bmv2(os.path.join(VECTORS, "malformed.yaml"))
    assert res.ok, res.format()
    assert res.stimuli == 13  # all of them: the live replay cannot send the 10-byte one


def test_a_wrong_expected_cnp_fails_with_a_field_diff(tmp_path):
    path = _copy("active-open", tmp_path)
    text = open(path).read()
    anchor = 'summary: "10.0.0.2 > 10.0.0.1 | BTH CNP dqpn=0x000101 psn=0x000000"\n    bytes: "'
    i = text.index(anchor) + len(anchor)
    frame = bytearray.fromhex(text[i:text.index('"', i)])
    frame[classify(bytes(frame)).bth + 7] ^= 1  # destination QPN 0x000101 -> 0x000100
    open(path, "w").write(text[:i] + frame.hex() + text[i + 2 * len(frame):])
    res = replay_bmv2(path)
    assert not res.ok
    assert res.report.count("differs") == 1, res.format()
    assert "BTH.dqpn expected 0x000100 got 0x000101" in res.format()


def test_a_wrong_final_counter_fails(tmp_path):
    path = _copy("active-open", tmp_path)
    text = open(path).read()
    i = text.index("\nfinal:\n  counters:\n    packets: 11\n")
    open(path, "w").write(text[:i] + text[i:].replace("packets: 11", "packets: 12", 1))
    res = replay_bmv2(path)
    assert not res.ok and res.report.ok
    assert "  packets: expected 12, bmv2 11" in res.counter_diffs


def test_a_time_dependent_vector_is_refused():
    with pytest.raises(TimeDependent, match=r"timewait is time-dependent: stimulus 8 \(t=610000 µs, port 2"):
        replay_bmv2(os.path.join(VECTORS, "timewait.yaml"))


def test_cli_refusal_skip_and_junit(tmp_path, capsys):
    tw = os.path.join(VECTORS, "timewait.yaml")
    assert main(["replay", "--quiet", tw]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ctcm replay: timewait is time-dependent: stimulus 8")
    junit = tmp_path / "r" / "replay.xml"
    assert main(["replay", "--quiet", "--skip-time-dependent", "--junit", str(junit), tw,
                 os.path.join(VECTORS, "bad-icrc.yaml")]) == 0
    xml = junit.read_text()
    assert 'tests="2" failures="0" errors="0" skipped="1"' in xml and 'name="bad-icrc"' in xml
    assert main(["replay", "--quiet", str(tmp_path / "none.yaml")]) == 2
    assert capsys.readouterr().err.strip().endswith("none.yaml: No such file or directory")


def test_log_file_of_the_logging_switch(tmp_path):
    log = tmp_path / "switch.log"
    res = replay_bmv2(os.path.join(VECTORS, "bad-icrc.yaml"), log_file=str(log))
    assert res.ok, res.format()
    assert os.path.basename(res.switch) == "simple_switch"
    text = log.read_text()
    assert "Processing packet received on port" in text
