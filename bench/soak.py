"""Soak run (`make soak`, not in CI): 10^7 random and mutated packets through
the pipeline in both table modes; prints RSS and table sizes every 10^6
packets so that flat memory can be seen. Exit status 1 if any packet is not
accounted for in the counters.
"""

from __future__ import annotations

import argparse
import random
import sys
import time

from ctcm.pipeline import Pipeline, PipelineConfig
from ctcm.randgen import RandomParams, generate


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--packets", type=int, default=10_000_000)
    ap.add_argument("--mode", choices=("ideal", "p4"), default="ideal")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    r = random.Random(args.seed)
    # A pool of realistic traffic (with its own connection churn), replayed
    # round after round later in model time, with random damage: the same
    # identities come back after their TIMEWAIT, so state must stay bounded.
    pool = generate(RandomParams(seed=args.seed, packets=200_000, connections=4000, concurrency=400,
                                 malformed=0.01, non_roce=0.01))
    pipe = Pipeline(PipelineConfig(mode=args.mode, timewait_us=1000))
    t0 = time.perf_counter()
    n = 0
    rnd = 0
    print(f"mode {args.mode}: start RSS {rss_mb():.1f} MiB", flush=True)
    while n < args.packets:
        rnd += 1
        base_t = rnd * 100_000_000
        for s in pool:
            f = s.frame
            x = r.random()
            if x < 0.01:
                b = bytearray(f)
                b[r.randrange(len(b))] ^= 1 << r.randrange(8)
                f = bytes(b)
            elif x < 0.015:
                f = f[: r.randrange(len(f))]
            elif x < 0.02:
                f = r.randbytes(r.randrange(0, 400))
            pipe.process(s.port, f, base_t + s.t_us)
            n += 1
            if n % 1_000_000 == 0:
                c = pipe.counters
                print(f"{n:>10,} packets  {time.perf_counter() - t0:7.1f} s  RSS {rss_mb():7.1f} MiB  "
                      f"connections {len(pipe.tracker):>7,}  malformed {c['malformed']:,}  icrc_errors {c['icrc_errors']:,}",
                      flush=True)
            if n >= args.packets:
                break
    c = pipe.counters
    accounted = c["not_roce"] + c["roce"] + c["cm"] + c["malformed"] + c["dropped_unknown_port"]
    ok = accounted == c["packets"] == n
    print(f"done: {n:,} packets, accounted {accounted:,}: {'OK' if ok else 'MISMATCH'}; RSS {rss_mb():.1f} MiB")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
