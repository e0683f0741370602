"""bmv2 (simple_switch): start and stop the switch, program and read it over Thrift.

:class:`Bmv2Switch` starts ``simple_switch`` on network interfaces (the PTF
suite) or in pcap-file mode (``--use-files``: the offline replay, no root),
waits for its Thrift server and stops it, leaving no process or file behind.
:class:`Bmv2Thrift` programs a running switch with a
:class:`ctcm.targets.program.Program` through bmv2's own Thrift Python
modules (``bm_runtime``, ``sswitch_runtime``: they come with the switch
binary, so their IDL is the running switch's), and reads its counters and
connection table back.

Which switch binary: an explicit path, else ``$CTCM_SIMPLE_SWITCH``, else
``simple_switch_perf`` on PATH (bmv2 built without per-packet logging, about
4x faster) unless a log file is wanted, else ``simple_switch``; with a gRPC
port (the P4Runtime server, :mod:`ctcm.targets.p4runtime`) ``$CTCM_SIMPLE_SWITCH_GRPC``
else ``simple_switch_grpc``, started with no program (``--no-p4``: the client
pushes it). The Thrift modules: ``$CTCM_BMV2_PYTHON``, else ``lib/python``
beside a simple_switch.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

from ctcm.targets.program import (CONN_FIELDS, COUNTERS, OPTIONS, PORT_MAP, SET_OPTIONS, SET_PEER, Program,
                                  conn_row, counter_keys, int_bytes)

__all__ = ["TargetError", "find_switch", "bmv2_python_dir", "Bmv2Thrift", "Bmv2Switch", "kill_group", "free_port"]

#: Frames each egress queue holds (bmv2's default is 64): deep enough that a
#: window of frames in flight never overflows one.
QUEUE_DEPTH = 16384


class TargetError(Exception):
    """The target could not be started, programmed or read (one line for users)."""


def find_switch(path: str | None = None, logging_build: bool = False, grpc: bool = False) -> str:
    """The simple_switch binary to run (see the module doc)."""
    if grpc:
        cand = path or os.environ.get("CTCM_SIMPLE_SWITCH_GRPC") or "simple_switch_grpc"
        found = shutil.which(cand)
        if not found:
            raise TargetError(f"{cand} not found (bmv2 built with P4Runtime: p4/README.md, Toolchain)")
        return found
    cand = path or os.environ.get("CTCM_SIMPLE_SWITCH")
    if cand:
        found = shutil.which(cand)
        if not found:
            raise TargetError(f"switch binary {cand!r} not found or not executable")
        return found
    for name in (() if logging_build else ("simple_switch_perf",)) + ("simple_switch",):
        found = shutil.which(name)
        if found:
            return found
    raise TargetError("simple_switch is not on PATH (install bmv2; see README)")


def bmv2_python_dir(switch: str | None = None) -> str | None:
    """Where bmv2's Thrift Python modules are: $CTCM_BMV2_PYTHON, or lib/python
    beside ``switch`` or the simple_switch on PATH."""
    d = os.environ.get("CTCM_BMV2_PYTHON")
    if d:
        return d
    for ss in (switch, shutil.which("simple_switch")):
        if not ss:
            continue
        prefix = os.path.dirname(os.path.dirname(os.path.realpath(ss)))
        lib = os.path.join(prefix, "lib")
        if not os.path.isdir(lib):
            continue
        for cand in (os.path.join(lib, "python"),
                     *(os.path.join(lib, v, p) for v in sorted(os.listdir(lib))
                       if v.startswith("python") for p in ("site-packages", "dist-packages"))):
            if os.path.isdir(os.path.join(cand, "bm_runtime")):
                return cand
    return None


def kill_group(proc: subprocess.Popen | None, timeout: float = 5.0) -> None:
    """Stop a process started in its own session (and its children)."""
    if proc is None or proc.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout)
            return
        except subprocess.TimeoutExpired:
            continue
    proc.wait(timeout)


def free_port() -> int:
    """A TCP port of 127.0.0.1 free now (for a switch's Thrift server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Bmv2Thrift:
    """A running switch's control plane over Thrift. ``json_file``: the compiled
    program it runs (names and widths of actions, registers, counters)."""

    def __init__(self, thrift_port: int, json_file: str, switch: str | None = None):
        self.thrift_port = thrift_port
        self.json_file = json_file
        self.switch = switch
        self._client = self._ss = self._transport = None
        self._p4 = None

    def connect(self) -> None:
        if self._client is not None:
            return
        d = bmv2_python_dir(self.switch)
        if not d:
            raise TargetError("bmv2's Thrift Python modules (bm_runtime, sswitch_runtime) not found; "
                              "set CTCM_BMV2_PYTHON")
        if d not in sys.path:
            sys.path.append(d)
        try:
            from bm_runtime.standard import Standard
            from sswitch_runtime import SimpleSwitch
            from thrift.protocol import TBinaryProtocol, TMultiplexedProtocol
            from thrift.transport import TSocket, TTransport
        except ImportError as e:
            raise TargetError(f"bmv2's Thrift client cannot be imported ({e}): pip install thrift") from None
        t = TTransport.TBufferedTransport(TSocket.TSocket("127.0.0.1", self.thrift_port))
        proto = TBinaryProtocol.TBinaryProtocol(t)
        t.open()
        self._transport = t
        self._client = Standard.Client(TMultiplexedProtocol.TMultiplexedProtocol(proto, "standard"))
        self._ss = SimpleSwitch.Client(TMultiplexedProtocol.TMultiplexedProtocol(proto, "simple_switch"))

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self._transport = self._client = self._ss = None

    def p4info(self) -> dict:
        """Names and widths from the compiled JSON: action parameters, registers, counters."""
        if self._p4 is None:
            with open(self.json_file) as f:
                j = json.load(f)
            self._p4 = {
                "actions": {a["name"]: [(p["name"], p["bitwidth"]) for p in a.get("runtime_data", [])]
                            for a in j.get("actions", [])},
                "registers": [r["name"] for r in j.get("register_arrays", [])],
                "counters": [c["name"] for c in j.get("counter_arrays", [])],
            }
        return self._p4

    def _action_data(self, action: str, values: list[int]) -> list[bytes]:
        params = self.p4info()["actions"].get(action)
        if params is None:
            raise TargetError(f"{self.json_file}: no action {action}")
        if len(params) != len(values):
            raise TargetError(f"{action} takes {len(params)} parameters ({params}), the config gives {len(values)}")
        return [int_bytes(v, w) for v, (_n, w) in zip(values, params)]

    def program(self, prog: Program) -> None:
        """Port map, mirroring sessions and options (replacing what was there)."""
        self.connect()
        from bm_runtime.standard.ttypes import BmAddEntryOptions, BmMatchParam, BmMatchParamExact, BmMatchParamType
        from sswitch_runtime.ttypes import MirroringSessionConfig

        c, ss = self._client, self._ss
        c.bm_mt_clear_entries(0, PORT_MAP, False)
        for e in prog.port_map:
            key = [BmMatchParam(type=BmMatchParamType.EXACT, exact=BmMatchParamExact(int_bytes(e.port, 9)))]
            c.bm_mt_add_entry(0, PORT_MAP, key, SET_PEER, self._action_data(SET_PEER, e.action_args),
                              BmAddEntryOptions())
        for session, port in prog.mirror_sessions:
            try:
                ss.mirroring_session_delete(session)
            except Exception:  # none yet: bmv2 answers with an error
                pass
            ss.mirroring_session_add(session, MirroringSessionConfig(port=port))
        c.bm_mt_set_default_action(0, OPTIONS, SET_OPTIONS, self._action_data(SET_OPTIONS, list(prog.options)))

    def set_queue_depths(self, depth: int = QUEUE_DEPTH) -> None:
        """Every egress queue ``depth`` frames deep (bmv2's ``set_all_queue_depths``)."""
        self.connect()
        self._ss.set_all_egress_queue_depths(depth)

    def reset(self, counters: bool = True) -> None:
        """Every register array and (unless not ``counters``) counter array back
        to zero (tables stay)."""
        self.connect()
        info = self.p4info()
        for r in info["registers"]:
            self._client.bm_register_reset(0, r)
        for name in info["counters"] if counters else ():
            self._client.bm_counter_reset_all(0, name)

    def counter(self, index: int) -> int:
        self.connect()
        return self._client.bm_counter_read(0, COUNTERS, index).packets

    def counters(self) -> dict[str, int]:
        self.connect()
        return {key: self._client.bm_counter_read(0, COUNTERS, i).packets for i, key in counter_keys().items()}

    def register(self, name: str) -> list[int]:
        self.connect()
        return list(self._client.bm_register_read_all(0, name))

    def connections(self) -> list[dict] | None:
        """The connection table read back from the tracker's register arrays
        (p4/include/tracker.p4); None when the program has no such arrays."""
        names = {}
        for field in CONN_FIELDS:
            found = [r for r in self.p4info()["registers"] if r == field or r.endswith("." + field)]
            if len(found) != 1:
                return None
            names[field] = found[0]
        cols = {f: self.register(names[f]) for f in CONN_FIELDS}
        rows = []
        for i, st in enumerate(cols["conn_state"]):
            if st:
                v = {f: cols[f][i] for f in CONN_FIELDS[1:-1]}
                rows.append(conn_row(st, v["conn_flags"], v["conn_lid"], v["conn_rid"], v["conn_lqpn"],
                                     v["conn_rqpn"], _ip16(cols["conn_ip"][4 * i : 4 * i + 4])))
        return rows


def _ip16(words) -> bytes:
    """A slot's remote IP from its four conn_ip words (index 4 * slot + w, w = 0
    most significant: 32-bit registers, readable over Thrift's i64)."""
    return b"".join(int(w).to_bytes(4, "big") for w in words)


class Bmv2Switch:
    """One simple_switch process. ``ports``: {port: interface name}; with
    ``files_wait`` (seconds) it runs in pcap-file mode in ``workdir``
    (``<name>_in.pcap`` read, ``<name>_out.pcap`` written there) after that
    wait. ``log_file``: simple_switch's per-packet log (the logging build),
    never rotated, at exactly that path once stopped. ``packet_in``: a
    nanomsg address (``ipc://PATH``) that carries the frames of every port
    instead of interfaces (one socket: their order across ports is kept). Its console goes to ``console`` (a path) or is dropped.
    ``grpc_port``: run simple_switch_grpc with no program, its P4Runtime server on
    127.0.0.1:``grpc_port`` (:attr:`grpc_address`; the client pushes the program)."""

    def __init__(self, json_file: str, ports: dict[int, str], *, switch: str | None = None,
                 thrift_port: int | None = None, workdir: str | None = None, files_wait: int | None = None,
                 log_file: str | None = None, log_level: str = "debug", console: str | None = None,
                 packet_in: str | None = None, grpc_port: int | None = None):
        if not os.path.isfile(json_file):
            raise TargetError(f"{json_file} is missing: run `make p4` (the P4 program for this geometry)")
        self.json_file = json_file
        self.ports = dict(ports)
        self.grpc_port = grpc_port
        self.switch = find_switch(switch, logging_build=bool(log_file), grpc=grpc_port is not None)
        self.thrift_port = thrift_port or free_port()
        self.workdir = workdir
        self.files_wait = files_wait
        self.log_file, self.log_level = log_file, log_level
        self.console = console
        self.packet_in = packet_in
        self.device_id = 100 + (os.getpid() * 7 + self.thrift_port) % 60000
        self.proc = None
        self.started = 0.0  # time.monotonic() when started
        self.thrift = Bmv2Thrift(self.thrift_port, json_file, self.switch)

    def command(self) -> list[str]:
        # The notification socket (unused) goes in the work directory when there is one.
        cmd = [self.switch, "--thrift-port", str(self.thrift_port), "--device-id", str(self.device_id)]
        if self.workdir:
            cmd += ["--notifications-addr", f"ipc://{os.path.join(os.path.abspath(self.workdir), 'notify.ipc')}"]
        if self.files_wait is not None:
            cmd += ["--use-files", str(self.files_wait)]
        if self.packet_in:  # frames of every port over one nanomsg socket, in order
            cmd += ["--packet-in", self.packet_in]
        for p, ifname in sorted(self.ports.items()):
            cmd += ["-i", f"{p}@{ifname}"]
        if self.log_file:  # bmv2 appends .txt to the name it is given
            base = self.log_file[:-4] if self.log_file.endswith(".txt") else self.log_file
            cmd += ["--log-file", base, "--log-level", self.log_level, "--log-flush",
                    "--log-file-max-size", str(1 << 62)]
        if self.grpc_port is None:
            return cmd + [self.json_file]
        return cmd + ["--no-p4", "--", "--grpc-server-addr", self.grpc_address]

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self, timeout: float = 30.0) -> Bmv2Thrift:
        """Start the switch and wait for its Thrift server; the connected control."""
        cmd = self.command()
        self.started = time.monotonic()
        out = subprocess.DEVNULL
        if self.console:
            out = open(self.console, "ab")  # noqa: SIM115 (the child keeps its own copy)
            out.write(("\n=== " + " ".join(cmd) + "\n").encode())
            out.flush()
        try:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir,
                                         start_new_session=True)
        except OSError as e:
            raise TargetError(f"{self.switch}: {e.strerror or e}") from None
        finally:
            if out is not subprocess.DEVNULL:
                out.close()
        logging.getLogger("thrift.transport.TSocket").setLevel(logging.CRITICAL)  # quiet while it starts
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.stop()
                raise TargetError(f"{os.path.basename(self.switch)} exited with status {code}" + self._last_words())
            try:
                self.thrift.connect()
                return self.thrift
            except TargetError:
                self.stop()
                raise
            except Exception:
                if time.monotonic() > deadline:
                    self.stop()
                    raise TargetError(f"simple_switch's Thrift server (port {self.thrift_port}) "
                                      f"did not answer in {timeout:.0f} s") from None
                time.sleep(0.05)

    def _last_words(self) -> str:
        """The last line the switch printed (its console may be in a directory about to go)."""
        try:
            with open(self.console, "rb") as f:
                lines = [ln.strip() for ln in f.read()[-4096:].decode(errors="replace").splitlines() if ln.strip()]
        except (OSError, TypeError):
            return ""
        return f": {lines[-1]}" if lines and not lines[-1].startswith("===") else ""

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        self.thrift.close()
        kill_group(self.proc)
        self.proc = None
        if self.log_file and not self.log_file.endswith(".txt") and os.path.exists(self.log_file + ".txt"):
            os.replace(self.log_file + ".txt", self.log_file)  # the log under the name asked for
        files = self.files() + ([self.packet_in[len("ipc://"):]] if (self.packet_in or "").startswith("ipc://") else [])
        for f in files:
            try:
                os.unlink(f)
            except FileNotFoundError:
                pass

    def files(self) -> list[str]:
        """Files outside the work directory the switch creates (removed by :meth:`stop`)."""
        return [] if self.workdir else [f"/tmp/bmv2-{self.device_id}-notifications.ipc"]

    def pids(self) -> list[int]:
        return [self.proc.pid] if self.proc else []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
