"""The model as a software switch: ctcm's Pipeline on real interfaces.

    python -m lib.modelsw --port 1=sw1 --port 2=sw2 --control /tmp/ctl.sock --config CONFIG.json

One AF_PACKET socket per switch port (VLAN tags put back from the kernel's
auxiliary data, outgoing packets ignored), a select() loop, and for every
received frame ``Pipeline.process(port, frame, now_us)`` with now_us the
microseconds since the switch started (bmv2's ingress_global_timestamp is the
same kind of clock); the outputs are sent on their egress ports. No scapy.

A Unix stream socket takes control requests, one JSON object per line, and
answers one JSON line each:

* ``{"cmd": "configure", "config": {...}}``: a new Pipeline with this config
  (:meth:`ctcm.dataplane.config.Config.to_dict` form): state and counters start empty;
* ``{"cmd": "reset"}``: a new Pipeline with the current config;
* ``{"cmd": "counters"}``: ``{"counters": {key: value}}`` (the model's snapshot);
* ``{"cmd": "snapshot"}``: the whole snapshot (counters, connections, flows);
* ``{"cmd": "ping"}``.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import socket
import struct
import sys
import time

from .modelutil import config_from_dict, make_pipeline, outputs_of

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_AUXDATA = 8
PACKET_OUTGOING = 4
TP_STATUS_VLAN_VALID = 1 << 4
TP_STATUS_VLAN_TPID_VALID = 1 << 6
_AUX = struct.Struct("IIIHHHH")


def open_port(ifname: str) -> socket.socket:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
    s.bind((ifname, ETH_P_ALL))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.setblocking(False)
    return s


def recv_frame(s: socket.socket):
    """One frame with its VLAN tag restored; None for our own outgoing frames."""
    data, outgoing = recv_tagged(s)
    return None if outgoing else data


def recv_tagged(s: socket.socket):
    """(frame with its VLAN tag put back from the kernel's auxdata, sent by this host?)."""
    data, anc, _flags, addr = s.recvmsg(65536, socket.CMSG_SPACE(_AUX.size))
    for level, typ, cdata in anc:
        if level == SOL_PACKET and typ == PACKET_AUXDATA and len(cdata) >= _AUX.size:
            status, _l, _sl, _mac, _net, tci, tpid = _AUX.unpack_from(cdata)
            if tci or status & TP_STATUS_VLAN_VALID:
                if not (tpid or status & TP_STATUS_VLAN_TPID_VALID):
                    tpid = 0x8100
                data = data[:12] + struct.pack("!HH", tpid, tci) + data[12:]
    return data, addr[2] == PACKET_OUTGOING


class Switch:
    def __init__(self, ports: dict[int, str], config: dict, log):
        self.ports = {p: open_port(ifname) for p, ifname in ports.items()}
        self.by_fd = {s.fileno(): p for p, s in self.ports.items()}
        self.log = log
        self.t0 = time.monotonic_ns()
        self.set_config(config)
        self.count = 0

    def set_config(self, config: dict) -> None:
        self.config = config_from_dict(config)
        self.pipe = make_pipeline(self.config)
        self.log(f"configured: {json.dumps(config, sort_keys=True)}")

    def now_us(self) -> int:
        return (time.monotonic_ns() - self.t0) // 1000

    def handle_frame(self, port: int, frame: bytes) -> None:
        now = self.now_us()
        outs = outputs_of(self.pipe.process(port, frame, now))
        self.count += 1
        self.log(f"t={now} in port {port} len {len(frame)} -> " +
                 (", ".join(f"port {p} len {len(b)}" for p, b in outs) or "dropped"))
        for p, b in outs:
            s = self.ports.get(p)
            if s is None:
                self.log(f"  output to port {p}: not a switch port, dropped")
                continue
            try:
                s.send(bytes(b))
            except OSError as e:
                self.log(f"  send on port {p} failed: {e}")

    def control(self, req: dict) -> dict:
        cmd = req.get("cmd")
        if cmd == "configure":
            self.set_config(req["config"])
            return {"ok": True}
        if cmd == "reset":
            self.pipe = make_pipeline(self.config)
            return {"ok": True}
        if cmd == "counters":
            return {"ok": True, "counters": self.pipe.snapshot()["counters"]}
        if cmd == "snapshot":
            return {"ok": True, "snapshot": self.pipe.snapshot()}
        if cmd == "ping":
            return {"ok": True, "frames": self.count}
        return {"ok": False, "error": f"unknown command {cmd!r}"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", action="append", required=True, help="PORT=IFNAME")
    ap.add_argument("--control", required=True, help="Unix socket path for control requests")
    ap.add_argument("--config", required=True, help="JSON file: the config as Config.to_dict() gives it")
    ap.add_argument("--log", help="per-packet log file")
    a = ap.parse_args(argv)
    ports = {}
    for item in a.port:
        p, _, name = item.partition("=")
        ports[int(p)] = name
    logf = open(a.log, "a", buffering=1) if a.log else None

    def log(msg):
        if logf:
            logf.write(msg + "\n")

    with open(a.config) as f:
        config = json.load(f)
    sw = Switch(ports, config, log)
    if os.path.exists(a.control):
        os.unlink(a.control)
    ctl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ctl.bind(a.control)
    ctl.listen(4)
    clients: dict[int, tuple[socket.socket, bytearray]] = {}
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    log(f"model switch up: ports {ports}")
    print("ready", flush=True)
    try:
        while not stop:
            fds = list(sw.by_fd) + [ctl.fileno()] + list(clients)
            try:
                ready, _, _ = select.select(fds, [], [], 0.5)
            except InterruptedError:
                continue
            for fd in ready:
                if fd in sw.by_fd:
                    port = sw.by_fd[fd]
                    s = sw.ports[port]
                    while True:  # drain the socket
                        try:
                            frame = recv_frame(s)
                        except BlockingIOError:
                            break
                        if frame is not None:
                            sw.handle_frame(port, frame)
                elif fd == ctl.fileno():
                    c, _ = ctl.accept()
                    clients[c.fileno()] = (c, bytearray())
                else:
                    c, buf = clients[fd]
                    data = c.recv(65536)
                    if not data:
                        c.close()
                        del clients[fd]
                        continue
                    buf += data
                    while b"\n" in buf:
                        line, _, rest = bytes(buf).partition(b"\n")
                        buf[:] = rest
                        try:
                            resp = sw.control(json.loads(line))
                        except Exception as e:  # report to the client, keep switching
                            resp = {"ok": False, "error": f"{type(e).__name__}: {e}"}
                        c.sendall(json.dumps(resp).encode() + b"\n")
    finally:
        log(f"model switch down after {sw.count} frames")
        ctl.close()
        if os.path.exists(a.control):
            os.unlink(a.control)
    return 0


if __name__ == "__main__":
    sys.exit(main())
