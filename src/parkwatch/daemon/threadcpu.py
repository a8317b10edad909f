"""CPU time by thread: which stage of the daemon uses the core.

One Python process runs its Python code on one core at a time, so ``process_cpu_seconds_total``
says *that* the daemon is busy, not *where*.  Every stage has a thread of its own (the drivers'
network loops, the pipeline, the commit stage, each courier, telemetry), so the CPU time of
each thread is the cost of each stage: the figure a maintainer needs to tell a saturated rule
engine from a slow uplink, and the one the storm benchmark reports per alarm change.

Read from Linux's ``/proc/self/task/<tid>/stat`` at scrape time (``utime`` and ``stime``,
fields 14 and 15, in clock ticks: proc(5)); on a system without ``/proc`` the family is empty.
"""

from __future__ import annotations

import os
import threading

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def thread_cpu(pid: int | str = "self") -> dict[int, float]:
    """CPU seconds so far of each live thread of process `pid`, by native thread id."""
    out: dict[int, float] = {}
    base = f"/proc/{pid}/task"
    try:
        tids = os.listdir(base)
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"{base}/{tid}/stat", "rb") as f:
                stat = f.read()
        except OSError:  # the thread ended meanwhile
            continue
        # the name field may hold spaces and parentheses: the fields follow its last ')'
        fields = stat[stat.rfind(b")") + 2:].split()
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / _TICK
    return out


def cpu_by_thread_name() -> dict[str, float]:
    """CPU seconds so far of this process's live Python threads, by thread name (threads
    that share a name are summed; the daemon names each of its own)."""
    cpu = thread_cpu()
    out: dict[str, float] = {}
    for t in threading.enumerate():
        seconds = cpu.get(t.native_id or -1)
        if seconds is not None:
            out[t.name] = out.get(t.name, 0.0) + seconds
    return out
