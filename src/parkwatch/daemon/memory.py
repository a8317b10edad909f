"""The daemon's memory habits, set once at start before any thread exists.

glibc's malloc gives each thread that allocates under contention an arena of its own (up to
eight per core), and an arena keeps the pages it once used.  The daemon's dozen threads
(network loops, couriers, the telemetry writer, the scheduler) spend most of their time waiting
for the GIL, so the arenas buy no speed, only resident memory: about 11 MB with 10,000 sensors
under load (benchmarks/startup.py).  One arena is what ``MALLOC_ARENA_MAX=1`` gives; an
engineer who sets that variable (in the unit's ``Environment=``) decides instead.
"""

from __future__ import annotations

import ctypes
import logging
import os

log = logging.getLogger("parkwatch")

#: mallopt's parameter number for the arena count (glibc's malloc.h)
M_ARENA_MAX = -8


def one_malloc_arena() -> bool:
    """Ask glibc for a single malloc arena; False where that is not glibc or the environment
    already says how many."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): their allocators differ
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    ok = bool(mallopt(M_ARENA_MAX, 1))
    if not ok:
        log.debug("mallopt(M_ARENA_MAX, 1) refused; keeping glibc's default arenas")
    return ok
