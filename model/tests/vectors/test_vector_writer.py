"""The fast vector writers give the same files as the plain ways of writing them.

The references here are the simple forms: summarize() frame by frame,
yaml.safe_dump for the snapshots, scapy reading the pcapng back, and the
one-process writer for the forked one."""

import os
import random

import pytest
import yaml
from scapy.utils import PcapNgReader

from ctcm.vectors import render as R
from ctcm.vectors import run as V
from ctcm.vectors import write as W
from ctcm.dataplane.batch import summarize_many
from ctcm.dataplane.packet import summarize
from ctcm.io.pcapio import pcapng_bytes, pcapng_chunks
from ctcm.stimulus.randgen import RandomParams, generate, generate_chunks
from ctcm.vectors.run import run_stimulus, write_vector


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
@pytest.mark.parametrize("where", [".yaml", ".stimulus.pcapng", ".expected.pcapng", ".expected.hex"])
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
    monkeypatch.setattr(V, "_BATCH", 500)  # several chunks: the failure comes in the middle
    real = R.Renderer.body
    calls = []

    def broken(self, suffix, packets):
        if suffix == where:
            calls.append(1)
            if len(calls) == 3:
                yield from real(self, suffix, packets[:10])
                raise OSError(28, "No space left on device")
        yield from real(self, suffix, packets)

    monkeypatch.setattr(R.Renderer, "body", broken)
    stim = R._stimulus_of(vec)
    for call in (lambda: write_vector(vec, str(tmp_path)),
                 lambda: V.make_vector("w", "", vec.options, vec.ports, stim, str(tmp_path))):
        calls.clear()
        with pytest.raises(OSError, match="No space left"):
            call()
        assert _files(tmp_path) == old


def test_interrupt_leaves_no_files(vec, tmp_path, monkeypatch):
    """Ctrl-C in the middle of a streamed vector: nothing written, nothing left."""
    monkeypatch.setattr(V, "_BATCH", 500)
    monkeypatch.setattr(W, "_PARALLEL_MIN", 1)

    def progress(n):
        if n >= 1500:
            raise KeyboardInterrupt

    stim = R._stimulus_of(vec)
    with pytest.raises(KeyboardInterrupt):
        V.stream_vector("w", "", vec.options, vec.ports, V.stimulus_source(stim), str(tmp_path), progress=progress,
                        total=len(stim))
    assert os.listdir(tmp_path) == []


def test_streaming_equals_in_memory(tmp_path, monkeypatch):
    """A random vector streamed in many chunks (generation, pipeline, the
    forked writer) gives the files of the in-memory path."""
    p = RandomParams(seed=3, packets=6000, connections=120, concurrency=15, ce_ratio=0.05, malformed=0.02,
                     non_roce=0.02, ipv6=0.3)
    vec = run_stimulus("s", "stream test", {"mode": "p4"}, {"host": 1, "net": 2}, generate(p))
    monkeypatch.setattr(V, "_BATCH", 700)
    monkeypatch.setattr(R, "_CHUNK", 333)
    for parallel in (False, True):
        if parallel and not W._can_fork():
            continue
        monkeypatch.setattr(W, "_PARALLEL_MIN", 1 if parallel else 10**9)
        d = tmp_path / str(parallel)
        got, written = V.stream_vector("s", "stream test", {"mode": "p4"}, {"host": 1, "net": 2},
                                       generate_chunks(p, chunk=1234), str(d), total=p.packets)
        assert got.packets == [] and got.final == vec.final and len(written) == 5
        files = _files(d)
        assert files["s.yaml"] == V.vector_yaml(vec).encode()
        assert files["s.stimulus.pcapng"] == V.stimulus_pcapng(vec)
        assert files["s.expected.pcapng"] == V.expected_pcapng(vec)
        assert files["s.stimulus.hex"] == V.stimulus_hex(vec).encode()
        assert files["s.expected.hex"] == V.expected_hex(vec).encode()


def test_generate_chunks_equals_generate():
    p = RandomParams(seed=8, packets=5000, connections=50, concurrency=9, non_roce=0.05)
    chunks = list(generate_chunks(p, chunk=999))
    assert len(chunks) > 3 and all(len(c) <= 1001 for c in chunks)
    assert [s for c in chunks for s in c] == generate(p)


def test_a_disk_too_small_is_refused_up_front(vec, tmp_path, monkeypatch):
    import collections
    import shutil

    from ctcm.errors import UsageError

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda d: usage(10**9, 10**9 - 10**6, 10**6))
    stim = R._stimulus_of(vec)
    with pytest.raises(UsageError, match=r"not enough disk space.*bytes per packet x 1,000,000,000,000 packets"):
        V.stream_vector("w", "", vec.options, vec.ports, V.stimulus_source(stim), str(tmp_path / "new"),
                        total=10**12)
    assert not (tmp_path / "new").exists()
    monkeypatch.undo()
    # the estimate is close to what is written
    written = V.make_vector("w", "", vec.options, vec.ports, stim, str(tmp_path / "real"))[1]
    size = sum(os.path.getsize(f) for f in written)
    est = V.estimate_bytes(sum(len(s.frame) for s in stim), len(stim)) * len(stim)
    assert 0.8 < est / size < 1.25


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
