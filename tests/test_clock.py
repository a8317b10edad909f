"""The gateway's clock: a step (forwards or backwards) is noticed, logged once and shown on
/healthz, in the status and the metrics; whether the kernel says the clock is synchronised is
reported; and a backward step never makes a fire button's press be dropped as out of order."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from conftest import Device, Subscriber, wait_until
from parkwatch.daemon.clockwatch import ClockWatch, kernel_synchronized
from test_api import call


class Clocks:
    """A wall clock and a monotonic clock a test moves."""

    def __init__(self) -> None:
        self.wall = 1_764_900_000.0
        self.mono = 1000.0

    def run(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


def watch(clocks: Clocks, synced: list[bool | None] | None = None) -> ClockWatch:
    state = synced if synced is not None else [True]
    return ClockWatch(lambda: clocks.wall, lambda: clocks.mono, lambda: state[0])


def test_a_step_either_way_is_seen_once_and_slewing_is_not_a_step(
        caplog: pytest.LogCaptureFixture) -> None:
    c = Clocks()
    w = watch(c)
    c.run(3600)
    c.wall += 1.5  # NTP slewing at 500 ppm for an hour: 1.8 s at most
    assert w.check() == 0.0
    c.run(1)
    c.wall -= 600
    with caplog.at_level(logging.WARNING, "parkwatch.clock"):
        assert w.check() == pytest.approx(-600)
        assert w.check() == 0.0  # the same step is not seen twice
    assert caplog.text.count("stepped backwards by 600.0 s") == 1
    c.wall += 90
    assert w.check() == pytest.approx(90)
    assert w.steps == 2 and w.last_step == (pytest.approx(90), c.wall)
    assert w.health()["last_step_s"] == pytest.approx(90)


def test_synchronisation_is_the_kernels_verdict_and_its_changes_are_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    c = Clocks()
    state: list[bool | None] = [False]
    w = watch(c, state)
    with caplog.at_level(logging.INFO, "parkwatch.clock"):
        assert w.synchronized() is False
        state[0] = True
        assert w.synchronized() is False  # asked at most every 10 s
        c.run(11)
        assert w.synchronized() is True
        state[0] = False
        c.run(11)
        assert w.synchronized() is False
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "not synchronised" in infos[0].getMessage()  # at the start: not yet a problem
    assert "is synchronised" in infos[1].getMessage()
    assert len(warnings) == 1 and "not synchronised" in warnings[0].getMessage()  # lost
    assert kernel_synchronized() in (True, False, None)  # this machine's kernel answers


def test_a_clock_not_synchronised_for_a_quarter_of_an_hour_is_warned_of_once(
        caplog: pytest.LogCaptureFixture) -> None:
    from parkwatch.daemon.clockwatch import UNSYNC_WARN_S

    c = Clocks()
    w = watch(c, [False])
    with caplog.at_level(logging.WARNING, "parkwatch.clock"):
        assert w.synchronized() is False and caplog.text == ""
        c.run(UNSYNC_WARN_S - 11)
        w.synchronized()
        assert caplog.text == "" and w.health()["unsynchronized_s"] < UNSYNC_WARN_S
        c.run(20)
        w.synchronized()
        c.run(20)
        w.synchronized()
    assert caplog.text.count("has not been synchronised for 15 min") == 1


def test_the_engine_rebases_its_last_reading_times_on_a_step() -> None:
    from parkwatch.readings import ReadingBatch
    from parkwatch.rules.engine import RuleEngine
    from test_rules_threshold import batch, make_park

    engine = RuleEngine(make_park())

    def reading(ts: float) -> ReadingBatch:
        return batch((0, 100.0, ts))

    engine.evaluate(reading(1000.0))
    engine.evaluate(reading(400.0))  # stamped after a backward step of 600 s, unrebased
    assert engine.stats["out_of_order"] == 1
    engine.rebase(-600.0)
    engine.evaluate(reading(401.0))
    assert engine.stats["out_of_order"] == 1 and engine.stats["evaluated"] == 2


def test_a_press_just_after_the_clock_stepped_back_raises_the_alarm_at_once(
        daemon: Any, subscriber: Subscriber, device: Device,
        monkeypatch: pytest.MonkeyPatch) -> None:
    button = "A-3F-FB1"
    device.send(button, {"event": "heartbeat"})  # the button's last reading: now
    wait_until(lambda: daemon.engine.stats.get("liveness", 0) >= 1, 10, "the heartbeat")
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() - 600)  # the clock steps back 10 min
    device.send(button, {"event": "press"})
    events = subscriber.wait_events(
        lambda ev: any(e["sensor_id"] == button and e["event"] == "raised" for e in ev), 10)
    assert any(e["sensor_id"] == button for e in events)
    assert daemon.engine.stats.get("out_of_order", 0) == 0
    # the step itself: a fault of the gateway, raised and cleared, open until acknowledged
    steps = subscriber.wait_events(lambda ev: any(e["rule"] == "clock_step" and
                                                  e["event"] == "cleared" for e in ev), 10)
    raised = [e for e in steps if e["rule"] == "clock_step" and e["event"] == "raised"]
    assert len(raised) == 1 and raised[0]["sensor_id"] is None
    assert raised[0]["value"] == pytest.approx(-600, abs=5) and raised[0]["unit"] == "s"
    assert raised[0]["severity"] == "warning" and "时钟跳变" in raised[0]["message"]
    status, health = call(daemon, "GET", "/api/status")
    assert status == 200 and health["clock"]["steps"] == 1
    assert health["clock"]["last_step_s"] == pytest.approx(-600, abs=5)
    verdict = daemon.metrics.health()
    assert any("system clock stepped -6" in w for w in verdict["warnings"])
    assert verdict["clock"]["steps"] == 1
    text = daemon.metrics.metrics_response()[2].decode()
    assert "parkwatch_clock_steps_total 1.0" in text
