"""Functional coverage (ctcm coverage): the committed suite against its baseline,
the unreachable rows, removing a scenario, and the rows checked against the
events the committed vector files record."""

import glob
import os
import re
import shutil

import pytest
import yaml

from ctcm.cli import main
from ctcm.coverage.baseline import DEFAULT_DIR, load_baseline, load_unreachable, lost_message, lost_rows, unexplained
from ctcm.coverage.model import cover_groups, coverage_of, observe_vector, row_cell
from ctcm.spec import TRANSITIONS

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "..")
VECTORS = sorted(glob.glob(os.path.join(ROOT, "vectors", "*.yaml")))
BASELINE = os.path.join(DEFAULT_DIR, "baseline.json")
UNREACHABLE = os.path.join(DEFAULT_DIR, "unreachable.yaml")


@pytest.fixture(scope="module")
def suite():
    return coverage_of(VECTORS)


def test_committed_suite_keeps_its_baseline(suite):
    """How `make test` fails when the committed vectors cover less: the rows lost, named."""
    cov, _each = suite
    lost = lost_rows(load_baseline(BASELINE), cov)
    assert not lost, lost_message(lost)


def test_every_missed_row_is_listed_unreachable_and_none_listed_is_hit(suite):
    cov, _each = suite
    missed, hit = unexplained(cov, load_unreachable(UNREACHABLE))
    assert not missed, f"rows the committed vectors miss, not in {UNREACHABLE}: {missed}"
    assert not hit, f"rows listed unreachable that the committed vectors hit: {hit}"


def test_unreachable_rows_in_the_docs_match_the_data():
    doc = open(os.path.join(ROOT, "docs", "coverage.md"), encoding="utf-8").read()
    in_docs = set(re.findall(r"^\| (\w[\w ]*?) \| `([^`]+)` \|", doc, re.M))
    assert in_docs == set(load_unreachable(UNREACHABLE)), "docs/coverage.md 'Unreachable rows' vs vectors/coverage/unreachable.yaml"


def test_removing_a_scenario_loses_named_rows(tmp_path, capsys):
    """Without rare-events the suite loses the rows only it hits, and
    `ctcm coverage --baseline` (what make test's check does) exits 1 naming them."""
    for p in VECTORS:
        if os.path.basename(p) != "rare-events.yaml":
            shutil.copy(p, tmp_path)
    rc = main(["coverage", *sorted(glob.glob(str(tmp_path / "*.yaml"))), "--baseline", BASELINE, "-q"])
    out = capsys.readouterr().out
    assert rc == 1
    # what the scenario was written to exercise (vectors/scenarios/rare-events.yaml)
    for row in ("counter: tracker.cm_SIDR_REQ", "counter: tracker.cm_SIDR_REP", "counter: tracker.cm_LAP",
                "counter: tracker.cm_APR", "counter: tracker.cm_other", "counter: tracker.flow_conflicts",
                "counter: tracker.flow_zero_qpn", "counter: unsupported", "header: QinQ",
                "header: IPv6 extension header", "header: IPv4 options", "table: flow conflict"):
        assert row in out, (row, out)
    cov, _ = coverage_of(sorted(glob.glob(str(tmp_path / "*.yaml"))))
    lost = lost_rows(load_baseline(BASELINE), cov)
    assert f"{len(lost)} row(s) lost" in out


def test_transition_rows_are_the_spec_cells():
    rows = cover_groups()["transition"]
    assert len(rows) == sum(len(froms) for _d, _m, froms, _to, _w in TRANSITIONS)
    assert {row_cell(r)[:3] for r in rows} == {(d, m, s) for d, m, froms, _t, _w in TRANSITIONS for s in froms}


_EVENT = re.compile(r"^(->|<-) (\S+)\s+(new|transition|retransmission) (?:(\w+) -> (\w+)|\((\w+)\))")


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: os.path.basename(p)[:-5])
def test_transition_rows_hit_are_the_events_the_vector_records(path):
    """The rows observed on the model are the (direction, message, state, result)
    of the events written in the committed vector file (its `events:` lines)."""
    with open(path, encoding="utf-8") as f:
        doc = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    recorded = set()
    for p in doc["packets"]:
        for e in p.get("events", []):
            m = _EVENT.match(e)
            if m:
                d = "host" if m.group(1) == "->" else "net"
                recorded.add((d, m.group(2), m.group(4) or m.group(6), m.group(3)))
    cov = observe_vector(path)
    observed = set()
    for r in cov.hits["transition"]:
        d, msg, s, res = row_cell(r)
        observed.add(("host" if d == 0 else "net", msg.label, s.name, res.label))
    assert observed == recorded


@pytest.mark.parametrize("argv, words", [
    (["coverage", "/nonexistent/v.yaml"], "No such file"),
    (["coverage", os.path.join(ROOT, "vectors", "scenarios", "active-open.yaml")], "not a ctcm vector"),
    (["coverage"], "at least one vector"),
    (["coverage", os.path.join(ROOT, "vectors", "active-open.yaml"), "--baseline", UNREACHABLE], "not JSON"),
    (["coverage", os.path.join(ROOT, "vectors", "active-open.yaml"), "--p4-logs", "/nonexistent"], "not a directory"),
    (["coverage", os.path.join(ROOT, "vectors", "active-open.yaml"), "--p4-log", BASELINE, "/nonexistent"], "no file"),
])
def test_bad_input_one_line(argv, words, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ctcm coverage: ") and words in err, err
