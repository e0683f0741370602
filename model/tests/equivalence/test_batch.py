"""The vectorised classifier gives exactly the reference classifier's answers."""

import random

from hypothesis import given, settings, strategies as st

from ctcm.dataplane.batch import classify_batch
from ctcm.dataplane.packet import build_cm, build_roce, classify


def corpus(seed: int, n: int = 300):
    r = random.Random(seed)
    out = []
    for _ in range(n):
        v6 = r.random() < 0.3
        src, dst = ("fd00::1", "fd00::2") if v6 else ("10.0.0.1", "10.0.0.2")
        kw = dict(vlan=r.choice([None, 9]), ecn=r.randrange(4))
        if not v6 and r.random() < 0.2:
            kw["ip_options"] = b"\x01" * (4 * r.randint(1, 10))
        x = r.random()
        if x < 0.3:
            f = build_cm(r.choice(["REQ", "REP", "RTU", "DREQ", "MRA", "SIDR_REP"]), src, dst, {}, **kw)
        elif x < 0.9:
            f = build_roce(src, dst, {"opcode": r.choice([4, 0x0a, 0x64, 0x81, 0x11]), "dqpn": r.choice([1, 5, 0xABCDEF])},
                           r.randbytes(r.choice([0, 16, 64, 256, 264])), **kw)
        elif x < 0.95:  # headers not followed: QinQ, IPv6 extension headers (UNSUPPORTED)
            f = build_roce(src, dst, {"opcode": 4, "dqpn": 5}, bytes(16), **kw)
            if v6:
                nh = (18 if kw["vlan"] else 14) + 6  # the IPv6 next header
                f = f[:nh] + bytes([r.choice([0, 43, 44, 60, 6])]) + f[nh + 1:]
            else:
                f = f[:12] + bytes.fromhex(r.choice(["88a8", "8100"])) + f[12:] if kw["vlan"] else \
                    f[:12] + bytes.fromhex("88a80009") + f[12:]
        else:
            f = r.randbytes(r.randrange(0, 200))
        f = bytearray(f)
        if f and r.random() < 0.3:
            i = r.randrange(len(f))
            f[i] ^= 1 << r.randrange(8)
        if r.random() < 0.1:
            f = f[: r.randrange(len(f) + 1)]
        out.append(bytes(f))
    return out


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32))
def test_batch_equals_reference(seed):
    frames = corpus(seed)
    res = classify_batch(frames)
    assert len(res) == len(frames)
    for i, f in enumerate(frames):
        assert res.parsed(i) == classify(f), (i, f.hex())


def test_clean_frames_take_the_vector_path():
    frames = [build_roce("10.0.0.1", "10.0.0.2", {"opcode": 4, "dqpn": i}, bytes(64)) for i in range(50)]
    frames += [build_cm("RTU", "fd00::1", "fd00::2", {}, vlan=3) for _ in range(10)]
    res = classify_batch(frames)
    assert res.reference == {}
    assert list(res.kind[:50]) == [1] * 50 and list(res.attr_id[50:]) == [0x14] * 10
    assert classify_batch([]).kind.size == 0


def test_frame_lengths_types_and_header_bytes():
    """Long frames only (no gap between frames), empty frames, bytearray/memoryview
    frames; byte() reads the frames' bytes (0 past the end); parsed_list == parsed."""
    import numpy as np

    from ctcm.dataplane.batch import W

    long = [build_roce("10.0.0.1", "10.0.0.2", {"opcode": 4, "dqpn": i}, bytes(200), ecn=i % 4) for i in range(20)]
    short = corpus(7, 200) + [b"", b"\x08"]
    for frames in (long, short + long, [bytearray(f) for f in short], [memoryview(f) for f in long + short]):
        res = classify_batch(frames)
        assert [res.parsed(i) for i in range(len(frames))] == [classify(bytes(f)) for f in frames]
        assert res.parsed_list(range(len(frames))) == [res.parsed(i) for i in range(len(frames))]
        idx = np.arange(len(frames))
        for off in (0, 1, 15, 60, 143):
            want = [f[off] if off < len(f) else 0 for f in frames]
            assert res.byte(idx, off).tolist() == want
        offs = np.array([i % W for i in range(len(frames))])
        assert res.byte(idx, offs).tolist() == [f[o] if o < len(f) else 0 for f, o in zip(frames, offs.tolist())]
        assert res.length.tolist() == [len(f) for f in frames]


def test_scratch_buffer_gives_the_same_results():
    import numpy as np

    from ctcm.dataplane.batch import Scratch

    scratch = Scratch()
    for seed, n in ((1, 50), (2, 700), (3, 20), (4, 1000), (5, 1)):
        frames = corpus(seed, n)
        if seed == 4:
            frames = [f + bytes(300) for f in frames]  # no gap, bigger than before
        res = classify_batch(frames, scratch)
        plain = classify_batch(frames)
        assert [res.parsed(i) for i in range(n)] == [classify(f) for f in frames]
        idx = np.arange(n)
        for off in (0, 14, 23, 100, 143):
            assert res.byte(idx, off).tolist() == plain.byte(idx, off).tolist() == \
                [f[off] if off < len(f) else 0 for f in frames]
