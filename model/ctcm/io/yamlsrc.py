"""YAML input with line numbers: every error a user sees is ``FILE:LINE: problem``.

Used by the scenario files (:mod:`ctcm.stimulus.scenario`) and the control-plane
config (:mod:`ctcm.dataplane.config`).
"""

from __future__ import annotations

import yaml

__all__ = ["SourceError", "Map", "Seq", "Ctx", "load_yaml_text", "read_text", "plain", "yaml_error"]


class SourceError(Exception):
    """One-line message: ``FILE:LINE: problem``."""


class Map(dict):
    """A mapping that knows the line it starts on."""

    line = 0


class Seq(list):
    """A sequence that knows the line it starts on."""

    line = 0


class _Loader(yaml.SafeLoader):
    pass


def _map(loader, node):
    m = Map(loader.construct_pairs(node, deep=True))
    m.line = node.start_mark.line + 1
    keys = [loader.construct_object(k) for k, _ in node.value]
    if len(keys) != len(set(map(str, keys))):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise SourceError(f"line {node.start_mark.line + 1}: duplicate key {dup!r}")
    return m


def _seq(loader, node):
    s = Seq(loader.construct_sequence(node, deep=True))
    s.line = node.start_mark.line + 1
    return s


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _map)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _seq)


def read_text(path: str, error=SourceError) -> str:
    """A file's text; ``error`` (one line) when it cannot be read or is not UTF-8."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except UnicodeDecodeError as e:
        raise error(f"{path}: not a UTF-8 text file (byte {e.start})") from None
    except OSError as e:
        raise error(f"{path}: {e.strerror or e}") from None


def load_yaml_text(text: str, path: str, error=SourceError):
    """Parse YAML into :class:`Map`/:class:`Seq` (with lines); errors as ``error``."""
    try:
        return yaml.load(text, Loader=_Loader)
    except SourceError as e:
        raise error(f"{path}:{str(e)[5:]}") from None
    except yaml.YAMLError as e:
        raise error(yaml_error(path, e)) from None


def yaml_error(path: str, e: yaml.YAMLError) -> str:
    """``FILE:LINE: invalid YAML: problem`` for a PyYAML error."""
    mark = getattr(e, "problem_mark", None)
    line = f":{mark.line + 1}" if mark else ""
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    return f"{path}{line}: invalid YAML: {problem}"


class Ctx:
    """Typed access to a loaded document, with ``FILE:LINE`` errors."""

    def __init__(self, path, error=SourceError):
        self.path = path
        self.error = error

    def err(self, node, msg):
        line = getattr(node, "line", 0)
        where = f"{self.path}:{line}" if line else self.path
        return self.error(f"{where}: {msg}")

    def req(self, m, key, kind, node=None):
        if not isinstance(m, dict) or key not in m:
            raise self.err(node if node is not None else m, f"missing {key!r}")
        return self.typed(m, key, kind)

    def typed(self, m, key, kind, default=None):
        if key not in m:
            return default
        v = m[key]
        if kind is int and (isinstance(v, bool) or not isinstance(v, int)):
            raise self.err(m, f"{key!r} must be an integer, got {v!r}")
        if kind is str and not isinstance(v, str):
            raise self.err(m, f"{key!r} must be a string, got {v!r}")
        if kind is bool and not isinstance(v, bool):
            raise self.err(m, f"{key!r} must be true or false, got {v!r}")
        if kind is dict and not isinstance(v, dict):
            raise self.err(m, f"{key!r} must be a mapping")
        if kind is list and not isinstance(v, list):
            raise self.err(m, f"{key!r} must be a list")
        return v

    def only(self, m, allowed):
        extra = [k for k in m if k not in allowed]
        if extra:
            raise self.err(m, f"unknown field {extra[0]!r} (allowed: {', '.join(sorted(allowed))})")


def plain(x):
    """Plain dicts/lists (no line-number subclasses) for writing back out."""
    if isinstance(x, dict):
        return {k: plain(v) for k, v in x.items()}
    if isinstance(x, list):
        return [plain(v) for v in x]
    return x
