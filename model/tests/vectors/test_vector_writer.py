"""The fast vector writers give the same files as the plain ways of writing them.

The references here are the simple forms: summarize() frame by frame,
yaml.safe_dump for the snapshots, scapy reading the pcapng back, and the
one-process writer for the forked one."""

import os
import random

import pytest
import yaml
from scapy.utils import PcapNgReader

from ctcm import vecrender as R
from ctcm import vectors as V
from ctcm import vecwrite as W
from ctcm.batch import summarize_many
from ctcm.packet import summarize
from ctcm.pcapio import pcapng_bytes, pcapng_chunks
from ctcm.randgen import RandomParams, generate
from ctcm.vectors import run_stimulus, write_vector


@pytest.fixture(scope="module")
def vec():
    stim = generate(RandomParams(seed=11, packets=3000, connections=60, concurrency=12, ce_ratio=0.05,
                                 malformed=0.03, non_roce=0.03, ipv6=0.3))
    return run_stimulus("w", "writer test", {"mode": "p4"}, {"host": 1, "net": 2}, stim)


def _all_frames(vec):
    out = []
    for p in vec.packets:
        out.append(p["frame"])
        out.extend(f for _, f in p["expect"])
    return out


def test_summarize_many_equals_summarize(vec):
    frames = _all_frames(vec)
    r = random.Random(3)
    damaged = []
    for f in frames[:1500]:
        b = bytearray(f)
        b[r.randrange(len(b))] ^= 1 << r.randrange(8)  # bad ICRC, other header values, ...
        damaged.append(bytes(b))
    damaged += [bytearray(f) for f in frames[:50]] + [f[: r.randrange(len(f))] for f in frames[:200]]
    everything = frames + damaged
    assert any("BAD-ICRC" in s for s in map(summarize, damaged))
    assert any(" CE" in s for s in map(summarize, frames))
    want = [summarize(f) for f in everything]
    assert summarize_many(everything) == want
    # a cache shared between parts of one sequence (as the writer does)
    cache: dict = {}
    got = []
    for a in range(0, len(everything), 700):
        got += summarize_many(everything[a : a + 700], cache)
    assert got == want and cache


def test_snapshot_yaml_equals_pyyaml(vec):
    doc = {"checkpoints": vec.checkpoints, "final": vec.final}
    assert vec.final["connections"] and vec.final["flows"]
    assert R._yaml_tail(vec) == yaml.safe_dump(doc, **R._TAIL_DUMP)


@pytest.mark.parametrize("doc", [
    {},
    {"a": []},
    {"a": {}, "b": [{}]},
    {"x": ["yes", "no", "null", "~", "0x10", "010", "1e3", "1.5", "", " a", "a: b", "- x", "#c", "é", "a\tb"]},
    {"y": [1, -1, True, False, None, 1.5, "10.0.0.1", "fd00::1", "::ffff:10.0.0.1", "ab:cd", "TIMEWAIT"]},
    {"nested": {"list": [{"k": 1, "l": [1, 2]}, {"m": {"n": "o"}}], "empty": {}}},
    {1: "int key", "true": "bool-like key", "with space": 2, "0x1": 3},
    {"long": "x" * 2000},
    {"multi": "line\nbreak"},
    {"lists": [[1, 2], [3]]},
])
def test_block_yaml_equals_pyyaml(doc):
    want = yaml.safe_dump(doc, **R._TAIL_DUMP)
    try:
        got = R._BlockYaml().dump(doc)
    except R._NotPlain:
        return  # left to PyYAML: _yaml_tail falls back to it
    assert got == want


def test_shared_container_is_left_to_pyyaml():
    shared = {"a": 1}
    with pytest.raises(R._NotPlain):
        R._BlockYaml().dump({"x": shared, "y": shared})


def _files(d):
    return {n: open(os.path.join(d, n), "rb").read() for n in sorted(os.listdir(d))}


def test_parallel_writer_equals_serial(vec, tmp_path, monkeypatch):
    monkeypatch.setattr(R, "_CHUNK", 257)  # many chunks
    monkeypatch.setattr(W, "_PARALLEL_MIN", 10**9)
    write_vector(vec, str(tmp_path / "serial"))
    monkeypatch.setattr(W, "_PARALLEL_MIN", 1)
    if not W._can_fork():
        pytest.skip("no fork on this platform")
    write_vector(vec, str(tmp_path / "forked"))
    serial, forked = _files(tmp_path / "serial"), _files(tmp_path / "forked")
    assert sorted(serial) == ["w.expected.hex", "w.expected.pcapng", "w.stimulus.hex", "w.stimulus.pcapng", "w.yaml"]
    assert serial == forked
    # and both equal the in-memory renderings
    assert serial["w.yaml"] == V.vector_yaml(vec).encode()
    assert serial["w.stimulus.pcapng"] == V.stimulus_pcapng(vec)
    assert serial["w.expected.hex"] == V.expected_hex(vec).encode()


@pytest.mark.parametrize("parallel", [True, False])
@pytest.mark.parametrize("where", ["_write_expected_files", "_write_stimulus_files", "_render_yaml"])
def test_a_failing_writer_changes_nothing(vec, tmp_path, monkeypatch, parallel, where):
    """The error reaches the caller (from a forked writer too), no temporary
    file is left, and the vector's previous files are untouched."""
    if parallel and not W._can_fork():
        pytest.skip("no fork on this platform")
    old = {f"w{suffix}": b"previous " + suffix.encode() for suffix in
           (".yaml", ".stimulus.pcapng", ".expected.pcapng", ".stimulus.hex", ".expected.hex")}
    for n, data in old.items():
        (tmp_path / n).write_bytes(data)
    monkeypatch.setattr(W, "_PARALLEL_MIN", 1 if parallel else 10**9)
    mod = R if where == "_render_yaml" else W
    real = getattr(mod, where)

    def broken(*a):
        if where == "_render_yaml":
            return _fail_after(real(*a))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mod, where, broken)
    stim = R._stimulus_of(vec)
    for call in (lambda: write_vector(vec, str(tmp_path)),
                 lambda: V.make_vector("w", "", vec.options, vec.ports, stim, str(tmp_path))):
        with pytest.raises(OSError, match="No space left"):
            call()
        assert _files(tmp_path) == old


def _fail_after(parts):
    yield from parts
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("formats", [V.FORMATS, ("yaml",), ("yaml", "pcapng"), ("hex",)])
def test_make_vector_equals_run_then_write(vec, tmp_path, monkeypatch, formats):
    monkeypatch.setattr(R, "_CHUNK", 101)
    stim = R._stimulus_of(vec)
    monkeypatch.setattr(W, "_PARALLEL_MIN", 10**9)
    write_vector(vec, str(tmp_path / "ref"), formats)
    for parallel in (False, True):
        if parallel and not W._can_fork():
            continue
        monkeypatch.setattr(W, "_PARALLEL_MIN", 1 if parallel else 10**9)
        d = tmp_path / str(parallel)
        got, written = V.make_vector("w", vec.description, vec.options, vec.ports, stim, str(d), formats)
        assert got == vec
        assert sorted(written) == sorted(str(d / n) for n in _files(d))
        assert _files(d) == _files(tmp_path / "ref")


def test_files_get_the_umask_mode(vec, tmp_path):
    old = os.umask(0o027)
    try:
        write_vector(vec, str(tmp_path), formats=("yaml", "hex"))
    finally:
        os.umask(old)
    assert {n: os.stat(tmp_path / n).st_mode & 0o777 for n in os.listdir(tmp_path)} == {
        "w.yaml": 0o640, "w.stimulus.hex": 0o640, "w.expected.hex": 0o640}


def test_unknown_format_is_refused(vec, tmp_path):
    with pytest.raises(ValueError, match="unknown vector format"):
        write_vector(vec, str(tmp_path), formats=("yaml", "csv"))
    assert os.listdir(tmp_path) == []


def test_pcapng_chunks_read_back_by_scapy(vec, tmp_path):
    pkts = [(p["t_us"], p["port"] - 1, p["frame"]) for p in vec.packets[:500]]
    comments = [f"c{i}" if i % 3 else None for i in range(len(pkts))]
    data = pcapng_bytes(pkts, ["p1", "p2"], comments)
    assert b"".join(pcapng_chunks(pkts, ["p1", "p2"], comments, chunk=7)) == data
    path = tmp_path / "x.pcapng"
    path.write_bytes(data)
    got = list(PcapNgReader(str(path)))
    assert [bytes(p) for p in got] == [f for _, _, f in pkts]
    assert [round(float(p.time) * 1e6) for p in got] == [t for t, _, _ in pkts]
    assert [p.sniffed_on for p in got] == [["p1", "p2"][i] for _, i, _ in pkts]
    assert [(p.comment or b"").decode() or None for p in got] == comments


@pytest.mark.parametrize("how", ["kernel", "no copy_file_range", "ENOSYS"])
def test_append_file(tmp_path, monkeypatch, how):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"head\n")
    data = bytes(range(256)) * 5000
    b.write_bytes(data)
    if how == "no copy_file_range":
        monkeypatch.delattr(os, "copy_file_range", raising=False)
    elif how == "ENOSYS":
        def refuse(*a):
            raise OSError(38, "Function not implemented")
        monkeypatch.setattr(os, "copy_file_range", refuse)
    W._append_file(str(a), str(b))
    assert a.read_bytes() == b"head\n" + data
