"""``ctcm replay VECTOR... --target bmv2``: offline replays, their report and a JUnit file."""

from __future__ import annotations

import os
import sys
import time
from xml.etree import ElementTree as ET

from ctcm.errors import UsageError
from ctcm.io.pcapio import atomic_write
from ctcm.oracle.compare import OracleError
from ctcm.targets.bmv2 import TargetError
from ctcm.targets.replay import TimeDependent, replay_bmv2
from ctcm.vectors.cli import _progress

__all__ = ["add_cli_command", "junit_xml"]


def junit_xml(suite: str, cases: list[tuple]) -> bytes:
    """A JUnit XML report: ``cases`` are (name, seconds, outcome, text) with
    outcome "pass", "failure", "error" or "skipped"."""
    counts = {k: sum(1 for c in cases if c[2] == k) for k in ("failure", "error", "skipped")}
    root = ET.Element("testsuites")
    ts = ET.SubElement(root, "testsuite", name=suite, tests=str(len(cases)), failures=str(counts["failure"]),
                       errors=str(counts["error"]), skipped=str(counts["skipped"]),
                       time=f"{sum(c[1] for c in cases):.3f}")
    for name, seconds, outcome, text in cases:
        tc = ET.SubElement(ts, "testcase", classname=suite, name=name, time=f"{seconds:.3f}")
        if outcome != "pass":
            el = ET.SubElement(tc, outcome, message=text.splitlines()[0] if text else outcome)
            el.text = text
        else:
            ET.SubElement(tc, "system-out").text = text
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def cmd_replay(args) -> int:
    if args.target != "bmv2":
        raise UsageError(f"--target {args.target}: only bmv2 replays offline")
    quiet = args.quiet

    def progress(total, desc):
        return _progress(total, desc, quiet)

    cases, status = [], 0
    for path in args.vector:
        t0 = time.monotonic()
        name = os.path.basename(path)[:-5] if path.endswith(".yaml") else os.path.basename(path)
        try:
            log_file = args.log_file
            if log_file and len(args.vector) > 1:
                log_file = f"{log_file}.{name}"
            res = replay_bmv2(path, switch=args.switch, log_file=log_file, log_level=args.log_level,
                              progress=progress)
        except TimeDependent as e:
            if args.skip_time_dependent:
                print(f"skipped: {e}")
                cases.append((name, time.monotonic() - t0, "skipped", str(e)))
                continue
            print(f"ctcm replay: {e}", file=sys.stderr)
            cases.append((name, time.monotonic() - t0, "error", str(e)))
            status = max(status, 2)
            continue
        except (TargetError, OracleError) as e:
            print(f"ctcm replay: {e}", file=sys.stderr)
            cases.append((name, time.monotonic() - t0, "error", str(e)))
            status = max(status, 2)
            continue
        text = res.format()
        print(text)
        cases.append((res.name, time.monotonic() - t0, "pass" if res.ok else "failure", text))
        if not res.ok:
            status = max(status, 1)
    if args.junit:
        os.makedirs(os.path.dirname(os.path.abspath(args.junit)), exist_ok=True)
        atomic_write(args.junit, junit_xml("ctcm replay bmv2", cases))
    return status


def add_cli_command(sub) -> None:
    r = sub.add_parser("replay", help="replay vectors offline on bmv2 (pcap files, no root) and compare "
                                      "(exit 0 only when every one matches)")
    r.add_argument("vector", nargs="+", help="vector YAML files (NAME.yaml, NAME.stimulus.pcapng beside it)")
    r.add_argument("--target", default="bmv2", help="bmv2 (the only offline target)")
    r.add_argument("--switch", help="simple_switch binary (default: $CTCM_SIMPLE_SWITCH, else simple_switch_perf "
                                    "on PATH, else simple_switch; with --log-file simple_switch)")
    r.add_argument("--log-file", help="simple_switch's per-packet log of the replay (the logging build; slower; "
                                      "with several vectors F.NAME each)")
    r.add_argument("--log-level", default="trace", help="with --log-file: trace (what P4 coverage reads), debug, info... (default trace)")
    r.add_argument("--junit", help="write a JUnit XML report (one test case per vector)")
    r.add_argument("--skip-time-dependent", action="store_true",
                   help="report a vector whose outcome depends on time as skipped instead of an error")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.set_defaults(func=cmd_replay)
