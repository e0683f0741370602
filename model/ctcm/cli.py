"""Command line: ``ctcm track | decode | cnp ...``.

Errors in inputs give one line on stderr and a non-zero exit status (1 for bad
data, 2 for bad usage), never a traceback.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import subprocess
import sys

from . import __version__, spec
from .cnp import fill_cnp_template, generate_cnp
from .config import ConfigError, base_config, load_config
from .docsgen import docs_with_table, transitions_dot
from .errors import UsageError
from .headers import headers_markdown
from .oracle import OracleError
from .oracle import add_cli_command as add_compare
from .packet import classify, decode, ip_src_dst
from .pcapio import CaptureError, atomic_write, read_capture
from .pipeline import Pipeline
from .scenario import ScenarioError
from .vectorcli import add_cli_commands

EXIT_DATA = 1
EXIT_USAGE = 2


def _config(args):
    """The control-plane config (``--config``, else p4/config.yaml), with the
    command line's table mode, TIMEWAIT and pacing options applied."""
    cfg = load_config(args.config) if getattr(args, "config", None) else base_config()
    kw = {k: getattr(args, k) for k in ("mode", "timewait_us", "cnp_interval_us") if getattr(args, k, None) is not None}
    for k in ("timewait_us", "cnp_interval_us"):
        if k in kw and kw[k] < 0:
            raise UsageError(f"--{k.replace('_', '-')} must be >= 0, not {kw[k]}")
    return cfg.replace(**kw) if kw else cfg


def _ip_list(values) -> set[bytes]:
    out = set()
    for v in values or ():
        try:
            out.add(ipaddress.ip_address(v).packed)
        except ValueError:
            raise UsageError(f"--host-ip: {v!r} is not an IP address") from None
    return out


def _direction_rule(args, capture):
    """Returns f(frame, iface) -> 'host' | 'net' | None."""
    host_ips = _ip_list(args.host_ip)
    host_ifaces = set()
    for name in args.host_iface or ():
        if name.isdigit():
            host_ifaces.add(int(name))
        elif name in capture.interfaces:
            host_ifaces.add(capture.interfaces.index(name))
        else:
            raise UsageError(f"--host-iface: no interface {name!r} in {capture.path} (has {', '.join(capture.interfaces)})")
    if not host_ips and not host_ifaces:
        raise UsageError("say which side is the host: --host-ip IP (repeatable) or --host-iface NAME")

    def rule(frame, iface):
        if host_ifaces:
            return "host" if iface in host_ifaces else "net"
        p = classify(frame)
        if p.l3 < 0 or len(frame) < p.l3 + (20 if p.ip_version == 4 else 40):
            return None
        src, dst = ip_src_dst(frame, p.l3, p.ip_version)
        if src in host_ips:
            return "host"
        if dst in host_ips:
            return "net"
        return None

    return rule


def cmd_track(args) -> int:
    cap = read_capture(args.capture)
    rule = _direction_rule(args, cap)
    cfg = _config(args)
    (host_port, net_port), = cfg.port_pairs[:1]
    pipe = Pipeline(cfg)
    t0 = cap.packets[0][0] if cap.packets else 0
    events, undirected = [], 0
    for i, (ts, iface, frame) in enumerate(cap.packets, 1):
        side = rule(frame, iface)
        if side is None:
            undirected += 1
            continue
        r = pipe.process(host_port if side == "host" else net_port, frame, ts - t0)
        for ev in r.events:
            rec = {"packet": i, "time_us": ts - t0, "side": side, "event": str(ev)}
            events.append(rec)
            if not args.json:
                print(f"#{i:<6} {(ts - t0) / 1e6:12.6f}s {side:4} {ev}")
        for port, cnp in r.outputs[1:]:
            rec = {"packet": i, "time_us": ts - t0, "side": side, "cnp": cnp.hex(), "summary": decode(cnp).summary()}
            events.append(rec)
            if not args.json:
                print(f"#{i:<6} {(ts - t0) / 1e6:12.6f}s CNP  {rec['summary']}")
    snap = pipe.snapshot()
    snap["counters"]["undirected_packets"] = undirected
    if args.json:
        json.dump({"capture": args.capture, "events": events, **snap}, sys.stdout, indent=2, default=str)
        print()
        return 0
    print()
    conns = snap["connections"]
    print(f"connections ({len(conns)}):")
    if conns:
        cols = list(conns[0].keys())
        rows = [[str(c.get(k, "")) for k in cols] for c in conns]
        widths = [max(len(k), *(len(r[j]) for r in rows)) for j, k in enumerate(cols)]
        print("  " + "  ".join(k.ljust(w) for k, w in zip(cols, widths)))
        for r in rows:
            print("  " + "  ".join(v.ljust(w) for v, w in zip(r, widths)))
    print(f"flows ({len(snap['flows'])}):")
    for f in snap["flows"]:
        print("  " + "  ".join(f"{k}={v}" for k, v in f.items()))
    print("counters:")
    for k, v in snap["counters"].items():
        if v:
            print(f"  {k} = {v}")
    return 0


def cmd_decode(args) -> int:
    cap = read_capture(args.capture)
    for i, (ts, iface, frame) in enumerate(cap.packets, 1):
        d = decode(frame)
        name = cap.interfaces[iface] if iface < len(cap.interfaces) else str(iface)
        print(f"#{i:<6} {ts / 1e6:.6f} {name}: {d.summary()}")
        if args.verbose:
            for hdr, values in d.layers:
                print(f"    {hdr.name}: " + ", ".join(f"{k}={v}" for k, v in hdr.format(values).items()
                                                     if k != "private_data" or args.verbose > 1))
    return 0


def cmd_cnp(args) -> int:
    try:
        src, dst = ipaddress.ip_address(args.src), ipaddress.ip_address(args.dst)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if src.version != dst.version:
        raise UsageError("--src and --dst must both be IPv4 or both IPv6")
    try:
        qpn = int(args.dqpn, 0)
        t = fill_cnp_template(src.version, tos=args.tos, ttl=args.ttl, ip_id=args.ip_id, sport=args.sport)
        out = generate_cnp(t, qpn, src_ip=str(src), dst_ip=str(dst), ip_checksum=args.ip_checksum)
    except ValueError as e:
        raise UsageError(str(e)) from None
    print(out.hex())
    return 0


def cmd_docs(args) -> int:
    """Regenerate the docs derived from code: state diagram, transition table, header tables."""
    d = args.out
    atomic_write(os.path.join(d, "state-machine.dot"), transitions_dot().encode())
    atomic_write(os.path.join(d, "headers.md"), headers_markdown().encode())
    path = os.path.join(d, "tracker.md")
    with open(path, encoding="utf-8") as f:
        atomic_write(path, docs_with_table(f.read()).encode())
    dot = shutil.which("dot")
    if dot is None:
        raise UsageError("graphviz `dot` not found (apt-get install graphviz): state-machine.svg not rendered")
    svg = subprocess.run([dot, "-Tsvg", os.path.join(d, "state-machine.dot")], capture_output=True, check=True).stdout
    atomic_write(os.path.join(d, "state-machine.svg"), svg)
    return 0


def _int(s: str) -> int:
    return int(s, 0)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="ctcm", description="RDMA CM connection tracking and RoCEv2 CNP reference model")
    ap.add_argument("--version", action="version", version=f"ctcm {__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser("track", help="run the pipeline model over a capture; print CM events and the connection table")
    t.add_argument("capture", help="pcap or pcapng file (Ethernet)")
    t.add_argument("--host-ip", action="append", metavar="IP", help="an address of the local host (repeatable)")
    t.add_argument("--host-iface", action="append", metavar="NAME", help="pcapng interface (name or index) whose packets come from the host")
    t.add_argument("--config", metavar="FILE", help="control-plane config (default p4/config.yaml): ports, TIMEWAIT, "
                   "pacing, geometry, mode")
    t.add_argument("--mode", choices=("ideal", "p4"), default=None, help="table mode (default: the config's)")
    t.add_argument("--timewait-us", type=_int, default=None, help="TIMEWAIT duration in µs of capture time "
                   "(default: the config's)")
    t.add_argument("--cnp-interval-us", type=_int, default=None, help="CNP pacing interval per flow, µs "
                   "(0 = none; default: the config's)")
    t.add_argument("--json", action="store_true", help="machine-readable output")
    t.set_defaults(func=cmd_track)

    d = sub.add_parser("decode", help="one-line decoded summary of every packet in a capture")
    d.add_argument("capture", help="pcap or pcapng file (Ethernet)")
    d.add_argument("-v", "--verbose", action="count", default=0, help="print every field (-vv: with private data)")
    d.set_defaults(func=cmd_decode)

    c = sub.add_parser("cnp", help="print a CNP (from the IP header, hex)")
    c.add_argument("--src", required=True, help="CNP source IP (the congested flow's destination)")
    c.add_argument("--dst", required=True, help="CNP destination IP")
    c.add_argument("--dqpn", required=True, help="destination QPN (e.g. 0xd2)")
    c.add_argument("--tos", type=_int, default=spec.CNP_TOS, help=f"IP TOS / traffic class (default {spec.CNP_TOS:#x})")
    c.add_argument("--ttl", type=_int, default=spec.CNP_TTL, help=f"IP TTL / hop limit (default {spec.CNP_TTL})")
    c.add_argument("--ip-id", type=_int, default=0, help="IPv4 identification (default 0)")
    c.add_argument("--sport", type=_int, default=spec.CNP_UDP_SPORT, help=f"UDP source port (default {spec.CNP_UDP_SPORT:#x})")
    c.add_argument("--ip-checksum", action="store_true", help="fill the IPv4 header checksum (default 0, as the C library)")
    c.set_defaults(func=cmd_cnp)

    dc = sub.add_parser("docs", help="regenerate docs derived from the code (state diagram, tables)")
    dc.add_argument("--out", default="docs", help="docs directory (default docs)")
    dc.set_defaults(func=cmd_docs)

    add_cli_commands(sub)
    add_compare(sub)
    return ap


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    try:
        return args.func(args)
    except UsageError as e:
        print(f"ctcm {args.cmd}: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OracleError as e:  # compare: 1 means mismatch, so unreadable input is 2
        print(f"ctcm {args.cmd}: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (CaptureError, ScenarioError, ConfigError) as e:
        print(f"ctcm {args.cmd}: {e}", file=sys.stderr)
        return EXIT_DATA
    except BrokenPipeError:
        return 0
    except OSError as e:  # output directory not writable, disk full...
        print(f"ctcm {args.cmd}: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return EXIT_DATA
    except KeyboardInterrupt:
        return 130


def entry() -> None:
    """The ``ctcm`` console script: :func:`main`, then exit at once.

    Every file is written and closed by then; what is left is freeing
    objects (a million-packet vector: over a second), which exiting makes
    unnecessary. ``python -m ctcm.cli`` and callers of :func:`main` exit the
    ordinary way."""
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        pass
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
