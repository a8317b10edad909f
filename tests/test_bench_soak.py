"""benchmarks/soak.py end to end for a few seconds: the real daemon under the whole mix
(readings, fire cycles, threshold alarms, acks through the HTTP API, junk, an HTTP burst), and
valid JSON with its samples.  So short a run judges nothing: no verdict is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import bench_module

REPO = Path(__file__).resolve().parent.parent


def test_a_short_soak_runs_the_whole_mix_and_writes_its_samples(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    run = subprocess.run(
        [sys.executable, "benchmarks/soak.py", "--minutes", "0.15", "--sample-s", "1",
         "--cells", "60", "--burst", "12", "--burst-every", "4", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    res = json.loads(out.read_text(encoding="utf-8"))
    assert res["benchmark"] == "soak" and not res["daemon_died"]
    assert res["settings"]["minutes"] == 0.15
    assert "benchmarks/soak.py --minutes 0.15" in res["command"]
    samples = res["samples"]
    assert len(samples) >= 3
    assert all(s["rss_mb"] > 0 and s["threads"] > 0 and s["fds"] > 0 for s in samples)
    assert [s["t_s"] for s in samples] == sorted(s["t_s"] for s in samples)
    assert all(n > 0 for n in res["sent"].values()), res["sent"]
    assert res["operator"].get("ack_200_done", 0) > 0, res["operator"]
    assert res["events_at_center"].get("raised", 0) > 0
    assert res["bursts"]["count"] >= 1
    assert sum(res["bursts"]["connections"].values()) == 12 * res["bursts"]["count"]
    assert "met" in res["verdict"]
    report = bench_module("report")
    rows = [r for r in report.summarise({"soak": res}) if r["benchmark"] == "soak"]
    assert rows and all(r["case"].startswith("0.15 min") for r in rows)


def test_the_verdict_judges_every_sample_after_the_warm_up_against_its_level(
        monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))  # soak.py imports its neighbours
    soak = bench_module("soak")

    def at(t: float, rss: float, threads: int = 14, fds: int = 30) -> dict:
        return {"t_s": t, "rss_mb": rss, "threads": threads, "fds": fds}

    flat = [at(0, 60.0), at(80, 64.0), at(95, 64.2), at(120, 66.9), at(300, 61.2)]
    v = soak.verdict(flat, 100.0)
    assert v["met"] is True and v["rss"]["level_mb"] == 64.1 and v["rss"]["max_drift_mb"] == 2.9
    grown = [*flat[:3], at(200, 67.2)]
    assert soak.verdict(grown, 100.0)["rss"]["met"] is False
    leak = [*flat, at(400, 64.0, fds=31)]
    v = soak.verdict(leak, 100.0)
    assert v["fds"] == {"level": 30, "min": 30, "max": 31, "max_change": 1, "met": False}
    assert v["met"] is False
    # no sample in the warm-up's last quarter (a burst took it): the first one after it
    assert soak.verdict([at(0, 60.0), at(110, 65.0), at(200, 66.0)], 100.0)["rss"][
        "level_mb"] == 65.0
    assert soak.verdict(flat[:2], 100.0)["met"] is None  # nothing after the warm-up
