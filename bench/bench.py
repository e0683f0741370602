"""ctcm benchmarks: `make bench` (writes BENCHMARKS.md).

A small harness: each measurement runs a warm-up, then REPS repetitions of a
fixed amount of work; we report the median rate and the spread (min..max).
Nothing here asserts on time: the numbers are reported, with the targets from
the benchmark issue, on the machine described in the header.
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import os
import platform
import random
import statistics
import sys
import time
import tracemalloc

from ctcm.dataplane import cnp as C
from ctcm.dataplane import storage
from ctcm.dataplane.packet import classify
from ctcm.dataplane.cmfields import cm_fields_batch
from ctcm.dataplane.pipeline import Pipeline
from ctcm.stimulus.scenario import Conn, Host, cm_frame, data_frame
from ctcm.spec import Geometry
from ctcm.dataplane.tracker import FROM_HOST, FROM_NET, Tracker


def measure(fn, work: int, reps: int, warmup: int = 1):
    """fn() does `work` units; returns (median rate, min rate, max rate)."""
    for _ in range(warmup):
        fn()
    rates = []
    for _ in range(reps):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        rates.append(work / dt)
    return statistics.median(rates), min(rates), max(rates)


def make_conns(n: int, seed: int = 1, v6_share: float = 0.0) -> list[Conn]:
    r = random.Random(seed)
    host4, host6 = ipaddress.ip_address("10.0.0.1"), ipaddress.ip_address("fd00::1")
    out = []
    for i in range(n):
        v6 = r.random() < v6_share
        hip = host6 if v6 else host4
        pip = ipaddress.ip_address(f"fd00::2:{i >> 16:x}:{i & 0xffff:x}") if v6 else \
            ipaddress.IPv4Address((11 << 24) + i + 2)
        c = Conn(f"c{i}", Host("h", hip, "02:00:00:00:00:01", "host"), Host("p", pip, "02:00:00:00:00:02", "net"),
                 "host" if i % 2 else "peer", {"host": 2 + i % 0xFFFFF0, "peer": 3 + (i * 7) % 0xFFFFF0},
                 {"host": 0x10000000 + i, "peer": 0x20000000 + i}, {"host": 0, "peer": 0},
                 0x0000000001060000 | 4791, None, i)
        c.data_psn = {"host": 0, "peer": 0}
        out.append(c)
    return out


def handshake(conn: Conn):
    """[(direction, frame)] that open a connection."""
    o = conn.opener
    a = "peer" if o == "host" else "host"
    d = {"host": FROM_HOST, "peer": FROM_NET}
    return [(d[o], cm_frame(conn, "REQ", o)), (d[a], cm_frame(conn, "REP", a)), (d[o], cm_frame(conn, "RTU", o))]


def teardown(conn: Conn):
    d = {"host": FROM_HOST, "peer": FROM_NET}
    return [(d["host"], cm_frame(conn, "DREQ", "host")), (d["peer"], cm_frame(conn, "DREP", "peer"))]


def big_geometry(n: int) -> Geometry:
    b = 1
    while b < n:
        b <<= 1
    return Geometry(active_buckets=b, active_ways=4, passive_buckets=b, passive_ways=4,
                    flow_buckets=b * 2, flow_ways=4)


_OPEN_CACHE: dict[int, tuple[list, list]] = {}


def snug_geometry(n: int) -> Geometry:
    """p4 tables at about 50% load for n connections (half opened by each side)."""
    b = 1
    while b * 4 < n:
        b <<= 1
    return Geometry(active_buckets=b, active_ways=4, passive_buckets=b, passive_ways=4,
                    flow_buckets=b * 2, flow_ways=4)


def filled_tracker(mode: str, n: int, geometry=None) -> tuple[Tracker, list[Conn]]:
    """A tracker with n established connections (the frames are built once per n)."""
    if n not in _OPEN_CACHE:
        _OPEN_CACHE.clear()
        conns = make_conns(n)
        _OPEN_CACHE[n] = (conns, [m for c in conns for m in handshake(c)])
    conns, msgs = _OPEN_CACHE[n]
    t = Tracker(mode=mode, **({"geometry": geometry or big_geometry(n)} if mode == "p4" else {}))
    for d, f in msgs:
        t.process(d, f)
    return t, conns


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="BENCHMARKS.md")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="smaller sizes (for a smoke run)")
    ap.add_argument("--vector-packets", type=int, default=1_000_000)
    args = ap.parse_args(argv)
    reps = args.reps
    big = 100_000 if args.quick else 1_000_000
    rows = []

    def row(name, value, unit, target, note=""):
        rows.append((name, value, unit, target, note))
        print(f"{name:58s} {value:>14} {unit:10s} target {target:>12}  {note}", flush=True)

    def fmt_rate(m):
        med, lo, hi = m
        return f"{med:,.0f}", f"{lo:,.0f}..{hi:,.0f}"

    # The vector generation runs first, in a process that holds nothing yet
    # (later measurements leave gigabytes of objects behind); its row goes in place 6.
    vector = vector_row(args)

    # 1. classifier on plain RoCE data
    conns = make_conns(1000)
    data = [data_frame(c, "host", i, i % 100 == 0) for i, c in enumerate(conns)] * 20
    def run_classify():
        for f in data:
            classify(f)
    med, spread = fmt_rate(measure(run_classify, len(data), reps))
    row("classifier, RoCE data, per packet: classify() (pkt/s)", med, "pkt/s", "2,000,000", f"spread {spread}")
    from ctcm.dataplane.batch import classify_batch
    med, spread = fmt_rate(measure(lambda: classify_batch(data), len(data), reps))
    row("classifier, RoCE data, numpy batch: classify_batch() (pkt/s)", med, "pkt/s", "2,000,000", f"spread {spread}")

    # 2. CM messages through the tracker (classify + track, full lifecycle)
    cm_conns = make_conns(20000, seed=2)
    msgs = [m for c in cm_conns for m in handshake(c) + teardown(c)]
    m_dirs, m_frames = [d for d, _f in msgs], [f for _d, f in msgs]

    def new_tracker(mode):
        return Tracker(mode=mode, **({"geometry": big_geometry(len(cm_conns))} if mode == "p4" else {}))

    def run_track(mode):
        def f():
            p = new_tracker(mode).process
            for d, fr in msgs:
                p(d, fr)
        return f

    def run_track_batch(mode):
        return lambda: new_tracker(mode).process_batch(m_dirs, m_frames)

    fields = cm_fields_batch(m_frames, m_dirs)
    ipb = fields.ip.tobytes()
    field_rows = list(zip([m_dirs[i] for i in fields.index.tolist()], fields.attr.tolist(),
                          [ipb[16 * j : 16 * j + 16] for j in range(len(fields.index))], fields.local_id.tolist(),
                          fields.remote_id.tolist(), fields.qpn.tolist(), fields.mraed.tolist()))

    def run_track_fields(mode):
        def f():
            tr = new_tracker(mode).track
            for d, a, ip, lo, re, q, mr in field_rows:
                tr(d, a, ip, lo, re, q, mr, 0)
        return f

    for mode in ("ideal", "p4"):
        med, spread = fmt_rate(measure(run_track(mode), len(msgs), reps))
        row(f"tracker, CM messages, {mode} mode, process() per frame (msg/s)", med, "msg/s", "300,000",
            f"spread {spread}; classify + fields + state machine")
        if mode == "p4" and storage.numba_available():
            med, spread = fmt_rate(measure(run_track_batch(mode), len(msgs), reps))
            row(f"tracker, CM messages, {mode} mode, process_batch(), compiled machine (msg/s)", med, "msg/s",
                "300,000", f"spread {spread}; numpy parse + fields, the machine of the batch compiled by numba (ctcm.dataplane.storage.compiled)")
        os.environ["CTCM_KERNEL"] = "0"
        try:
            med, spread = fmt_rate(measure(run_track_batch(mode), len(msgs), reps))
        finally:
            del os.environ["CTCM_KERNEL"]
        row(f"tracker, CM messages, {mode} mode, process_batch(), Python (msg/s)", med, "msg/s", "300,000",
            f"spread {spread}; numpy parse + fields, state machine per message in Python")
        med, spread = fmt_rate(measure(run_track_fields(mode), len(msgs), reps))
        row(f"tracker, state machine only, {mode} mode, track() on parsed fields (msg/s)", med, "msg/s", "-",
            f"spread {spread}; what is left once a parser has extracted the fields")

    # 3. query with 1e3 and 1e6 tracked connections
    for n in (1000, big):
        for mode in ("ideal", "p4"):
            t, cs = filled_tracker(mode, n)
            r = random.Random(3)
            keys = []
            for _ in range(100_000):
                c = cs[r.randrange(n)]
                keys.append((c.peer.ip.packed, c.qpn["peer"]))
            q = t.query
            def run_query():
                for ip, qpn in keys:
                    q(ip, qpn)
            med, spread = fmt_rate(measure(run_query, len(keys), reps))
            row(f"query, {n:,} connections, {mode} mode (lookups/s)", med, "lookups/s", "-", f"spread {spread}")
            del t, cs

    # 4. CNP generation
    gen = C.CnpGenerator(C.fill_cnp_template())
    addrs = [(ipaddress.IPv4Address(0x0B000000 + i).packed, ipaddress.IPv4Address(0x0A000001).packed, i) for i in range(10000)]
    def run_cnp():  # 100,000 CNPs a repetition (10,000 flows, 10 rounds)
        g = gen.generate
        for _ in range(10):
            for s, d, q in addrs:
                g(s, d, q)
    med, spread = fmt_rate(measure(run_cnp, 10 * len(addrs), reps))
    row("CNP generation, CnpGenerator (CNPs/s)", med, "CNPs/s", "1,000,000", f"spread {spread}")
    import numpy as np
    bg = C.CnpBatchGenerator(C.fill_cnp_template())
    srcs = np.frombuffer(b"".join(a[0] for a in addrs), np.uint8)
    dsts = np.frombuffer(b"".join(a[1] for a in addrs), np.uint8)
    qpns = np.array([a[2] for a in addrs], np.uint32)
    med, spread = fmt_rate(measure(lambda: bg.generate(srcs, dsts, qpns), len(addrs), reps))
    row("CNP generation, CnpBatchGenerator, numpy (CNPs/s)", med, "CNPs/s", "1,000,000", f"spread {spread}")
    t = C.fill_cnp_template(src_ip="10.0.0.2", dst_ip="10.0.0.1")
    def run_cnp_generic():
        for _s, _d, q in addrs:
            C.generate_cnp(t, q)
    med, spread = fmt_rate(measure(run_cnp_generic, len(addrs), reps))
    row("CNP generation, generate_cnp (CNPs/s)", med, "CNPs/s", "-", f"spread {spread}")

    # 5. pipeline on a mixed trace (95% data, 5% CM, 1% CE)
    trace = mixed_trace(20000)
    def run_pipe():
        p = Pipeline()
        for port, f in trace:
            p.process(port, f, 0)
    med, spread = fmt_rate(measure(run_pipe, len(trace), reps))
    pipe_rate = float(med.replace(",", ""))
    row("pipeline, mixed trace 95% data / 5% CM / 1% CE, per packet (pkt/s)", med, "pkt/s", "1,000,000", f"spread {spread}")
    items = [(port, f, 0) for port, f in trace]
    def run_pipe_batch():
        Pipeline().process_batch(items)
    med, spread = fmt_rate(measure(run_pipe_batch, len(trace), reps))
    row("pipeline, same trace, process_batch: list of per-packet results (pkt/s)", med, "pkt/s", "1,000,000",
        f"spread {spread}")

    def run_pipe_arrays():
        Pipeline().process_batch_arrays(items)
    med, spread = fmt_rate(measure(run_pipe_arrays, len(trace), reps))
    batch_rate = float(med.replace(",", ""))
    row("pipeline, same trace, process_batch_arrays: egress array + special cases (pkt/s)", med, "pkt/s",
        "1,000,000", f"spread {spread}")

    # 5b. the same work the naive way: scapy dissection + field access
    from scapy.layers.l2 import Ether
    from scapy.contrib.roce import BTH
    import ctcm.io.scapy_layers  # noqa: F401  (binds the MAD/CM layers)
    from scapy.layers.inet import IP
    small = trace[:2000]
    def run_scapy():
        for port, f in small:
            p = Ether(f)
            if BTH in p:
                b = p[BTH]
                _ = (b.opcode, b.dqpn, p[IP].tos if IP in p else 0)
    med_s, spread_s = fmt_rate(measure(run_scapy, len(small), max(3, reps // 2)))
    scapy_rate = float(med_s.replace(",", ""))
    row("same mixed trace dissected with scapy (pkt/s)", med_s, "pkt/s", "-", f"spread {spread_s}")
    row("speed ratio pipeline (per packet) / scapy dissection", f"{pipe_rate / scapy_rate:,.0f}x", "", ">= 50x")
    row("speed ratio pipeline (process_batch_arrays) / scapy dissection", f"{batch_rate / scapy_rate:,.0f}x", "",
        ">= 50x")

    # 6. vector generation (measured first, see vector_row)
    row(*vector)

    # 7. memory per tracked connection
    for mode in ("ideal", "p4"):
        n = 100_000
        filled_tracker(mode, n)  # builds the frames outside the measurement
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        t, cs = filled_tracker(mode, n, snug_geometry(n))
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        tracked = len(t.connections())
        target = "150" if mode == "p4" else "400"
        note = f"{tracked:,} established, tracemalloc (whole Tracker)"
        if t.counters["table_refusals"] or t.counters["flow_refusals"]:
            note += f", {t.counters['table_refusals']} connections and {t.counters['flow_refusals']} flows refused"
        if mode == "p4":
            g = t.geometry
            flow_slots = g.flow_buckets * g.flow_ways
            note += (f"; {t.capacity:,} connection slots ({tracked / t.capacity:.0%} load) + {flow_slots:,} flow ways"
                     f"; arrays {t.table_bytes():,} bytes")
        row(f"memory per tracked connection, {mode} mode (bytes)", f"{used / tracked:,.0f}", "bytes", f"<= {target}", note)
        del t

    write_md(args.out, rows, args)
    return 0


def vector_row(args):
    """Vector generation for a 1M-packet randomised scenario: the command a user
    runs (a new process, all five files; median of up to 3 runs), then its
    phases in this process."""
    import subprocess
    import tempfile
    from ctcm.stimulus.randgen import RandomParams, generate
    from ctcm.vectors.run import make_vector
    n = args.vector_packets if not args.quick else 50_000
    conns, conc = max(100, n // 100), max(20, n // 1000)
    runs = []
    for _ in range(min(3, args.reps)):
        with tempfile.TemporaryDirectory() as d:
            cmd = [os.path.join(os.path.dirname(sys.executable), "ctcm"), "random", "--packets", str(n),
                   "--connections", str(conns), "--concurrency", str(conc), "--out", d, "--quiet"]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True)
            runs.append(time.perf_counter() - t0)
            size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    p = RandomParams(seed=1, packets=n, connections=conns, concurrency=conc)
    t0 = time.perf_counter()
    stim = generate(p)
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        vec, _ = make_vector("bench", "", {}, {"host": 1, "net": 2}, stim, d)
    t2 = time.perf_counter()
    del vec, stim
    print(f"vector generation: {', '.join(f'{r:.1f}' for r in runs)} s", flush=True)
    return (f"vector generation, {n:,}-packet random scenario: `ctcm random` (s)", f"{statistics.median(runs):.1f}",
            "s", "<= 20", f"whole command, 5 files, {size / 1e9:.2f} GB; spread {min(runs):.1f}..{max(runs):.1f} over "
            f"{len(runs)} runs; in one process: generate {t1 - t0:.1f} + run and write {t2 - t1:.1f} (streamed in "
            f"chunks: a forked process writes the pcapng and hex files while this one writes the YAML)")


def mixed_trace(n: int, seed: int = 4):
    """(port, frame): 95% data, 5% CM (full lifecycles), 1% of data CE."""
    r = random.Random(seed)
    conns = make_conns(max(10, n // 60), seed=seed)
    out = []
    pending = []
    for c in conns:
        pending += [(1 if d == FROM_HOST else 2, f) for d, f in handshake(c)]
    established = conns
    i = 0
    while len(out) < n:
        if r.random() < 0.05 and pending:
            out.append(pending.pop(0))
            continue
        c = established[r.randrange(len(established))]
        side = "host" if r.random() < 0.5 else "peer"
        out.append((1 if side == "host" else 2, data_frame(c, side, i, r.random() < 0.0105)))
        i += 1
    return out


def write_md(path, rows, args):
    uname = platform.uname()
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    lines = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (bench/bench.py). Median of "
        f"{args.reps} repetitions after a warm-up; spread = min..max of the repetitions.",
        "",
        f"Machine: {cpu or uname.machine}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{uname.system} {uname.release}.",
        "",
        "| measurement | result | unit | target | notes |",
        "|---|---:|---|---:|---|",
    ]
    for name, value, unit, target, note in rows:
        lines.append(f"| {name} | {value} | {unit} | {target} | {note} |")
    lines.append("")
    # Hand-written analysis (why a target is missed, what would reach it) and the soak run.
    notes = os.path.join(os.path.dirname(os.path.abspath(__file__)), "notes.md")
    if os.path.exists(notes):
        with open(notes) as f:
            lines += ["", f.read().rstrip("\n"), ""]
    with open(path + ".tmp", "w") as f:
        f.write("\n".join(lines))
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    sys.exit(main())
