"""Where connections live: per-field slot arrays, and the machine bound to them.

Both table modes keep a connection as one *slot* in per-field arrays, the way
the P4 program keeps it in register arrays (one register per field, one index
per slot, :class:`~ctcm.dataplane.machine.Tables` with the P4 register names):
state and flags (1 byte each), local/remote comm ID and local/remote QPN (4
bytes each), timestamp (8), remote IP (four 32-bit words) and pacing time (8) =
50 bytes per slot, no Python object per connection. The FLOW table holds slot
numbers + 1 only: its key (remote IP, remote QPN) and value (local QPN) are read
from the slot.

* ``p4`` mode (:func:`p4_tables`): the arrays have the fixed geometry, slots
  [0, A) are the ACTIVE table and [A, A + P) the PASSIVE one, and the machine
  probes the WAYS slots of a key's bucket (:mod:`ctcm.dataplane.probes`).
  :func:`compiled` gives the same machine compiled by numba, over the same
  tables as numpy arrays.
* ``ideal`` mode (:func:`ideal_tables`, :data:`IDEAL`): the arrays grow on
  demand and three unbounded dicts index them, like the C library; the
  machine is the same code bound to the dict primitives below.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from array import array

import numpy as np

from ctcm.dataplane import machine, probes
from ctcm.dataplane.machine import Tables
from ctcm.dataplane.probes import Buckets, buckets
from ctcm import spec
from ctcm.spec import Geometry

__all__ = ["p4_tables", "p4_geometry", "ideal_tables", "IdealIndex", "IDEAL", "compiled", "numba_available",
           "MIN_COMPILED"]

#: Batches with fewer CM messages run in Python: compiling is not worth it
#: for a few messages (the first compiled call in a fresh install takes
#: seconds; later processes load numba's on-disk cache).
MIN_COMPILED = 1000


def p4_geometry(g: Geometry) -> Buckets:
    """The probes' geometry for p4 mode (masks, ways, first PASSIVE slot)."""
    return buckets(g)


def p4_tables(g: Geometry) -> Tables:
    """Fixed tables of a p4-mode tracker."""
    return machine.tables(g.slots, g.flow_slots)


def ideal_tables() -> Tables:
    """Growable tables of an ideal-mode tracker (its flow map is a dict)."""
    return machine.tables(0, 0)


class IdealIndex:
    """ideal mode's ``G``: dict indexes over growable slots (free slots are reused)."""

    __slots__ = ("active", "passive", "flows", "free", "ip")

    def __init__(self):
        self.active: dict[int, int] = {}     # host comm ID -> slot
        self.passive: dict[bytes, int] = {}  # passive key -> slot
        self.flows: dict[bytes, int] = {}    # flow key -> slot
        self.free: list[int] = []
        self.ip: list[bytes] = []            # slot -> its remote IP as 16 bytes (for the keys)


#: (field, items a slot) of the per-slot arrays that grow in ideal mode
_PER_SLOT = (("conn_state", 1), ("conn_flags", 1), ("conn_lid", 1), ("conn_rid", 1), ("conn_lqpn", 1),
             ("conn_rqpn", 1), ("conn_ts", 1), ("conn_ip", 4), ("last_cnp", 1))


def _find_active(T, G, host_id):
    return G.active.get(host_id, -1)


def _find_passive(T, G, ip, ipw, remote_id):
    return G.passive.get(spec.passive_key(bytes(ip), remote_id), -1)


def _free_way(T, G, host, ip, key_id):
    """A slot for a new connection (there always is one), indexed by its key."""
    if not G.free:
        i = len(T.conn_state)
        k = max(16, i >> 3)
        for name, per in _PER_SLOT:
            a = getattr(T, name)
            a.extend(bytes(k)) if isinstance(a, bytearray) else a.frombytes(bytes(per * k * a.itemsize))
        G.free.extend(range(i + k - 1, i - 1, -1))
        G.ip.extend([b""] * k)
    i = G.free.pop()
    G.ip[i] = ip = bytes(ip)
    if host:
        G.active[key_id] = i
    else:
        G.passive[spec.passive_key(ip, key_id)] = i
    return i


def _expired_way(T, G, host, ip, key_id, now, timewait):
    return -1  # never full: nothing to reclaim


def _free_slot(T, G, i):
    if T.conn_flags[i] & machine.F_PASSIVE:
        del G.passive[spec.passive_key(G.ip[i], T.conn_rid[i])]
        T.occupancy[1] -= 1
    else:
        del G.active[T.conn_lid[i]]
        T.occupancy[0] -= 1
    T.conn_state[i] = machine.IDLE
    T.conn_flags[i] = 0
    G.free.append(i)


def _flow_add(T, G, i):
    k = spec.flow_key(G.ip[i], T.conn_rqpn[i])
    if k in G.flows:
        return machine.FLOW_CONFLICT
    G.flows[k] = i
    return machine.FLOW_ADDED


def _flow_del(T, G, i):
    G.flows.pop(spec.flow_key(G.ip[i], T.conn_rqpn[i]), None)


def _flow_find(T, G, ip, qpn):
    return G.flows.get(spec.flow_key(bytes(ip), qpn), -1)


#: The machine bound to ideal mode's dict indexes (plain Python).
IDEAL = machine.bind({"find_active": _find_active, "find_passive": _find_passive, "free_way": _free_way,
                      "expired_way": _expired_way, "free_slot": _free_slot, "flow_add": _flow_add,
                      "flow_del": _flow_del, "flow_find": _flow_find})


# --- the compiled p4 machine (numba) -----------------------------------------------------

def numba_available() -> bool:
    """True when the compiled path can run: numba installed and not turned off
    by ``CTCM_KERNEL=0``. numba itself is imported on the first compile."""
    if os.environ.get("CTCM_KERNEL", "1") == "0":
        return False
    return importlib.util.find_spec("numba") is not None


def _crc_table():
    t = np.zeros(256, np.uint32)
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        t[n] = c
    return t


# Byte-level primitives for numba (no bytes objects there): CRC-32 by table
# over the same key bytes as spec.active_key / passive_key / flow_key
# (KEY_LAYOUTS), fed field by field (no key buffer).

def _nb_crc_byte(c, b):
    return CRC_TABLE[(c ^ b) & 0xFF] ^ (c >> np.uint32(8))


def _nb_crc_int(c, v, nbytes):
    """CRC-32 state c over the nbytes big-endian bytes of v."""
    for j in range(nbytes):
        c = _nb_crc_byte(c, (v >> (8 * (nbytes - 1 - j))) & 0xFF)
    return c


def _nb_crc_ip(c, ip, off):
    """CRC-32 state c over the 16 bytes ip[off:off + 16]."""
    for j in range(16):
        c = _nb_crc_byte(c, ip[off + j])
    return c


def _nb_crc_end(c):
    return np.int64(c ^ np.uint32(0xFFFFFFFF))


def _nb_crc(key, n):
    """CRC-32 of key[:n] (zlib's), by table."""
    c = np.uint32(0xFFFFFFFF)
    for j in range(n):
        c = _nb_crc_byte(c, key[j])
    return _nb_crc_end(c)


def _nb_ip_words(ip):
    w = np.empty(4, np.uint32)
    for k in range(4):
        w[k] = np.uint32(ip[4 * k]) << 24 | np.uint32(ip[4 * k + 1]) << 16 | np.uint32(ip[4 * k + 2]) << 8 | ip[4 * k + 3]
    return w


def _nb_ip_eq(conn_ip, i, ipw):
    for w in range(4):
        if conn_ip[4 * i + w] != ipw[w]:
            return False
    return True


def _nb_ip_set(conn_ip, i, ipw):
    for w in range(4):
        conn_ip[4 * i + w] = ipw[w]


def _nb_slot_ip_eq(conn_ip, a, b):
    for w in range(4):
        if conn_ip[4 * a + w] != conn_ip[4 * b + w]:
            return False
    return True


def _nb_active_base(G, host_id):
    c = _nb_crc_int(np.uint32(0xFFFFFFFF), host_id, 4)
    return (_nb_crc_end(c) & G.active_mask) * G.active_ways


def _nb_passive_base(G, ip, remote_id):
    c = _nb_crc_int(_nb_crc_ip(np.uint32(0xFFFFFFFF), ip, 0), remote_id, 4)
    return G.passive_base + (_nb_crc_end(c) & G.passive_mask) * G.passive_ways


def _nb_flow_key_base(G, ip, off, qpn):
    c = _nb_crc_int(_nb_crc_ip(np.uint32(0xFFFFFFFF), ip, off), qpn, 3)
    return (_nb_crc_end(c) & G.flow_mask) * G.flow_ways


def _nb_flow_base(T, G, i):
    c = np.uint32(0xFFFFFFFF)
    for w in range(4):
        c = _nb_crc_int(c, T.conn_ip[4 * i + w], 4)
    c = _nb_crc_int(c, T.conn_rqpn[i], 3)
    return (_nb_crc_end(c) & G.flow_mask) * G.flow_ways


def _nb_flow_find(T, G, ip, qpn):
    flows, rqpn = T.flow_slot, T.conn_rqpn
    ipw = _nb_ip_words(ip)
    b = _nb_flow_key_base(G, ip, 0, qpn)
    for w in range(b, b + G.flow_ways):
        c = flows[w]
        if c != 0 and rqpn[c - 1] == qpn and _nb_ip_eq(T.conn_ip, c - 1, ipw):
            return c - 1
    return -1


#: numba helpers, and those that replace the probes' functions of the same name
_NB_BOUND = ("_nb_ip_words", "_nb_ip_eq", "_nb_ip_set", "_nb_slot_ip_eq", "_nb_active_base", "_nb_passive_base",
             "_nb_flow_base", "_nb_flow_find")
_NB_HELPERS = ("_nb_crc_byte", "_nb_crc_int", "_nb_crc_ip", "_nb_crc_end", "_nb_crc", "_nb_flow_key_base") + _NB_BOUND
_COMPILED = None


def _cache_dir(base: str) -> str:
    """``base`` (NUMBA_CACHE_DIR, else ~/.cache/ctcm-numba) / fingerprint of the
    machine's sources (spec, machine, storage)."""
    import hashlib

    h = hashlib.sha256()
    for mod in (spec, machine, probes, sys.modules[__name__]):
        with open(mod.__file__, "rb") as f:
            h.update(f.read())
    root = base or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "ctcm-numba")
    return os.path.join(root, h.hexdigest()[:16])


def compiled():
    """The p4 machine compiled by numba (once per process; cached on disk per
    fingerprint of its sources): a namespace with ``track_batch`` and the rest."""
    global _COMPILED, CRC_TABLE
    if _COMPILED is None:
        import numba  # optional (the 'fast' extra): imported on the first compile

        CRC_TABLE = _crc_table()
        # numba's on-disk cache is keyed on the defining file (machine.py) alone,
        # but the constants this code reads come from spec.py: a cache directory
        # per fingerprint of the sources, so a changed spec never loads stale code.
        numba.config.CACHE_DIR = _cache_dir(numba.config.CACHE_DIR)
        opts = dict(cache=True, nogil=True)
        helpers = {}
        for name in _NB_HELPERS:
            helpers[name] = numba.njit(inline="always", **opts)(globals()[name])
            globals()[name] = helpers[name]
        over = {n[len("_nb_"):]: helpers[n] for n in _NB_BOUND}
        b = machine.bind({**over, "NEXT": np.array(machine.NEXT, np.int64),
                          "MSG_OF": np.array(machine.MSG_OF, np.int64), "CTR_OF": np.array(machine.CTR_OF, np.int64)})
        g = b.globals
        for name in machine.FUNCTIONS:  # inlined into track_batch: no call overhead per message
            if not isinstance(g[name], numba.core.registry.CPUDispatcher):
                g[name] = numba.njit(**opts)(g[name])
        _COMPILED = type(b)(**{n: g[n] for n in machine.FUNCTIONS})
    return _COMPILED
