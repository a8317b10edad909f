"""The telemetry sink's own bounds: memory is bounded like the disk, and events outlive readings."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from conftest import EXAMPLE
from parkwatch.config.loader import load_config
from parkwatch.park import ParkModel
from parkwatch.readings import ReadingBatch
from parkwatch.telemetry.sink import TelemetrySink


def test_a_backlog_in_memory_drops_the_oldest_readings_and_keeps_events(tmp_path: Path, caplog):
    cfg = load_config(EXAMPLE, {("gateway", "state_dir"): str(tmp_path)})
    park = ParkModel(cfg)
    sink = TelemetrySink(cfg, park, tmp_path)  # not started: nothing drains the backlog
    n = 40_000
    batches = [ReadingBatch.from_columns((np.arange(n) % len(park)).tolist(), [float(k)] * n,
                                         [1.7e9 + k] * n, [0] * n) for k in range(4)]
    sink.events([b'{"alarm_id": "a"}'])
    with caplog.at_level(logging.ERROR):
        for b in batches:
            sink.readings(b)
    assert sink.max_waiting == 100_000
    assert sink.points["overflow"] == 2 * n  # the two oldest batches
    assert sink.stats()["waiting_points"] == 2 * n + 1
    waiting = list(sink._waiting)
    assert waiting[0][0] == "events"  # alarm events are never shed
    assert [w[1] for w in waiting[1:]] == batches[2:]  # the newest readings, in order
    assert caplog.text.count("cannot keep up") == 1
    sink.spool.close()
