"""What a data-plane target is programmed with, derived from the control-plane config.

This module says *what* (entries, sessions, options, the names of the P4
program's objects, how its counters and connection table read back); a
transport says *how* (:mod:`ctcm.targets.bmv2`: bmv2's Thrift API). A
second transport (P4Runtime) programs the same :class:`Program`.

The contract is the P4 program's (p4/README.md, "control plane"):

* table ``port_map``, exact on the ingress port, action
  ``set_peer(peer, is_host, session)``: a host port's peer is its network
  port and its session is the mirroring session of its CNPs (host + 1); a
  network port's peer is its host port (session 0);
* one mirroring session per host port, to that port (the CNP clone);
* the keyless table ``options``, default action
  ``set_options(timewait_us, cnp_interval_us)``;
* the counter array ``ctcm_counters`` indexed by :class:`ctcm.spec.Counter`;
* the tracker's register arrays ``conn_*`` (one per slot field).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ctcm.spec import Counter, Flag, State

__all__ = ["PORT_MAP", "SET_PEER", "OPTIONS", "SET_OPTIONS", "COUNTERS", "CONN_FIELDS", "PortEntry", "Program",
           "program", "contract_names", "counter_keys", "conn_row", "conn_key", "int_bytes"]

# Names in the P4 program (p4/README.md: the control-plane contract).
PORT_MAP = "CtcmIngress.port_map"
SET_PEER = "CtcmIngress.set_peer"
OPTIONS = "CtcmIngress.options"
SET_OPTIONS = "CtcmIngress.set_options"
COUNTERS = "ctcm_counters"            # top level: every control counts into it
#: The tracker's per-slot register arrays (state first).
CONN_FIELDS = ("conn_state", "conn_flags", "conn_lid", "conn_rid", "conn_lqpn", "conn_rqpn", "conn_ip")


@dataclass(frozen=True)
class PortEntry:
    """One ``port_map`` entry: key ``port``, action ``set_peer(peer, is_host, session)``."""

    port: int
    peer: int
    is_host: int
    session: int

    @property
    def action_args(self) -> list[int]:
        return [self.peer, self.is_host, self.session]


@dataclass(frozen=True)
class Program:
    """Everything a target is programmed with for one config."""

    port_map: tuple  # PortEntry, ...
    mirror_sessions: tuple  # (session id, egress port), ...
    options: tuple  # (timewait_us, cnp_interval_us): set_options' arguments


def program(cfg) -> Program:
    """The :class:`Program` of a :class:`ctcm.dataplane.config.Config`."""
    entries, sessions = [], []
    for h, n in cfg.port_pairs:
        entries.append(PortEntry(h, n, 1, h + 1))
        entries.append(PortEntry(n, h, 0, 0))
        sessions.append((h + 1, h))
    return Program(tuple(entries), tuple(sessions), (cfg.timewait_us, cfg.cnp_interval_us))


def contract_names() -> dict[str, tuple]:
    """The P4 objects the control plane uses, by P4Info kind: full names of the
    tables, actions and counter, and the register arrays' last name parts
    (:data:`CONN_FIELDS`: a register may sit in a nested control)."""
    return {"tables": (PORT_MAP, OPTIONS), "actions": (SET_PEER, SET_OPTIONS), "counters": (COUNTERS,),
            "registers": CONN_FIELDS}


def counter_keys() -> dict[int, str]:
    """P4 counter index -> snapshot key (``packets``, ``tracker.cm_REQ``, ...)."""
    return {int(c): c.key for c in Counter}


def int_bytes(v: int, bits: int) -> bytes:
    """A value as the big-endian bytes of a ``bit<bits>`` field."""
    return int(v).to_bytes((bits + 7) // 8, "big")


def conn_row(state: int, flags: int, lid: int, rid: int, lqpn: int, rqpn: int, ip16: bytes) -> dict:
    """One connection read back from a target's slot registers, as the model's
    snapshot shows it, without ``since_us`` (the target's clock is not the
    vector's). ``ip16``: the 16-byte remote IP (conn_ip's four words)."""
    a = ipaddress.IPv6Address(bytes(ip16))
    return {
        "opened_by": "network" if flags & Flag.PASSIVE else "host",
        "state": State(state).name,
        "local_comm_id": f"{lid:#010x}" if flags & Flag.LID else "-",
        "remote_ip": str(a.ipv4_mapped or a),
        "remote_comm_id": f"{rid:#010x}" if flags & Flag.RID else "-",
        "local_qpn": f"{lqpn:#08x}",
        "remote_qpn": f"{rqpn:#08x}",
        "flow": bool(flags & Flag.FLOW),
    }


def conn_key(row: dict) -> tuple:
    """A snapshot connection row as a comparable tuple (``since_us`` left out)."""
    return tuple(str(row.get(k)) for k in ("opened_by", "state", "local_comm_id", "remote_ip", "remote_comm_id",
                                            "local_qpn", "remote_qpn", "flow"))


def counter_diffs(expected: dict, after: dict, before: dict | None = None, who: str = "target") -> list[str]:
    """Lines naming each counter whose increase (``after`` - ``before``) is not
    the ``expected`` value; counters the model does not have must not move."""
    before = before or {}
    out = []
    for k in sorted(expected):
        got = after.get(k, 0) - before.get(k, 0)
        if got != expected[k]:
            out.append(f"  {k}: expected {expected[k]}, {who} {got}")
    for k in sorted(k for k in after if k not in expected and after[k] != before.get(k, 0)):
        out.append(f"  {k}: not in the model's counters, {who} counted {after[k] - before.get(k, 0)}")
    return out


def table_diffs(expected: list, got: list, shown: int = 8) -> list[str]:
    """Lines naming the connections missing from / extra in a target's table
    (all fields but ``since_us``; IPv6 connections with their address)."""
    want, have = sorted(map(conn_key, expected)), sorted(map(conn_key, got))
    if want == have:
        return []
    from collections import Counter as Multiset

    w, h = Multiset(want), Multiset(have)
    missing, extra = sorted((w - h).elements()), sorted((h - w).elements())
    lines = ([f"  missing: {' '.join(k)}" for k in missing[:shown]] +
             [f"  extra:   {' '.join(k)}" for k in extra[:shown]])
    more = len(missing) + len(extra) - len(lines)
    if more > 0:
        lines.append(f"  ... and {more} more")
    return lines
