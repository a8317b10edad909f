"""The daemon keeps one malloc arena: its threads do not each keep pages of their own.  And
large blocks keep mappings of their own, whatever large blocks were freed before.

glibc reserves a thread's arena as a heap aligned to 64 MiB; counting such mappings in
``/proc/self/maps`` after threads have allocated shows how many arenas the process has.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")

PROBE = """
import json, sys, threading
from parkwatch.daemon.memory import one_malloc_arena
took = one_malloc_arena() if sys.argv[1] == "limit" else None
start = threading.Barrier(6)
def churn():
    start.wait()
    keep = []
    for i in range(20000):  # 1 KiB objects: past pymalloc, from malloc's arena
        keep.append(bytearray(1024))
        if len(keep) > 500:
            keep.clear()
threads = [threading.Thread(target=churn) for _ in range(6)]
for t in threads: t.start()
for t in threads: t.join()
arenas = 0
for line in open("/proc/self/maps"):
    lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
    if lo % (64 << 20) == 0 and len(line.split()) == 5:  # anonymous, 64 MiB aligned
        arenas += 1
print(json.dumps({"took": took, "arenas": arenas}))
"""


def arenas(mode: str) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                         timeout=60, env=env, check=True)
    return dict(json.loads(out.stdout))


def test_threads_share_one_arena_once_the_daemon_asks_for_it():
    free = arenas("default")
    limited = arenas("limit")
    assert free["arenas"] >= 1  # the probe does make glibc open thread arenas
    assert limited == {"took": True, "arenas": 0}


def test_an_engineers_malloc_arena_max_is_left_alone(monkeypatch):
    from parkwatch.daemon.memory import one_malloc_arena

    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert one_malloc_arena() is False


MMAP_PROBE = """
import ctypes, json, sys
from parkwatch.daemon.memory import fixed_mmap_threshold
took = fixed_mmap_threshold() if sys.argv[1] == "fixed" else None
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]
mallinfo2 = ctypes.CDLL(None).mallinfo2
mallinfo2.restype = MallInfo2
big = bytearray(4 << 20)  # mapped; freeing it raises glibc's own threshold to 4 MiB
del big
before = mallinfo2().hblks
block = bytearray(int(sys.argv[2]))  # after that: a mapping, or a hole in the heap
print(json.dumps({"took": took, "mapped": mallinfo2().hblks - before}))
"""


def mapped(mode: str, size: int = 1 << 20, **env: str) -> dict[str, object]:
    environ = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
    out = subprocess.run([sys.executable, "-c", MMAP_PROBE, mode, str(size)], capture_output=True,
                         text=True, timeout=60, env={**environ, **env}, check=True)
    return dict(json.loads(out.stdout))


def test_large_blocks_keep_mappings_of_their_own_after_a_large_one_was_freed():
    """glibc's default moves a 1 MiB block onto the heap once a 4 MiB one was freed; with the
    threshold fixed it still gets a mapping, returned to the system when it is freed."""
    assert mapped("default") == {"took": None, "mapped": 0}
    assert mapped("fixed") == {"took": True, "mapped": 1}


def test_blocks_from_128_kib_get_a_mapping():
    """A batch's arrays and socket reads under load are 100-250 KiB: mapped, not left in the
    heap (benchmarks/startup.py: VmHWM under load 80.9 MB with 256 KiB, 79.3 with 128)."""
    assert mapped("fixed", 160 << 10) == {"took": True, "mapped": 1}
    assert mapped("fixed", 100 << 10) == {"took": True, "mapped": 0}


def test_an_engineers_mmap_threshold_is_left_alone():
    assert mapped("fixed", MALLOC_MMAP_THRESHOLD_="131072")["took"] is False


def test_settle_heap_collects_the_start_s_garbage_and_freezes_the_rest():
    """After settle_heap, what the start left in reference cycles is gone, and what lives on
    is out of the collector's sight: a full collection no longer walks it."""
    import gc
    import weakref

    from parkwatch.daemon.memory import settle_heap

    class Node:
        pass

    try:
        garbage = Node()
        garbage.me = garbage  # a cycle: only the collector frees it
        gone = weakref.ref(garbage)
        del garbage
        kept = [Node() for _ in range(1000)]
        held = Node()
        held.me = held  # a cycle alive at the start, dropped by a later reload
        dropped = weakref.ref(held)
        frozen = settle_heap()
        assert gone() is None
        assert frozen >= len(kept) and gc.get_freeze_count() == frozen
        del held
        gc.collect()
        assert dropped() is not None  # frozen: out of the collector's sight
        settle_heap()  # a reload's: unfrozen, collected, frozen again
        assert dropped() is None
    finally:
        gc.unfreeze()
