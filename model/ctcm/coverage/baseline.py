"""The committed coverage baseline and the list of unreachable rows.

* ``vectors/coverage/baseline.json``: the rows the committed vectors hit
  (``ctcm coverage vectors/*.yaml --write-baseline``); a test fails when the
  committed suite hits fewer (:func:`lost_rows`), naming them.
* ``vectors/coverage/unreachable.yaml``: rows no vector can hit, each with
  its reason (also in docs/coverage.md); a test fails when one is hit, is no
  row any more, or when a missed row is not listed (:func:`unexplained`).
"""

from __future__ import annotations

import json
import os

import yaml

from ctcm.coverage.model import Coverage, cover_groups
from ctcm.oracle.compare import OracleError

__all__ = ["DEFAULT_DIR", "baseline_of", "load_baseline", "baseline_json", "lost_rows", "load_unreachable",
           "unexplained", "lost_message"]

#: vectors/coverage/ of the source tree
DEFAULT_DIR = os.path.normpath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, os.pardir, "vectors",
                                            "coverage"))


def baseline_of(cov: Coverage) -> dict[str, list[str]]:
    """Group -> the rows hit, in cover-group order."""
    return {g: [r for r in rows if r in cov.hits[g]] for g, rows in cov.groups.items()}


def baseline_json(cov: Coverage) -> str:
    return json.dumps({"format": "ctcm-coverage-baseline/1", "vectors": sorted(cov.vectors),
                       "hit": baseline_of(cov)}, indent=1) + "\n"


def _read(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise OracleError(f"{path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise OracleError(f"{path}: not a text file ({what})") from None


def load_baseline(path: str) -> dict[str, list[str]]:
    """Group -> rows of a baseline file (one-line OracleError when unreadable)."""
    try:
        doc = json.loads(_read(path, "a coverage baseline"))
    except json.JSONDecodeError as e:
        raise OracleError(f"{path}:{e.lineno}: not JSON: {e.msg}") from None
    hit = doc.get("hit") if isinstance(doc, dict) else None
    if doc.get("format") != "ctcm-coverage-baseline/1" or not isinstance(hit, dict) or not all(
            isinstance(v, list) for v in hit.values()):
        raise OracleError(f"{path}: not a ctcm coverage baseline (format ctcm-coverage-baseline/1, hit: {{group: [rows]}})")
    return hit


def lost_rows(baseline: dict[str, list[str]], cov: Coverage) -> list[tuple[str, str]]:
    """(group, row) of every baseline row ``cov`` does not hit."""
    return [(g, r) for g, rows in baseline.items() for r in rows if r not in cov.hits.get(g, {})]


def lost_message(lost: list[tuple[str, str]], limit: int = 20) -> str:
    """One line naming the rows lost (the first ``limit``)."""
    names = [f"{g}: {r}" for g, r in lost[:limit]]
    more = f" and {len(lost) - limit} more" if len(lost) > limit else ""
    return f"coverage below the baseline: {len(lost)} row(s) lost: " + "; ".join(names) + more


def load_unreachable(path: str) -> dict[tuple[str, str], str]:
    """(group, row) -> reason, from ``unreachable.yaml``; rows must exist."""
    try:
        doc = yaml.safe_load(_read(path, "the unreachable rows"))
    except yaml.YAMLError as e:
        raise OracleError(f"{path}: not YAML: {str(e).splitlines()[0]}") from None
    groups = cover_groups()
    out = {}
    for n, item in enumerate(doc or [], 1):
        if not isinstance(item, dict) or not {"group", "row", "reason"} <= set(item):
            raise OracleError(f"{path}: entry {n}: needs group, row and reason")
        g, r = item["group"], item["row"]
        if r not in groups.get(g, ()):
            raise OracleError(f"{path}: entry {n}: {g}: {r!r} is not a cover row")
        out[(g, r)] = " ".join(str(item["reason"]).split())
    return out


def unexplained(cov: Coverage, unreachable: dict[tuple[str, str], str]) -> tuple[list, list]:
    """(rows missed and not listed as unreachable, rows listed as unreachable yet hit)."""
    missed = [(g, r) for g in cov.groups for r in cov.missed(g) if (g, r) not in unreachable]
    hit = [k for k in unreachable if k[1] in cov.hits[k[0]]]
    return missed, hit
