"""benchmarks/stages.py: the alarm path's stages read from real Prometheus exposition text, as
the daemon's /metrics serves it (prometheus_client's own histograms and text format)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from conftest import bench_module
from parkwatch.daemon.metrics import COMMIT_BUCKETS, LATENCY_BUCKETS

stages = bench_module("stages")


def test_a_steps_stages_are_what_was_observed_between_two_scrapes() -> None:
    reg = CollectorRegistry()
    commit = Histogram("parkwatch_alarm_commit_seconds", "", ["phase"],
                       buckets=COMMIT_BUCKETS, registry=reg)
    delivery = Histogram("parkwatch_delivery_latency_seconds", "", ["target"],
                         buckets=LATENCY_BUCKETS, registry=reg)
    for _ in range(50):  # before the step: slow commits, never counted in it
        commit.labels("written").observe(0.2)
    delivery.labels("tenant-app").observe(5.0)  # another target: not the uplink's stage
    before = stages.snapshot(generate_latest(reg).decode())

    for k in range(100):  # the step: 0.1 … 10 ms, evenly
        commit.labels("written").observe((k + 1) / 10_000)
    for _ in range(98):
        delivery.labels("uplink").observe(0.004)
    for _ in range(2):  # two slow deliveries: the tail
        delivery.labels("uplink").observe(2.0)
    got = stages.between(before, stages.snapshot(generate_latest(reg).decode()))

    written = got["commit_written"]
    assert written["n"] == 100
    assert written["mean_ms"] == 5.05
    # the median lies in the (5 ms, 10 ms] bucket, interpolated: 5 + 5 × (50 - 50) / 50 = 5 ms
    assert 4.0 <= written["p50_ms"] <= 6.0
    assert 9.0 <= written["p99_ms"] <= 10.0
    up = got["delivered_uplink"]
    assert up["n"] == 100 and 2.5 <= up["p50_ms"] <= 5.0
    # the 99th of 100 is a slow one: within the (1 s, 3 s] bucket, halfway through its two
    assert up["p99_ms"] == 2000.0
    assert "commit_queued" not in got and "evaluate" not in got  # nothing observed: no row


def test_a_quantile_in_the_open_top_bucket_is_the_highest_bound() -> None:
    assert stages.quantile(0.99, {0.1: 0.0, 1.0: 0.0, float("inf"): 5.0}) == 1.0
    assert stages.quantile(0.5, {0.1: 0.0, float("inf"): 0.0}) is None


def test_the_commit_floor_times_durable_commits_on_the_disk(tmp_path: Path) -> None:
    floor = stages.commit_floor(tmp_path, n=20, size=100)
    assert floor["n"] == 20
    assert 0 < floor["p50_ms"] <= floor["p99_ms"]
    db = sqlite3.connect(tmp_path / "floor.db")
    try:  # every transaction is on disk, in a write-ahead-logged store like the alarm store's
        assert db.execute("SELECT count(*) FROM t").fetchone()[0] == 20
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()
    spaced = stages.commit_floor(tmp_path / "spaced", n=3, size=100, gap_s=0.01)
    assert spaced["n"] == 3 and spaced["gap_s"] == 0.01 and spaced["p50_ms"] > 0
