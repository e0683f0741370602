"""Targets: what implements the pipeline under the PTF suite.

Each target is a small class with ``start(config)`` / ``configure(config)`` /
``reset()`` / ``counters()`` / ``stop()``. The harness starts and stops it;
the tests (in the ptf process) get a handle with :func:`attach` from the test
parameters the harness passes, to configure options, clear state between
tests and read counters.

* ``model``: :mod:`ctcm_ptf.modelsw`, the model's Pipeline as a software
  switch on AF_PACKET sockets; control over a Unix socket.
* ``bmv2``: ``simple_switch`` running ``build/p4/<geometry tag>/ctcm.json``;
  control through bmv2's own Thrift client modules (shipped with bmv2,
  the same version as the switch binary).
* ``device``: nothing is started; no control plane (the device is set up by
  its owner), so counters are not read and state is not cleared.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

from .modelutil import REPO, conn_row, counter_keys

# Names in the P4 program (p4/README.md: the control-plane contract).
PORT_MAP = "CtcmIngress.port_map"
SET_PEER = "CtcmIngress.set_peer"
OPTIONS = "CtcmIngress.options"
SET_OPTIONS = "CtcmIngress.set_options"
COUNTERS = "CtcmIngress.ctcm_counters"
#: The tracker's per-slot register arrays (state first).
CONN_FIELDS = ("conn_state", "conn_flags", "conn_lid", "conn_rid", "conn_lqpn", "conn_rqpn", "conn_ip")


class TargetError(Exception):
    """The target could not be started or programmed (one line for users)."""


def _kill_group(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    """Stop a process we started in its own session (and its children)."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout)


# --- model ----------------------------------------------------------------------------

class ModelTarget:
    name = "model"

    def __init__(self, ports: dict[int, str] | None = None, logdir: str | None = None, control: str | None = None):
        self.ports = ports or {}
        self.logdir = logdir
        self.control_path = control or (os.path.join(logdir, "model-switch.sock") if logdir else None)
        self.proc = None
        self._sock = None
        self._buf = b""

    # harness side
    def start(self, cfg, tag: str = "") -> None:
        os.makedirs(self.logdir, exist_ok=True)
        cfg_path = os.path.join(self.logdir, f"config-{tag or 'default'}.json")
        with open(cfg_path, "w") as f:
            json.dump(cfg.to_dict(), f)
        cmd = [sys.executable, "-m", "ctcm_ptf.modelsw", "--control", self.control_path, "--config", cfg_path,
               "--log", os.path.join(self.logdir, "switch.log")]
        for p, ifname in sorted(self.ports.items()):
            cmd += ["--port", f"{p}={ifname}"]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(REPO, "ptf_tests"),
                                                            os.environ.get("PYTHONPATH", "")]))
        self.errlog = open(os.path.join(self.logdir, "switch.stderr"), "ab")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.errlog, env=env,
                                     start_new_session=True)
        line = self.proc.stdout.readline()
        if line.strip() != b"ready":
            self.stop()
            raise TargetError(f"model switch did not start (see {self.logdir}/switch.stderr)")
        self.configure(cfg)

    def stop(self) -> None:
        self.close()
        _kill_group(self.proc)
        self.proc = None

    def pids(self) -> list[int]:
        return [self.proc.pid] if self.proc else []

    def params(self) -> dict:
        return {"target": "model", "control": self.control_path}

    # control (both sides)
    def _call(self, req: dict) -> dict:
        if self._sock is None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._sock.settimeout(10)
            self._sock.connect(self.control_path)
        self._sock.sendall(json.dumps(req).encode() + b"\n")
        while b"\n" not in self._buf:
            data = self._sock.recv(1 << 20)
            if not data:
                raise TargetError("model switch closed its control socket")
            self._buf += data
        line, _, self._buf = self._buf.partition(b"\n")
        resp = json.loads(line)
        if not resp.get("ok"):
            raise TargetError(f"model switch: {resp.get('error')}")
        return resp

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def configure(self, cfg) -> None:
        self._call({"cmd": "configure", "config": cfg.to_dict()})

    def reset(self) -> None:
        self._call({"cmd": "reset"})

    def counters(self) -> dict[str, int] | None:
        return self._call({"cmd": "counters"})["counters"]

    def connections(self) -> list[dict]:
        return self._call({"cmd": "snapshot"})["snapshot"]["connections"]


# --- bmv2 -----------------------------------------------------------------------------

def bmv2_python_dir() -> str | None:
    """Where bmv2's Thrift Python modules are: $CTCM_BMV2_PYTHON, or lib/python
    beside the simple_switch on PATH (p4lang packages and the toolchain tarball)."""
    d = os.environ.get("CTCM_BMV2_PYTHON")
    if d:
        return d
    ss = shutil.which("simple_switch")
    if not ss:
        return None
    prefix = os.path.dirname(os.path.dirname(os.path.realpath(ss)))
    for cand in (os.path.join(prefix, "lib", "python"),
                 *(os.path.join(prefix, "lib", v, p) for v in os.listdir(os.path.join(prefix, "lib"))
                   if v.startswith("python") for p in ("site-packages", "dist-packages"))):
        if os.path.isdir(os.path.join(cand, "bm_runtime")):
            return cand
    return None


def json_path(tag: str) -> str:
    return os.path.join(REPO, "build", "p4", tag, "ctcm.json")


def _ip16(v: int) -> bytes | None:
    """A bit<128> register value read over Thrift (an i64: saturated when larger)."""
    return None if v >= (1 << 63) - 1 or v < 0 else int(v).to_bytes(16, "big")


def _int_bytes(v: int, bits: int) -> bytes:
    return int(v).to_bytes((bits + 7) // 8, "big")


class Bmv2Target:
    name = "bmv2"

    def __init__(self, ports: dict[int, str] | None = None, logdir: str | None = None, thrift_port: int = 9090,
                 json_file: str | None = None):
        self.ports = ports or {}
        self.logdir = logdir
        self.thrift_port = thrift_port
        self.json_file = json_file
        self.proc = None
        self._client = None
        self._ss = None
        self._transport = None
        self._p4 = None

    # harness side
    def start(self, cfg, tag: str = "") -> None:
        tag = tag or cfg.geometry.tag
        self.json_file = json_path(tag)
        if not os.path.isfile(self.json_file):
            raise TargetError(f"{os.path.relpath(self.json_file, REPO)} is missing: run `make p4` "
                              f"(the P4 program compiled for geometry {tag})")
        if not shutil.which("simple_switch"):
            raise TargetError("simple_switch is not on PATH (install bmv2; see README)")
        os.makedirs(self.logdir, exist_ok=True)
        # The Thrift port is private to the namespace; the device id names the switch's
        # notification socket in /tmp: unique, so runs never share one.
        self.device_id = 100 + os.getpid() % 30000
        cmd = ["simple_switch", "--thrift-port", str(self.thrift_port), "--device-id", str(self.device_id)]
        for p, ifname in sorted(self.ports.items()):
            cmd += ["-i", f"{p}@{ifname}"]
        level = os.environ.get("CTCM_PTF_SWITCH_LOG", "")
        if level:  # per-packet trace: slows simple_switch down a lot
            # one file, no rotation: bmv2 keeps only 3 rotated 5 MB files by default and drops older
            # ones, which coverage (ctcm coverage --p4-logs) would silently miss
            cmd += ["--log-file", os.path.join(self.logdir, f"switch-{tag}"), "--log-level", level,
                    "--log-flush", "--log-file-max-size", str(1 << 40)]
        cmd.append(self.json_file)
        self.out = open(os.path.join(self.logdir, "switch.log"), "ab")
        self.out.write(("\n=== " + " ".join(cmd) + "\n").encode())
        self.out.flush()
        self.proc = subprocess.Popen(cmd, stdout=self.out, stderr=subprocess.STDOUT, start_new_session=True)
        import logging

        logging.getLogger("thrift.transport.TSocket").setLevel(logging.CRITICAL)  # quiet while it starts
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise TargetError(f"simple_switch exited with status {self.proc.returncode} "
                                  f"(see {self.logdir}/switch.log)")
            try:
                self._connect()
                break
            except Exception:
                if time.monotonic() > deadline:
                    self.stop()
                    raise TargetError(f"simple_switch's Thrift server (port {self.thrift_port}) did not answer in 30 s")
                time.sleep(0.2)
        self.configure(cfg)

    def stop(self) -> None:
        self.close()
        _kill_group(self.proc)
        self.proc = None
        if getattr(self, "device_id", None) is not None:
            try:  # the notification socket simple_switch leaves in /tmp
                os.unlink(self.files()[0])
            except FileNotFoundError:
                pass

    def files(self) -> list[str]:
        """Files outside build/ this target creates (the harness checks they are gone)."""
        did = getattr(self, "device_id", None)
        return [f"/tmp/bmv2-{did}-notifications.ipc"] if did is not None else []

    def pids(self) -> list[int]:
        return [self.proc.pid] if self.proc else []

    def params(self) -> dict:
        return {"target": "bmv2", "thrift_port": self.thrift_port, "json": self.json_file}

    # control
    def _connect(self) -> None:
        if self._client is not None:
            return
        d = bmv2_python_dir()
        if not d:
            raise TargetError("bmv2's Thrift Python modules (bm_runtime, sswitch_runtime) not found; "
                              "set CTCM_BMV2_PYTHON")
        if d not in sys.path:
            sys.path.append(d)
        from thrift.protocol import TBinaryProtocol, TMultiplexedProtocol
        from thrift.transport import TSocket, TTransport
        from bm_runtime.standard import Standard
        from sswitch_runtime import SimpleSwitch

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
        return [_int_bytes(v, w) for v, (_n, w) in zip(values, params)]

    def configure(self, cfg) -> None:
        """Port map, mirroring sessions and options, from the config (p4/README.md)."""
        self._connect()
        from bm_runtime.standard.ttypes import BmAddEntryOptions, BmMatchParam, BmMatchParamExact, BmMatchParamType
        from sswitch_runtime.ttypes import MirroringSessionConfig

        c, ss = self._client, self._ss
        c.bm_mt_clear_entries(0, PORT_MAP, False)
        for h, n in cfg.port_pairs:
            for port, values in ((h, [n, 1, h + 1]), (n, [h, 0, 0])):
                key = [BmMatchParam(type=BmMatchParamType.EXACT, exact=BmMatchParamExact(_int_bytes(port, 9)))]
                c.bm_mt_add_entry(0, PORT_MAP, key, SET_PEER, self._action_data(SET_PEER, values),
                                  BmAddEntryOptions())
            try:
                ss.mirroring_session_delete(h + 1)
            except Exception:
                pass
            ss.mirroring_session_add(h + 1, MirroringSessionConfig(port=h))
        c.bm_mt_set_default_action(0, OPTIONS, SET_OPTIONS,
                                   self._action_data(SET_OPTIONS, [cfg.timewait_us, cfg.cnp_interval_us]))

    def reset(self) -> None:
        """Every register array and counter array back to zero (tables stay)."""
        self._connect()
        info = self.p4info()
        for r in info["registers"]:
            self._client.bm_register_reset(0, r)
        for name in info["counters"]:
            self._client.bm_counter_reset_all(0, name)

    def counters(self) -> dict[str, int]:
        self._connect()
        return {key: self._client.bm_counter_read(0, COUNTERS, i).packets for i, key in counter_keys().items()}

    def register(self, name: str) -> list[int]:
        self._connect()
        return list(self._client.bm_register_read_all(0, name))

    def connections(self) -> list[dict] | None:
        """The connection table read back from the tracker's register arrays
        (one per slot field, p4/include/tracker.p4); None when the program has no
        such arrays."""
        self._connect()
        names = {}
        for field in CONN_FIELDS:
            found = [r for r in self.p4info()["registers"] if r == field or r.endswith("." + field)]
            if len(found) != 1:
                return None
            names[field] = found[0]
        states = self.register(names["conn_state"])
        rows = []
        for i, st in enumerate(states):
            if st:
                v = {f: self._client.bm_register_read(0, names[f], i) for f in CONN_FIELDS[1:]}
                rows.append(conn_row(st, v["conn_flags"], v["conn_lid"], v["conn_rid"], v["conn_lqpn"],
                                     v["conn_rqpn"], _ip16(v["conn_ip"])))
        return rows


# --- device ---------------------------------------------------------------------------

class DeviceTarget:
    """A device already wired to this machine: nothing is started.

    Its control plane is the user's: optional shell hooks (environment) run
    between tests. ``CTCM_DEVICE_CONFIGURE``: gets the test's config as JSON
    (Config.to_dict()) on stdin; ``CTCM_DEVICE_RESET``: clears the device's
    state and counters; ``CTCM_DEVICE_COUNTERS``: prints {key: value} JSON
    (keys as in the model's snapshot). Without the hooks, tests that need other
    TIMEWAIT/pacing than p4/config.yaml are skipped, state is not cleared
    between tests and counters are not compared."""

    name = "device"

    def __init__(self, *a, **kw):
        self.hooks = {k: os.environ.get(f"CTCM_DEVICE_{k.upper()}") for k in ("configure", "reset", "counters")}

    def _hook(self, what: str, stdin: str = "") -> str:
        r = subprocess.run(self.hooks[what], shell=True, input=stdin, capture_output=True, text=True)
        if r.returncode != 0:
            raise TargetError(f"CTCM_DEVICE_{what.upper()} failed ({r.returncode}): {r.stderr.strip()[-300:]}")
        return r.stdout

    def start(self, cfg, tag: str = "") -> None:
        pass

    def stop(self) -> None:
        pass

    def pids(self) -> list[int]:
        return []

    def params(self) -> dict:
        return {"target": "device"}

    @property
    def configurable(self) -> bool:
        return bool(self.hooks["configure"])

    def configure(self, cfg) -> None:
        if self.hooks["configure"]:
            self._hook("configure", json.dumps(cfg.to_dict()))

    def reset(self) -> None:
        if self.hooks["reset"]:
            self._hook("reset")

    def connections(self):
        return None

    def counters(self):
        if not self.hooks["counters"]:
            return None
        return {k: int(v) for k, v in json.loads(self._hook("counters")).items()}


TARGETS = {"model": ModelTarget, "bmv2": Bmv2Target, "device": DeviceTarget}


def attach(params: dict):
    """A control handle on the running target, from the test parameters."""
    kind = params.get("target", "model")
    if kind == "model":
        return ModelTarget(control=params["control"])
    if kind == "bmv2":
        return Bmv2Target(thrift_port=int(params["thrift_port"]), json_file=params["json"])
    if kind == "device":
        return DeviceTarget()
    raise TargetError(f"unknown target {kind!r}")
