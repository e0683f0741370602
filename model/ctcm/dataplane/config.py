"""The control-plane config: one file for the model and every data-plane target.

``p4/config.yaml`` (see ``p4/README.md``) says which ports face the host and
which the network (and the peer of each), the TIMEWAIT duration, the CNP
pacing interval and the table geometry. The model's
:class:`~ctcm.dataplane.pipeline.Pipeline`, the CLI, the vectors, and the bmv2 and
model-switch targets of the PTF suite read it; a scenario's ``options`` and
``ports`` are applied on top of it, and a vector records the result.

Format::

    ports:                      # port pairs: host-facing port and its network peer
      - {host: 1, net: 2}
    timewait_us: 1000000        # TIMEWAIT duration (µs)
    cnp_interval_us: 0          # CNP pacing per flow (µs); 0 = a CNP for every CE packet
    geometry: default           # or {active_buckets: 4, active_ways: 1, ...}
    mode: ideal                 # the model's table mode (ideal | p4); data planes are always p4
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

from ctcm import spec
from ctcm.spec import Geometry
from ctcm.io.yamlsrc import Ctx, SourceError, load_yaml_text, read_text

__all__ = ["Config", "ConfigError", "load_config", "base_config", "default_config_path", "MAX_PORT", "MODES"]

#: Highest usable port number: v1model ports are 9 bits and 511 is the drop port.
MAX_PORT = 510
MODES = ("ideal", "p4")


class ConfigError(SourceError):
    """A bad config: one line, ``FILE:LINE: problem`` when read from a file."""


def _port(v, what: str) -> int:
    if type(v) is not int or not 0 <= v <= MAX_PORT:
        raise ConfigError(f"{what} must be an integer port 0..{MAX_PORT}, not {v!r}")
    return v


def _nonneg(v, what: str) -> int:
    if type(v) is not int or v < 0:
        raise ConfigError(f"{what} must be an integer >= 0, not {v!r}")
    return v


@dataclass(frozen=True)
class Config:
    """One pipeline's configuration (see the module doc).

    ``port_pairs``: (host port, network port) pairs; a ``{host: net}`` dict
    is accepted too."""

    port_pairs: tuple = ((1, 2),)
    timewait_us: int = spec.TIMEWAIT_US
    cnp_interval_us: int = 0
    geometry: Geometry = field(default_factory=Geometry)
    mode: str = "ideal"

    def __post_init__(self):
        pairs = self.port_pairs
        if isinstance(pairs, dict):
            pairs = tuple(pairs.items())
        try:
            pairs = tuple((h, n) for h, n in pairs)
        except (TypeError, ValueError):
            raise ConfigError(f"port_pairs must be (host, net) pairs, not {self.port_pairs!r}") from None
        if not pairs:
            raise ConfigError("port_pairs: at least one (host, net) pair is needed")
        seen = set()
        for h, n in pairs:
            for p, side in ((h, "host"), (n, "net")):
                _port(p, f"{side} port")
                if p in seen:
                    raise ConfigError(f"port {p} appears twice in the port pairs")
                seen.add(p)
        object.__setattr__(self, "port_pairs", pairs)
        _nonneg(self.timewait_us, "timewait_us")
        _nonneg(self.cnp_interval_us, "cnp_interval_us")
        if not isinstance(self.geometry, Geometry):
            raise ConfigError(f"geometry must be a Geometry, not {self.geometry!r}")
        if self.mode not in MODES:
            raise ConfigError(f"mode must be ideal or p4, not {self.mode!r}")

    # -- views ---------------------------------------------------------------------
    @property
    def ports(self) -> dict:
        """ingress port -> (egress port, direction of what arrives there)."""
        out = {}
        for h, n in self.port_pairs:
            out[h] = (n, spec.Direction.FROM_HOST)
            out[n] = (h, spec.Direction.FROM_NET)
        return out

    def replace(self, **kw) -> "Config":
        return dataclasses.replace(self, **kw)

    def to_dict(self) -> dict:
        """Plain data, as the config file writes it."""
        g = self.geometry
        return {
            "ports": [{"host": h, "net": n} for h, n in self.port_pairs],
            "timewait_us": self.timewait_us,
            "cnp_interval_us": self.cnp_interval_us,
            "geometry": "default" if g == Geometry() else g.as_dict(),
            "mode": self.mode,
        }

    def with_options(self, options: dict | None = None, ports: dict | None = None) -> "Config":
        """This config with a scenario's ``options`` (mode, geometry, timewait_us,
        cnp_interval_us) and ``ports`` ({host, net}: one pair) applied."""
        kw = {}
        options = options or {}
        for k in ("mode", "timewait_us", "cnp_interval_us"):
            if options.get(k) is not None:
                kw[k] = options[k]
        if options.get("geometry") is not None:
            kw["geometry"] = _geometry(options["geometry"])
        if ports:
            kw["port_pairs"] = ((ports["host"], ports["net"]),)
        return self.replace(**kw)


def _geometry(v) -> Geometry:
    if v == "default":
        return Geometry()
    if not isinstance(v, dict):
        raise ConfigError(f"geometry must be 'default' or a mapping, not {v!r}")
    names = {f.name for f in dataclasses.fields(Geometry)}
    extra = sorted(set(v) - names)
    if extra:
        raise ConfigError(f"geometry: unknown field {extra[0]!r} (allowed: {', '.join(sorted(names))})")
    try:
        return Geometry(**v)
    except ValueError as e:
        raise ConfigError(f"geometry: {e}") from None


def parse_config(text: str, path: str = "<config>") -> Config:
    ctx = Ctx(path, ConfigError)
    doc = load_yaml_text(text, path, ConfigError)
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: a config is a YAML mapping")
    ctx.only(doc, {"ports", "timewait_us", "cnp_interval_us", "geometry", "mode"})
    kw = {}
    if "ports" in doc:
        pairs = []
        for p in ctx.typed(doc, "ports", list):
            if not isinstance(p, dict):
                raise ctx.err(doc["ports"], f"each port pair is a mapping {{host: N, net: M}}, not {p!r}")
            ctx.only(p, {"host", "net"})
            pairs.append((ctx.req(p, "host", int), ctx.req(p, "net", int)))
        kw["port_pairs"] = tuple(pairs)
    for k in ("timewait_us", "cnp_interval_us"):
        if k in doc:
            kw[k] = ctx.typed(doc, k, int)
    if "mode" in doc:
        kw["mode"] = ctx.typed(doc, "mode", str)
    try:
        if "geometry" in doc:
            kw["geometry"] = _geometry(doc["geometry"])
        return Config(**kw)
    except ConfigError as e:
        node = doc.get("geometry") if str(e).startswith("geometry") else doc
        raise ctx.err(node if hasattr(node, "line") else doc, str(e)) from None


def load_config(path: str) -> Config:
    """Read a config file (one-line :class:`ConfigError` on any problem)."""
    return parse_config(read_text(path, ConfigError), path)


def default_config_path() -> str | None:
    """``p4/config.yaml`` of the source tree this package runs from, if there is one."""
    p = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, os.pardir, "p4", "config.yaml")
    p = os.path.normpath(p)
    return p if os.path.isfile(p) else None


def base_config() -> Config:
    """The config everything starts from: ``p4/config.yaml`` when this package
    runs from the source tree, else the built-in defaults (which equal it)."""
    p = default_config_path()
    return load_config(p) if p else Config()
