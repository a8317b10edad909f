"""The daemon's memory habits: the allocator's, set at start before any thread exists, and the
cycle collector's, settled once the daemon runs.

glibc's malloc gives each thread that allocates under contention an arena of its own (up to
eight per core), and an arena keeps the pages it once used.  The daemon's dozen threads
(network loops, couriers, the telemetry writer, the timers) spend most of their time waiting
for the GIL, so the arenas buy no speed, only resident memory: about 11 MB with 10,000 sensors
under load (benchmarks/startup.py).  One arena is what ``MALLOC_ARENA_MAX=1`` gives; an
engineer who sets that variable (in the unit's ``Environment=``) decides instead.

glibc also serves a large block (from 128 KiB by default) with a mapping of its own, returned to the
system when freed, but it raises that threshold to the size of every such block freed, up to
32 MiB.  After the start (a parse, a restore) large blocks of a batch or a telemetry body then
come from the heap and leave holes there that stay resident.  A threshold fixed at 128 KiB keeps
them in mappings of their own (6 MB less under load with 10,000 sensors, benchmarks/startup.py);
``MALLOC_MMAP_THRESHOLD_`` in the environment decides instead.

A burst leaves the heap with holes: 20,000 malformed payloads queued faster than the pipeline
rejects them, a storm of alarm changes, a thousand HTTP connections.  glibc gives the heap's
free pages back to the system only from its top, so the resident memory stayed that much
higher for good (4 to 10 MB after a flood of junk).  Every :data:`TRIM_EVERY_S` the daemon
asks glibc to give back the free pages inside the heap too (``malloc_trim``), when more than
:data:`TRIM_ABOVE` of it is free: a walk of the free blocks, a millisecond or two, on the timer
thread.

Python's cycle collector, now and then (when the objects that outlived its younger
collections reach a quarter of those it tracks), walks every object the process holds: the
park, the config models, the rule tables and every module.  With 10,000 sensors that is 36 ms
with the GIL held, and an alarm arriving then waits for it.  What exists once the daemon has
started lives as long as it does, so it is moved out of the collector's sight (``gc.freeze``)
after the start and after each reload.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os

log = logging.getLogger("parkwatch")

#: mallopt's parameter numbers (glibc's malloc.h)
M_ARENA_MAX = -8
M_MMAP_THRESHOLD = -3
#: blocks from this size get a mapping of their own (glibc's starting value, kept fixed).  256 KiB
#: let a batch's arrays and socket reads under load leave 2 MB more in the heap (VmHWM 80.9
#: against 79.3 MB, benchmarks/startup.py), at no cost to ingest measured (benchmarks/ingest.py)
MMAP_THRESHOLD = 128 * 1024
#: how often the daemon looks at its heap's free memory, and how much of it is worth a trim
TRIM_EVERY_S = 30.0
TRIM_ABOVE = 1 << 20
#: not trimmed again while neither the heap's free memory nor the resident memory moved this
#: much since the last trim (each trim walks every free block)
TRIM_CHANGE = 256 << 10
#: (free heap, resident) right after the last trim
_after_trim = (0, 0)


class _MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (2.33 and later): the heap's figures in bytes."""

    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _mallopt(param: int, value: int, env: str) -> bool:
    if os.environ.get(env):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): their allocators differ
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    ok = bool(mallopt(param, value))
    if not ok:
        log.debug("mallopt(%d, %d) refused; keeping glibc's default", param, value)
    return ok


def one_malloc_arena() -> bool:
    """Ask glibc for a single malloc arena; False where that is not glibc or the environment
    already says how many."""
    return _mallopt(M_ARENA_MAX, 1, "MALLOC_ARENA_MAX")


def fixed_mmap_threshold() -> bool:
    """Keep glibc's threshold for mapped blocks fixed; False where that is not glibc or the
    environment already sets it."""
    return _mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD, "MALLOC_MMAP_THRESHOLD_")


def settle_heap() -> int:
    """Collect what the start (or a reload) left over, then keep everything that is left out
    of later full collections; how many objects that is."""
    gc.unfreeze()  # what a reload replaced may be garbage now
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def heap_free() -> int | None:
    """Bytes free inside glibc's heap (``mallinfo2().fordblks``); None where that is not glibc
    2.33 or later."""
    try:
        mallinfo2 = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        return None
    mallinfo2.restype = _MallInfo2
    return int(mallinfo2().fordblks)


def resident() -> int:
    """This process's resident memory now, bytes (``/proc/self/statm``; 0 where there is
    none)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def trim_heap(above: int = TRIM_ABOVE) -> int | None:
    """Give the heap's free pages back to the system when more than `above` bytes of it are
    free (the pages stay free in glibc's count: they are mapped again when used); how much
    resident memory that gave back (0: not worth it), None where that is not glibc."""
    global _after_trim
    free = heap_free()
    if free is None:
        return None
    now = resident()
    last_free, last_resident = _after_trim
    if free <= above or (abs(free - last_free) < TRIM_CHANGE
                         and now - last_resident < TRIM_CHANGE):
        return 0  # little free, or nothing new since the last trim gave it back
    try:
        malloc_trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    malloc_trim.argtypes = (ctypes.c_size_t,)
    malloc_trim(0)
    _after_trim = (heap_free() or 0, resident())
    return max(0, now - _after_trim[1])
