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

from dataclasses import dataclass, field

from .config import base_config
from .gcpause import gc_paused
from .pipeline import Pipeline
from .scenario import Scenario, Stimulus, compile_scenario
from .vecrender import FORMAT, expected_hex, expected_pcapng, stimulus_hex, stimulus_pcapng, vector_yaml
from .vecrender import _stimulus_of
from .vecwrite import FORMATS, _Outputs, _parallel, _start_stimulus_files, _write_run_files

__all__ = ["Vector", "run_stimulus", "run_scenario", "make_vector", "write_vector", "vector_yaml", "stimulus_pcapng",
           "expected_pcapng", "stimulus_hex", "expected_hex", "FORMAT", "FORMATS"]



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
    #: the control-plane config the vector was made with (Config.to_dict(): the
    #: base config with ``options`` and ``ports`` applied)
    config: dict = field(default_factory=dict)


def make_pipeline(options: dict, ports: dict) -> Pipeline:
    """The pipeline of a vector: the control-plane config with the vector's options and ports applied."""
    return Pipeline(base_config().with_options(options, ports))


def run_stimulus(name, description, options, ports, stimulus: list[Stimulus], checkpoints=None, progress=None) -> Vector:
    with gc_paused():
        return _run_stimulus(name, description, options, ports, stimulus, checkpoints, progress)


def _run_stimulus(name, description, options, ports, stimulus, checkpoints, progress) -> Vector:
    pipe = make_pipeline(options, ports)
    vec = Vector(name, description, dict(options), dict(ports), config=pipe.config.to_dict())
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


