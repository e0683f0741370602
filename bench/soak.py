"""Soak run (`make soak`, not in CI): 10^7 random and mutated packets through
the pipeline in each table mode; prints RSS and table sizes every 10^6
packets so that flat memory can be seen, and writes the same as a Markdown
table (``--out``, default SOAK.md) that BENCHMARKS.md links to. Exit status 1
if any packet is not accounted for in the counters.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import random
import sys
import time

from ctcm.dataplane.config import Config
from ctcm.dataplane.pipeline import Pipeline
from ctcm.stimulus.traffic import damage, protocol_traffic


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def soak(mode: str, packets: int, seed: int, rows: list) -> bool:
    r = random.Random(seed)
    # A pool of realistic traffic (with its own connection churn), replayed
    # round after round later in model time, with random damage: the same
    # identities come back after their TIMEWAIT, so state must stay bounded.
    pool = protocol_traffic(seed, 200_000, connections=4000, concurrency=400, malformed=0.01, non_roce=0.01)
    pipe = Pipeline(Config(mode=mode, timewait_us=1000))
    t0 = time.perf_counter()
    n = 0
    rnd = 0
    start = rss_mb()
    print(f"mode {mode}: start RSS {start:.1f} MiB", flush=True)
    rows.append((mode, 0, 0.0, start, 0, 0))
    while n < packets:
        rnd += 1
        base_t = rnd * 100_000_000
        for port, f, t in damage(pool, r.getrandbits(32), flip=0.01, truncate=0.005, junk=0.005):
            pipe.process(port, f, base_t + t)
            n += 1
            if n % 1_000_000 == 0:
                c = pipe.counters
                dt = time.perf_counter() - t0
                rows.append((mode, n, dt, rss_mb(), len(pipe.tracker), c["malformed"]))
                print(f"{n:>10,} packets  {dt:7.1f} s  RSS {rss_mb():7.1f} MiB  "
                      f"connections {len(pipe.tracker):>7,}  malformed {c['malformed']:,}  icrc_errors {c['icrc_errors']:,}",
                      flush=True)
            if n >= packets:
                break
    c = pipe.counters
    accounted = c["not_roce"] + c["roce"] + c["cm"] + c["malformed"] + c["unsupported"] + c["dropped_unknown_port"]
    ok = accounted == c["packets"] == n
    print(f"done: {n:,} packets, accounted {accounted:,}: {'OK' if ok else 'MISMATCH'}; RSS {rss_mb():.1f} MiB")
    rows.append((mode, "done", f"{n:,} packets, {accounted:,} accounted in the counters: {'OK' if ok else 'MISMATCH'}"))
    return ok


def write_md(path: str, rows: list, args) -> None:
    out = ["# Soak run", "",
           f"`make soak` (bench/soak.py) on {datetime.date.today().isoformat()}: {args.packets:,} packets per table mode "
           f"(a 200,000-packet random pool replayed later in model time, 2% of packets damaged: bit flips, "
           f"truncations, random bytes), {os.cpu_count()} cores, Python {platform.python_version()}.", "",
           "| mode | packets | seconds | RSS (MiB) | connections tracked | malformed so far |",
           "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r[1] == "done":
            out.append(f"| {r[0]} | {r[2]} | | | | |")
        else:
            out.append(f"| {r[0]} | {r[1]:,} | {r[2]:.1f} | {r[3]:.1f} | {r[4]:,} | {r[5]:,} |")
    out.append("")
    with open(path + ".tmp", "w") as f:
        f.write("\n".join(out))
    os.replace(path + ".tmp", path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--packets", type=int, default=10_000_000)
    ap.add_argument("--mode", choices=("ideal", "p4", "both"), default="both")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default="SOAK.md", help="Markdown result file ('' for none)")
    args = ap.parse_args(argv)
    rows: list = []
    ok = True
    for mode in (("ideal", "p4") if args.mode == "both" else (args.mode,)):
        ok &= soak(mode, args.packets, args.seed, rows)
    if args.out:
        write_md(args.out, rows, args)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
