"""Time and peak memory of `ctcm random` and `ctcm compare` at scale.

    python bench/scale.py --packets 1000000 --reps 3 [--packets 10000000 --reps 1] [--out bench/scale.json]

Each run is a new `ctcm` process (the command a user runs, all five files
written to a temporary directory, then `ctcm compare` of the vector with its
own expected pcapng). Peak memory is measured two ways:

* ``maxrss``: ``ru_maxrss`` of the child from ``os.wait4`` (what
  ``/usr/bin/time -v`` prints: the largest single process among the command
  and the processes it waited for);
* ``tree``: the largest sum of VmRSS over the command and all its
  descendants, sampled every 0.2 s from /proc (counts pages the forked
  writer shares with its parent twice, so it is an upper bound).

Results are appended to a JSON file (one object per run); `--markdown`
prints the table BENCHMARKS.md shows (medians over the runs of each size).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

CTCM = os.path.join(os.path.dirname(sys.executable), "ctcm")


def _children(pid: int) -> list[int]:
    out = []
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            out = [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run(cmd: list[str]) -> dict:
    """Wall time, ru_maxrss (kB) and the sampled peak RSS of the process tree (kB)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            todo, total = [p.pid], 0
            while todo:
                pid = todo.pop()
                total += _rss_kb(pid)
                todo += _children(pid)
            peak[0] = max(peak[0], total)
            done.wait(0.2)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    done.set()
    th.join()
    p.returncode = os.waitstatus_to_exitcode(status)
    return {"cmd": " ".join(os.path.basename(c) if i == 0 else c for i, c in enumerate(cmd)), "exit": p.returncode,
            "wall_s": round(wall, 2), "maxrss_kb": ru.ru_maxrss, "tree_kb": peak[0]}


def one(n: int, workdir: str | None, conns: int | None = None, conc: int | None = None) -> list[dict]:
    with tempfile.TemporaryDirectory(dir=workdir) as d:
        conns, conc = conns or max(100, n // 100), conc or max(20, n // 1000)
        gen = run([CTCM, "random", "--packets", str(n), "--connections", str(conns), "--concurrency", str(conc),
                   "--out", d, "--quiet"])
        size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
        gen.update(kind="random", packets=n, bytes=size, connections=conns, concurrency=conc)
        cmp = run([CTCM, "compare", os.path.join(d, "stress.yaml"), "--observed",
                   os.path.join(d, "stress.expected.pcapng")])
        cmp.update(kind="compare", packets=n, connections=conns, concurrency=conc)
        return [gen, cmp]


def markdown(results: list[dict]) -> str:
    rows = ["| command | packets | connections (at once) | runs | wall time (s), median (min..max) "
            "| peak RSS, largest process (MB) | peak RSS, process tree (MB) | files |",
            "|---|---:|---:|---:|---|---:|---:|---:|"]

    def key(r):
        n = r["packets"]
        return r["kind"], n, r.get("connections", max(100, n // 100)), r.get("concurrency", max(20, n // 1000))

    keys = sorted({key(r) for r in results}, key=lambda k: (k[2], k[1], k[0] != "random"))
    for kind, n, conns, conc in keys:
        rs = [r for r in results if key(r) == (kind, n, conns, conc) and r["exit"] == 0]
        if not rs:
            continue
        walls = [r["wall_s"] for r in rs]
        size = f"{rs[0]['bytes'] / 1e9:.2f} GB" if "bytes" in rs[0] else ""
        rows.append(f"| `ctcm {kind}` | {n:,} | {conns:,} ({conc:,}) | {len(rs)} | {statistics.median(walls):.1f} ({min(walls):.1f}.."
                    f"{max(walls):.1f}) | {max(r['maxrss_kb'] for r in rs) / 1024:.0f} | "
                    f"{max(r['tree_kb'] for r in rs) / 1024:.0f} | {size} |")
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, action="append", default=[])
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--connections", type=int, help="connections over the run (default packets / 100)")
    ap.add_argument("--concurrency", type=int, help="connections alive at once (default packets / 1000)")
    ap.add_argument("--out", default="bench/scale.json")
    ap.add_argument("--workdir", default=None, help="where the temporary vectors go (default: $TMPDIR)")
    ap.add_argument("--markdown", action="store_true", help="print the table of --out and exit")
    a = ap.parse_args()
    results = []
    if os.path.exists(a.out):
        with open(a.out) as f:
            results = json.load(f)
    if a.markdown:
        print(markdown(results))
        return 0
    for n in a.packets:
        for _ in range(a.reps):
            for r in one(n, a.workdir, a.connections, a.concurrency):
                print(json.dumps(r), flush=True)
                results.append(r)
                with open(a.out, "w") as f:
                    json.dump(results, f, indent=1)
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
