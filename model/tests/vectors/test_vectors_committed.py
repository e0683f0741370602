"""The committed golden vectors equal a fresh regeneration, byte for byte."""

import glob
import os

import pytest

from ctcm.vectors.cli import build_file

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "..")
SCENARIOS = sorted(glob.glob(os.path.join(ROOT, "vectors", "scenarios", "*.yaml")))


def test_suite_is_present():
    names = {os.path.basename(p)[:-5] for p in SCENARIOS}
    for required in ("active-open", "passive-open", "reject", "mra", "teardown", "retransmissions", "timewait",
                     "ce-data", "cnp-pacing", "bad-icrc", "malformed", "ipv6", "p4-collision", "p4-full-table",
                     "stress-small"):
        assert required in names


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: os.path.basename(p)[:-5])
def test_committed_vector_is_current(scenario, tmp_path):
    written = build_file(scenario, str(tmp_path), quiet=True)
    assert len(written) == 5
    for fresh in written:
        committed = os.path.join(ROOT, "vectors", os.path.basename(fresh))
        assert os.path.exists(committed), f"{committed} is missing: run `make vectors`"
        a = open(committed, "rb").read()
        b = open(fresh, "rb").read()
        if a != b:
            if fresh.endswith((".yaml", ".hex")):
                la, lb = a.decode().splitlines(), b.decode().splitlines()
                for i, (x, y) in enumerate(zip(la, lb), 1):
                    if x != y:
                        pytest.fail(f"{committed}:{i} differs from a fresh regeneration (run `make vectors`):\n"
                                    f"  committed: {x[:160]}\n  fresh:     {y[:160]}")
                pytest.fail(f"{committed}: {len(la)} lines, fresh regeneration has {len(lb)}")
            i = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            pytest.fail(f"{committed}: first difference at byte {i} (run `make vectors`)")


def test_regeneration_is_deterministic(tmp_path):
    s = os.path.join(ROOT, "vectors", "scenarios", "stress-small.yaml")
    a = build_file(s, str(tmp_path / "a"), quiet=True)
    b = build_file(s, str(tmp_path / "b"), quiet=True)
    for x, y in zip(a, b):
        assert open(x, "rb").read() == open(y, "rb").read()
