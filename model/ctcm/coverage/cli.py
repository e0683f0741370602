"""``ctcm coverage VECTOR...``: functional coverage of vectors, P4 coverage on bmv2, their agreement.

Exit status: 0; 1 when ``--baseline`` rows are lost or bmv2 does not show
what the model says a vector exercised; 2 for bad input (one line).
"""

from __future__ import annotations

import json
import os
import re

from ctcm.coverage.agree import agreement
from ctcm.coverage.baseline import (DEFAULT_DIR, baseline_json, load_baseline, load_unreachable, lost_message,
                                    lost_rows)
from ctcm.coverage.model import coverage_of
from ctcm.coverage.p4 import P4Coverage, logs_in, read_log
from ctcm.coverage.p4 import universe as universe_of
from ctcm.coverage.report import html, report, text
from ctcm.errors import UsageError
from ctcm.io.pcapio import atomic_write

__all__ = ["add_cli_command", "cmd_coverage"]


def _p4_runs(dirs: list[str], builds: str) -> list[tuple[str, str, list[str]]]:
    """(directory name, bmv2 JSON, logs) per geometry of each PTF log directory."""
    runs = []
    for d in dirs:
        if not os.path.isdir(d):
            raise UsageError(f"--p4-logs {d}: not a directory")
        found = logs_in(d)
        if not found:
            raise UsageError(f"--p4-logs {d}: no switch-<geometry>.txt log in it (run the PTF harness with "
                             "CTCM_PTF_SWITCH_LOG=trace)")
        for tag, logs in found.items():
            j = os.path.join(builds, tag, "ctcm.json")
            if not os.path.isfile(j):
                raise UsageError(f"--p4-logs {d}: no bmv2 build {j} for its geometry {tag} (make p4)")
            runs.append((os.path.basename(os.path.normpath(d)), j, logs))
    return runs


def _log_name(path: str, vectors) -> str:
    """The vector a log replays: its name without .txt/.log (``NAME.txt``), or what follows
    its last dot (``replay.log.NAME``: ctcm replay's --log-file for several vectors)."""
    stem = re.sub(r"\.(txt|log)$", "", os.path.basename(path))
    return stem if stem in vectors else stem.rsplit(".", 1)[-1]


def _p4(runs, vectors) -> tuple:
    """P4 coverage of all the runs, of the vector replays and of the rest, and the agreement per vector replay."""
    read = [(name, universe_of(j), j, read_log(logs)) for name, j, logs in runs]
    for (_n, _j, logs), (_name, _u, _jj, h) in zip(runs, read):
        if h.packets and not h.statements:
            raise UsageError(f"{logs[-1]}: packets but no primitive lines: not a trace-level log "
                             "(simple_switch --log-level trace)")
    total, replays, others = P4Coverage(), P4Coverage(), P4Coverage()
    for name, u, j, h in read:
        total.add(u, h, j)
        (replays if name in vectors else others).add(u, h, j)
    agree = [agreement(name, vectors[name], h) for name, _u, _j, h in read if name in vectors]
    return total, {"vector replays": replays, "other PTF tests": others}, agree


def cmd_coverage(args) -> int:
    if not args.vectors:
        raise UsageError("give at least one vector file (vectors/*.yaml)")
    cov, each = coverage_of(args.vectors)
    unr_path = args.unreachable or os.path.join(DEFAULT_DIR, "unreachable.yaml")
    unreachable = load_unreachable(unr_path) if (args.unreachable or os.path.isfile(unr_path)) else {}
    lost = lost_rows(load_baseline(args.baseline), cov) if args.baseline else None
    p4 = parts = agree = None
    if args.p4_logs or args.p4_log:
        runs = _p4_runs(args.p4_logs or [], args.p4_builds)
        for j, log in args.p4_log or []:
            for f in (j, log):
                if not os.path.isfile(f):
                    raise UsageError(f"--p4-log {j} {log}: no file {f}")
            runs.append((_log_name(log, each), j, [log]))
        p4, parts, agree = _p4(runs, each)
    doc = report(cov, each, unreachable, p4, agree, lost, parts)
    txt = text(doc)
    outs = []
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        outs = [(os.path.join(args.out, "coverage." + k), k) for k in ("txt", "json", "html")]
    outs += [(p, k) for p, k in ((args.json, "json"), (args.html, "html")) if p]
    for path, kind in outs:
        data = txt if kind == "txt" else json.dumps(doc, indent=1) + "\n" if kind == "json" else html(doc)
        atomic_write(path, data.encode())
    if args.write_baseline:
        atomic_write(args.write_baseline, baseline_json(cov).encode())
    if not args.quiet:
        print(txt, end="")
    status = 0
    if lost:
        print(f"ctcm coverage: {lost_message(lost)}")
        status = 1
    for a in agree or []:
        if a["transitions_not_on_bmv2"] or a["counters_not_on_bmv2"]:
            print(f"ctcm coverage: {a['vector']}: the model hits what bmv2 did not show: "
                  + "; ".join(a["transitions_not_on_bmv2"] + a["counters_not_on_bmv2"]))
            status = 1
    return status


def add_cli_command(sub) -> None:
    c = sub.add_parser("coverage", help="functional coverage of vectors on the model (and P4 coverage from bmv2 logs)")
    c.add_argument("vectors", nargs="*", metavar="VECTOR", help="vector files (vectors/NAME.yaml)")
    c.add_argument("--json", metavar="FILE", help="write the report as JSON")
    c.add_argument("--html", metavar="FILE", help="write the report as a small HTML page")
    c.add_argument("--out", metavar="DIR", help="write coverage.txt, coverage.json and coverage.html into DIR")
    c.add_argument("--baseline", metavar="FILE", help="exit 1 naming the rows of this baseline the vectors no longer hit")
    c.add_argument("--write-baseline", metavar="FILE", help="write the rows hit as a baseline file")
    c.add_argument("--unreachable", metavar="FILE",
                   help="rows no vector can hit, with reasons (default vectors/coverage/unreachable.yaml)")
    c.add_argument("--p4-logs", nargs="+", metavar="DIR",
                   help="PTF bmv2 log directories (switch-<geometry>.txt, trace level); a directory named "
                        "after a vector is its replay: the model and bmv2 must agree on it")
    c.add_argument("--p4-log", nargs=2, action="append", metavar=("JSON", "LOG"),
                   help="one bmv2 JSON and a trace log of it (e.g. a vector replayed in file mode); a log "
                        "named after a vector (NAME.txt, NAME.log, LOG.NAME) is its replay: the model and bmv2 must agree")
    c.add_argument("--p4-builds", metavar="DIR", default=os.path.join("build", "p4"),
                   help="bmv2 builds, DIR/<geometry>/ctcm.json (default build/p4)")
    c.add_argument("-q", "--quiet", action="store_true", help="no report on stdout")
    c.set_defaults(func=cmd_coverage)
