"""The kit on a user's own DUT (rtl/example/bump.v, no CNPs): vectors that
expect no CNP pass, a CE vector fails with the CNPs missing. Part of make rtl."""

from __future__ import annotations

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, os.pardir, "tb"))
from simrun import REPO, build, run  # noqa: E402

SIM = os.environ.get("CTCM_RTL_SIMS", "icarus").split(",")[0]


def _run(vector: str) -> None:
    runner = build(SIM, "bump", [os.path.join(HERE, "bump.v")], "w64")
    run(runner, SIM, "bump", "w64", "bump_tb", HERE, vector, {"CTCM_VECTOR": os.path.join(REPO, "vectors", vector + ".yaml")})


@pytest.mark.parametrize("vector", ["reject", "teardown", "timewait"])
def test_no_cnp_vectors_pass(vector):
    _run(vector)


def test_ce_vector_fails_with_missing_cnps():
    with pytest.raises(pytest.fail.Exception, match=r"MISSING   port 1 stimulus \d+ output 2: .* BTH CNP"):
        _run("ce-data")
