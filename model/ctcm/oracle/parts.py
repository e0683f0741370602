"""A vector file's parts, read without reading its packets.

The header (name, options, ports, the control-plane config it records), the
``final:`` snapshot at its end, and its stimuli read one by one from
``NAME.stimulus.pcapng`` (the offline replay and the time decision stream
vectors of any size through these).
"""

from __future__ import annotations

import json
import os

import yaml

from ctcm.dataplane.config import parse_config
from ctcm.io.pcapio import CaptureError, CaptureReader
from ctcm.oracle.compare import OracleError
from ctcm.oracle.files import _observed_port

__all__ = ["vector_head", "vector_config", "vector_final", "stimulus_file", "iter_stimuli"]

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def vector_head(path: str) -> dict:
    """The header of a vector YAML (name, options, ports, config): the lines before ``packets:``."""
    lines = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith("packets:"):
                    break
                lines.append(line)
    except OSError as e:
        raise OracleError(f"{path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise OracleError(f"{path}: not a text (YAML) file") from None
    try:
        doc = yaml.load("".join(lines), Loader=_Loader)
    except yaml.YAMLError:
        doc = None
    if not isinstance(doc, dict) or not str(doc.get("format", "")).startswith("ctcm-vector/"):
        raise OracleError(f"{path}: not a ctcm vector (no 'format: ctcm-vector/1' header)")
    return doc


def vector_config(path: str, head: dict | None = None):
    """The control-plane :class:`~ctcm.config.Config` a vector records."""
    head = head if head is not None else vector_head(path)
    if not isinstance(head.get("config"), dict):
        raise OracleError(f"{path}: the vector records no 'config' (make it again with ctcm vectors)")
    return parse_config(json.dumps(head["config"]), f"{path}: config")


def vector_final(path: str) -> dict:
    """The vector's ``final:`` snapshot (counters, connections, flows), read from the end of the file."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            block, pos, tail = 1 << 20, size, b""
            while True:
                start = max(0, pos - block)
                f.seek(start)
                tail = f.read(pos - start) + tail
                i = tail.rfind(b"\nfinal:\n")
                if i >= 0:
                    text = tail[i + 1:].decode("utf-8")
                    break
                if start == 0:
                    raise OracleError(f"{path}: no 'final:' snapshot at the end of the vector")
                pos = start
    except OSError as e:
        raise OracleError(f"{path}: {e.strerror or e}") from None
    try:
        doc = yaml.load(text, Loader=_Loader)
    except (yaml.YAMLError, UnicodeDecodeError):
        doc = None
    if not isinstance(doc, dict) or not isinstance(doc.get("final"), dict):
        raise OracleError(f"{path}: the 'final:' snapshot is not readable")
    return doc["final"]


def stimulus_file(path: str) -> str:
    """``NAME.stimulus.pcapng`` beside ``NAME.yaml``."""
    base = path[:-5] if path.endswith(".yaml") else path
    return base + ".stimulus.pcapng"


def iter_stimuli(path: str):
    """(port, t_us, frame) of each stimulus of a vector, in order, read packet by
    packet from its ``NAME.stimulus.pcapng`` (one interface ``p<port>`` per port,
    timestamps = the vector's ``t_us``)."""
    sp = stimulus_file(path)
    if not os.path.exists(sp):
        raise OracleError(f"{path}: {os.path.basename(sp)} is missing beside it (ctcm vectors writes it)")
    try:
        with CaptureReader(sp) as r:
            for ts, iface, frame, _wire in r:
                yield _observed_port(sp, r.interfaces, iface, None, None), ts, frame
    except CaptureError as e:
        raise OracleError(str(e)) from None
