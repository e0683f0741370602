"""``ctcm vectors`` and ``ctcm random``: scenario files and random runs -> vector files."""

from __future__ import annotations

import os
import re
import sys

from ctcm.errors import UsageError
from ctcm.stimulus.randgen import RandomParams, RandomScenario, generate_chunks, load_source
from ctcm.stimulus.scenario import check_name, scenario_packets, stream_scenario
from ctcm.io.yamlsrc import Ctx
from ctcm.vectors.run import FORMATS, stream_vector

# --- suite / CLI -------------------------------------------------------------------

def _progress(total: int, desc: str, quiet: bool):
    """A tqdm progress bar on a terminal (packets, rate, ETA); nothing in CI,
    with --quiet or off a TTY."""
    if quiet or os.environ.get("CI") or not sys.stderr.isatty():
        return None, lambda: None
    from tqdm import tqdm

    tqdm.monitor_interval = 0  # no monitor thread: the writers fork (see _can_fork)

    bar = tqdm(total=total, desc=desc, unit="pkt", unit_scale=True, leave=False, file=sys.stderr)
    state = {"n": 0}

    def update(n):
        bar.update(n - state["n"])
        state["n"] = n

    return update, bar.close


def _vector(name, desc, options, ports, source, total, outdir, formats, quiet) -> list[str]:
    """Run and write one vector, streamed (with a progress bar on a terminal)."""
    update, close = _progress(total, name, quiet)
    try:
        # (the pipeline reads the options it knows; "random" is recorded only)
        _vec, written = stream_vector(name, desc, options, ports, source, outdir, formats, update, total)
    finally:
        close()
    return written


def build_file(path: str, outdir: str, formats=FORMATS, quiet=False) -> list[str]:
    """Build the vector of one scenario file (a timeline or a `random:` block)."""
    sc = load_source(path)
    if isinstance(sc, RandomScenario):
        return _random_vector(sc.name, sc.description, sc.options, sc.params, outdir, formats, quiet)
    return _vector(sc.name, sc.description, sc.options, sc.ports, stream_scenario(sc), scenario_packets(sc), outdir,
                   formats, quiet)


def _random_vector(name, desc, options, params, outdir, formats, quiet) -> list[str]:
    ports = {"host": params.ports[0], "net": params.ports[1]}
    return _vector(name, desc, {**options, "random": params.to_dict()}, ports, generate_chunks(params),
                   params.packets, outdir, formats, quiet)


def _formats(text: str) -> tuple[str, ...]:
    formats = tuple(f.strip() for f in text.split(",") if f.strip())
    bad = set(formats) - set(FORMATS)
    if bad or not formats:
        raise UsageError(f"--formats: unknown format(s) {', '.join(sorted(bad)) or '(none given)'} "
                         f"(a comma list of {', '.join(FORMATS)})")
    return formats


def _outdir(out: str) -> None:
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out {out}: exists and is not a directory")


def cmd_vectors(args) -> int:
    formats = _formats(args.formats)
    _outdir(args.out)
    for path in args.scenarios:
        written = build_file(path, args.out, formats, args.quiet)
        if not args.quiet:
            print(f"{path} -> {', '.join(os.path.basename(w) for w in written)}")
    return 0


def cmd_random(args) -> int:
    formats = _formats(args.formats)
    try:
        p = RandomParams(seed=args.seed, packets=args.packets, connections=args.connections,
                         concurrency=args.concurrency, loss=args.loss, retransmit=args.retransmit,
                         reject=args.reject, mra=args.mra, ce_ratio=args.ce_ratio, non_roce=args.non_roce,
                         malformed=args.malformed, ipv6=args.ipv6, duration_us=args.duration_us)
    except ValueError as e:
        raise UsageError(re.sub(r"\b[a-z_]+\b", lambda m: "--" + m[0].replace("_", "-") if m[0] in _OPTIONS else m[0],
                                str(e), count=2)) from None
    try:
        check_name(Ctx("--name", UsageError), None, args.name)
    except UsageError as e:
        raise UsageError(str(e)[len("--name: "):].replace("name", "--name", 1)) from None
    _outdir(args.out)
    written = _random_vector(args.name, f"randomised: {p.to_dict()}", {"mode": args.mode}, p, args.out, formats,
                             args.quiet)
    if not args.quiet:
        print(f"{p.packets:,} packets requested -> {', '.join(written)}")
    return 0


_OPTIONS = {"packets", "connections", "concurrency", "duration_us", "seed", "loss", "retransmit", "reject", "mra",
            "ce_ratio", "non_roce", "malformed", "ipv6"}


def add_cli_commands(sub) -> None:
    v = sub.add_parser("vectors", help="build golden vectors from scenario files")
    v.add_argument("scenarios", nargs="+", help="scenario YAML files")
    v.add_argument("--out", default="vectors", help="output directory (default vectors)")
    v.add_argument("--formats", default="yaml,pcapng,hex", help="comma list of yaml, pcapng, hex")
    v.add_argument("-q", "--quiet", action="store_true", help="no progress bars or per-file lines")
    v.set_defaults(func=cmd_vectors)

    d = RandomParams()
    r = sub.add_parser("random", help="generate a randomised stress vector on demand",
                       description="Generate a randomised vector: connections open (REQ/REP/RTU, some MRA or REJ), "
                                   "carry RoCE data (some CE-marked), tear down (DREQ/DREP); CM messages are lost "
                                   "and retransmitted; non-RoCE and malformed packets are mixed in. Same seed, same "
                                   "files.")
    r.add_argument("--name", default="stress", help="vector name: file name prefix (default stress)")
    r.add_argument("--out", default=".", help="output directory (default .)")
    r.add_argument("--seed", type=int, default=d.seed, help=f"random seed (default {d.seed})")
    r.add_argument("--packets", type=int, default=1_000_000, help="stimulus packets (default 1000000)")
    r.add_argument("--connections", type=int, default=10_000,
                   help="connections over the run (default 10000); the run ends early if all have ended")
    r.add_argument("--concurrency", type=int, default=1000, help="connections alive at once, at most (default 1000)")
    for name, what in (("loss", "a CM message is lost, then retransmitted"),
                       ("retransmit", "a CM message is duplicated anyway"),
                       ("reject", "a connection is rejected (REJ)"),
                       ("mra", "an MRA comes before REP or RTU"),
                       ("ce-ratio", "a data packet is marked ECN CE"),
                       ("non-roce", "a packet is not RoCE (ARP, TCP, other UDP, ICMPv6)"),
                       ("malformed", "a packet is malformed (truncated, bad version or length)"),
                       ("ipv6", "a connection is IPv6")):
        default = getattr(d, name.replace("-", "_"))
        r.add_argument(f"--{name}", type=float, default=default, metavar="P",
                       help=f"probability that {what} (default {default})")
    r.add_argument("--duration-us", type=int, default=d.duration_us,
                   help=f"model time the stimulus spans, in µs (default {d.duration_us})")
    r.add_argument("--mode", choices=("ideal", "p4"), default="ideal", help="tracker table mode (default ideal)")
    r.add_argument("--formats", default="yaml,pcapng,hex", help="comma list of yaml, pcapng, hex (default all)")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summary line")
    r.set_defaults(func=cmd_random)

