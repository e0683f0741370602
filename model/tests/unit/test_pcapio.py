"""pcap/pcapng I/O: scapy and tshark as independent readers/writers; strict errors."""

import subprocess

import pytest
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap, wrpcapng

from ctcm import build_cm
from ctcm.io.pcapio import CaptureError, pcap_bytes, pcapng_bytes, read_capture, write_pcapng

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


# --- captures as they come: snaplen cuts, Linux cooked (SLL, SLL2), raw IP, mixed link types ------

import json  # noqa: E402
import os  # noqa: E402
import struct  # noqa: E402

from ctcm.cli import main  # noqa: E402
from ctcm.io.pcapio import _block, _opt  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "..")
CE_DATA = os.path.join(ROOT, "vectors", "ce-data.stimulus.pcapng")  # an active open, then CE data


def _packets():
    cap = read_capture(CE_DATA)
    return [(ts, iface, frame) for ts, iface, frame in cap.packets]


def _pcap(path, linktype, records, snaplen=65535):
    """records: (ts µs, captured bytes, length on the wire)."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype)]
    for ts, data, wire in records:
        out.append(struct.pack("<IIII", ts // 1_000_000, ts % 1_000_000, len(data), wire) + data)
    path.write_bytes(b"".join(out))


def _pcapng(path, interfaces, records):
    """interfaces: (name, linktype); records: (ts, iface, captured bytes, length on the wire)."""
    out = [_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))]
    for name, lt in interfaces:
        out.append(_block(1, struct.pack("<HHI", lt, 0, 0) + _opt(2, name.encode()) + _opt(9, b"\x06") + _opt(0, b"")))
    for ts, iface, data, wire in records:
        out.append(_block(6, struct.pack("<IIIII", iface, ts >> 32, ts & 0xFFFFFFFF, len(data), wire) + data))
    path.write_bytes(b"".join(out))


def _sll2(frame, outgoing):
    """A Linux cooked v2 header (as tcpdump -i any writes) in place of the Ethernet header."""
    return (frame[12:14] + b"\0\0" + struct.pack(">I", 3) + struct.pack(">H", 1) + bytes([4 if outgoing else 0, 6])
            + frame[6:12] + b"\0\0" + frame[14:])


def _sll(frame, outgoing):
    return (struct.pack(">HHH", 4 if outgoing else 0, 1, 6) + frame[6:12] + b"\0\0" + frame[12:14] + frame[14:])


def _track(capsys, path, *extra):
    code = main(["track", str(path), "--host-ip", "10.0.0.1", "--json", *extra])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out), err


def _tshark_protocols(path):
    tshark = require_tool("tshark", "tshark")
    r = subprocess.run([tshark, "-r", str(path), "-T", "fields", "-e", "frame.protocols"], capture_output=True,
                       text=True, check=True)
    assert "appears to be damaged" not in r.stderr and "isn't a capture file" not in r.stderr, r.stderr
    return [line for line in r.stdout.splitlines() if line]


def test_snaplen_96_cut_frames_are_counted_not_malformed(tmp_path, capsys):
    full, _ = _track(capsys, CE_DATA)
    pkts = _packets()
    long_ones = sum(1 for _, _, f in pkts if len(f) > 96)
    assert long_ones == 12  # every frame of the capture is longer
    _pcap(tmp_path / "cut.pcap", 1, [(ts, f[:96], len(f)) for ts, _, f in pkts], snaplen=96)
    _pcapng(tmp_path / "cut.pcapng", [("p1", 1), ("p2", 1)], [(ts, i, f[:96], len(f)) for ts, i, f in pkts])
    for name in ("cut.pcap", "cut.pcapng"):
        assert all("malformed" not in p.lower() for p in _tshark_protocols(tmp_path / name))
        got, err = _track(capsys, tmp_path / name)
        c = got["counters"]
        assert c["snaplen_cut_packets"] == long_ones
        assert c.get("malformed", 0) == 0 and full["counters"].get("malformed", 0) == 0
        # the data packets are used as far as their headers go: RoCE, CE seen (the CM
        # messages are cut inside the MAD: not tracked, so no CNP)
        assert c["roce"] == full["counters"]["roce"] and c["ce_packets"] == full["counters"]["ce_packets"]
        assert c.get("cm", 0) == 0 and got["connections"] == []
        lines = err.splitlines()
        assert len(lines) == 1 and "warning" in lines[0]
        assert f"{long_ones} frame(s) cut by the capture's snaplen" in lines[0]
        assert "6 used as far as their headers go, 6 not used" in lines[0]
    # decode says "cut", never MALFORMED
    assert main(["decode", str(tmp_path / "cut.pcapng")]) == 0
    out, err = capsys.readouterr()
    assert "MALFORMED" not in out and out.count("[cut by the snaplen: 96 of ") == 12 and "BAD-ICRC" not in out


@pytest.mark.parametrize("kind", ["sll2", "sll"])
def test_linux_cooked_capture_gives_the_same_table_and_cnps(tmp_path, capsys, kind):
    """A tcpdump -i any style capture (one interface, cooked headers) of the
    same traffic: the same events, connection table, counters and CNPs (the
    CNP's source MAC aside: a cooked header has only the sender's address)."""
    eth, _ = _track(capsys, CE_DATA)
    conv, lt = (_sll2, 276) if kind == "sll2" else (_sll, 113)
    recs = [(ts, conv(f, i == 0), len(f) + (6 if kind == "sll2" else 2)) for ts, i, f in _packets()]
    path = tmp_path / f"any.{kind}.pcap"
    _pcap(path, lt, [(ts, d, w) for ts, d, w in recs])
    protos = _tshark_protocols(path)
    assert len(protos) == 12 and all(p.startswith("sll:ethertype:") for p in protos), protos[:2]
    assert any("infiniband" in p for p in protos)
    if kind == "sll2":  # the interface index is in v2 headers only
        r = subprocess.run([require_tool("tshark", "tshark"), "-r", str(path), "-T", "fields", "-e", "sll.ifindex"],
                           capture_output=True, text=True, check=True)
        assert r.stdout.split() == ["3"] * 12
    got, err = _track(capsys, path)
    assert err == ""
    assert got["connections"] == eth["connections"] and got["flows"] == eth["flows"]
    assert got["counters"] == eth["counters"]
    ev_eth = [e for e in eth["events"] if "event" in e]
    assert [e["event"] for e in got["events"] if "event" in e] == [e["event"] for e in ev_eth]
    cnps_eth = [e for e in eth["events"] if "cnp" in e]
    cnps = [e for e in got["events"] if "cnp" in e]
    assert len(cnps) == 2 and [e["summary"] for e in cnps] == [e["summary"] for e in cnps_eth]
    for a, b in zip(cnps, cnps_eth):
        a, b = bytes.fromhex(a["cnp"]), bytes.fromhex(b["cnp"])
        assert a[:6] == b[:6] and a[12:] == b[12:]  # destination MAC, then everything from the ethertype on


def test_raw_ip_and_mixed_link_types_per_interface(tmp_path, capsys):
    eth, _ = _track(capsys, CE_DATA)
    pkts = _packets()
    # a pcapng with the host side as raw IP and the network side as SLL2 and Ethernet
    ifaces = [("host-raw", 101), ("any", 276), ("eth", 1)]
    recs = []
    for k, (ts, i, f) in enumerate(pkts):
        if i == 0:
            l3 = 18 if f[12:14] == b"\x81\x00" else 14  # (raw IP has no VLAN tag)
            recs.append((ts, 0, f[l3:], len(f) - l3))
        elif k % 2:
            recs.append((ts, 1, _sll2(f, False), len(f) + 6))
        else:
            recs.append((ts, 2, f, len(f)))
    path = tmp_path / "mixed.pcapng"
    _pcapng(path, ifaces, recs)
    assert len(_tshark_protocols(path)) == len(pkts)
    got, err = _track(capsys, path)
    assert err == ""
    assert got["connections"] == eth["connections"] and got["counters"] == eth["counters"]
    assert [e["summary"] for e in got["events"] if "cnp" in e] == [e["summary"] for e in eth["events"] if "cnp" in e]
    assert main(["decode", str(path)]) == 0
    out, _ = capsys.readouterr()
    assert len(out.splitlines()) == len(pkts) and "host-raw: 10.0.0.1 > 10.0.0.2" in out
    # raw IPv4 in a pcap file
    _pcap(tmp_path / "raw.pcap", 101, [(ts, f[14:], len(f) - 14) for ts, _, f in pkts if f[12:14] == b"\x08\x00"])
    got, _ = _track(capsys, tmp_path / "raw.pcap")
    # the untagged connection's open (REQ, REP, RTU) and its CNP; the tagged one's frames are not in the file
    assert got["counters"]["cm"] == 3 and len(got["connections"]) == 1 and got["counters"]["cnp_sent"] == 1


def test_unknown_link_type_interface_is_skipped_with_a_warning(tmp_path, capsys):
    pkts = _packets()
    path = tmp_path / "x.pcapng"
    _pcapng(path, [("p1", 1), ("p2", 1), ("usb", 220)],
            [(ts, i, f, len(f)) for ts, i, f in pkts] + [(10**7, 2, b"\x01\x02\x03", 3)])
    got, err = _track(capsys, path)
    assert got["counters"]["packets"] == 12
    assert err.splitlines() == ["ctcm track: warning: 1 packet(s) skipped: link type 220 is not read"]


def test_warnings_host_never_seen_iface_out_of_range_time_backwards(tmp_path, capsys):
    pkts = _packets()
    _, err = _track(capsys, CE_DATA, "--host-ip", "10.9.9.9")
    assert err.splitlines() == ["ctcm track: warning: --host-ip 10.9.9.9 never occurs in "
                                f"{CE_DATA} (no packet from or to it)"]
    code = main(["track", CE_DATA, "--host-iface", "0", "--host-iface", "5"])
    out, err = capsys.readouterr()
    assert code == 0 and err.splitlines() == [f"ctcm track: warning: --host-iface 5: {CE_DATA} has 2 interface(s) "
                                              "(0..1): no packet came from the host"]
    code = main(["track", CE_DATA, "--host-iface", "p1", "--host-ip", "10.0.0.1"])
    out, err = capsys.readouterr()
    assert "--host-ip ignored" in err
    back = [(ts, i, f) for ts, i, f in pkts]
    back[6] = (back[5][0] - 5, *back[6][1:])
    path = tmp_path / "back.pcapng"
    write_pcapng(str(path), back, ["p1", "p2"])
    _, err = _track(capsys, path)
    assert "1 packet(s) have a timestamp earlier than the packet before them (first: packet #7)" in err
    # compare: --port ignored for a multi-interface capture
    vec = os.path.join(ROOT, "vectors", "ce-data.yaml")
    code = main(["compare", vec, "--observed", os.path.join(ROOT, "vectors", "ce-data.expected.pcapng"), "--port", "1"])
    out, err = capsys.readouterr()
    assert code == 0 and err.splitlines() == [
        f"ctcm compare: warning: --port 1 ignored: {os.path.join(ROOT, 'vectors', 'ce-data.expected.pcapng')} has 2 "
        "interfaces (each is named p<port>, or give --port-map)"]


def test_linktype_override_reads_bmv2_output_pcaps(tmp_path):
    # bmv2's pcap-file mode writes Ethernet frames under link type 0 (and snaplen 0).
    fs = frames(3)
    raw = bytearray(pcap_bytes([(i, 0, f) for i, f in enumerate(fs)]))
    raw[16:24] = struct.pack("<II", 0, 0)  # snaplen 0, link type 0
    p = tmp_path / "p1_out.pcap"
    p.write_bytes(bytes(raw))
    with pytest.raises(CaptureError, match="link type 0"):
        read_capture(str(p))
    from ctcm.io.pcapio import LINKTYPE_ETHERNET, CaptureReader

    with CaptureReader(str(p), linktype=LINKTYPE_ETHERNET) as r:
        assert [bytes(Ether(f)) for _ts, _i, f, _w in r] == [bytes(Ether(f)) for f in fs]
