"""benchmarks/center_board.py end to end on a few events: a real `parkwatch center`, a viewer
added with `parkwatch center-user add`, a headless Chromium logged in on the board; every event
a simulated gateway publishes is seen as a row in the browser, and the JSON and the report's
rows have their shape.  So short a run judges nothing: no verdict is asserted."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import bench_module

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(
    (shutil.which("chromium") is None or shutil.which("chromedriver") is None)
    and not os.environ.get("CI"),
    reason="Debian's chromium and chromium-driver are needed (./dev setup installs them)")


def test_a_short_run_sees_every_event_in_the_browser(tmp_path: Path) -> None:
    out = tmp_path / "center_board.json"
    run = subprocess.run([sys.executable, "benchmarks/center_board.py", "--events", "6",
                          "--gap-min", "0.02", "--gap-max", "0.1", "--out", str(out)],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    res = json.loads(out.read_text(encoding="utf-8"))
    assert res["benchmark"] == "center_board" and res["settings"]["events"] == 6
    assert res["seen_in_browser"] == res["stored"] == 6  # every row reached the page
    assert res["reloaded"] is False and res["traceback"] is False
    for figures in ("board_ms", "received_ms", "console_ms"):
        q = res[figures]
        assert set(q) == {"p50", "p90", "p99", "max", "mean"}
        assert 0 < q["p50"] <= q["p90"] <= q["p99"] <= q["max"]
    # the row appears after the center received the event: the clocks agree
    assert res["board_ms"]["p50"] > res["received_ms"]["p50"]
    for check in res["clock_check"].values():
        assert abs(check["offset_ms"]) <= check["bracket_ms"] + 5.0
    rows = bench_module("report").rows_center_board(res)
    assert rows[0]["figure"] == "publish → row in the browser, p99"
    assert {r["case"] for r in rows} == {"6 events, one at a time, SQLite"}
    assert next(r for r in rows if r["figure"] == "events seen in the browser")["met"] is True
