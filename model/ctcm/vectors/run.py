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

import gc
import os
import shutil

from ctcm.dataplane.config import base_config
from ctcm.errors import UsageError
from ctcm.io.gcpause import gc_paused
from ctcm.dataplane.pipeline import Pipeline
from ctcm.stimulus.scenario import Checkpoint, Scenario, Stimulus, compile_scenario
from ctcm.vectors.render import FORMAT, Renderer, Vector, expected_hex, expected_pcapng, stimulus_hex, stimulus_pcapng, vector_yaml
from ctcm.vectors.write import FORMATS, StreamWriter, _Outputs, _parallel

__all__ = ["Vector", "run_stimulus", "run_scenario", "make_vector", "write_vector", "stream_vector", "vector_yaml",
           "stimulus_pcapng", "expected_pcapng", "stimulus_hex", "expected_hex", "FORMAT", "FORMATS",
           "Checkpoint"]




def make_pipeline(options: dict, ports: dict) -> Pipeline:
    """The pipeline of a vector: the control-plane config with the vector's options and ports applied."""
    return Pipeline(base_config().with_options(options, ports))


_BATCH = 50_000  # stimulus packets per pipeline batch (and per chunk written)


def stimulus_source(stimulus: list, checkpoints: dict | None = None):
    """A stimulus list and checkpoints {index of last stimulus before it: name}
    as a stream: lists of stimulus, with a :class:`Checkpoint` where a
    snapshot is taken."""
    checkpoints = checkpoints or {}
    bounds = sorted({0, len(stimulus), *(k for k in checkpoints if 0 <= k <= len(stimulus))})
    for a, b in zip(bounds, bounds[1:] + [None]):
        if a in checkpoints:
            yield Checkpoint(checkpoints[a])
        if b is None:
            break
        for start in range(a, b, _BATCH):
            yield stimulus[start : min(b, start + _BATCH)]


def _run(pipe: Pipeline, vec: Vector, source, progress=None):
    """Run a stimulus stream (lists of :class:`Stimulus` and
    :class:`Checkpoint` marks) through ``pipe``; yields the run records of
    each batch (dicts id, t_us, port, frame, note, expect, events) and
    records the checkpoints and the final snapshot in ``vec``. A checkpoint
    is the snapshot before the next stimulus (several at one place: the
    last one's name)."""
    n = 0
    pending = None
    for item in source:
        if type(item) is Checkpoint:
            pending = item.name
            continue
        for start in range(0, len(item), _BATCH):
            chunk = item[start : start + _BATCH]
            if not chunk:
                continue
            if pending is not None:
                vec.checkpoints.append({"name": pending, "after": n, **pipe.snapshot()})
                pending = None
            results = pipe.process_batch([(s.port, s.frame, s.t_us) for s in chunk])
            packets = []
            add = packets.append
            for k, (s, (outs, events, verdict)) in enumerate(zip(chunk, results), n + 1):
                told = [str(e) for e in events] if events else []
                if verdict:
                    told.append(verdict)
                add({"id": k, "t_us": s.t_us, "port": s.port, "frame": s.frame, "note": s.note,
                     "expect": outs, "events": told})
            n += len(chunk)
            if progress is not None:
                progress(n)
            yield packets
    if pending is not None:
        vec.checkpoints.append({"name": pending, "after": n, **pipe.snapshot()})
    vec.final = pipe.snapshot()


def run_stimulus(name, description, options, ports, stimulus: list[Stimulus], checkpoints=None, progress=None) -> Vector:
    """Run a stimulus through the pipeline; the vector with every packet (in memory)."""
    with gc_paused():
        pipe = make_pipeline(options, ports)
        vec = Vector(name, description, dict(options), dict(ports), config=pipe.config.to_dict())
        for packets in _run(pipe, vec, stimulus_source(stimulus, checkpoints), progress):
            vec.packets.extend(packets)
        return vec


def run_scenario(sc: Scenario, progress=None) -> Vector:
    stim, cps = compile_scenario(sc)
    return run_stimulus(sc.name, sc.description, sc.options, sc.ports, stim, cps, progress)


# --- writing --------------------------------------------------------------------------

def estimate_bytes(frame_bytes: int, frames: int, formats=FORMATS) -> int:
    """About how many bytes the files of a vector take per stimulus packet
    whose frames average ``frame_bytes / frames`` bytes (each forwarded once,
    CNPs aside; measured on random vectors, within a few %)."""
    n = frame_bytes / max(1, frames)
    per = {"yaml": 4 * n + 240, "pcapng": 2 * (n + 64), "hex": 2 * (2 * n + 30)}
    return int(sum(per[f] for f in formats))


def _check_space(outdir: str, formats, first: list, total: int | None) -> None:
    """Refuse up front a vector the disk of ``outdir`` cannot hold."""
    if not total or not first:
        return
    per = estimate_bytes(sum(len(s.frame) for s in first), len(first), formats)
    need = per * total
    d = os.path.abspath(outdir)
    while not os.path.exists(d):
        d = os.path.dirname(d)
    free = shutil.disk_usage(d).free
    if need > free:
        raise UsageError(f"--out {outdir}: not enough disk space for this vector: about {_size(need)} needed "
                         f"(~{per:,} bytes per packet x {total:,} packets), {_size(free)} free")


def _size(n: float) -> str:
    for unit in ("bytes", "kB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1000
    return ""


def _peek(source):
    """(first stimulus list of ``source`` or [], the whole source again)."""
    head = []
    it = iter(source)
    for item in it:
        head.append(item)
        if type(item) is not Checkpoint and item:
            break

    def again():
        yield from head
        yield from it

    first = next((x for x in head if type(x) is not Checkpoint and x), [])
    return first, again()


def stream_vector(name, description, options, ports, source, outdir: str, formats=FORMATS, progress=None,
                  total: int | None = None, keep: bool = False) -> tuple[Vector, list[str]]:
    """Run a stimulus stream (lists of :class:`Stimulus`, :class:`Checkpoint`
    marks) through the pipeline and write the vector's files chunk by chunk,
    so memory does not depend on the number of packets. ``total`` (the
    packets expected, if known) sizes the disk check made before anything is
    written. Returns the vector (its packets only with ``keep``) and the
    paths written; all files appear together at the end, or none."""
    first, source = _peek(source)
    _check_space(outdir, formats, first, total)
    with _Outputs(outdir, name, formats) as out, gc_paused():
        pipe = make_pipeline(options, ports)
        vec = Vector(name, description, dict(options), dict(ports), config=pipe.config.to_dict())
        writer = StreamWriter(out, Renderer(vec), _parallel(total if total is not None else len(first)))
        try:
            for packets in _run(pipe, vec, source, progress):
                writer.feed(packets)
                if keep:
                    vec.packets.extend(packets)
                else:
                    gc.collect(1)  # (a cycle made in a chunk does not outlive it)
            writer.finish()
        except BaseException:
            writer.abort()
            raise
        return vec, out.commit()


def make_vector(name, description, options, ports, stimulus: list[Stimulus], outdir: str, formats=FORMATS,
                checkpoints=None, progress=None) -> tuple[Vector, list[str]]:
    """Run the stimulus through the pipeline and write the vector's files;
    returns the vector (with its packets) and the paths written."""
    return stream_vector(name, description, options, ports, stimulus_source(stimulus, checkpoints), outdir,
                         formats, progress, len(stimulus), keep=True)


def write_vector(vec: Vector, outdir: str, formats=FORMATS) -> list[str]:
    """Write the files of a vector that has been run; returns their paths.
    All are renamed into place together."""
    with _Outputs(outdir, vec.name, formats) as out, gc_paused():
        writer = StreamWriter(out, Renderer(vec), _parallel(len(vec.packets)))
        try:
            for start in range(0, len(vec.packets), _BATCH):
                writer.feed(vec.packets[start : start + _BATCH])
            writer.finish()
        except BaseException:
            writer.abort()
            raise
        return out.commit()
