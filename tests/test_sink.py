"""The telemetry sink's own bounds: memory is bounded like the disk, and events outlive readings."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from conftest import EXAMPLE, wait_until
from parkwatch.park import ParkModel
from parkwatch.readings import ReadingBatch
from parkwatch.schema import load_config
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


def test_a_flush_waits_while_the_alarm_path_is_busy_and_goes_out_once_it_is_not(tmp_path: Path):
    """Alarms first: an event's line protocol is not built while alarm changes wait to be
    committed or delivered (a storm), but right after."""
    cfg = load_config(EXAMPLE, {("gateway", "state_dir"): str(tmp_path),
                                ("telemetry", "influxdb"): None})
    sink = TelemetrySink(cfg, ParkModel(cfg), tmp_path)
    busy, asked = threading.Event(), threading.Semaphore(0)
    busy.set()

    def alarms_busy() -> bool:
        asked.release()
        return busy.is_set()

    sink.alarms_busy = alarms_busy
    sink.start()
    try:
        sink.events([{"alarm_id": "a", "seq": 1, "event": "raised", "rule": "high_threshold",
                      "sensor_kind": "load_cell", "severity": "critical", "park": "p",
                      "changed_at": "2026-12-04T00:00:00.000Z", "sensor_id": "s"}])
        for _ in range(3):  # it asked, heard "busy", and asked again: it holds the flush
            assert asked.acquire(timeout=10)
        assert sink.points["spooled"] == 0 and sink.yielded == 0
        busy.clear()
        wait_until(lambda: sink.points["spooled"] == 1, what="the event, once the alarms are done")
        assert sink.yielded == 1
    finally:
        sink.stop()
        sink.spool.close()


def test_a_broken_busy_question_never_stops_telemetry(tmp_path: Path, caplog):
    cfg = load_config(EXAMPLE, {("gateway", "state_dir"): str(tmp_path),
                                ("telemetry", "influxdb"): None})
    sink = TelemetrySink(cfg, ParkModel(cfg), tmp_path)

    def broken() -> bool:
        raise RuntimeError("no alarm path")

    sink.alarms_busy = broken
    sink.start()
    try:
        with caplog.at_level(logging.ERROR):
            sink.events([{"alarm_id": "a", "seq": 1, "event": "raised",
                          "rule": "high_threshold", "sensor_kind": "load_cell",
                          "severity": "critical", "park": "p", "sensor_id": "s",
                          "changed_at": "2026-12-04T00:00:00.000Z"}])
            wait_until(lambda: sink.points["spooled"] == 1, what="the event written anyway")
        assert caplog.text.count("whether the alarm path is busy failed") == 1
    finally:
        sink.stop()
        sink.spool.close()
