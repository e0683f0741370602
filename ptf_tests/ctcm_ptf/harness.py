"""`make ptf TARGET=bmv2|bmv2-grpc|model|device`: run the PTF suite against a target.

    python -m ctcm_ptf.harness --target model [--tests NAME ...] [--params "corrupt_cnp_qpn=1"]
    python -m ctcm_ptf.harness --target device --portmap 1=enp1s0f0,2=enp1s0f1[,3=...]
        [--p4runtime HOST:PORT --device-id N]

For bmv2, bmv2-grpc and model: creates a network namespace with one veth pair per port
(switch side ``swN``, test side ``tpN``; port 3 is wired but not in the port
map), enters it, captures every test-side interface (``portN.pcap``), then per
table geometry the tests need: starts the target with that config, runs ptf
on the tests of that geometry, stops the target. Whatever happens (failure,
Ctrl-C, SIGTERM), it stops what it started, deletes the namespace (which
removes the veths) and checks that nothing is left. For device: no namespace,
nothing started; ptf runs on the given interfaces.

Logs under build/ptf/<target>/: ptf-<geometry>.log (ptf's log), ptf-<geometry>.out
(its console), switch.log, portN.pcap, replay-rates.tsv.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib
import inspect
import os
import re
import shutil
import signal
import subprocess
import sys
import time

from .modelutil import REPO, base_config

PTF_DIR = os.path.join(REPO, "ptf_tests")
TEST_DIR = os.path.join(PTF_DIR, "tests")
TEST_MODULES = ("test_behaviour", "test_vectors")
CLONE_NEWNET = 0x40000000
PORTS = (1, 2, 3)  # 1, 2: the config's pair; 3: wired, not in the port map


class HarnessError(Exception):
    pass


def sh(*cmd, check=True, quiet=False):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise HarnessError(f"{' '.join(cmd)}: {r.stderr.strip() or r.stdout.strip()}")
    return r


def _setns(path: str) -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise HarnessError(f"setns({path}): {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(fd)


# --- tests and groups ---------------------------------------------------------------

def discover(selected: list[str] | None) -> dict[str, list[str]]:
    """Geometry tag -> ["module.Class", ...] of the tests to run."""
    from .base import CtcmTest

    sys.path.insert(0, TEST_DIR)
    groups: dict[str, list[str]] = {}
    for modname in TEST_MODULES:
        mod = importlib.import_module(modname)
        for name, cls in inspect.getmembers(mod, inspect.isclass):
            # a test: a CtcmTest with runTest, defined in this module (bases have no runTest)
            if not (issubclass(cls, CtcmTest) and hasattr(cls, "runTest") and cls.__module__ == modname):
                continue
            full = f"{modname}.{name}"
            if selected and not any(s == name or s == full or re.fullmatch(s, name) for s in selected):
                continue
            groups.setdefault(cls.geometry_tag(), []).append(full)
    # the default geometry first
    return dict(sorted(groups.items(), key=lambda kv: (kv[0] != "default", kv[0])))


def group_config(tag: str, tests: list[str]):
    mod, _, name = tests[0].partition(".")
    return getattr(importlib.import_module(mod), name).config()


# --- the run ----------------------------------------------------------------------

class Run:
    def __init__(self, args):
        self.a = args
        self.target_name = args.target
        self.logdir = os.path.abspath(args.logdir or os.path.join(REPO, "build", "ptf", args.target))
        self.ns = None
        self.root_ns_fd = None
        self.procs: list[subprocess.Popen] = []
        self.target = None
        self.results = []  # (tag, ran, failures, errors, skipped, seconds)
        self.names: list[str] = []
        self.files: list[str] = []  # files outside build/ the targets made

    def log(self, msg: str) -> None:
        print(f"[ptf {self.target_name}] {msg}", flush=True)

    # -- namespace ---------------------------------------------------------------
    def make_netns(self) -> dict[int, tuple[str, str]]:
        self.ns = f"ctcm-ptf-{self.target_name}-{os.getpid()}"
        sh("ip", "netns", "add", self.ns)
        sh("ip", "-n", self.ns, "link", "set", "lo", "up")
        ports = {}
        for p in PORTS:
            sw, tp = f"sw{p}", f"tp{p}"
            sh("ip", "-n", self.ns, "link", "add", sw, "type", "veth", "peer", "name", tp)
            for ifn in (sw, tp):
                # no IPv6 on test links: the kernel's own solicitations would be extra frames
                sh("ip", "netns", "exec", self.ns, "sh", "-c",
                   f"f=/proc/sys/net/ipv6/conf/{ifn}/disable_ipv6; [ ! -e $f ] || echo 1 > $f")
                sh("ip", "-n", self.ns, "link", "set", ifn, "mtu", "9000")
                sh("ip", "-n", self.ns, "link", "set", ifn, "up")
            ports[p] = (sw, tp)
            self.names += [sw, tp]
        self.root_ns_fd = os.open("/proc/self/ns/net", os.O_RDONLY)
        _setns(f"/var/run/netns/{self.ns}")
        return ports

    def cleanup(self) -> list[str]:
        """Stop everything we started, delete the namespace; returns what is left."""
        if self.target is not None:
            self.files += getattr(self.target, "files", lambda: [])()
            try:
                self.target.stop()
            except Exception as e:
                self.log(f"stopping the target: {e}")
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                    p.wait(5)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    try:
                        os.killpg(p.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    p.wait(5)
        left = []
        if self.root_ns_fd is not None:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.setns(self.root_ns_fd, CLONE_NEWNET)
            os.close(self.root_ns_fd)
            self.root_ns_fd = None
        if self.ns:
            r = sh("ip", "netns", "pids", self.ns, check=False)
            for pid in r.stdout.split():  # only processes inside our own namespace
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            sh("ip", "netns", "del", self.ns, check=False)
            for _ in range(50):
                if self.ns not in sh("ip", "netns", "list", check=False).stdout.split():
                    break
                time.sleep(0.1)
            else:
                left.append(f"namespace {self.ns}")
            links = sh("ip", "-o", "link", "show", check=False).stdout
            for n in self.names:
                if re.search(rf"^\d+: {n}[@:]", links, re.M):
                    left.append(f"interface {n}")
        for f in self.files:
            if os.path.exists(f):
                left.append(f"file {f}")
        pids = [p.pid for p in self.procs] + (self.target.pids() if self.target else [])
        for pid in pids:
            try:
                os.kill(pid, 0)
                # a zombie is not left behind once reaped; check the state
                with open(f"/proc/{pid}/stat") as f:
                    if f.read().split()[2] != "Z":
                        left.append(f"process {pid}")
            except (ProcessLookupError, FileNotFoundError):
                pass
        return left

    # -- main ----------------------------------------------------------------------
    def main(self) -> int:
        from .targets import TARGETS, TargetError

        os.makedirs(self.logdir, exist_ok=True)
        for f in os.listdir(self.logdir):
            if f.endswith((".log", ".out", ".pcap", ".tsv", ".stderr", ".json", ".xml")) or f.startswith("switch-"):
                os.unlink(os.path.join(self.logdir, f))
        groups = discover(self.a.tests)
        if not groups:
            raise HarnessError("no test matches")
        total = sum(len(v) for v in groups.values())
        self.log(f"{total} tests in {len(groups)} geometry group(s): " +
                 ", ".join(f"{t} ({len(v)})" for t, v in groups.items()))
        t_start = time.monotonic()
        if self.target_name in ("bmv2", "bmv2-grpc") or (self.target_name == "device" and self.a.p4runtime):
            from .targets import json_path

            missing = [t for t in groups if not os.path.isfile(json_path(t))]
            if missing:
                self.log(f"no P4 build for geometry {', '.join(missing)}: running make p4")
                subprocess.run(["make", "--no-print-directory", "-C", REPO, "p4"], check=False)
        if self.target_name == "device":
            if not self.a.portmap:
                raise HarnessError("TARGET=device needs PORTMAP=1=IFACE,2=IFACE[,3=IFACE] "
                                   "(the device's ports 1 and 2 wired to these interfaces)")
            ifaces = {int(k): v for k, v in (x.split("=", 1) for x in self.a.portmap.split(","))}
            if len(groups) > 1:
                self.log("device: only the device's own geometry can run; tests of other geometries "
                         f"are skipped: {', '.join(t for t in groups if t != 'default')}")
                groups = {"default": groups.get("default", [])}
            test_ifaces = ifaces
            sw_ifaces = {}
        else:
            ports = self.make_netns()
            self.log(f"namespace {self.ns}: veth pairs " + ", ".join(f"{sw}<->{tp}" for sw, tp in ports.values()))
            test_ifaces = {p: tp for p, (sw, tp) in ports.items()}
            sw_ifaces = {p: sw for p, (sw, tp) in ports.items()}
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([PTF_DIR, os.environ.get("PYTHONPATH", "")]))
        cap = subprocess.Popen([sys.executable, "-m", "ctcm_ptf.capture", "--out", self.logdir] +
                               [x for p, i in sorted(test_ifaces.items()) for x in ("--port", f"{p}={i}")],
                               stdout=subprocess.PIPE, env=env, start_new_session=True)
        self.procs.append(cap)
        cap.stdout.readline()
        cls = TARGETS[self.target_name]
        for tag, tests in groups.items():
            cfg = group_config(tag, tests)
            nn = self.target_name == "bmv2" and self.a.bmv2_io == "nanomsg"
            addr = f"ipc://{os.path.join(self.logdir, 'bmv2-packets.ipc')}" if nn else None
            if nn:
                self.target = cls(sw_ifaces, self.logdir, packet_in=addr)
            else:
                self.target = cls(sw_ifaces, self.logdir) if self.target_name != "device" else cls(
                    p4runtime=self.a.p4runtime, device_id=self.a.device_id, p4info=self.a.p4info,
                    device_config=self.a.device_config)
            t0 = time.monotonic()
            self.log(f"geometry {tag}: starting {self.target_name}")
            try:
                self.target.start(cfg, tag)
            except TargetError as e:
                self.log(f"geometry {tag}: {e}")
                self.results.append((tag, len(tests), 0, len(tests), 0, time.monotonic() - t0))
                self.target = None
                continue
            params = dict(self.target.params(), logdir=self.logdir)
            tp = f"ctcm={params!r}"
            if self.a.params:
                tp += ";" + self.a.params
            cmd = [shutil.which("ptf", path=os.path.dirname(sys.executable)) or "ptf",
                   "--test-dir", TEST_DIR, "--log-file", os.path.join(self.logdir, f"ptf-{tag}.log"),
                   "--test-params", tp, "--socket-recv-size", "65536",
                   # ptf drops the oldest frame of a port holding more than qlen: never here
                   "--qlen", "1000000",
                   # ptf's debug level logs every frame it receives (slow): info unless asked
                   "--debug", os.environ.get("CTCM_PTF_DEBUG", "info")]
            if nn:  # ptf's nanomsg platform: every port over the switch's packet-in socket
                cmd += ["--platform", "nn", "--device-socket",
                        f"0-{{{','.join(str(p) for p in sorted(test_ifaces))}}}@{addr}"]
            else:
                for p, i in sorted(test_ifaces.items()):
                    cmd += ["--interface", f"0-{p}@{i}"]
            if self.a.xunit_dir:  # JUnit XML; ptf empties the directory it is given: one per run and group
                name = f"{os.path.basename(self.logdir)}-{tag}"
                cmd += ["--xunit", "--xunit-dir", os.path.join(os.path.abspath(self.a.xunit_dir), name)]
            cmd += tests
            out_path = os.path.join(self.logdir, f"ptf-{tag}.out")
            with open(out_path, "w") as out:
                p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                     cwd=self.logdir, start_new_session=True)
                self.procs.append(p)
                text = []
                for line in p.stdout:
                    out.write(line)
                    text.append(line)
                    if self.a.verbose or re.search(r"\.\.\. (ok|OK|FAIL|ERROR|skipped|SKIP)", line):
                        print("  " + line.rstrip(), flush=True)
                p.wait()
            self.procs.remove(p)
            self.target.stop()
            self.files += getattr(self.target, "files", lambda: [])()
            self.target = None
            res = self.parse(text)
            self.results.append((tag, *res, time.monotonic() - t0))
            if res[1] or res[2] or p.returncode:
                body = "".join(text)
                i = body.find("======")
                print(body[i:] if i >= 0 else body[-4000:], end="", flush=True)
            if res[0] == 0:
                self.results[-1] = (tag, len(tests), 0, len(tests), 0, self.results[-1][-1])
        self.wall = time.monotonic() - t_start
        return 0

    @staticmethod
    def parse(lines: list[str]) -> tuple[int, int, int, int]:
        body = "".join(lines)
        m = re.search(r"^Ran (\d+) tests?", body, re.M)
        ran = int(m.group(1)) if m else 0
        f = re.search(r"failures=(\d+)", body)
        e = re.search(r"errors=(\d+)", body)
        s = re.search(r"skipped=(\d+)", body)
        return ran, int(f.group(1)) if f else 0, int(e.group(1)) if e else 0, int(s.group(1)) if s else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Run the ctcm PTF suite against a target.")
    ap.add_argument("--target", choices=("model", "bmv2", "bmv2-grpc", "device"), default="model")
    ap.add_argument("--tests", nargs="*", help="test class names or regexes (default: all)")
    ap.add_argument("--params", default=os.environ.get("PTF_PARAMS", ""),
                    help='extra ptf test parameters, e.g. "corrupt_cnp_qpn=1"')
    ap.add_argument("--portmap", default=os.environ.get("PORTMAP", ""), help="device: 1=IFACE,2=IFACE[,3=IFACE]")
    ap.add_argument("--p4runtime", default=os.environ.get("P4RUNTIME", ""),
                    help="device: HOST:PORT of its P4Runtime server (the suite pushes the pipeline and programs it)")
    ap.add_argument("--device-id", type=int, default=int(os.environ.get("DEVICE_ID") or 0),
                    help="device: its P4Runtime device id")
    ap.add_argument("--p4info", default=os.environ.get("P4INFO"),
                    help="device: the P4Info to push (default: make p4's, beside the geometry's JSON)")
    ap.add_argument("--device-config", default=os.environ.get("P4_DEVICE_CONFIG"),
                    help="device: the compiled program to push (default: make p4's bmv2 JSON)")
    ap.add_argument("--logdir")
    ap.add_argument("--bmv2-io", choices=("veth", "nanomsg"), default=os.environ.get("CTCM_PTF_BMV2_IO", "veth"),
                    help="bmv2's ports: the namespace's veths (default) or one nanomsg socket (keeps the "
                         "order across ports: no waits in a windowed replay; no per-port capture)")
    ap.add_argument("--xunit-dir", default=os.environ.get("CTCM_PTF_XUNIT", ""),
                    help="write JUnit XML (ptf --xunit) into DIR/<logdir name>-<geometry>/")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("make ptf: needs root (network namespaces, raw sockets)", file=sys.stderr)
        return 2
    run = Run(a)
    interrupted = False

    def on_term(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started with SIGINT ignored
    status = 1
    try:
        run.main()
        status = 0
    except KeyboardInterrupt:
        interrupted = True
        run.log("interrupted: cleaning up")
    except HarnessError as e:
        run.log(f"error: {e}")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        left = run.cleanup()
        signal.signal(signal.SIGINT, signal.default_int_handler)
    ran = sum(r[1] for r in run.results)
    failed = sum(r[2] + r[3] for r in run.results)
    skipped = sum(r[4] for r in run.results)
    for tag, n, f, e, s, secs in run.results:
        run.log(f"geometry {tag}: {n} run, {n - f - e - s} passed, {f} failed, {e} errors, {s} skipped ({secs:.1f} s)")
    rates = os.path.join(run.logdir, "replay-rates.tsv")
    if os.path.exists(rates):
        best = None
        with open(rates) as f:
            for line in f:
                name, n, secs, rate = line.rstrip("\n").split("\t")[:4]
                if best is None or int(n) > best[1]:
                    best = (name, int(n), float(secs), rate)
        if best:
            run.log(f"replay rate: {best[3]} pkt/s ({best[0]}: {best[1]} stimuli in {best[2]:.2f} s)")
    if left:
        run.log("LEFT BEHIND: " + ", ".join(left))
        status = 1
    else:
        run.log("cleanup checked: no namespace, interface or process left")
    ok = status == 0 and not interrupted and failed == 0 and ran > 0
    word = "PASS" if ok else ("INTERRUPTED" if interrupted else "FAIL")
    wall = getattr(run, "wall", 0.0)
    run.log(f"{word}: {ran} tests, {ran - failed - skipped} passed, {failed} failed, {skipped} skipped "
            f"in {wall:.1f} s")
    if not ok:
        run.log(f"logs: {os.path.relpath(run.logdir, REPO)}/ (ptf-<geometry>.log and .out, switch.log, port<N>.pcap)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
