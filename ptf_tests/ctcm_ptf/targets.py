"""Targets: what implements the pipeline under the PTF suite.

Each target is a small class with ``start(config)`` / ``configure(config)`` /
``reset()`` / ``counters()`` / ``stop()``. The harness starts and stops it;
the tests (in the ptf process) get a handle with :func:`attach` from the test
parameters the harness passes, to configure options, clear state between
tests and read counters.

* ``model``: :mod:`ctcm_ptf.modelsw`, the model's Pipeline as a software
  switch on AF_PACKET sockets; control over a Unix socket.
* ``bmv2``: ``simple_switch`` running ``build/p4/<geometry tag>/ctcm.json``,
  started, programmed and read by :mod:`ctcm.targets.bmv2` (bmv2's own
  Thrift client modules; the offline replay uses the same code).
* ``bmv2-grpc``: ``simple_switch_grpc`` started with no program; over
  P4Runtime (:mod:`ctcm.targets.p4runtime`) the pipeline is pushed (P4Info +
  JSON), the port map, clone sessions and options programmed, counters read and
  reset. Registers (the connection table, their reset) over the same switch's
  Thrift port: bmv2's P4Runtime server has no register support (PI#376).
* ``device``: nothing is started. With a P4Runtime address the suite pushes the
  pipeline and programs the device and reads its counters over P4Runtime; the
  user's shell hooks do what P4Runtime cannot (registers, state reset).
  Without either, counters are not read and state is not cleared.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

from ctcm.targets.bmv2 import Bmv2Switch, Bmv2Thrift, TargetError, free_port, kill_group
from ctcm.targets.p4runtime import P4RuntimeClient
from ctcm.targets.program import program

from .modelutil import REPO




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
        kill_group(self.proc)
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

def json_path(tag: str) -> str:
    return os.path.join(REPO, "build", "p4", tag, "ctcm.json")


def p4info_path(json_file: str) -> str:
    """The P4Info `make p4` writes beside a build's JSON."""
    return os.path.splitext(json_file)[0] + ".p4info.txtpb"


class Bmv2Target:
    """simple_switch on the harness' interfaces, started, programmed and read
    through :mod:`ctcm.targets.bmv2` (the offline replay's code too)."""

    name = "bmv2"

    def __init__(self, ports: dict[int, str] | None = None, logdir: str | None = None, thrift_port: int = 9090,
                 json_file: str | None = None, packet_in: str | None = None):
        self.ports = ports or {}
        self.logdir = logdir
        self.packet_in = packet_in  # nanomsg instead of the interfaces (harness --bmv2-io nanomsg)
        self.thrift_port = thrift_port
        self.json_file = json_file
        self.switch = None
        self.thrift = Bmv2Thrift(thrift_port, json_file) if json_file else None

    # harness side
    def start(self, cfg, tag: str = "") -> None:
        tag = tag or cfg.geometry.tag
        self.json_file = json_path(tag)
        if not os.path.isfile(self.json_file):
            raise TargetError(f"{os.path.relpath(self.json_file, REPO)} is missing: run `make p4` "
                              f"(the P4 program compiled for geometry {tag})")
        os.makedirs(self.logdir, exist_ok=True)
        level = os.environ.get("CTCM_PTF_SWITCH_LOG", "")  # per-packet trace: slows simple_switch down a lot
        # The interface harness runs the logging-free build when there is one (CTCM_SIMPLE_SWITCH to choose);
        # a log is one file, never rotated (coverage, ctcm coverage --p4-logs, reads all of it).
        self.switch = Bmv2Switch(self.json_file, {} if self.packet_in else self.ports, thrift_port=self.thrift_port,
                                 packet_in=self.packet_in,
                                 log_file=os.path.join(self.logdir, f"switch-{tag}.txt") if level else None,
                                 log_level=level or "debug", console=os.path.join(self.logdir, "switch.log"),
                                 **self.switch_args())
        self.thrift = self.switch.start()
        self.started()
        self.configure(cfg)

    def switch_args(self) -> dict:
        return {}

    def started(self) -> None:
        """What follows the switch's start before it is programmed."""

    def stop(self) -> None:
        if self.switch is not None:
            self.switch.stop()

    def files(self) -> list[str]:
        """Files outside build/ this target creates (the harness checks they are gone)."""
        return self.switch.files() if self.switch else []

    def pids(self) -> list[int]:
        return self.switch.pids() if self.switch else []

    def params(self) -> dict:
        # ordered: one nanomsg socket keeps the frames' order across ports
        return {"target": "bmv2", "thrift_port": self.thrift_port, "json": self.json_file,
                "ordered": bool(self.packet_in)}

    # control (both sides)
    def close(self) -> None:
        if self.thrift is not None:
            self.thrift.close()

    def configure(self, cfg) -> None:
        """Port map, mirroring sessions and options from the config (p4/README.md),
        egress queues deep enough for a window of frames in flight."""
        self.thrift.program(program(cfg))
        self.thrift.set_queue_depths()

    def reset(self) -> None:
        self.thrift.reset()

    def counters(self) -> dict[str, int]:
        return self.thrift.counters()

    def connections(self) -> list[dict] | None:
        return self.thrift.connections()


# --- bmv2-grpc ------------------------------------------------------------------------

class Bmv2GrpcTarget(Bmv2Target):
    """simple_switch_grpc: P4Runtime for the pipeline, tables, clone sessions
    and counters; its Thrift port for registers (bmv2's limit, PI#376) and the
    egress queue depths (not a P4Runtime object)."""

    name = "bmv2-grpc"

    def __init__(self, ports=None, logdir=None, thrift_port: int = 9090, json_file: str | None = None,
                 grpc: str | None = None, device_id: int = 0):
        super().__init__(ports, logdir, thrift_port, json_file)
        self.p4rt = P4RuntimeClient(grpc, device_id, p4info_path(json_file)) if grpc else None

    def switch_args(self) -> dict:
        return {"grpc_port": free_port()}

    def started(self) -> None:
        self.p4rt = P4RuntimeClient(self.switch.grpc_address, self.switch.device_id, p4info_path(self.json_file))
        self.p4rt.set_pipeline(self.json_file)

    def params(self) -> dict:
        return dict(super().params(), target=self.name, grpc=self.p4rt.address, device_id=self.p4rt.device_id)

    def close(self) -> None:
        super().close()
        if self.p4rt is not None:
            self.p4rt.close()

    def stop(self) -> None:
        if self.p4rt is not None:
            self.p4rt.close()
        super().stop()

    def configure(self, cfg) -> None:
        self.p4rt.program(program(cfg))
        self.thrift.set_queue_depths()

    def reset(self) -> None:
        self.thrift.reset(counters=False)
        self.p4rt.reset_counters()

    def counters(self) -> dict[str, int]:
        return self.p4rt.counters()


# --- device ---------------------------------------------------------------------------

class DeviceTarget:
    """A device already wired to this machine: nothing is started.

    With ``p4runtime`` (host:port of its P4Runtime server, ``device_id``) the
    suite pushes the pipeline (``p4info``, ``device_config``: default the
    geometry's P4Info and bmv2 JSON from `make p4`; another target's compiled
    program with ``P4_DEVICE_CONFIG``), programs the port map, clone sessions
    and options and reads and resets the counters over P4Runtime. The hooks
    below then only do what P4Runtime cannot (registers: ``CTCM_DEVICE_RESET``).

    Otherwise its control plane is the user's: optional shell hooks (environment) run
    between tests. ``CTCM_DEVICE_CONFIGURE``: gets the test's config as JSON
    (Config.to_dict()) on stdin; ``CTCM_DEVICE_RESET``: clears the device's
    state and counters; ``CTCM_DEVICE_COUNTERS``: prints {key: value} JSON
    (keys as in the model's snapshot). Without the hooks, tests that need other
    TIMEWAIT/pacing than p4/config.yaml are skipped, state is not cleared
    between tests and counters are not compared."""

    name = "device"

    def __init__(self, *a, p4runtime: str | None = None, device_id: int = 0, p4info: str | None = None,
                 device_config: str | None = None, **kw):
        self.hooks = {k: os.environ.get(f"CTCM_DEVICE_{k.upper()}") for k in ("configure", "reset", "counters")}
        self.device_config = device_config
        self.p4rt = P4RuntimeClient(p4runtime, device_id, p4info or "") if p4runtime else None

    def _hook(self, what: str, stdin: str = "") -> str:
        r = subprocess.run(self.hooks[what], shell=True, input=stdin, capture_output=True, text=True)
        if r.returncode != 0:
            raise TargetError(f"CTCM_DEVICE_{what.upper()} failed ({r.returncode}): {r.stderr.strip()[-300:]}")
        return r.stdout

    def start(self, cfg, tag: str = "") -> None:
        if self.p4rt is not None:
            js = json_path(tag or cfg.geometry.tag)
            self.p4rt.p4info_file = self.p4rt.p4info_file or p4info_path(js)
            self.device_config = self.device_config or js
            self.p4rt.set_pipeline(self.device_config)
            self.configure(cfg)

    def stop(self) -> None:
        self.close()

    def close(self) -> None:
        if self.p4rt is not None:
            self.p4rt.close()

    def pids(self) -> list[int]:
        return []

    def params(self) -> dict:
        if self.p4rt is None:
            return {"target": "device"}
        return {"target": "device", "p4runtime": self.p4rt.address, "device_id": self.p4rt.device_id,
                "p4info": self.p4rt.p4info_file}

    @property
    def configurable(self) -> bool:
        return bool(self.p4rt or self.hooks["configure"])

    def configure(self, cfg) -> None:
        if self.p4rt is not None:
            self.p4rt.program(program(cfg))
        elif self.hooks["configure"]:
            self._hook("configure", json.dumps(cfg.to_dict()))

    def reset(self) -> None:
        if self.hooks["reset"]:
            self._hook("reset")
        if self.p4rt is not None:
            self.p4rt.reset_counters()

    def connections(self):
        return None

    def counters(self):
        if self.p4rt is not None:
            return self.p4rt.counters()
        if not self.hooks["counters"]:
            return None
        return {k: int(v) for k, v in json.loads(self._hook("counters")).items()}


TARGETS = {"model": ModelTarget, "bmv2": Bmv2Target, "bmv2-grpc": Bmv2GrpcTarget, "device": DeviceTarget}


def attach(params: dict):
    """A control handle on the running target, from the test parameters."""
    kind = params.get("target", "model")
    if kind == "model":
        return ModelTarget(control=params["control"])
    if kind == "bmv2":
        return Bmv2Target(thrift_port=int(params["thrift_port"]), json_file=params["json"])
    if kind == "bmv2-grpc":
        return Bmv2GrpcTarget(thrift_port=int(params["thrift_port"]), json_file=params["json"], grpc=params["grpc"],
                              device_id=int(params["device_id"]))
    if kind == "device":
        return DeviceTarget(p4runtime=params.get("p4runtime"), device_id=int(params.get("device_id", 0)),
                            p4info=params.get("p4info"))
    raise TargetError(f"unknown target {kind!r}")
