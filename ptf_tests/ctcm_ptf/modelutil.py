"""Glue between the suite and the model (ctcm), kept in one place.

The model's API is being refactored while this suite is written; the small
adapters here accept both shapes:

* ``Pipeline(config)`` with a :class:`ctcm.dataplane.config.Config`, or the older
  ``Pipeline(PipelineConfig(...))``;
* ``Pipeline.process`` returning a Result with ``.outputs`` or the list itself.
"""

from __future__ import annotations

import os

from ctcm.dataplane.config import Config, load_config
from ctcm.dataplane.packet import ROCE, classify
from ctcm.dataplane.icrc import icrc_bytes
from ctcm.spec import OPCODE_CNP, Geometry

REPO = os.path.normpath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir))
DEFAULT_CONFIG = os.path.join(REPO, "p4", "config.yaml")
VECTORS = os.path.join(REPO, "vectors")


def base_config(path: str | None = None) -> Config:
    """The control-plane config every target starts from (p4/config.yaml)."""
    return load_config(path or os.environ.get("CTCM_PTF_CONFIG") or DEFAULT_CONFIG)


def config_for(options: dict | None, ports: dict | None, base: Config | None = None) -> Config:
    """The config of one vector or scenario: its ``options``/``ports`` on top of the base."""
    return (base or base_config()).with_options(options or {}, ports or None)


def config_from_dict(d: dict) -> Config:
    g = d.get("geometry", "default")
    return Config(
        port_pairs=tuple((p["host"], p["net"]) for p in d["ports"]),
        timewait_us=d["timewait_us"],
        cnp_interval_us=d["cnp_interval_us"],
        geometry=Geometry() if g == "default" else Geometry(**g),
        mode=d.get("mode", "ideal"),
    )


def make_pipeline(cfg: Config):
    """A model Pipeline for this config (new or old constructor)."""
    from ctcm.dataplane import pipeline as P

    try:
        return P.Pipeline(cfg)
    except (AttributeError, TypeError):
        pc = P.PipelineConfig(port_pairs=dict(cfg.port_pairs), mode=cfg.mode, geometry=cfg.geometry,
                              timewait_us=cfg.timewait_us, cnp_interval_us=cfg.cnp_interval_us)
        return P.Pipeline(pc)


def outputs_of(r) -> list:
    """[(port, bytes)] of one process() result (Result object or plain list)."""
    return list(r.outputs if hasattr(r, "outputs") else r)


def is_cnp(frame: bytes) -> bool:
    p = classify(frame)
    return p.kind == ROCE and frame[p.bth] == OPCODE_CNP


def flip_cnp_qpn(frame: bytes) -> bytes:
    """The same CNP with the lowest bit of its destination QPN flipped (ICRC redone):
    a deliberately wrong expectation, to show what a failure looks like."""
    p = classify(frame)
    b = bytearray(frame)
    b[p.bth + 7] ^= 0x01
    b[p.end:p.end + 4] = icrc_bytes(b, p.l3, p.end)
    return bytes(b)


def dest_qpn(frame: bytes) -> int:
    """BTH destination QPN of a RoCE frame."""
    p = classify(frame)
    return int.from_bytes(frame[p.bth + 5:p.bth + 8], "big")
