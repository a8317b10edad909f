"""benchmarks/gb26875.py end to end on a few presses: the real daemon, the simulated center;
every press is measured to the center's confirm, including one whose first frame the center
dropped.  So short a run judges nothing: no latency verdict is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_a_few_presses_are_each_measured_to_the_centers_confirm(tmp_path: Path) -> None:
    out = tmp_path / "gb26875.json"
    run = subprocess.run(
        [sys.executable, "benchmarks/gb26875.py", "--presses", "4", "--warmup", "1",
         "--dropped", "1", "--confirm-timeout", "0.5", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    res = json.loads(out.read_text(encoding="utf-8"))
    assert res["benchmark"] == "gb26875" and res["error"] is None, res
    f = res["figures"]
    assert f["confirmed"]["n"] == 4 and f["after_drop"]["n"] == 1 and f["lost"] == 0
    assert f["uplink_raised"]["n"] == 4
    # the retransmission waited for the confirm timeout, not the first frame's answer
    assert f["after_drop"]["min_ms"] >= 500
    assert res["rejected"] == 0
