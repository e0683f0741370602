"""Golden vectors: run stimulus through the pipeline model and write files.

For a scenario NAME, :func:`make_vector` (run the stimulus, then write) or
:func:`write_vector` (write a vector already run) writes into a directory:

* ``NAME.yaml``          the vector: options, then per stimulus packet its
                         time, ingress port, one-line summary and hex bytes,
                         with the expected output packets (egress port,
                         summary, bytes); tracker snapshots at checkpoints and
                         at the end. The oracle reads this file.
* ``NAME.stimulus.pcapng`` / ``NAME.expected.pcapng``: one interface per port
                         ("p1", "p2", ...), packet comments give the stimulus id.
* ``NAME.stimulus.hex`` / ``NAME.expected.hex``: one packet per line,
                         ``<time µs, 16 hex> <port, 4 hex> <length, 4 hex> <bytes>``
                         with ``//`` comment lines, readable by a testbench
                         without Python (``$fscanf`` / ``$readmemh`` style).

All files are deterministic; the files of a vector are renamed into place
together once all are complete. See docs/vectors.md.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pickle
import queue
import re
import shutil
import sys
import tempfile
import threading
import traceback
from dataclasses import dataclass, field

import yaml

from .gcpause import gc_paused
from .packet import summarize_many
from .pcapio import new_file_mode, pcapng_record_chunks
from .pipeline import Pipeline, PipelineConfig
from .scenario import Scenario, Stimulus, compile_scenario

__all__ = ["Vector", "run_stimulus", "run_scenario", "make_vector", "write_vector", "vector_yaml", "FORMAT", "FORMATS"]

FORMAT = "ctcm-vector/1"


@dataclass
class Vector:
    name: str
    description: str
    options: dict
    ports: dict
    #: per stimulus: dict(id, t_us, port, frame, expect=[(port, frame)], events=[str])
    packets: list = field(default_factory=list)
    checkpoints: list = field(default_factory=list)
    final: dict = field(default_factory=dict)


def make_pipeline(options: dict, ports: dict) -> Pipeline:
    geometry = None
    if options.get("geometry"):
        from .tracker import Geometry

        geometry = Geometry(**options["geometry"])
    cfg = PipelineConfig(
        port_pairs={ports["host"]: ports["net"]},
        mode=options.get("mode", "ideal"),
        geometry=geometry,
        timewait_us=options.get("timewait_us"),
        cnp_interval_us=options.get("cnp_interval_us", 0),
    )
    return Pipeline(cfg)


def run_stimulus(name, description, options, ports, stimulus: list[Stimulus], checkpoints=None, progress=None) -> Vector:
    with gc_paused():
        return _run_stimulus(name, description, options, ports, stimulus, checkpoints, progress)


def _run_stimulus(name, description, options, ports, stimulus, checkpoints, progress) -> Vector:
    pipe = make_pipeline(options, ports)
    vec = Vector(name, description, dict(options), dict(ports))
    checkpoints = checkpoints or {}
    # Runs between checkpoints go through the pipeline in batches.
    bounds = sorted({0, len(stimulus), *(k for k in checkpoints if 0 <= k <= len(stimulus))})
    for a, b in zip(bounds, bounds[1:] + [None]):
        if a in checkpoints and a < len(stimulus):
            vec.checkpoints.append({"name": checkpoints[a], "after": a, **pipe.snapshot()})
        if b is None:
            break
        for start in range(a, b, 50_000):
            chunk = stimulus[start : min(b, start + 50_000)]
            results = pipe.process_batch([(s.port, s.frame, s.t_us) for s in chunk])
            add = vec.packets.append
            for k, (s, (outs, events, verdict)) in enumerate(zip(chunk, results), start + 1):
                told = [str(e) for e in events] if events else []
                if verdict:
                    told.append(verdict)
                add({"id": k, "t_us": s.t_us, "port": s.port, "frame": s.frame, "note": s.note,
                     "expect": outs, "events": told})
            if progress is not None:
                progress(start + len(chunk))
    if len(stimulus) in checkpoints:
        vec.checkpoints.append({"name": checkpoints[len(stimulus)], "after": len(stimulus), **pipe.snapshot()})
    vec.final = pipe.snapshot()
    return vec


def run_scenario(sc: Scenario, progress=None) -> Vector:
    stim, cps = compile_scenario(sc)
    return run_stimulus(sc.name, sc.description, sc.options, sc.ports, stim, cps, progress)


# --- writers -------------------------------------------------------------------

# Characters json.dumps(ensure_ascii=False) escapes: a string without any is
# quoted as is.
_JSON_ESCAPED = re.compile(r'["\\\x00-\x1f]')


def _q(s: str) -> str:
    """A YAML double-quoted scalar (JSON string syntax is valid YAML)."""
    if type(s) is str and _JSON_ESCAPED.search(s) is None:
        return f'"{s}"'
    return json.dumps(s, ensure_ascii=False)


def _flow(x) -> str:
    """Small mappings/lists as YAML flow style (JSON is valid YAML)."""
    return json.dumps(x, ensure_ascii=False, sort_keys=False)


_HEX_TITLE = "// {}\n// format: <time_us:16 hex> <port:4 hex> <length:4 hex> <frame bytes hex>\n"
_CHUNK = 20_000  # packets rendered (and written) at a time


def _yaml_head(vec: Vector) -> str:
    return "\n".join([
        "# Golden vector generated by ctcm; do not edit (make vectors).",
        f"format: {FORMAT}",
        f"name: {_q(vec.name)}",
        f"description: {_q(vec.description)}",
        f"options: {_flow(vec.options)}",
        f"ports: {_flow(vec.ports)}",
        "packets:",
    ]) + "\n"


def _yaml_tail(vec: Vector) -> str:
    doc = {"checkpoints": vec.checkpoints, "final": vec.final}
    try:
        return _BlockYaml().dump(doc)
    except _NotPlain:
        return yaml.safe_dump(doc, **_TAIL_DUMP)


_TAIL_DUMP = dict(sort_keys=False, width=100000, default_flow_style=False, allow_unicode=True)
_YAML_WORDS = frozenset("yes Yes YES no No NO true True TRUE false False FALSE on On ON off Off OFF null Null NULL".split())
# Strings PyYAML writes plain (not a bool/null word, no indicator, resolved as str) ...
_PLAIN_STR = re.compile(r"[A-Za-z][A-Za-z0-9_]*"  # words: TIMEWAIT, network
                        r"|[0-9]{1,3}(?:\.[0-9]{1,3}){3}"  # IPv4 addresses
                        r"|[a-fA-F][0-9a-fA-F]{0,3}(?::[0-9a-fA-F]{0,4})*:[0-9a-fA-F]{1,4}")  # IPv6, from a letter
# ... and single quoted (they would read back as integers).
_QUOTED_STR = re.compile(r"0x[0-9a-fA-F]+")


class _NotPlain(Exception):
    """The document has something :class:`_BlockYaml` leaves to PyYAML."""


class _BlockYaml:
    """``yaml.safe_dump(doc, **_TAIL_DUMP)`` for the tracker snapshots, fast.

    Handles exact dicts and lists (block style, sequences in mappings not
    indented, empty ones as ``{}``/``[]``) of scalars. Common scalars (ints,
    bools, hex numbers, words, IP addresses) are written by rule, any other
    scalar as PyYAML writes it alone (cached per value). Raises
    :class:`_NotPlain` for what PyYAML would write differently in context
    (shared containers: anchors; multi-line or very long scalars; lists in
    lists); the caller then uses PyYAML."""

    def __init__(self):
        self.out: list[str] = []
        self.seen: set[int] = set()
        self.values: dict = {}
        self.keys: dict = {}

    def dump(self, doc: dict) -> str:
        if type(doc) is not dict:
            raise _NotPlain
        if not doc:
            return "{}\n"
        self.mapping(doc, 0, "")
        return "".join(self.out)

    def container(self, x) -> bool:
        t = type(x)
        if t is dict or t is list:
            if id(x) in self.seen:
                raise _NotPlain  # PyYAML would write an anchor and an alias
            self.seen.add(id(x))
            return bool(x)
        return False

    def mapping(self, d: dict, indent: int, first: str) -> None:
        """``first`` replaces the indentation of the first line (``- `` in a list)."""
        pad = " " * indent
        add = self.out.append
        for k, v in d.items():
            lead = first or pad
            first = ""
            if self.container(v):
                add(f"{lead}{self.key(k)}:\n")
                if type(v) is dict:
                    self.mapping(v, indent + 2, "")
                else:
                    self.sequence(v, indent)
            else:
                add(f"{lead}{self.key(k)}: {self.scalar(v)}\n")

    def sequence(self, items: list, indent: int) -> None:
        pad = " " * indent
        for v in items:
            if self.container(v):
                if type(v) is not dict:
                    raise _NotPlain
                self.mapping(v, indent + 2, pad + "- ")
            else:
                self.out.append(f"{pad}- {self.scalar(v)}\n")

    def scalar(self, v) -> str:
        t = type(v)
        if t is str:
            if _PLAIN_STR.fullmatch(v) and v not in _YAML_WORDS:
                return v
            if _QUOTED_STR.fullmatch(v):
                return f"'{v}'"
        elif t is int:
            return str(v)
        elif t is bool:
            return "true" if v else "false"
        elif v is None:
            return "null"
        elif t is dict:
            return "{}"
        elif t is list:
            return "[]"
        r = self.values.get((t, v))
        if r is None:
            r = self.values[(t, v)] = _alone(v, "k: ", "\n")
        return r

    def key(self, k) -> str:
        r = self.keys.get((type(k), k))
        if r is None:
            r = self.keys[(type(k), k)] = _alone({k: 0}, "", ": 0\n")
        return r


def _alone(v, before: str, after: str) -> str:
    """How PyYAML writes scalar ``v`` as the value of key ``k`` (or a mapping
    {key: 0}): the text between ``before`` and ``after``, if on one line."""
    if isinstance(v, str) and len(v) > 1000:
        raise _NotPlain
    text = yaml.safe_dump({"k": v} if before else v, **_TAIL_DUMP)
    if not (text.startswith(before) and text.endswith(after)):
        raise _NotPlain
    r = text[len(before) : len(text) - len(after)]
    if "\n" in r or r.startswith("? "):
        raise _NotPlain
    return r


def _quoted_all(strings: list[str]) -> list[str]:
    """``[_q(s) for s in strings]``; one regex scan when none needs escaping (the rule)."""
    if _JSON_ESCAPED.search("".join(strings)) is None:
        return [f'"{s}"' for s in strings]
    return [_q(s) for s in strings]


def _render_yaml(vec: Vector, start: int = 0, stop: int | None = None):
    """The ``packets:`` items of the YAML file (of packets[start:stop]), as
    text per chunk of packets. Summaries come from :func:`summarize_many`, a
    chunk at a time. A packet's text depends on that packet only."""
    packets = vec.packets
    stop = len(packets) if stop is None else stop
    summary_cache: dict = {}
    for c in range(start, stop, _CHUNK):
        chunk = packets[c : min(stop, c + _CHUNK)]
        # the stimulus frames, each followed by its outputs that differ from it
        frames = []
        for p in chunk:
            frame = p["frame"]
            frames.append(frame)
            frames.extend(f for _, f in p["expect"] if f != frame)
        summaries = iter(_quoted_all(summarize_many(frames, summary_cache)))
        text = []
        add = text.append
        for p in chunk:
            frame, expect = p["frame"], p["expect"]
            h = frame.hex()
            head = f"- id: {p['id']}\n  t_us: {p['t_us']}\n  port: {p['port']}\n"
            if len(expect) == 1 and expect[0][1] == frame and not p["note"] and not p["events"]:
                # the usual packet: forwarded unchanged, nothing to tell
                add(f"{head}  summary: {next(summaries)}\n  bytes: \"{h}\"\n"
                    f"  expect:\n  - port: {expect[0][0]}\n    summary: \"(unchanged)\"\n    bytes: \"{h}\"\n")
                continue
            note = f"  note: {_q(p['note'])}\n" if p["note"] else ""
            add(f"{head}{note}  summary: {next(summaries)}\n  bytes: \"{h}\"\n")
            if p["events"]:
                add("  events:\n")
                text.extend([f"  - {_q(e)}\n" for e in p["events"]])
            add("  expect:\n")
            for out_port, f in expect:
                if f == frame:
                    add(f"  - port: {out_port}\n    summary: \"(unchanged)\"\n    bytes: \"{h}\"\n")
                else:
                    add(f"  - port: {out_port}\n    summary: {next(summaries)}\n    bytes: \"{f.hex()}\"\n")
        yield "".join(text)


def _hex_lines(rows):
    """Hex file lines of (time, port, frame) rows, per chunk of rows."""
    text = []
    for t, port, f in rows:
        text.append(f"{t:016x} {port:04x} {len(f):04x} {f.hex()}\n")
        if len(text) >= _CHUNK:
            yield "".join(text)
            text.clear()
    yield "".join(text)


def vector_yaml(vec: Vector) -> str:
    """The vector as YAML, emitted directly (PyYAML's emitter is far too slow for
    million-packet vectors); ``yaml.safe_load`` reads it back (a test checks)."""
    return "".join(_yaml_parts(vec))


def _port_names(ports: dict) -> list[str]:
    return [f"p{p}" for p in sorted(set(ports.values()))]


def _port_index(ports: dict) -> tuple[list[str], dict]:
    names = _port_names(ports)
    return names, {int(n[1:]): i for i, n in enumerate(names)}


# The stimulus files need only the stimulus (they are written while the
# pipeline runs); the expected files need the run's outputs.

def _stimulus_rows(stimulus):
    """(time, port, frame) of every stimulus packet."""
    return ((s.t_us, s.port, s.frame) for s in stimulus)


def _expected_rows(vec: Vector):
    """(time, port, frame) of every expected output packet, in order."""
    for p in vec.packets:
        t = p["t_us"]
        for port, f in p["expect"]:
            yield t, port, f


def _stimulus_records(stimulus, idx: dict):
    """pcapng records (time, interface, frame, comment) of the stimulus."""
    for n, s in enumerate(stimulus, 1):
        yield s.t_us, idx[s.port], s.frame, f"stimulus {n}"


def _expected_records(vec: Vector, idx: dict):
    """pcapng records (time, interface, frame, comment) of the expected outputs."""
    for p in vec.packets:
        t, n = p["t_us"], p["id"]
        for k, (port, f) in enumerate(p["expect"], 1):
            yield t, idx[port], f, f"stimulus {n} output {k}"


def _stimulus_of(vec: Vector) -> list[Stimulus]:
    return [Stimulus(p["t_us"], p["port"], p["frame"], p["note"]) for p in vec.packets]


def stimulus_pcapng(vec: Vector) -> bytes:
    names, idx = _port_index(vec.ports)
    return b"".join(pcapng_record_chunks(_stimulus_records(_stimulus_of(vec), idx), names))


def expected_pcapng(vec: Vector) -> bytes:
    names, idx = _port_index(vec.ports)
    return b"".join(pcapng_record_chunks(_expected_records(vec, idx), names))


def stimulus_hex(vec: Vector) -> str:
    return _HEX_TITLE.format(f"{vec.name}: stimulus") + "".join(_hex_lines(_stimulus_rows(_stimulus_of(vec))))


def expected_hex(vec: Vector) -> str:
    return _HEX_TITLE.format(f"{vec.name}: expected output, in order") + "".join(_hex_lines(_expected_rows(vec)))


# --- the files of one vector -------------------------------------------------------

FORMATS = ("yaml", "pcapng", "hex")
_SUFFIXES = {"yaml": (".yaml",), "pcapng": (".stimulus.pcapng", ".expected.pcapng"),
             "hex": (".stimulus.hex", ".expected.hex")}


class _Outputs:
    """The files of one vector: written under temporary names in the output
    directory, then renamed into place together once all are complete
    (:meth:`commit`), or removed when the ``with`` block ends without a
    commit. A failure anywhere leaves the previous files of the vector as they
    were. Work may be handed to forked processes (:meth:`fork`); none is left
    running when the block ends."""

    def __init__(self, outdir: str, name: str, formats):
        bad = set(formats) - set(FORMATS)
        if bad:
            raise ValueError(f"unknown vector format(s) {', '.join(sorted(bad))} (yaml, pcapng, hex)")
        os.makedirs(outdir, exist_ok=True)
        self.outdir, self.name = outdir, name
        self.final: dict[str, str] = {}
        self.tmp: dict[str, str] = {}
        self.parts: list[str] = []
        self.waits: list = []
        try:
            for fmt in FORMATS:
                if fmt in formats:
                    for suffix in _SUFFIXES[fmt]:
                        self.final[suffix] = os.path.join(outdir, name + suffix)
                        self.tmp[suffix] = self._temp(suffix)
        except BaseException:
            self.discard()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.discard()
        return False

    def _temp(self, suffix: str) -> str:
        fd, tmp = tempfile.mkstemp(prefix=f".tmp-{self.name}{suffix}.", dir=self.outdir)
        os.close(fd)
        return tmp

    def path(self, suffix: str) -> str | None:
        """Where to write the file ``suffix`` (None: not wanted)."""
        return self.tmp.get(suffix)

    def scratch(self, suffix: str) -> str:
        """A temporary file for a part of a file; removed at the end."""
        tmp = self._temp(suffix)
        self.parts.append(tmp)
        return tmp

    def fork(self, fn) -> None:
        """Run ``fn()`` in a forked copy of this process (see :func:`_forked`)."""
        self.waits.append(_forked(fn))

    def join(self) -> None:
        """Wait for the forked work; raises the first error of a child."""
        while self.waits:
            self.waits.pop(0)()

    def commit(self) -> list[str]:
        self.join()
        mode = new_file_mode()
        for suffix, tmp in self.tmp.items():
            os.chmod(tmp, mode)
            os.replace(tmp, self.final[suffix])
        self.tmp = {}
        self.discard()
        return list(self.final.values())

    def discard(self) -> None:
        for wait in self.waits:  # after an error: never leave a child writing
            with contextlib.suppress(BaseException):
                wait()
        self.waits = []
        for tmp in [*self.tmp.values(), *self.parts]:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        self.tmp, self.parts = {}, []


def _write_text(path: str, title: str | None, parts) -> None:
    """Write text parts to ``path`` (a background thread does the writing)."""
    with _BackgroundWriter() as w, open(path, "wb") as f:
        try:
            if title:
                w.write(f, title.encode())
            for text in parts:
                w.write(f, text.encode())
        finally:
            w.drain()  # no file closes under a pending write


def _write_bytes(path: str, parts) -> None:
    with _BackgroundWriter() as w, open(path, "wb") as f:
        try:
            for part in parts:
                w.write(f, part)
        finally:
            w.drain()


def _write_side(out: _Outputs, side: str, ports: dict, title: str, records, rows) -> None:
    """The pcapng and hex files of one side ("stimulus" or "expected"):
    ``records(idx)`` gives its pcapng records, ``rows()`` its hex rows."""
    names, idx = _port_index(ports)
    if out.path(f".{side}.pcapng"):
        _write_bytes(out.path(f".{side}.pcapng"), pcapng_record_chunks(records(idx), names))
    if out.path(f".{side}.hex"):
        _write_text(out.path(f".{side}.hex"), _HEX_TITLE.format(title), _hex_lines(rows()))


def _write_stimulus_files(name: str, ports: dict, stimulus, out: _Outputs) -> None:
    _write_side(out, "stimulus", ports, f"{name}: stimulus", lambda idx: _stimulus_records(stimulus, idx),
                lambda: _stimulus_rows(stimulus))


def _write_expected_files(vec: Vector, out: _Outputs) -> None:
    _write_side(out, "expected", vec.ports, f"{vec.name}: expected output, in order",
                lambda idx: _expected_records(vec, idx), lambda: _expected_rows(vec))


def _write_yaml(vec: Vector, out: _Outputs) -> None:
    if out.path(".yaml"):
        _write_text(out.path(".yaml"), None, _yaml_parts(vec))


def _yaml_parts(vec: Vector, start: int = 0, stop: int | None = None):
    """The YAML file's text, or the part of it for packets[start:stop]
    (with the head if start is 0, the tail if stop is the end)."""
    n = len(vec.packets)
    stop = n if stop is None else stop
    if start == 0:
        yield _yaml_head(vec)
    yield from _render_yaml(vec, start, stop)
    if stop == n:
        yield _yaml_tail(vec)


def _append_file(dst_path: str, src_path: str) -> None:
    """Append the bytes of ``src_path`` to ``dst_path`` (copied in the kernel
    where it can: copy_file_range)."""
    with open(src_path, "rb") as src, open(dst_path, "r+b") as dst:  # (copy_file_range refuses O_APPEND)
        dst.seek(0, os.SEEK_END)
        size = os.fstat(src.fileno()).st_size
        left = size
        copy = getattr(os, "copy_file_range", None)
        while left and copy is not None:
            try:
                done = copy(src.fileno(), dst.fileno(), left)
            except OSError as e:
                if left < size or e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                    raise
                done = 0  # not on this file system: copy through user space
            if not done:
                break
            left -= done
        if left:
            src.seek(size - left)
            dst.seek(0, os.SEEK_END)
            shutil.copyfileobj(src, dst, 1 << 20)


# Share of the YAML packets this process renders while the forked one writes
# the expected-output files and then renders the rest: about even work when
# the expected files take half as long as the YAML file (measured).
_YAML_SHARE = 0.75


def _parallel(n: int) -> bool:
    return n >= _PARALLEL_MIN and _can_fork()


def _start_stimulus_files(name: str, ports: dict, stimulus, out: _Outputs, parallel: bool) -> None:
    """The stimulus files: by a forked process when ``parallel``."""
    if not parallel:
        _write_stimulus_files(name, ports, stimulus, out)
    elif out.path(".stimulus.pcapng") or out.path(".stimulus.hex"):
        out.fork(lambda: _write_stimulus_files(name, ports, stimulus, out))


def _write_run_files(vec: Vector, out: _Outputs, parallel: bool) -> None:
    """The files that need the run's outputs: the expected files and the YAML.
    When ``parallel``, a forked process writes the expected files and then the
    YAML text of the last packets into a part file, appended after this
    process's part."""
    if not (parallel and out.path(".yaml")):
        _write_expected_files(vec, out)
        _write_yaml(vec, out)
        return
    has_exp = out.path(".expected.pcapng") or out.path(".expected.hex")
    split = int(len(vec.packets) * (_YAML_SHARE if has_exp else 0.5))
    part = out.scratch(".part")

    def rest():
        _write_expected_files(vec, out)
        _write_text(part, None, _yaml_parts(vec, split))

    out.fork(rest)
    _write_text(out.path(".yaml"), None, _yaml_parts(vec, 0, split))
    out.join()
    _append_file(out.path(".yaml"), part)


def make_vector(name, description, options, ports, stimulus: list[Stimulus], outdir: str, formats=FORMATS,
                checkpoints=None, progress=None) -> tuple[Vector, list[str]]:
    """Run the stimulus through the pipeline and write the vector's files;
    returns the vector and the paths written.

    With two cores and a large stimulus, the work is spread over two
    processes: a forked copy of this process writes the stimulus files while
    this one runs the pipeline, then another writes the expected-output files
    and a part of the YAML while this one writes the rest of the YAML. The
    files are the same either way (tested)."""
    with _Outputs(outdir, name, formats) as out, gc_paused():
        parallel = _parallel(len(stimulus))
        _start_stimulus_files(name, ports, stimulus, out, parallel)
        vec = _run_stimulus(name, description, options, ports, stimulus, checkpoints, progress)
        _write_run_files(vec, out, parallel)
        return vec, out.commit()


def write_vector(vec: Vector, outdir: str, formats=FORMATS) -> list[str]:
    """Write the files of a vector that has been run; returns their paths.
    Large ones are streamed chunk by chunk, over two processes as in
    :func:`make_vector`; all are renamed into place together."""
    with _Outputs(outdir, vec.name, formats) as out, gc_paused():
        parallel = _parallel(len(vec.packets))
        _start_stimulus_files(vec.name, vec.ports, _stimulus_of(vec), out, parallel)
        _write_run_files(vec, out, parallel)
        return out.commit()


_PARALLEL_MIN = 50_000  # packets from which writing is split over two processes


def _can_fork() -> bool:
    # Linux only (fork is the default there and safe for this work); never with
    # other threads running (a forked child has only the calling thread).
    return sys.platform.startswith("linux") and threading.active_count() == 1 and (os.cpu_count() or 1) > 1


def _forked(fn):
    """Run ``fn()`` in a forked child process; returns a function that waits
    for it and raises the child's exception, if any, in this process."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 0
        try:
            os.close(r)
            fn()
        except BaseException as e:
            code = 1
            try:
                data = pickle.dumps(e)
            except Exception:
                data = pickle.dumps(RuntimeError(traceback.format_exc()))
            with os.fdopen(w, "wb") as f:
                f.write(data)
        finally:
            os._exit(code)
    os.close(w)

    def wait():
        with os.fdopen(r, "rb") as f:
            data = f.read()
        _, status = os.waitpid(pid, 0)
        if status:
            if data:
                raise pickle.loads(data)
            raise RuntimeError(f"writing vector files: child process ended with status {status:#x}")

    return wait


class _BackgroundWriter:
    """File writes done by one background thread, in order: the disk works
    (writes release the GIL) while the next chunk is rendered. The first
    error is raised again by :meth:`write` or :meth:`drain`."""

    def __init__(self, depth: int = 16):
        self._queue: queue.Queue = queue.Queue(depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="ctcm-writer", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._queue.put(None)
        self._thread.join()

    def _run(self):
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self._error is None:
                    try:
                        item[0].write(item[1])
                    except BaseException as e:  # re-raised in the caller's thread
                        self._error = e
            finally:
                self._queue.task_done()

    def _check(self):
        if self._error is not None:
            raise self._error

    def write(self, f, data: bytes) -> None:
        self._check()
        self._queue.put((f, data))

    def drain(self) -> None:
        """Wait until every queued write is done."""
        self._queue.join()
        self._check()


# --- suite / CLI -------------------------------------------------------------------

def _progress(total: int, desc: str, quiet: bool):
    """A tqdm progress bar on a terminal; nothing in CI, with --quiet or off a TTY."""
    if quiet or os.environ.get("CI") or not sys.stderr.isatty():
        return None, lambda: None
    from tqdm import tqdm

    tqdm.monitor_interval = 0  # no monitor thread: the writers fork (see _can_fork)

    bar = tqdm(total=total, desc=desc, unit="pkt", leave=False, file=sys.stderr)
    state = {"n": 0}

    def update(n):
        bar.update(n - state["n"])
        state["n"] = n

    return update, bar.close


# The command line keeps its last vector (and stimulus) until the process
# exits: freeing the objects of a million-packet vector takes over a second,
# and the `ctcm` entry point exits without freeing anything (cli.entry).
_KEPT: list = []


def _vector(name, desc, options, ports, stim, cps, outdir, formats, quiet) -> list[str]:
    """Run and write one vector (with a progress bar on a terminal)."""
    _KEPT.clear()
    update, close = _progress(len(stim), f"{name}: run", quiet)
    try:
        # (the pipeline reads the options it knows; "random" is recorded only)
        vec, written = make_vector(name, desc, options, ports, stim, outdir, formats, cps, update)
    finally:
        close()
    _KEPT[:] = [vec, stim]
    return written


def build_file(path: str, outdir: str, formats=FORMATS, quiet=False) -> list[str]:
    """Build the vector of one scenario file (a timeline or a `random:` block)."""
    from .scenario import load_scenario_or_random

    sc = load_scenario_or_random(path)
    if isinstance(sc, Scenario):
        stim, cps = compile_scenario(sc)
        return _vector(sc.name, sc.description, sc.options, sc.ports, stim, cps, outdir, formats, quiet)
    name, desc, options, params = sc
    return _random_vector(name, desc, options, params, outdir, formats, quiet)


def _random_vector(name, desc, options, params, outdir, formats, quiet) -> list[str]:
    from .randgen import generate

    update, close = _progress(params.packets, f"{name}: generate", quiet)
    try:
        stim = generate(params, update)
    finally:
        close()
    ports = {"host": params.ports[0], "net": params.ports[1]}
    return _vector(name, desc, {**options, "random": params.to_dict()}, ports, stim, {}, outdir, formats, quiet)


def _formats(text: str) -> tuple[str, ...]:
    from .errors import UsageError

    formats = tuple(f.strip() for f in text.split(",") if f.strip())
    bad = set(formats) - set(FORMATS)
    if bad or not formats:
        raise UsageError(f"--formats: unknown format(s) {', '.join(sorted(bad)) or '(none given)'} "
                         f"(a comma list of {', '.join(FORMATS)})")
    return formats


def cmd_vectors(args) -> int:
    formats = _formats(args.formats)
    for path in args.scenarios:
        written = build_file(path, args.out, formats, args.quiet)
        if not args.quiet:
            print(f"{path} -> {', '.join(os.path.basename(w) for w in written)}")
    return 0


def cmd_random(args) -> int:
    from .randgen import RandomParams

    from .errors import UsageError

    formats = _formats(args.formats)
    try:
        p = RandomParams(seed=args.seed, packets=args.packets, connections=args.connections,
                         concurrency=args.concurrency, loss=args.loss, retransmit=args.retransmit,
                         reject=args.reject, mra=args.mra, ce_ratio=args.ce_ratio, non_roce=args.non_roce,
                         malformed=args.malformed, ipv6=args.ipv6, duration_us=args.duration_us)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UsageError(f"--out {args.out}: exists and is not a directory")
    written = _random_vector(args.name, f"randomised: {p.to_dict()}", {"mode": args.mode}, p, args.out, formats,
                             args.quiet)
    if not args.quiet:
        print(f"{p.packets:,} packets requested -> {', '.join(written)}")
    return 0


def add_cli_commands(sub) -> None:
    from .randgen import RandomParams

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
