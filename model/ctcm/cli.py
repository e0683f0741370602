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
import signal
import subprocess
import sys
import threading

from ctcm import __version__
from ctcm import spec
from ctcm.dataplane.cnp import fill_cnp_template, generate_cnp
from ctcm.dataplane.config import ConfigError, base_config, load_config
from ctcm.gen.docsgen import docs_with_table, transitions_dot
from ctcm.errors import UsageError
from ctcm.spec.headers import headers_markdown
from ctcm.oracle.compare import OracleError
from ctcm.oracle.files import add_cli_command as add_compare
from ctcm.dataplane.packet import classify, decode, ip_src_dst
from ctcm.dataplane.packet import CM, MALFORMED
from ctcm.io.pcapio import LINK_TYPES, CaptureError, CaptureReader, atomic_write
from ctcm.stimulus.scenario import MAX_TIME_US
from ctcm.dataplane.pipeline import Pipeline
from ctcm.stimulus.scenario import ScenarioError
from ctcm.targets.cli import add_cli_command as add_replay
from ctcm.vectors.cli import add_cli_commands
from ctcm.coverage.cli import add_cli_command as add_coverage

EXIT_DATA = 1
EXIT_USAGE = 2


def _config(args):
    """The control-plane config (``--config``, else p4/config.yaml), with the
    command line's table mode, TIMEWAIT and pacing options applied."""
    kw = {k: getattr(args, k) for k in ("mode", "timewait_us", "cnp_interval_us") if getattr(args, k, None) is not None}
    for k in ("timewait_us", "cnp_interval_us"):
        if k in kw and not 0 <= kw[k] <= MAX_TIME_US:
            raise UsageError(f"--{k.replace('_', '-')} must be in 0..{MAX_TIME_US} µs, not {kw[k]}")
    cfg = load_config(args.config) if getattr(args, "config", None) else base_config()
    return cfg.replace(**kw) if kw else cfg


def _ip_list(values) -> set[bytes]:
    out = set()
    for v in values or ():
        try:
            out.add(ipaddress.ip_address(v).packed)
        except ValueError:
            raise UsageError(f"--host-ip: {v!r} is not an IP address") from None
    return out


def _warn(args, msg: str) -> None:
    print(f"ctcm {args.cmd}: warning: {msg}", file=sys.stderr)


class _Direction:
    """Which side a packet comes from: ``--host-iface`` (interface names or
    indices) when given, else ``--host-ip`` (source or destination address)."""

    def __init__(self, args, reader):
        self.args, self.reader = args, reader
        self.host_ips = _ip_list(args.host_ip)
        self.names = {n for n in args.host_iface or () if not n.isdigit()}
        self.indices = {int(n) for n in args.host_iface or () if n.isdigit()}
        if not self.host_ips and not self.names and not self.indices:
            raise UsageError("say which side is the host: --host-ip IP (repeatable) or --host-iface NAME")
        self.by_iface = bool(self.names or self.indices)
        self.ips_seen: set[bytes] = set()
        self.checked = False

    def check_names(self) -> None:
        """At the first packet (the interfaces are declared): names must exist."""
        self.checked = True
        have = self.reader.interfaces
        for name in sorted(self.names):
            if name not in have:
                raise UsageError(f"--host-iface: no interface {name!r} in {self.args.capture} "
                                 f"(has {', '.join(have) or 'none'})")

    def __call__(self, frame, iface):
        if self.by_iface:
            if not self.checked:
                self.check_names()
            if iface in self.indices or self.reader.interfaces[iface] in self.names:
                return "host"
            return "net"
        p = classify(frame)
        if p.l3 < 0 or len(frame) < p.l3 + (20 if p.ip_version == 4 else 40):
            return None
        src, dst = ip_src_dst(frame, p.l3, p.ip_version)
        if src in self.host_ips:
            self.ips_seen.add(src)
            return "host"
        if dst in self.host_ips:
            self.ips_seen.add(dst)
            return "net"
        return None

    def warnings(self) -> list[str]:
        out = []
        n = len(self.reader.interfaces)
        for i in sorted(self.indices):
            if i >= n:
                out.append(f"--host-iface {i}: {self.args.capture} has {n} interface(s) (0..{n - 1}): "
                           "no packet came from the host")
        if self.by_iface and self.host_ips:
            out.append("--host-ip ignored: --host-iface decides which side a packet comes from")
        elif not self.by_iface:
            for ip in sorted(self.host_ips - self.ips_seen):
                out.append(f"--host-ip {ipaddress.ip_address(ip)} never occurs in {self.args.capture} "
                           "(no packet from or to it)")
        return out


def _open(path: str) -> CaptureReader:
    return CaptureReader(path)


def _capture_warnings(args, reader, cut: int, cut_unused: int, backwards: int, first_back: int) -> list[str]:
    out = []
    if cut:
        used = cut - cut_unused
        out.append(f"{cut} frame(s) cut by the capture's snaplen (captured length below the length on the wire): "
                   f"{used} used as far as their headers go, {cut_unused} not used (a CM message or header cut)")
    for lt, n in sorted(reader.skipped.items()):
        name = LINK_TYPES.get(lt)
        why = f"{name} link-layer header cut" if name else f"link type {lt} is not read"
        out.append(f"{n} packet(s) skipped: {why}")
    if backwards:
        out.append(f"{backwards} packet(s) have a timestamp earlier than the packet before them (first: packet "
                   f"#{first_back}): model time goes backwards there")
    return out


# Frames cut by the snaplen are padded with zeros to their length on the wire
# (so the header lengths fit) when the part kept holds every header used:
# RoCE data (IP, UDP, BTH), not-RoCE; a CM message (the MAD) cut is not used.
_MAX_PAD = 1 << 16


def _uncut(frame: bytes, wire: int):
    """(frame to use or None, cut?)"""
    if wire <= len(frame):
        return frame, False
    if wire - len(frame) > _MAX_PAD:
        return None, True
    padded = frame + bytes(wire - len(frame))
    p = classify(padded)
    if p.kind in (CM, MALFORMED):
        return None, True
    return padded, True


def cmd_track(args) -> int:
    cfg = _config(args)
    (host_port, net_port), = cfg.port_pairs[:1]
    pipe = Pipeline(cfg)
    events, undirected = [], 0
    cut = cut_unused = backwards = first_back = 0
    with _open(args.capture) as reader:
        rule = _Direction(args, reader)
        t0 = prev = None
        for i, (ts, iface, frame, wire) in enumerate(reader, 1):
            if t0 is None:
                t0 = prev = ts
            if ts < prev:
                backwards += 1
                first_back = first_back or i
            prev = ts
            frame, was_cut = _uncut(frame, wire)
            if was_cut:
                cut += 1
                if frame is None:
                    cut_unused += 1
                    continue
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
                rec = {"packet": i, "time_us": ts - t0, "side": side, "cnp": cnp.hex(),
                       "summary": decode(cnp).summary()}
                events.append(rec)
                if not args.json:
                    print(f"#{i:<6} {(ts - t0) / 1e6:12.6f}s CNP  {rec['summary']}")
        if not rule.checked and rule.by_iface:
            rule.check_names()
        warnings = rule.warnings() + _capture_warnings(args, reader, cut, cut_unused, backwards, first_back)
    snap = pipe.snapshot()
    snap["counters"]["undirected_packets"] = undirected
    snap["counters"]["snaplen_cut_packets"] = cut
    for w in warnings:
        _warn(args, w)
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
    cut = backwards = first_back = 0
    with _open(args.capture) as reader:
        prev = None
        for i, (ts, iface, frame, wire) in enumerate(reader, 1):
            if prev is not None and ts < prev:
                backwards += 1
                first_back = first_back or i
            prev = ts
            note = ""
            if wire > len(frame):
                cut += 1
                note = f" [cut by the snaplen: {len(frame)} of {wire} bytes captured; the rest shown as zeros]"
                if wire - len(frame) <= _MAX_PAD:
                    frame = frame + bytes(wire - len(frame))
            d = decode(frame)
            name = reader.interfaces[iface] if iface < len(reader.interfaces) else str(iface)
            summary = d.summary()
            if note:  # the ICRC (at the end) was not captured: not known, not bad
                summary = summary.replace(" | BAD-ICRC", "")
            print(f"#{i:<6} {ts / 1e6:.6f} {name}: {summary}{note}")
            if args.verbose:
                for hdr, values in d.layers:
                    print(f"    {hdr.name}: " + ", ".join(f"{k}={v}" for k, v in hdr.format(values).items()
                                                         if k != "private_data" or args.verbose > 1))
        if cut:
            _warn(args, f"{cut} frame(s) cut by the capture's snaplen (captured length below the length on the "
                        "wire): decoded with the missing bytes as zeros, ICRC not known")
        for w in _capture_warnings(args, reader, 0, 0, backwards, first_back):
            _warn(args, w)
    return 0


def cmd_cnp(args) -> int:
    try:
        src, dst = ipaddress.ip_address(args.src), ipaddress.ip_address(args.dst)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if src.version != dst.version:
        raise UsageError("--src and --dst must both be IPv4 or both IPv6")
    for opt, v, bits in (("--tos", args.tos, 8), ("--ttl", args.ttl, 8), ("--ip-id", args.ip_id, 16),
                         ("--sport", args.sport, 16)):
        if not 0 <= v < 1 << bits:
            raise UsageError(f"{opt} must be in 0..{(1 << bits) - 1}, not {v}")
    try:
        qpn = int(args.dqpn, 0)
    except ValueError:
        raise UsageError(f"--dqpn: {args.dqpn!r} is not a number (e.g. 0xd2)") from None
    if not 0 <= qpn < 1 << 24:
        raise UsageError(f"--dqpn must be in 0..0xffffff, not {args.dqpn}")
    try:
        t = fill_cnp_template(src.version, tos=args.tos, ttl=args.ttl, ip_id=args.ip_id, sport=args.sport)
        out = generate_cnp(t, qpn, src_ip=str(src), dst_ip=str(dst), ip_checksum=args.ip_checksum)
    except ValueError as e:
        raise UsageError(str(e)) from None
    print(out.hex())
    return 0


def cmd_docs(args) -> int:
    """Regenerate the docs derived from code: state diagram, transition table,
    header tables. Everything is made first: a missing ``tracker.md`` or
    graphviz leaves every file as it was."""
    d = args.out
    path = os.path.join(d, "tracker.md")
    try:
        with open(path, encoding="utf-8") as f:
            tracker = f.read()
    except FileNotFoundError:
        raise UsageError(f"--out {d}: no tracker.md there to put the transition table into "
                         "(ctcm docs regenerates the generated parts of the docs directory)") from None
    except UnicodeDecodeError:
        raise UsageError(f"--out {d}: tracker.md is not UTF-8 text") from None
    dot = shutil.which("dot")
    if dot is None:
        raise UsageError("graphviz `dot` not found (apt-get install graphviz): nothing written")
    dot_text = transitions_dot()
    r = subprocess.run([dot, "-Tsvg"], input=dot_text.encode(), capture_output=True, check=False)
    if r.returncode:
        raise UsageError(f"dot failed: {r.stderr.decode(errors='replace').strip().splitlines()[-1:]}")
    files = {"state-machine.dot": dot_text.encode(), "headers.md": headers_markdown().encode(),
             "tracker.md": docs_with_table(tracker).encode(), "state-machine.svg": r.stdout}
    for name, data in files.items():
        atomic_write(os.path.join(d, name), data)
    return 0


def _int(s: str) -> int:
    return int(s, 0)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block): ``ctcm CMD: problem``, exit 2."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="ctcm", description="RDMA CM connection tracking and RoCEv2 CNP reference model")
    ap.add_argument("--version", action="version", version=f"ctcm {__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True, parser_class=_Parser)

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
    add_coverage(sub)
    add_replay(sub)
    return ap


def _terminated(signum, frame):
    raise SystemExit(128 + signum)  # unwinds like Ctrl-C: temporary files removed


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminated)
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
