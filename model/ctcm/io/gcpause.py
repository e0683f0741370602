"""Pausing Python's cyclic garbage collector around batch work."""

from __future__ import annotations

import contextlib
import gc

__all__ = ["gc_paused"]


@contextlib.contextmanager
def gc_paused():
    """No cyclic garbage collection inside the block (restored after).

    Batch work (a batch of CM messages, a million-packet vector) allocates
    many container objects (events, lists, dicts) that stay alive and form no
    cycles; the collector would scan them again and again for nothing (about
    a quarter of the tracker's batch time). Cycles made meanwhile are
    collected after the block. Nested blocks are fine."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
