"""The oracle's files: vectors and captures read (whole or streamed), and ``ctcm compare``.

:func:`compare_files` compares a vector file with a capture (pcap/pcapng) or
a YAML file of observed packets in bounded memory: both are read as streams
and compared in step (:func:`compare_streams`, the same report as
:func:`ctcm.oracle.compare`, tested). :func:`load_expected` and
:func:`load_observed` read them whole.
"""

from __future__ import annotations

import json
import sys
from array import array
from collections import deque

import yaml

from .oracle import Expected, Mismatch, OracleError, Report, _lis, _similar, compare, field_diff
from .packet import decode
from .pcapio import CaptureError, CaptureReader, read_capture

__all__ = ["load_expected", "load_observed", "iter_expected", "iter_observed", "compare_streams", "compare_files",
           "add_cli_command"]

_YamlLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: big vectors


# --- loading ---------------------------------------------------------------------------

def _load_yaml(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.load(f, Loader=_YamlLoader)
    except OSError as e:
        raise OracleError(f"{path}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise OracleError(f"{path}{line}: invalid YAML: {getattr(e, 'problem', None) or e}") from None
    except UnicodeDecodeError:
        raise OracleError(f"{path}: not a text (YAML) file") from None


def _hex(path, where, s) -> bytes:
    try:
        return bytes.fromhex(str(s))
    except ValueError:
        raise OracleError(f"{path}: {where}: 'bytes' is not hex") from None


def load_expected(path: str) -> dict[int, list[Expected]]:
    doc = _load_yaml(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("packets"), list):
        raise OracleError(f"{path}: not a ctcm vector (no 'packets' list)")
    out: dict[int, list[Expected]] = {}
    for n, p in enumerate(doc["packets"], 1):
        if not isinstance(p, dict) or not isinstance(p.get("expect"), list):
            raise OracleError(f"{path}: packet {n}: no 'expect' list")
        for k, e in enumerate(p["expect"], 1):
            if not isinstance(e, dict) or not isinstance(e.get("port"), int) or "bytes" not in e:
                raise OracleError(f"{path}: packet {n} output {k}: needs 'port' and 'bytes'")
            out.setdefault(e["port"], []).append(
                Expected(p.get("id", n), k, _hex(path, f"packet {n} output {k}", e["bytes"]), e.get("summary", "")))
    return out


def load_observed(path: str, port_map: dict | None = None, port: int | None = None) -> dict[int, list[bytes]]:
    """Observed packets per port from a pcap/pcapng or a YAML file."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise OracleError(f"{path}: {e.strerror or e}") from None
    if head in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d", b"\x0a\x0d\x0d\x0a"):
        try:
            cap = read_capture(path)
        except CaptureError as e:
            raise OracleError(str(e)) from None
        out: dict[int, list[bytes]] = {}
        for _ts, iface, frame in cap.packets:
            name = cap.interfaces[iface] if iface < len(cap.interfaces) else str(iface)
            if port_map and (name in port_map or str(iface) in port_map):
                p = port_map.get(name, port_map.get(str(iface)))
            elif port is not None and len(cap.interfaces) == 1:
                p = port
            elif name.startswith("p") and name[1:].isdigit():
                p = int(name[1:])
            else:
                raise OracleError(f"{path}: interface {name!r} is not named p<port>; "
                                  "give --port-map NAME=PORT,... (or --port N for a one-interface capture)")
            out.setdefault(p, []).append(frame)
        return out
    doc = _load_yaml(path)
    if isinstance(doc, dict) and isinstance(doc.get("observed"), list):
        out = {}
        for n, o in enumerate(doc["observed"], 1):
            if not isinstance(o, dict) or not isinstance(o.get("port"), int) or "bytes" not in o:
                raise OracleError(f"{path}: observed {n}: needs 'port' and 'bytes'")
            out.setdefault(o["port"], []).append(_hex(path, f"observed {n}", o["bytes"]))
        return out
    if isinstance(doc, dict) and isinstance(doc.get("packets"), list):
        return {p: [e.frame for e in es] for p, es in load_expected(path).items()}
    raise OracleError(f"{path}: neither a capture, a vector YAML nor an 'observed:' list")


# --- streaming: files of any size in bounded memory ----------------------------------

class _NotStreamable(Exception):
    """The vector YAML is not in the form ctcm writes: read it whole instead."""


_VECTOR_HEAD = "# Golden vector generated by ctcm"


def iter_expected(path: str):
    """(port, :class:`Expected`) of a vector YAML in the form ctcm writes it,
    read line by line (the same as :func:`load_expected` gives, port by port
    in order; a test checks). Raises :class:`_NotStreamable` at anything else
    (hand-written or edited files are read whole)."""
    try:
        f = open(path, encoding="utf-8")  # noqa: SIM115
    except OSError as e:
        raise OracleError(f"{path}: {e.strerror or e}") from None
    with f:
        try:
            if not f.readline().startswith(_VECTOR_HEAD):
                raise _NotStreamable
            for line in f:
                if line == "packets:\n":
                    break
                if line.startswith((" ", "-")) or ":" not in line:
                    raise _NotStreamable
            else:
                raise _NotStreamable
            yield from _expect_lines(f)
        except UnicodeDecodeError:
            raise _NotStreamable from None


def _expect_lines(f):
    pid = 0
    mode = ""  # "", "events", "expect"
    port = k = None
    summary = ""
    loads = json.loads
    for line in f:
        c = line[:4]
        if c == "    ":
            if mode != "expect" or port is None:
                raise _NotStreamable
            if line.startswith('    bytes: "') and line.endswith('"\n'):
                yield port, Expected(pid, k, bytes.fromhex(line[12:-2]), summary)
                port = None
            elif line.startswith("    summary: "):
                v = line[13:-1]
                summary = v[1:-1] if "\\" not in v and v[:1] == '"' else loads(v)
            else:
                raise _NotStreamable
        elif c == "  - ":
            if mode == "expect" and line.startswith("  - port: ") and port is None:
                port = int(line[10:])
                k += 1
                summary = ""
            elif mode != "events":
                raise _NotStreamable
        elif c == "- id":
            if line[:6] != "- id: " or mode != "expect" and pid or port is not None:
                raise _NotStreamable
            pid = int(line[6:])
            mode, k = "", 0
        elif c[:2] == "  ":
            if mode == "expect":
                raise _NotStreamable  # (a packet's fields come before its outputs)
            if line == "  expect:\n":
                mode = "expect"
            elif line == "  events:\n":
                mode = "events"
            elif mode == "events" or line[2] == " " or ": " not in line:
                raise _NotStreamable
        elif line[:1].isalpha():
            if pid and mode != "expect" or port is not None:
                raise _NotStreamable
            return  # checkpoints, final
        else:
            raise _NotStreamable
    if pid and mode != "expect" or port is not None:
        raise _NotStreamable


def iter_observed(path: str, port_map: dict | None = None, port: int | None = None, warn=None, progress=None):
    """(port, frame) of the observed packets, in file order: a capture read
    packet by packet, or a YAML file (read whole). ``progress(bytes read)``
    is called now and then."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise OracleError(f"{path}: {e.strerror or e}") from None
    if head not in _CAPTURE_MAGICS:
        for p, frames in load_observed(path, port_map, port).items():
            for fr in frames:
                yield p, fr
        return
    try:
        with CaptureReader(path) as r:
            warned = False
            tell = r.f.tell
            for n, (_ts, iface, frame, _wire) in enumerate(r):
                if progress is not None and not n & 0x3FFF:
                    progress(tell())
                if warn and port is not None and not warned and len(r.interfaces) > 1 and not port_map:
                    warn(f"--port {port} ignored: {path} has {len(r.interfaces)} interfaces "
                         "(each is named p<port>, or give --port-map)")
                    warned = True
                yield _observed_port(path, r.interfaces, iface, port_map, port), frame
    except CaptureError as e:
        raise OracleError(str(e)) from None


_CAPTURE_MAGICS = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d",
                   b"\x0a\x0d\x0d\x0a")


def _observed_port(path, interfaces, iface, port_map, port) -> int:
    name = interfaces[iface] if iface < len(interfaces) else str(iface)
    if port_map and (name in port_map or str(iface) in port_map):
        return port_map.get(name, port_map.get(str(iface)))
    if port is not None and len(interfaces) == 1:
        return port
    if name.startswith("p") and name[1:].isdigit():
        return int(name[1:])
    raise OracleError(f"{path}: interface {name!r} is not named p<port>; "
                      "give --port-map NAME=PORT,... (or --port N for a one-interface capture)")


class _Port:
    """The streaming comparison of one egress port (see :func:`compare_streams`)."""

    __slots__ = ("e_n", "o_n", "exp_wait", "obs_wait", "waiting", "seg", "reordered")

    def __init__(self):
        self.e_n = self.o_n = 0  # packets read on each side
        self.exp_wait: dict = {}  # bytes -> deque of (index, Expected) not matched yet
        self.obs_wait: dict = {}  # bytes -> deque of observed indices not matched yet
        self.waiting = 0
        #: exact pairs since the last point where every packet read was paired:
        #: (observed index, expected index, stimulus, output), compact
        self.seg = array("q")
        self.reordered: list = []  # (expected index, observed index, stimulus, output)

    def expected(self, e: Expected) -> None:
        i = self.e_n
        self.e_n += 1
        q = self.obs_wait.get(e.frame)
        if q:
            j = q.popleft()
            if not q:
                del self.obs_wait[e.frame]
            self.waiting -= 1
            self.seg.extend((j, i, e.stimulus, e.output))
        else:
            self.exp_wait.setdefault(e.frame, deque()).append((i, e))
            self.waiting += 1

    def observed(self, frame: bytes) -> None:
        j = self.o_n
        self.o_n += 1
        q = self.exp_wait.get(frame)
        if q:
            i, e = q.popleft()
            if not q:
                del self.exp_wait[frame]
            self.waiting -= 1
            self.seg.extend((j, i, e.stimulus, e.output))
        else:
            self.obs_wait.setdefault(frame, deque()).append(j)
            self.waiting += 1

    def settle(self, final: bool = False) -> None:
        """Order the pairs made so far among themselves when no later pair
        can come before them: every packet still waiting has a later index
        than every pair on its side (or none waits, or the streams ended).
        Then, as :func:`compare` does for the whole port, a longest run in
        expected order stays "in order" and the rest is reordered: pairs made
        later have later indices on both sides, so they extend any such run."""
        seg = self.seg
        if not seg:
            return
        if self.waiting and not final:
            min_i = min(q[0][0] for q in self.exp_wait.values()) if self.exp_wait else None
            min_j = min(q[0] for q in self.obs_wait.values()) if self.obs_wait else None
            if (min_i is not None and min_i < max(seg[1::4])) or (min_j is not None and min_j < max(seg[0::4])):
                return
        self.seg = array("q")
        if len(seg) == 4 or _increasing(seg):
            return
        quads = sorted(zip(seg[0::4], seg[1::4], seg[2::4], seg[3::4]))
        keep = _lis([q[1] for q in quads])
        for k, (j, i, stim, out) in enumerate(quads):
            if k not in keep:
                self.reordered.append((i, j, stim, out))


def _increasing(seg) -> bool:
    """Pairs (observed, expected, ...) in observed order with expected indices increasing."""
    obs, exp = seg[0::4], seg[1::4]
    return all(a < b for a, b in zip(obs, obs[1:])) and all(a < b for a, b in zip(exp, exp[1:]))


def compare_streams(expected, observed, step: int = 4096, observed_again=None) -> Report:
    """:func:`compare` of two streams, in bounded memory: ``expected`` gives
    (port, :class:`Expected`) in vector order, ``observed`` (port, frame) in
    capture order. They are read in step; a packet matched exactly (the k-th
    observed packet with some bytes on a port pairs with the k-th expected
    one, as in :func:`compare`) is forgotten once everything read before it on
    its port is paired. Memory grows only with the packets not matched yet
    (and, while some are, 32 bytes per pair). ``observed_again()`` reads the
    observed stream again when reordered packets need their bytes (else they
    are kept). The report is the one :func:`compare` gives (tested)."""
    ports: dict[int, _Port] = {}
    e_it, o_it = iter(expected), iter(observed)
    e_count = o_count = 0
    while e_it is not None or o_it is not None:
        if e_it is not None:
            n = 0
            for port, e in e_it:
                st = ports.get(port)
                if st is None:
                    st = ports[port] = _Port()
                st.expected(e)
                n += 1
                if n == step:
                    break
            e_count += n
            if n < step:
                e_it = None
        if o_it is not None:
            n = 0
            for port, frame in o_it:
                st = ports.get(port)
                if st is None:
                    st = ports[port] = _Port()
                st.observed(bytes(frame))
                n += 1
                if n == step:
                    break
            o_count += n
            if n < step:
                o_it = None
        for st in ports.values():
            st.settle()
    rep = Report(e_count, o_count)
    need: dict = {}  # (port, observed index) -> Mismatch waiting for its frame
    for port in sorted(ports):
        st = ports[port]
        st.settle(final=True)
        for i, j, stim, out in st.reordered:
            m = Mismatch("reordered", port, Expected(stim, out, b""), j + 1,
                         [f"expected position {i + 1} on the port, observed at {j + 1}"])
            need[(port, j)] = m
            rep.mismatches.append(m)
        free_exp = sorted((i, e) for q in st.exp_wait.values() for i, e in q)
        free_obs = sorted((j, fr) for fr, q in st.obs_wait.items() for j in q)
        start = 0
        used = set()
        for _i, e in free_exp:
            for k in range(start, len(free_obs)):
                j, fr = free_obs[k]
                if _similar(e.frame, fr):
                    rep.mismatches.append(Mismatch("differs", port, e, j + 1, field_diff(e.frame, fr)))
                    used.add(j)
                    start = k + 1
                    break
            else:
                rep.mismatches.append(Mismatch("missing", port, e))
        for j, fr in free_obs:
            if j not in used:
                rep.mismatches.append(Mismatch("extra", port, None, j + 1, [decode(fr).summary()]))
    if need:
        seen: dict[int, int] = {}
        for port, frame in (observed_again() if observed_again else ()):
            j = seen.get(port, 0)
            seen[port] = j + 1
            m = need.get((port, j))
            if m is not None:
                m.expected.frame = bytes(frame)
        for m in need.values():
            if not m.expected.frame:
                raise OracleError("the observed packets changed while being compared")
    order = {"differs": 0, "missing": 1, "extra": 2, "reordered": 3}
    rep.mismatches.sort(key=lambda m: (m.port, order[m.kind], m.expected.stimulus if m.expected else 0,
                                       m.observed_index or 0))
    return rep


# --- CLI -----------------------------------------------------------------------------------

def _port_map(s: str | None) -> dict | None:
    if not s:
        return None
    out = {}
    for item in s.split(","):
        name, _, port = item.partition("=")
        if not port.strip().isdigit():
            raise OracleError(f"--port-map: {item!r} is not NAME=PORT")
        out[name.strip()] = int(port)
    return out


def _warn(msg: str) -> None:
    print(f"ctcm compare: warning: {msg}", file=sys.stderr)


def compare_files(vector: str, observed: str, port_map: dict | None = None, port: int | None = None,
                  warn=None, progress=None) -> Report:
    """``ctcm compare``: a vector YAML against observed packets, streamed when
    the vector is in the form ctcm writes (else read whole); the same report
    either way."""
    if port is not None and port < 0:
        raise OracleError(f"--port must be >= 0, not {port}")

    try:
        return compare_streams(iter_expected(vector), iter_observed(observed, port_map, port, warn, progress),
                               observed_again=lambda: iter_observed(observed, port_map, port))
    except _NotStreamable:
        pass
    return compare(load_expected(vector), load_observed(observed, port_map, port))


def _progress_bar(path: str):
    """A tqdm bar over the observed file's bytes on a terminal (rate, ETA); else nothing."""
    import os

    if os.environ.get("CI") or not sys.stderr.isatty():
        return None, lambda: None
    try:
        total = os.path.getsize(path)
    except OSError:
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(total=total, desc="compare", unit="B", unit_scale=True, leave=False, file=sys.stderr)
    state = {"n": 0}

    def update(n):
        bar.update(n - state["n"])
        state["n"] = n

    return update, bar.close


def cmd_compare(args) -> int:
    update, close = _progress_bar(args.observed)
    try:
        rep = compare_files(args.vector, args.observed, _port_map(args.port_map), args.port, _warn, update)
    finally:
        close()
    if args.json:
        json.dump(rep.to_dict(), sys.stdout, indent=2)
        print()
    else:
        print(rep.format())
    return 0 if rep.ok else 1


def add_cli_command(sub) -> None:
    c = sub.add_parser("compare", help="compare a device's output with a golden vector (exit 0 only on a full match)")
    c.add_argument("vector", help="the vector YAML (NAME.yaml)")
    c.add_argument("--observed", required=True, help="pcap/pcapng (interfaces p<port>) or YAML of what the device produced")
    c.add_argument("--port-map", help="capture interface names to ports: if0=1,if1=2")
    c.add_argument("--port", type=int, help="the port of a one-interface capture")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_compare)
