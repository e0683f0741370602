"""A golden vector as a testbench reads it: its config, its stimuli (streamed
from the pcapng, hex or YAML file) and its expected outputs per port.

Pure Python (no cocotb): the readers are the package's own where it has them
(the capture reader of :mod:`ctcm.io.pcapio`, the streamed expected outputs of
:mod:`ctcm.oracle.files`); the hex file's line format is the one
:mod:`ctcm.vectors.render` writes (docs/vectors.md).
"""

from __future__ import annotations

import json
import os
from typing import Iterator, NamedTuple

import yaml

from ctcm.dataplane.config import Config, ConfigError, base_config, parse_config
from ctcm.oracle.compare import Expected, OracleError
from ctcm.oracle import parts
from ctcm.oracle.files import _NotStreamable, iter_expected, load_expected
from ctcm.oracle.parts import vector_head

__all__ = ["Stimulus", "VectorFiles", "read_head", "vector_config", "iter_stimuli", "expected_by_port"]

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class Stimulus(NamedTuple):
    id: int        # 1-based, the vector's stimulus number
    t_us: int      # model time
    port: int      # ingress port
    frame: bytes


class VectorFiles(NamedTuple):
    """The files of one vector, found from its YAML path."""

    yaml: str
    pcapng: str
    hex: str

    @classmethod
    def of(cls, path: str) -> "VectorFiles":
        base = path[: -len(".yaml")] if path.endswith(".yaml") else path
        return cls(base + ".yaml", base + ".stimulus.pcapng", base + ".stimulus.hex")


def read_head(path: str) -> dict:
    """The vector's header (name, options, ports, config) without its packets."""
    return vector_head(path)


def vector_config(head: dict) -> Config:
    """The control-plane config the vector was made with (its ``config:``),
    else p4/config.yaml with the vector's options and ports."""
    try:
        if isinstance(head.get("config"), dict):
            return parse_config(json.dumps(head["config"]), f"{head.get('name', 'vector')}: config")
        return base_config().with_options(head.get("options") or {}, head.get("ports") or None)
    except ConfigError as e:
        raise OracleError(str(e)) from None


def iter_stimuli(path: str, source: str = "auto") -> Iterator[Stimulus]:
    """The stimuli of the vector ``path`` (its YAML), in order, from
    ``source``: ``pcapng``, ``hex``, ``yaml`` or ``auto`` (the pcapng when it
    exists, else the hex file, else the YAML), streamed from each."""
    files = VectorFiles.of(path)
    if source == "auto":
        source = next((s for s, p in (("pcapng", files.pcapng), ("hex", files.hex)) if os.path.exists(p)), "yaml")
    if source == "pcapng":
        return _from_pcapng(files.yaml)
    if source == "hex":
        return _from_hex(files.hex)
    if source == "yaml":
        return _from_yaml(files.yaml)
    raise ValueError(f"stimulus source must be auto, pcapng, hex or yaml, not {source!r}")


def _from_pcapng(path: str) -> Iterator[Stimulus]:
    for n, (port, t_us, frame) in enumerate(parts.iter_stimuli(path), 1):
        yield Stimulus(n, t_us, port, bytes(frame))


def _from_hex(path: str) -> Iterator[Stimulus]:
    try:
        f = open(path, encoding="ascii")  # noqa: SIM115
    except OSError as e:
        raise OracleError(f"{path}: {e.strerror or e}") from None
    with f:
        n = 0
        for lineno, line in enumerate(f, 1):
            if line.startswith("//") or not line.strip():
                continue
            try:
                t, port, length, data = line.split()
                frame = bytes.fromhex(data)
                if len(frame) != int(length, 16):
                    raise ValueError
                n += 1
                yield Stimulus(n, int(t, 16), int(port, 16), frame)
            except ValueError:
                raise OracleError(f"{path}:{lineno}: not '<time> <port> <length> <bytes>' in hex") from None


def _from_yaml(path: str) -> Iterator[Stimulus]:
    """Streamed: each ``- id:`` item of the ``packets:`` list is loaded on its
    own (a vector file of any size in bounded memory)."""
    try:
        f = open(path, encoding="utf-8")  # noqa: SIM115
    except OSError as e:
        raise OracleError(f"{path}: {e.strerror or e}") from None
    with f:
        for line in f:
            if line.startswith("packets:"):
                break
        else:
            raise OracleError(f"{path}: not a ctcm vector (no 'packets' list)")
        block: list[str] = []
        n = 0
        for line in f:
            if line.startswith("- ") or not line.startswith(" "):  # a new item, or the list's end
                if block:
                    n += 1
                    yield _packet(path, n, block)
                    block = []
                if not line.startswith("- "):
                    break
            block.append(line)
        else:
            if block:
                yield _packet(path, n + 1, block)


def _packet(path: str, n: int, block: list[str]) -> Stimulus:
    try:
        p = yaml.load("".join(block), Loader=_Loader)[0]
        return Stimulus(int(p.get("id", n)), int(p["t_us"]), int(p["port"]), bytes.fromhex(p["bytes"]))
    except (yaml.YAMLError, KeyError, TypeError, ValueError, AttributeError, IndexError):
        raise OracleError(f"{path}: packet {n}: needs t_us, port and bytes (hex)") from None


def expected_by_port(path: str) -> dict[int, list[Expected]]:
    """The vector's expected outputs per egress port, in order (streamed when
    the file is in the form ctcm writes, else read whole)."""
    out: dict[int, list[Expected]] = {}
    try:
        for port, e in iter_expected(path):
            out.setdefault(port, []).append(e)
    except _NotStreamable:
        return load_expected(path)
    return out
