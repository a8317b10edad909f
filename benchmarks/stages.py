"""Where an alarm's time goes, from the daemon's own histograms: a scrape of ``/metrics`` before
and after a step, and per stage the number of observations in between, their mean and their
p50 / p99 (interpolated within the bucket, as Prometheus' ``histogram_quantile`` does).

The stages (see docs/metrics.md):

* ``evaluate``: the rule engine, per batch of readings
  (``parkwatch_rule_evaluation_seconds{what="batch"}``);
* ``commit_queued``: a batch's wait for the commit stage, per transaction, and
  ``commit_written``: the transaction's write and fsync (``parkwatch_alarm_commit_seconds``);
* ``delivered_uplink``: from an alarm change's routing to the command-center broker's PUBACK,
  per change; it includes both commit phases
  (``parkwatch_delivery_latency_seconds{target="uplink"}``).

What lies outside them (the broker and the driver before the pipeline, the uplink broker and
the subscriber after the PUBACK) is the end-to-end latency minus ``delivered_uplink``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

#: stage name → (histogram family, the one label it is selected by)
STAGES = {
    "evaluate": ("parkwatch_rule_evaluation_seconds", 'what="batch"'),
    "commit_queued": ("parkwatch_alarm_commit_seconds", 'phase="queued"'),
    "commit_written": ("parkwatch_alarm_commit_seconds", 'phase="written"'),
    "delivered_uplink": ("parkwatch_delivery_latency_seconds", 'target="uplink"'),
}

#: stage → (cumulative count per upper bound, sum of the observations)
Snapshot = dict[str, tuple[dict[float, float], float]]


def snapshot(metrics_text: str) -> Snapshot:
    """Each stage's buckets and sum, read from a scrape of ``/metrics``."""
    out: Snapshot = {}
    for stage, (family, label) in STAGES.items():
        buckets: dict[float, float] = {}
        total = 0.0
        for line in metrics_text.splitlines():
            if not line.startswith(family) or label not in line:
                continue
            name, value = line.rsplit(" ", 1)
            if name.startswith(family + "_bucket{"):
                le = name.split('le="', 1)[1].split('"', 1)[0]
                buckets[math.inf if le == "+Inf" else float(le)] = float(value)
            elif name.startswith(family + "_sum{"):
                total = float(value)
        if buckets:
            out[stage] = (buckets, total)
    return out


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """The `q` quantile of cumulative `buckets`, linear within a bucket (the highest finite
    bound when it falls in the +Inf bucket); None without observations."""
    bounds = sorted(buckets)
    count = buckets[bounds[-1]] if bounds else 0.0
    if count <= 0:
        return None
    rank = q * count
    lower, below = 0.0, 0.0
    for upper in bounds:
        n = buckets[upper]
        if n >= rank:
            if math.isinf(upper):
                return lower
            return lower + (upper - lower) * ((rank - below) / (n - below) if n > below else 1)
        lower, below = upper, n
    return lower


def between(before: Snapshot, after: Snapshot) -> dict[str, dict[str, Any]]:
    """Per stage, what was observed between two snapshots: n, mean, p50 and p99 in ms."""
    out: dict[str, dict[str, Any]] = {}
    for stage, (b1, s1) in after.items():
        b0, s0 = before.get(stage, ({}, 0.0))
        delta = {le: n - b0.get(le, 0.0) for le, n in b1.items()}
        n = delta.get(math.inf, 0.0)
        if n <= 0:
            continue
        p50, p99 = quantile(0.5, delta), quantile(0.99, delta)
        out[stage] = {"n": int(n), "mean_ms": round(1000 * (s1 - s0) / n, 3),
                      "p50_ms": None if p50 is None else round(1000 * p50, 3),
                      "p99_ms": None if p99 is None else round(1000 * p99, 3)}
    return out


def commit_floor(directory: Path, n: int = 300, size: int = 1500,
                 gap_s: float = 0.0) -> dict[str, float]:
    """The durable commit alone, on the disk the benchmark runs on: `n` transactions of one
    row of `size` bytes each (an alarm change's event and state), into a SQLite database
    opened as the alarm store opens its own (WAL, ``synchronous=FULL``: each commit waits for
    its fsync), back to back or `gap_s` apart (a disk, and a virtual machine's, can take
    longer for a commit after a pause than for one of a stream).  No alarm change can be on
    disk, and so on its way, sooner than this.  Mean, p50 and p99 in ms."""
    from parkwatch.alarms.store import connect

    directory.mkdir(parents=True, exist_ok=True)
    db = connect(directory / "floor.db")
    try:
        db.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, body TEXT)")
        body = "x" * size
        took = []
        for _ in range(n):
            if gap_s:
                time.sleep(gap_s)
            start = time.perf_counter()
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO t (body) VALUES (?)", (body,))
            db.execute("COMMIT")
            took.append((time.perf_counter() - start) * 1000.0)
    finally:
        db.close()
    took.sort()
    return {"n": n, "gap_s": gap_s, "mean_ms": round(sum(took) / n, 3),
            "p50_ms": round(took[n // 2], 3),
            "p99_ms": round(took[min(n - 1, math.ceil(0.99 * n) - 1)], 3)}
