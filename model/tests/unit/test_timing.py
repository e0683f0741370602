"""The model decides whether a vector's outcome depends on time (ctcm.vectors.timing).

Expected verdicts come from the scenarios' own words (vectors/scenarios/*.yaml):
timewait's late DREQ (stimulus 8) is "TIMEWAIT over"; cnp-pacing's CE packets are
paced 200 ms apart; active-open never lets a timer run out."""

from __future__ import annotations

import os

import pytest

from ctcm.dataplane.config import Config
from ctcm.oracle.parts import iter_stimuli, vector_config, vector_final, vector_head
from ctcm.oracle.compare import OracleError
from ctcm.vectors.timing import max_span_us, time_dependence

VECTORS = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, os.pardir, "vectors")


def verdict(name):
    path = os.path.join(VECTORS, f"{name}.yaml")
    return time_dependence(vector_config(path), iter_stimuli(path))


def test_timewait_depends_on_time_at_its_late_dreq():
    v = verdict("timewait")
    assert not v.independent
    sid, t, port, _frame = v.first
    assert (sid, t, port) == (8, 610000, 2)  # the scenario's "TIMEWAIT over" DREQ from the peer
    line = v.line("timewait")
    assert "\n" not in line and "stimulus 8" in line and "make ptf TARGET=bmv2 TESTS=Vector_timewait" in line


def test_cnp_pacing_depends_on_time():
    v = verdict("cnp-pacing")
    assert not v.independent and v.what == "outputs"  # a CNP made or suppressed


def test_active_open_is_time_independent():
    v = verdict("active-open")
    assert v.independent and v.stimuli == 11
    assert v.max_span == 1_000_000  # its TIMEWAIT (the config it records)


def test_timewait_with_a_timewait_longer_than_the_vector_is_time_independent():
    # The same stimuli (610 ms of vector time) with TIMEWAIT 1000 s: nothing can expire.
    path = os.path.join(VECTORS, "timewait.yaml")
    v = time_dependence(vector_config(path).replace(timewait_us=10**9), iter_stimuli(path))
    assert v.independent and v.max_span == 10**9


def test_max_span_is_the_shortest_timer_that_runs():
    assert max_span_us(Config(timewait_us=300, cnp_interval_us=0)) == 300
    assert max_span_us(Config(timewait_us=300, cnp_interval_us=200)) == 200
    assert max_span_us(Config(timewait_us=0, cnp_interval_us=0)) is None


def test_vector_parts(tmp_path):
    path = os.path.join(VECTORS, "active-open.yaml")
    assert vector_head(path)["name"] == "active-open"
    final = vector_final(path)
    assert final["counters"]["packets"] == 11 and len(final["connections"]) == 1
    stim = list(iter_stimuli(path))
    assert [(p, t) for p, t, _f in stim][:3] == [(1, 0), (2, 10), (1, 20)]
    bad = tmp_path / "x.yaml"
    bad.write_text("hello: 1\n")
    with pytest.raises(OracleError, match="not a ctcm vector"):
        vector_head(str(bad))
    with pytest.raises(OracleError, match="stimulus.pcapng is missing"):
        list(iter_stimuli(str(bad)))
