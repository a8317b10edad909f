"""benchmarks/linkage.py end to end with a few presses: the real daemon on the example park, its
devices simulated in a process of their own, the DingTalk stand-in; every press is measured to
the coil, the command center and the robot, and the JSON and the report's rows have their
shape.  So short a run judges nothing: no verdict is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import bench_module

REPO = Path(__file__).resolve().parent.parent


def test_a_few_presses_are_each_measured_to_the_coil_and_the_robot(tmp_path: Path) -> None:
    out = tmp_path / "linkage.json"
    run = subprocess.run(
        [sys.executable, "benchmarks/linkage.py", "--presses", "4", "--warmup", "1",
         "--gap", "0.05", "0.1", "--seed", "1", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    res = json.loads(out.read_text(encoding="utf-8"))
    assert res["benchmark"] == "linkage" and res["error"] is None
    assert "benchmarks/linkage.py --presses 4" in res["command"]
    f = res["figures"]
    assert f["presses"] == f["measured"] == 4 and f["all_measured"]
    for key in ("coil", "coil_seen", "strobe", "uplink_raised", "robot"):
        assert f[key]["n"] == 4, key
    assert f["press_to_switch"]["logged_for"] == 4  # the daemon logged each switch
    line = res["line"]
    # 9600 baud 8E1: a 17-character poll with its two t3.5, then 8 characters and a t3.5
    assert line["longest_transaction_chars"] == 17
    assert abs(line["floor_ms"] - 40.68) < 0.01 and abs(line["issue_floor_ms"] - 53.85) < 0.01
    # the coil is set no sooner than the write request has crossed the line
    assert f["coil"]["min_ms"] > f["coil_seen"]["min_ms"] > 0
    assert all(c["t_press"] < c["t_coil_set"] < c["t_strobe_set"] for c in res["cycles"])
    assert res["bus"]["line_busy"] > 0.8 and res["bus"]["t35_violations"] == 0
    assert res["robot_refused"] == [] and res["robot_messages"]["告警"] == 5  # with the warm-up
    assert "p99_over_floor" in f["coil"] and "p99_over_uplink_p99" in f["robot"]
    report = bench_module("report")
    rows = [r for r in report.summarise({"linkage": res}) if r["benchmark"] == "linkage"]
    judged = [r for r in rows if r["target"] is not None]
    assert [r["target"] for r in judged] == ["≤ 1.5×", "≤ 2×"]
    assert judged[0]["value"] == f["coil"]["p99_over_floor"]
