"""pcap/pcapng I/O: scapy and tshark as independent readers/writers; strict errors."""

import subprocess

import pytest
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap, wrpcapng

from ctcm import build_cm
from ctcm.pcapio import CaptureError, pcap_bytes, pcapng_bytes, read_capture, write_pcapng

from conftest import require_tool


def frames(n=5):
    return [build_cm("RTU", "10.0.0.1", "10.0.0.2", {"local_comm_id": i, "remote_comm_id": i + 100}, tid=i) for i in range(n)]


def test_reads_scapy_pcap_and_pcapng(tmp_path):
    fs = frames()
    pkts = []
    for i, f in enumerate(fs):
        p = Ether(f)
        p.time = 1000 + i * 0.25
        pkts.append(p)
    wrpcap(str(tmp_path / "a.pcap"), pkts)
    wrpcapng(str(tmp_path / "a.pcapng"), pkts)
    for name in ("a.pcap", "a.pcapng"):
        cap = read_capture(str(tmp_path / name))
        assert [p[2] for p in cap.packets] == fs
        assert [p[0] for p in cap.packets] == [1_000_000_000 + i * 250_000 for i in range(5)]


def test_roundtrip_and_tshark_sees_interfaces(tmp_path):
    tshark = require_tool("tshark", "tshark")
    fs = frames(4)
    pkts = [(10 * i, i % 2, f) for i, f in enumerate(fs)]
    path = tmp_path / "v.pcapng"
    write_pcapng(str(path), pkts, ["host0", "net0"], comments=["a", None, "c", None])
    cap = read_capture(str(path))
    assert cap.interfaces == ["host0", "net0"]
    assert cap.packets == pkts
    out = subprocess.run([tshark, "-r", str(path), "-T", "fields", "-e", "frame.interface_name", "-e", "frame.time_epoch",
                          "-e", "frame.comment"], capture_output=True, text=True, check=True).stdout.split("\n")
    rows = [l.split("\t") for l in out if l]
    assert [r[0] for r in rows] == ["host0", "net0", "host0", "net0"]
    assert [round(float(r[1]) * 1e6) for r in rows] == [0, 10, 20, 30]
    assert rows[0][2] == "a" and rows[2][2] == "c"


def test_output_is_deterministic():
    fs = frames(3)
    pkts = [(i, 0, f) for i, f in enumerate(fs)]
    assert pcapng_bytes(pkts, ["p1"]) == pcapng_bytes(pkts, ["p1"])
    assert pcap_bytes(pkts) == pcap_bytes(pkts)


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_truncation_anywhere_is_a_clear_error(tmp_path, fmt):
    fs = frames(2)
    pkts = [(i, 0, f) for i, f in enumerate(fs)]
    data = pcap_bytes(pkts) if fmt == "pcap" else pcapng_bytes(pkts, ["p"])
    path = tmp_path / f"t.{fmt}"
    # Cutting exactly between records leaves a valid, shorter file.
    whole = {len(pcap_bytes(pkts[:k]) if fmt == "pcap" else pcapng_bytes(pkts[:k], ["p"])) for k in range(3)}
    if fmt == "pcapng":
        whole.add(28)  # the section header block alone
    for cut in list(range(1, 120)) + list(range(len(data) - 40, len(data))):
        if cut in whole:
            continue
        path.write_bytes(data[:cut])
        with pytest.raises(CaptureError) as ei:
            read_capture(str(path))
        msg = str(ei.value)
        assert str(path) in msg and "\n" not in msg


def test_garbage_and_missing(tmp_path):
    p = tmp_path / "g"
    p.write_bytes(b"hello world, not a capture")
    with pytest.raises(CaptureError, match="not a pcap"):
        read_capture(str(p))
    with pytest.raises(CaptureError, match="No such file"):
        read_capture(str(tmp_path / "missing.pcap"))
