"""Capture every frame seen on the test-side interfaces, one pcap per port.

    python -m ctcm_ptf.capture --port 1=tp1 --port 2=tp2 --out DIR

Frames in both directions (sent by ptf, received from the switch), VLAN tags
restored. Stops on SIGTERM/SIGINT, flushing the files.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import struct
import sys
import time

from .modelsw import open_port, recv_tagged

_GLOBAL = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", action="append", required=True, help="PORT=IFNAME")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    socks, files = {}, {}
    for item in a.port:
        p, _, name = item.partition("=")
        s = open_port(name)
        socks[s.fileno()] = s
        f = open(os.path.join(a.out, f"port{p}.pcap"), "wb")
        f.write(_GLOBAL)
        files[s.fileno()] = f
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    print("ready", flush=True)
    while not stop:
        try:
            ready, _, _ = select.select(list(socks), [], [], 0.2)
        except InterruptedError:
            continue
        for fd in ready:
            while True:
                try:
                    frame, _out = recv_tagged(socks[fd])
                except BlockingIOError:
                    break
                t = time.time()
                files[fd].write(struct.pack("<IIII", int(t), int((t % 1) * 1e6), len(frame), len(frame)) + frame)
    for f in files.values():
        f.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
