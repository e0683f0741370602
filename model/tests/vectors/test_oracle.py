"""The oracle finds every difference and names the field."""

import os
import subprocess
import sys

import pytest

from ctcm.spec import headers as H
from ctcm.cli import main
from ctcm.oracle.compare import compare, compare_outputs
from ctcm.oracle.files import load_expected
from ctcm.dataplane.packet import classify
from ctcm.io.pcapio import write_pcapng

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "..")
VEC = os.path.join(ROOT, "vectors")


def vec(name):
    return os.path.join(VEC, f"{name}.yaml")


def observed_from(name):
    return {p: [e.frame for e in es] for p, es in load_expected(vec(name)).items()}


def test_identical_yaml_and_pcapng_pass(tmp_path):
    for name in ("active-open", "ce-data", "ipv6", "stress-small"):
        assert compare(load_expected(vec(name)), observed_from(name)).ok
        assert main(["compare", vec(name), "--observed", os.path.join(VEC, f"{name}.expected.pcapng")]) == 0
        assert main(["compare", vec(name), "--observed", vec(name)]) == 0


def test_missing_extra_reordered_differs():
    exp = load_expected(vec("ce-data"))
    obs = observed_from("ce-data")
    p2 = obs[2]
    p2[0], p2[1] = p2[1], p2[0]          # swap two on port 2
    del obs[1][0]                        # drop one on port 1
    obs[1].append(b"\x00" * 60)          # something unexpected
    cnp_i = next(i for i, f in enumerate(obs[1]) if f[14 + 4 + 20 + 8] == 0x81)  # the tagged CNP
    f = bytearray(obs[1][cnp_i])
    f[14 + 4 + 20 + 8 + 7] ^= 0x01       # BTH.dqpn
    obs[1][cnp_i] = bytes(f)
    rep = compare(exp, obs)
    assert not rep.ok
    kinds = sorted(m.kind for m in rep.mismatches)
    assert kinds == ["differs", "extra", "missing", "reordered"], rep.format()
    text = rep.format()
    assert "BTH.dqpn expected 0x000172 got 0x000173" in text
    assert "FAIL: " in text.splitlines()[-1]


def test_reorder_reports_the_fewest_packets():
    e = [(1, bytes([i]) * 60) for i in range(6)]
    o = [e[0], e[2], e[3], e[4], e[5], e[1]]  # one packet moved
    rep = compare_outputs(e, o)
    assert [m.kind for m in rep.mismatches] == ["reordered"]
    assert rep.mismatches[0].expected.frame == e[1][1]


def test_truncated_and_icrc_and_address():
    exp = load_expected(vec("active-open"))
    base = exp[2][0].frame  # the REQ forwarded to port 2
    for mutated, needle in [
        (base[:-10], "length expected 322 got 312"),
        (base[:-1] + bytes([base[-1] ^ 0xFF]), "ICRC expected"),
        (base[:29] + bytes([base[29] ^ 1]) + base[30:], "IPv4.src expected 10.0.0.1 got 10.0.0.0"),
    ]:
        rep = compare_outputs([(2, base)], [(2, mutated)])
        assert not rep.ok and needle in rep.format(), rep.format()


LAYER_BASES = None


def covering_field(frame: bytes, bit: int):
    """Independently: the (layer, field) of the tables covering `bit` of `frame`, or None."""
    p = classify(frame)
    layers = [(H.ETHERNET, 0)]
    if frame[12:14] == b"\x81\x00":
        layers.append((H.VLAN, 14))
    layers.append((H.IPV4 if p.ip_version == 4 else H.IPV6, p.l3))
    layers += [(H.UDP, p.l4), (H.BTH, p.bth)]
    if frame[p.bth] == 0x64:
        layers.append((H.DETH, p.bth + 12))
    if frame[p.bth] == 0x81:
        layers.append((H.CNP_PAYLOAD, p.bth + 12))
    if p.mad >= 0:
        layers += [(H.MAD, p.mad), (H.CM_MESSAGES[p.attr_id], p.mad + 24)]
    for h, base in layers:
        rel = bit - base * 8
        for f in h.fields:
            if f.first_bit <= rel < f.end_bit:
                return h.name, f.name, f.is_bytes
    return None


def flip_frames():
    seen, out = set(), []
    for name in ("ce-data", "ipv6", "mra", "reject", "teardown"):
        for port, es in load_expected(vec(name)).items():
            for e in es:
                p = classify(e.frame)
                key = (p.ip_version, e.frame[12:14], e.frame[p.bth] if p.bth >= 0 else None, p.attr_id)
                if p.bth >= 0 and key not in seen:
                    seen.add(key)
                    out.append((port, e.frame))
    return out


def test_every_single_bit_flip_is_caught_and_named():
    frames = flip_frames()
    assert len(frames) >= 10
    checked = 0
    for port, frame in frames:
        p = classify(frame)
        for bit in range(len(frame) * 8):
            f = bytearray(frame)
            f[bit // 8] ^= 0x80 >> (bit % 8)
            rep = compare_outputs([(port, frame)], [(port, bytes(f))])
            assert not rep.ok
            text = rep.format()
            cov = covering_field(frame, bit)
            byte = bit // 8
            if cov is not None:
                layer, field, is_bytes = cov
                needle = f"{layer}.{field} differs" if is_bytes else f"{layer}.{field} expected"
            elif byte >= p.end:
                needle = "ICRC expected"
            else:
                needle = f"byte {byte} "
            assert needle in text, (bit, text)
            checked += 1
    assert checked > 20000


@pytest.mark.parametrize("content,needle", [
    (None, "No such file"),
    (b"\xd4\xc3\xb2\xa1" + b"\x00" * 10, "truncated pcap"),
    (b"packets: [\n", "invalid YAML"),
    (b"name: x\n", "neither a capture"),
])
def test_unreadable_observed_is_one_line_exit_2(tmp_path, content, needle):
    path = tmp_path / "obs"
    if content is not None:
        path.write_bytes(content)
    r = subprocess.run([sys.executable, "-m", "ctcm.cli", "compare", vec("active-open"), "--observed", str(path)],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_unreadable_vector(tmp_path):
    p = tmp_path / "v.yaml"
    p.write_text("format: x\n")
    r = subprocess.run([sys.executable, "-m", "ctcm.cli", "compare", str(p), "--observed", str(p)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "no 'packets' list" in r.stderr


def test_port_map_for_foreign_capture(tmp_path):
    exp = load_expected(vec("passive-open"))
    pkts = [(0, 0 if port == 1 else 1, f.frame) for port, es in exp.items() for f in es]
    path = tmp_path / "dut.pcapng"
    write_pcapng(str(path), pkts, ["eth3", "eth4"])
    assert main(["compare", vec("passive-open"), "--observed", str(path)]) == 2
    assert main(["compare", vec("passive-open"), "--observed", str(path), "--port-map", "eth3=1,eth4=2"]) == 0


# --- streaming comparison: the same report as the in-memory one --------------------------

from ctcm.oracle import files as O  # noqa: E402
from ctcm.stimulus.randgen import RandomParams, generate  # noqa: E402
from ctcm.vectors.run import make_vector  # noqa: E402


@pytest.mark.parametrize("name", ["active-open", "ce-data", "ipv6", "stress-small", "malformed", "cnp-pacing"])
def test_iter_expected_equals_load_expected(name):
    got: dict = {}
    for port, e in O.iter_expected(vec(name)):
        got.setdefault(port, []).append(e)
    assert got == load_expected(vec(name))


def _perturb(obs: dict, r) -> dict:
    """Observed packets per port with a few random changes: drops, duplicates,
    swaps, packets moved far, changed bytes, extra packets."""
    obs = {p: list(fs) for p, fs in obs.items()}
    for _ in range(r.randrange(0, 6)):
        port = r.choice(sorted(obs))
        fs = obs[port]
        if not fs:
            continue
        what = r.choice(["drop", "dup", "swap", "move", "byte", "extra", "cut"])
        i = r.randrange(len(fs))
        if what == "drop":
            del fs[i]
        elif what == "dup":
            fs.insert(r.randrange(len(fs) + 1), fs[i])
        elif what == "swap":
            j = r.randrange(len(fs))
            fs[i], fs[j] = fs[j], fs[i]
        elif what == "move":
            fs.insert(r.randrange(len(fs) + 1), fs.pop(i))
        elif what == "byte":
            b = bytearray(fs[i])
            b[r.randrange(len(b))] ^= 1 << r.randrange(8)
            fs[i] = bytes(b)
        elif what == "extra":
            fs.insert(r.randrange(len(fs) + 1), bytes(r.randrange(256) for _ in range(60)))
        else:
            fs[i] = fs[i][: r.randrange(len(fs[i]))]
    return obs


@pytest.fixture(scope="module")
def random_vector(tmp_path_factory):
    d = tmp_path_factory.mktemp("rv")
    stim = generate(RandomParams(seed=21, packets=3000, connections=60, concurrency=10, ce_ratio=0.1))
    _, written = make_vector("rv", "", {"mode": "ideal"}, {"host": 1, "net": 2}, stim, str(d))
    return str(d / "rv.yaml")


@pytest.mark.parametrize("seed", range(40))
def test_streaming_compare_equals_in_memory(seed, random_vector, tmp_path, monkeypatch):
    import random

    r = random.Random(seed)
    path = random_vector if seed % 2 else vec(r.choice(["ce-data", "active-open", "cnp-pacing", "ipv6"]))
    exp = load_expected(path)
    obs = _perturb({p: [e.frame for e in es] for p, es in exp.items()}, r)
    # interleave the ports as a capture would, in a random order of ports
    order = [(p, f) for p in obs for f in obs[p]]
    streams = {p: iter(fs) for p, fs in obs.items()}
    mixed = []
    for p, _ in sorted(order, key=lambda _x: r.random()):
        mixed.append((p, next(streams[p])))
    want = compare(exp, {p: [f for q, f in mixed if q == p] for p in obs})
    for step in (1, 7, 4096):
        got = O.compare_streams(O.iter_expected(path), iter(mixed), step=step, observed_again=lambda: iter(mixed))
        assert got.format() == want.format()
        assert got.to_dict() == want.to_dict()
    # and through the files and the command line
    cap = tmp_path / "obs.pcapng"
    names = sorted({p for p, _ in mixed})
    write_pcapng(str(cap), [(k, names.index(p), f) for k, (p, f) in enumerate(mixed)], [f"p{p}" for p in names])
    assert O.compare_files(path, str(cap)).format() == want.format()


def test_hand_written_vector_is_read_whole(tmp_path):
    """A vector YAML not in ctcm's own layout is compared the in-memory way."""
    import yaml

    doc = yaml.safe_load(open(vec("ce-data")).read())
    p = tmp_path / "hand.yaml"
    p.write_text(yaml.safe_dump(doc))
    with pytest.raises(O._NotStreamable):
        list(O.iter_expected(str(p)))
    obs = os.path.join(VEC, "ce-data.expected.pcapng")
    assert O.compare_files(str(p), obs).ok
    assert main(["compare", str(p), "--observed", obs]) == 0
