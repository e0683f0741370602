"""Where connections live: per-field slot arrays, and the machine bound to them.

Both table modes keep a connection as one *slot* in per-field arrays, the way
the P4 program keeps it in register arrays (one register per field, one index
per slot): state and flags (1 byte each), local/remote comm ID and local/remote
QPN (4 bytes each), timestamp (8) and remote IP (16) = 42 bytes per slot, no
Python object per connection. The FLOW table holds slot numbers only: its key
(remote IP, remote QPN) and value (local QPN) are read from the slot.

* ``p4`` mode (:func:`p4_tables`): the arrays have the fixed geometry, slots
  [0, A) are the ACTIVE table and [A, A + P) the PASSIVE one, and the machine
  probes the WAYS slots of a key's bucket (:mod:`ctcm.dataplane.machine`'s own
  primitives). :func:`compiled` gives the same machine compiled by numba.
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

from ctcm.dataplane import machine
from ctcm import spec
from ctcm.spec import Geometry

__all__ = ["p4_tables", "p4_geometry", "ideal_tables", "IdealIndex", "IDEAL", "compiled", "numba_available",
           "MIN_COMPILED"]

#: Batches with fewer CM messages run in Python: compiling is not worth it
#: for a few messages (the first compiled call in a fresh install takes
#: seconds; later processes load numba's on-disk cache).
MIN_COMPILED = 1000


def _arrays(n: int):
    """(state, flags, lid, rid, lqpn, rqpn, ts, ip) for n slots, zeroed."""
    z4 = bytes(4 * n)
    return (bytearray(n), bytearray(n), array("I", z4), array("I", z4), array("I", z4), array("I", z4),
            array("q", bytes(8 * n)), bytearray(16 * n))


def p4_geometry(g: Geometry) -> tuple:
    """The machine's ``G`` for p4 mode: (amask, aways, pmask, pways, pbase, fmask, fways)."""
    return (g.active_buckets - 1, g.active_ways, g.passive_buckets - 1, g.passive_ways, g.active_slots,
            g.flow_buckets - 1, g.flow_ways)


def p4_tables(g: Geometry) -> tuple:
    """Fixed tables ``T`` of a p4-mode tracker."""
    return (*_arrays(g.slots), array("i", [-1]) * g.flow_slots, array("q", [0, 0]))


def ideal_tables() -> tuple:
    """Growable tables ``T`` of an ideal-mode tracker (its flow map is a dict)."""
    return (*_arrays(0), array("i"), array("q", [0, 0]))


class IdealIndex:
    """ideal mode's ``G``: dict indexes over growable slots (free slots are reused)."""

    __slots__ = ("active", "passive", "flows", "free")

    def __init__(self):
        self.active: dict[int, int] = {}     # host comm ID -> slot
        self.passive: dict[bytes, int] = {}  # passive key -> slot
        self.flows: dict[bytes, int] = {}    # flow key -> slot
        self.free: list[int] = []


def _slot_ip(T, i) -> bytes:
    return bytes(T[7][16 * i : 16 * i + 16])


def _find_active(T, G, host_id):
    return G.active.get(host_id, -1)


def _find_passive(T, G, ip16, remote_id):
    return G.passive.get(spec.passive_key(ip16, remote_id), -1)


def _take(T, G) -> int:
    if G.free:
        return G.free.pop()
    i = len(T[0])
    k = max(16, i >> 3)
    for a in T[:8]:
        if isinstance(a, array):
            a.frombytes(bytes(k * a.itemsize))
        else:
            a.extend(bytes(16 * k if a is T[7] else k))
    G.free.extend(range(i + k - 1, i, -1))
    return i


def _alloc(T, G, host, ip16, key_id, now, timewait, counters):
    i = _take(T, G)
    if host:
        G.active[key_id] = i
    else:
        G.passive[spec.passive_key(ip16, key_id)] = i
    T[9][0 if host else 1] += 1
    return i


def _release(T, G, i):
    if T[1][i] & machine.F_PASSIVE:
        del G.passive[spec.passive_key(_slot_ip(T, i), T[3][i])]
        T[9][1] -= 1
    else:
        del G.active[T[2][i]]
        T[9][0] -= 1
    T[0][i] = machine.IDLE
    T[1][i] = 0
    G.free.append(i)


def _flow_add(T, G, i):
    k = spec.flow_key(_slot_ip(T, i), T[5][i])
    if k in G.flows:
        return machine.FLOW_CONFLICT
    G.flows[k] = i
    return machine.FLOW_ADDED


def _flow_del(T, G, i):
    G.flows.pop(spec.flow_key(_slot_ip(T, i), T[5][i]), None)


def _flow_find(T, G, ip16, qpn):
    return G.flows.get(spec.flow_key(bytes(ip16), qpn), -1)


#: The machine bound to ideal mode's dict indexes (plain Python).
IDEAL = machine.bind({"find_active": _find_active, "find_passive": _find_passive, "alloc": _alloc,
                      "release": _release, "flow_add": _flow_add, "flow_del": _flow_del, "flow_find": _flow_find})


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


def _nb_ip_eq(ip, i, ip16):
    for j in range(16):
        if ip[16 * i + j] != ip16[j]:
            return False
    return True


def _nb_ip_word(ip, i, w):
    v = 0
    for j in range(4):
        v = v << 8 | ip[16 * i + 4 * w + j]
    return v


def _nb_ip_set(ip, i, ip16):
    for j in range(16):
        ip[16 * i + j] = ip16[j]


def _nb_slot_ip_eq(ip, a, b):
    for j in range(16):
        if ip[16 * a + j] != ip[16 * b + j]:
            return False
    return True


def _nb_active_base(G, host_id):
    c = _nb_crc_int(np.uint32(0xFFFFFFFF), host_id, 4)
    return (_nb_crc_end(c) & G[0]) * G[1]


def _nb_passive_base(G, ip16, remote_id):
    c = _nb_crc_int(_nb_crc_ip(np.uint32(0xFFFFFFFF), ip16, 0), remote_id, 4)
    return G[4] + (_nb_crc_end(c) & G[2]) * G[3]


def _nb_flow_key_base(G, ip, off, qpn):
    c = _nb_crc_int(_nb_crc_ip(np.uint32(0xFFFFFFFF), ip, off), qpn, 3)
    return (_nb_crc_end(c) & G[5]) * G[6]


def _nb_flow_base(T, G, i):
    return _nb_flow_key_base(G, T[7], 16 * i, T[5][i])


def _nb_flow_find(T, G, ip16, qpn):
    flows, rqpn, ip = T[8], T[5], T[7]
    b = _nb_flow_key_base(G, ip16, 0, qpn)
    for w in range(b, b + G[6]):
        c = flows[w]
        if c >= 0 and rqpn[c] == qpn and _nb_ip_eq(ip, c, ip16):
            return c
    return -1


_COMPILED = None


def _cache_dir(base: str) -> str:
    """``base`` (NUMBA_CACHE_DIR, else ~/.cache/ctcm-numba) / fingerprint of the
    machine's sources (spec, machine, storage)."""
    import hashlib

    h = hashlib.sha256()
    for mod in (spec, machine, sys.modules[__name__]):
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
        for name in ("_nb_crc_byte", "_nb_crc_int", "_nb_crc_ip", "_nb_crc_end", "_nb_crc", "_nb_ip_eq", "_nb_ip_word", "_nb_ip_set", "_nb_slot_ip_eq", "_nb_active_base", "_nb_passive_base",
                     "_nb_flow_key_base", "_nb_flow_base", "_nb_flow_find"):
            helpers[name] = numba.njit(inline="always", **opts)(globals()[name])
            globals()[name] = helpers[name]
        b = machine.bind({
            "ip_eq": helpers["_nb_ip_eq"], "ip_word": helpers["_nb_ip_word"], "ip_set": helpers["_nb_ip_set"], "slot_ip_eq": helpers["_nb_slot_ip_eq"],
            "active_base": helpers["_nb_active_base"], "passive_base": helpers["_nb_passive_base"],
            "flow_base": helpers["_nb_flow_base"], "flow_find": helpers["_nb_flow_find"],
            "NEXT": np.array(machine.NEXT, np.int64), "MSG_OF_ATTR": np.array(machine.MSG_OF_ATTR, np.int64),
            "COUNTER_OF_ATTR": np.array(machine.COUNTER_OF_ATTR, np.int64),
        })
        g = b.globals
        for name in machine.FUNCTIONS:  # inlined into track_batch: no call overhead per message
            if not isinstance(g[name], numba.core.registry.CPUDispatcher):
                g[name] = numba.njit(**opts)(g[name])
        _COMPILED = type(b)(**{n: g[n] for n in machine.FUNCTIONS})
    return _COMPILED
