"""P4 coverage on bmv2: which statements and branches of ``p4/*.p4`` ran.

Input: the bmv2 JSON of a build (``build/p4/<geometry>/ctcm.json``: every
action primitive and every condition carries ``source_info``: file, line,
source fragment) and the logs ``simple_switch --log-level trace`` wrote
while that build ran (``--log-file``; bmv2 rotates big logs into
``NAME.1.txt``, ``NAME.2.txt``: pass them all). The log names, per packet,
each primitive run (``file(line) Primitive ...``), each condition with its
value (``file(line) Condition "..." (node_N) is true``), each table applied
with its lookup key and action, parser states entered and counter updates.

:func:`read_log` turns logs into :class:`LogHits`; :func:`p4_coverage`
joins them with the JSON's universe (:func:`universe`) per P4 file:
statements (action primitives, by source line) and branches (each condition
true and false, by source line and fragment) hit and not hit, plus parser
states, tables and actions. Builds of several geometries add up by source
line. Nothing here runs bmv2: any log of a run does (the PTF harness with
``CTCM_PTF_SWITCH_LOG=trace``, a file-mode replay).
"""

from __future__ import annotations

import glob
import json
import os
import re
from dataclasses import dataclass, field

from ctcm.oracle.compare import OracleError

__all__ = ["Universe", "LogHits", "P4Coverage", "universe", "read_log", "p4_coverage", "p4_file", "logs_in",
           "TRANSITIONS_TABLE", "COUNTERS"]

TRANSITIONS_TABLE = "CtcmIngress.tracker.next_state.transitions"
COUNTERS = "ctcm_counters"

_PRIM = re.compile(r"\] (\S+)\((\d+)\) Primitive ")
_COND = re.compile(r"\] (\S+)\((\d+)\) Condition \".*\" \((\w+)\) is (true|false)\s*$")
_APPLY = re.compile(r"\] Applying table '([^']+)'")
_LOOKUP = re.compile(r"\] Table '([^']+)': (hit|miss)")
_ACTION = re.compile(r"\] Action entry is (\S+) - ")
_STATE = re.compile(r"\] Parser '[^']+' entering state '([^']+)'")
_COUNTER = re.compile(r"\] Updated counter '([^']+)' at index (\d+)")
_PACKET = re.compile(r"\] \[(\d+)\.0\] \[cxt \d+\] Processing packet received on port")
_KEYFIELD = re.compile(r"^\* (\w+)\s*: ([0-9a-fA-F]+)\s*$")


def p4_file(path: str) -> str:
    """A source path as the report names it: relative to its ``p4`` directory
    (``ctcm.p4``, ``include/tracker.p4``), whatever tree it was compiled in."""
    parts = path.replace("\\", "/").split("/")
    if "p4" in parts[:-1]:
        i = len(parts) - 1 - parts[::-1].index("p4")
        return "/".join(parts[i + 1 :])
    return parts[-1]


@dataclass
class Universe:
    """What one build can run: statements {(file, line): fragment}, branches
    {(file, line, fragment)}, condition node -> branch, tables, actions, parser states."""

    statements: dict = field(default_factory=dict)
    branches: set = field(default_factory=set)
    nodes: dict = field(default_factory=dict)
    tables: set = field(default_factory=set)
    actions: set = field(default_factory=set)
    states: set = field(default_factory=set)


def universe(json_path: str) -> Universe:
    """The statements, branches, tables, actions and parser states of a bmv2 JSON."""
    try:
        with open(json_path, encoding="utf-8") as f:
            j = json.load(f)
    except OSError as e:
        raise OracleError(f"{json_path}: {e.strerror or e}") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise OracleError(f"{json_path}: not a bmv2 JSON file") from None
    if not isinstance(j, dict) or "pipelines" not in j or "actions" not in j:
        raise OracleError(f"{json_path}: not a bmv2 JSON file (no pipelines, actions)")
    u = Universe()
    for a in j["actions"]:
        if "." in a["name"]:  # the program's actions (not the compiler's tbl_ helpers)
            u.actions.add(a["name"])
        for p in a.get("primitives", []):
            si = p.get("source_info")
            if si:
                u.statements.setdefault((p4_file(si["filename"]), si["line"]), si.get("source_fragment", ""))
    for pl in j["pipelines"]:
        for c in pl.get("conditionals", []):
            si = c.get("source_info")
            if si:
                b = (p4_file(si["filename"]), si["line"], si.get("source_fragment", ""))
                u.branches.add(b)
                u.nodes[c["name"]] = b
        for t in pl.get("tables", []):
            if not t["name"].startswith("tbl_"):
                u.tables.add(t["name"])
    for pr in j.get("parsers", []):
        for s in pr.get("parse_states", []):
            u.states.add(s["name"])
    return u


@dataclass
class LogHits:
    """What a bmv2 log shows ran: statements {(file, line)}, conditions
    {(node, value)}, tables applied, actions, parser states, counter indices
    updated (per counter array) and the keys looked up in the transitions table."""

    packets: int = 0
    statements: set = field(default_factory=set)
    conditions: set = field(default_factory=set)
    tables: set = field(default_factory=set)
    actions: set = field(default_factory=set)
    states: set = field(default_factory=set)
    counters: set = field(default_factory=set)
    transitions: set = field(default_factory=set)  # (direction, msg, state, hit)


def read_log(paths) -> LogHits:
    """Read simple_switch trace logs (in order: oldest rotation first)."""
    h = LogHits()
    table = None
    key = None
    for path in paths:
        try:
            f = open(path, encoding="utf-8", errors="replace")
        except OSError as e:
            raise OracleError(f"{path}: {e.strerror or e}") from None
        with f:
            for line in f:
                if key is not None:  # the lines of a "Looking up key:" block
                    m = _KEYFIELD.match(line)
                    if m:
                        key[m.group(1)] = int(m.group(2), 16)
                        continue
                    if not line.strip():
                        continue
                if "] " not in line:
                    continue
                m = _PRIM.search(line)
                if m:
                    h.statements.add((p4_file(m.group(1)), int(m.group(2))))
                    continue
                m = _COND.search(line)
                if m:
                    h.conditions.add((m.group(3), m.group(4) == "true"))
                    continue
                m = _COUNTER.search(line)
                if m:
                    h.counters.add((m.group(1), int(m.group(2))))
                    continue
                m = _APPLY.search(line)
                if m:
                    table = m.group(1)
                    h.tables.add(table)
                    key = None
                    continue
                if "Looking up key:" in line:
                    key = {}
                    continue
                m = _LOOKUP.search(line)
                if m:
                    if m.group(1) == TRANSITIONS_TABLE and key is not None:
                        h.transitions.add((key.get("direction"), key.get("msg"), key.get("state"), m.group(2) == "hit"))
                    key = None
                    continue
                m = _ACTION.search(line)
                if m:
                    h.actions.add(m.group(1))
                    continue
                m = _STATE.search(line)
                if m:
                    h.states.add(m.group(1))
                    continue
                if _PACKET.search(line):
                    h.packets += 1
    return h


def logs_in(directory: str) -> dict[str, list[str]]:
    """Geometry tag -> the switch logs of a PTF log directory
    (``switch-<tag>.txt`` and its rotations, oldest first)."""
    out: dict[str, list[tuple[int, str]]] = {}
    for p in glob.glob(os.path.join(directory, "switch-*.txt")):
        m = re.fullmatch(r"switch-(.+?)(?:\.(\d+))?\.txt", os.path.basename(p))
        if m:
            out.setdefault(m.group(1), []).append((-int(m.group(2) or 0), p))
    return {t: [p for _n, p in sorted(v)] for t, v in sorted(out.items())}


@dataclass
class P4Coverage:
    """Statements and branches of each P4 file, hit or not (over every build and log given)."""

    statements: dict = field(default_factory=dict)  # (file, line) -> fragment
    statements_hit: set = field(default_factory=set)
    branches: set = field(default_factory=set)      # (file, line, fragment)
    branches_hit: set = field(default_factory=set)  # (file, line, fragment, value)
    tables: set = field(default_factory=set)
    tables_hit: set = field(default_factory=set)
    actions: set = field(default_factory=set)
    actions_hit: set = field(default_factory=set)
    states: set = field(default_factory=set)
    states_hit: set = field(default_factory=set)
    packets: int = 0
    builds: list = field(default_factory=list)
    #: per build: condition node -> (file, line, fragment), and the (node, value) hit: each
    #: macro expansion (one per way of FOR_WAYS) apart, where branches count a source line once
    nodes: dict = field(default_factory=dict)
    nodes_hit: dict = field(default_factory=dict)

    def add(self, u: Universe, h: LogHits, build: str = "") -> None:
        self.nodes[build] = u.nodes
        self.nodes_hit.setdefault(build, set()).update(c for c in h.conditions if c[0] in u.nodes)
        self.statements.update(u.statements)
        self.statements_hit |= h.statements & set(u.statements)
        self.branches |= u.branches
        self.branches_hit |= {(*u.nodes[n], v) for n, v in h.conditions if n in u.nodes}
        self.tables |= u.tables
        self.tables_hit |= h.tables & u.tables
        self.actions |= u.actions
        self.actions_hit |= h.actions & u.actions
        self.states |= u.states
        self.states_hit |= h.states & u.states
        self.packets += h.packets
        if build and build not in self.builds:
            self.builds.append(build)

    def nodes_not_hit(self, build: str) -> list[dict]:
        """(file, line, condition, value, node) of the condition nodes of one build not hit."""
        hit = self.nodes_hit.get(build, set())
        return [{"file": f, "line": ln, "condition": frag, "value": v, "node": n}
                for n, (f, ln, frag) in sorted(self.nodes[build].items(), key=lambda kv: (kv[1], kv[0]))
                for v in (True, False) if (n, v) not in hit]

    def files(self) -> list[str]:
        return sorted({k[0] for k in self.statements} | {b[0] for b in self.branches})

    def per_file(self, f: str) -> dict:
        """Statement and branch counts of one file, with what was not hit."""
        st = sorted(k for k in self.statements if k[0] == f)
        br = sorted((b, v) for b in self.branches if b[0] == f for v in (True, False))
        return {
            "statements": len(st), "statements_hit": sum(k in self.statements_hit for k in st),
            "branches": len(br), "branches_hit": sum((*b, v) in self.branches_hit for b, v in br),
            "statements_not_hit": [{"line": k[1], "source": self.statements[k]} for k in st
                                   if k not in self.statements_hit],
            "branches_not_hit": [{"line": b[1], "condition": b[2], "value": v} for b, v in br
                                 if (*b, v) not in self.branches_hit],
        }


def p4_coverage(runs) -> P4Coverage:
    """``runs``: (bmv2 JSON path, [log paths]) pairs; their coverage added up."""
    cov = P4Coverage()
    cache = {}
    for json_path, logs in runs:
        if json_path not in cache:
            cache[json_path] = universe(json_path)
        cov.add(cache[json_path], read_log(logs), json_path)
    return cov
