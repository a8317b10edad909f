"""What every benchmark records beside its figures: the machine it ran on and the command that
reproduces it (so a JSON result can be compared and rerun)."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def machine(**versions: Any) -> dict[str, Any]:
    """CPUs, Python, platform and load now, plus the versions the benchmark depends on."""
    return {
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        **versions,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "cpu_probe_ms": cpu_probe_ms(),
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def cpu_probe_ms() -> float:
    """How long a fixed piece of Python work takes now, best of three (ms): decoding a small
    JSON document 20,000 times.  On a shared virtual machine the same code runs up to twice as
    slowly in one hour as in the next (with pure arithmetic hardly slower: the caches are what
    the neighbours take), and the load average does not show it; this does."""
    doc = '{"value": 1234.5, "ts": 1763800000123, "battery": 87}'  # what the daemon reads most
    best = math.inf
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(20_000):
            json.loads(doc)
        best = min(best, time.perf_counter() - t)
    return round(best * 1000, 1)


def command_line(argv: list[str]) -> str:
    """The command that ran this benchmark, paths relative to the repository."""
    def rel(p: str) -> str:
        path = Path(p).absolute()
        return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else p

    return shlex.join([rel(sys.executable), rel(sys.argv[0]), *argv])


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    return s[max(0, math.ceil(q / 100 * len(s)) - 1)]


def summary(values_s: list[float]) -> dict[str, float]:
    """Latencies given in seconds as n, p50/p90/p99/max/mean/min in ms."""
    if not values_s:
        return {}
    ms = [v * 1000 for v in values_s]
    return {"n": len(ms), "p50_ms": round(pct(ms, 50), 3), "p90_ms": round(pct(ms, 90), 3),
            "p99_ms": round(pct(ms, 99), 3), "max_ms": round(max(ms), 3),
            "mean_ms": round(statistics.fmean(ms), 3), "min_ms": round(min(ms), 3)}
