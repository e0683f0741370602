"""The vectorised classifier gives exactly the reference classifier's answers."""

import random

from hypothesis import given, settings, strategies as st

from ctcm.batch import classify_batch
from ctcm.packet import build_cm, build_roce, classify


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
