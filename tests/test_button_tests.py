"""A wireless button's test press (payload event "test") is confirmed, not alarmed: through a
real Mosquitto and the MQTT driver it is counted per button, logged once and listed by
GET /api/tests with its time and battery, raises no alarm, and starts the button's no-data
deadman again; a real press right after still raises the fire alarm at once."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import EXAMPLE, http_json, wait_until
from parkwatch.alarms.service import AlarmService
from parkwatch.alarms.store import AlarmStore
from parkwatch.daemon.httpapi import state_token
from parkwatch.park import ParkModel
from parkwatch.readings import Quality, ReadingBatch
from parkwatch.rules.engine import RuleEngine
from parkwatch.schema import load_config

BUTTON = "A-3F-FB1"


def _tests(daemon: Any) -> dict[str, Any]:
    status, body = http_json(daemon.api.port, "GET", "/api/tests",
                             token=state_token(daemon.state_dir))
    assert status == 200
    return {t["sensor_id"]: t for t in body["tests"]}


def _of(events: list[dict[str, Any]], sensor: str) -> list[tuple[str, str]]:
    return [(e["rule"], e["event"]) for e in events if e["sensor_id"] == sensor]


def test_a_test_press_is_confirmed_and_a_press_after_it_raises_the_fire(
        daemon: Any, subscriber: Any, device: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="parkwatch.buttons")
    index = daemon.park.index[BUTTON]
    sent = time.time()
    device.send(BUTTON, {"event": "test", "battery": 88})
    wait_until(lambda: BUTTON in _tests(daemon), what="the test press in GET /api/tests")
    test = _tests(daemon)[BUTTON]
    assert (test["count"], test["battery"], test["place"]) == (1, 88, "A栋 三层")
    assert test["last_test_at"].endswith("Z")
    lines = [r.getMessage() for r in caplog.records if BUTTON in r.getMessage()]
    assert len(lines) == 1 and f"button {BUTTON} test press received" in lines[0]
    assert "no alarm raised" in lines[0]
    # a sign of life: the button's no-data deadman starts again from the test press
    assert daemon.engine.kinds["no_data"].heard[index] >= math.floor(sent)

    # a real press right after: the fire alarm, and nothing before it for this button
    device.send(BUTTON, {"event": "press", "battery": 88})
    events = subscriber.wait_events(lambda ev: ("button_latch", "raised") in _of(ev, BUTTON))
    assert _of(events, BUTTON) == [("button_latch", "raised")]
    status, body = http_json(daemon.api.port, "GET", "/api/alarms",
                             token=state_token(daemon.state_dir))
    assert status == 200
    assert [(a["sensor_id"], a["rule"]) for a in body["alarms"]] == [(BUTTON, "button_latch")]
    # a second test press counts again (the latched alarm stays as it is)
    device.send(BUTTON, {"event": "test"})
    wait_until(lambda: _tests(daemon)[BUTTON]["count"] == 2, what="the second test press")
    assert _tests(daemon)[BUTTON]["battery"] == 88  # the last battery reported is kept


def test_a_test_press_ends_a_silent_buttons_no_data_alarm(tmp_path: Path) -> None:
    """Heard from after its no-data limit, by a test press: the no-data alarm clears and no
    fire alarm is raised."""
    cfg = load_config(EXAMPLE, {("gateway", "state_dir"): str(tmp_path)})
    park = ParkModel(cfg)
    t0 = 1_795_000_000.0
    now = [t0]
    engine = RuleEngine(park, start=t0)
    store = AlarmStore(tmp_path / "alarms.db")
    service = AlarmService(cfg, park, engine, store, clock=lambda: now[0])
    service.restore(set())
    try:
        now[0] = t0 + 3 * 3600 + 1  # three missed hourly reports
        service.apply(engine.tick(now[0]))
        silent = {(a.rule, park.ident(a.sensor)) for a in service.book.open.values()}
        assert ("no_data", BUTTON) in silent
        now[0] += 1
        service.apply(engine.evaluate(ReadingBatch.from_columns(
            [park.index[BUTTON]], [math.nan], [now[0]], [int(Quality.TEST)], [87.0])))
        active = {(a.rule, park.ident(a.sensor)) for a in service.book.active_by_key.values()}
        assert ("no_data", BUTTON) not in active
        assert ("button_latch", BUTTON) not in active
    finally:
        store.close()
