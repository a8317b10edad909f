"""battery_low: the battery wireless devices report with their payloads raises a fault alarm
below its limits and clears above them by the deadband; a payload without a battery changes
nothing.  Through the rule engine, and end to end through a real Mosquitto and the daemon."""

from __future__ import annotations

import math
from typing import Any

import pytest

from conftest import EXAMPLE
from parkwatch.config import ConfigError
from parkwatch.park import ParkModel
from parkwatch.readings import Quality, ReadingBatch
from parkwatch.rules.engine import RuleEngine
from parkwatch.rules.registry import RULE_NAMES
from parkwatch.schema import load_config

NAN = math.nan
BATTERY = RULE_NAMES.index("battery_low")


def _engine(**battery: Any) -> tuple[RuleEngine, ParkModel]:
    overrides = {("rules", "battery_low"): battery} if battery else {}
    if battery.get("off"):
        overrides = {("rules", "battery_low"): None}
    park = ParkModel(load_config(EXAMPLE, overrides))
    return RuleEngine(park, start=0.0), park


def _feed(engine: RuleEngine, sensor: int, rows: list[tuple[float, float, Quality]]
          ) -> list[tuple[int, int, float, float]]:
    """(old, new, value, threshold) of each battery_low transition, reading by reading."""
    out = []
    for t, (battery, value, quality) in enumerate(rows, 1):
        tr = engine.evaluate(ReadingBatch.from_columns([sensor], [value], [float(t)],
                                                       [int(quality)], [battery]))
        out += [(o, n, v, thr) for _s, rule, o, n, v, thr, _ts in tr.rows() if rule == BATTERY]
    return out


def test_a_low_battery_warns_and_clears_above_the_deadband() -> None:
    engine, park = _engine()
    button = park.index["A-3F-FB1"]
    assert _feed(engine, button, [
        (15.0, NAN, Quality.HEARTBEAT),   # below 20 %: warning
        (NAN, NAN, Quality.HEARTBEAT),    # no battery reported: nothing changes
        (22.0, NAN, Quality.TEST),        # above 20 but within the deadband: still low
        (8.0, NAN, Quality.HEARTBEAT),    # below 10 %: critical
        (12.0, 1.0, Quality.GOOD),        # within the critical deadband (a press carries it)
        (16.0, NAN, Quality.HEARTBEAT),   # back to warning, the warning limit named
        (26.0, NAN, Quality.HEARTBEAT),   # above 20 + 5: cleared
    ]) == [(0, 2, 15.0, 20.0), (2, 3, 8.0, 10.0), (3, 2, 16.0, 20.0), (2, 0, 26.0, 20.0)]
    load_cell = park.index["A-2F-LC1"]  # any device that reports a battery
    assert _feed(engine, load_cell, [(19.5, 500.0, Quality.GOOD)]) == [(0, 2, 19.5, 20.0)]


def test_no_battery_changes_nothing_and_null_turns_the_rule_off() -> None:
    engine, park = _engine()
    button = park.index["A-3F-FB1"]
    assert _feed(engine, button, [(NAN, NAN, Quality.HEARTBEAT)] * 3) == []
    engine, park = _engine(off=True)
    assert "battery_low" not in {type(k).rules[0] for k in engine.kinds.values()
                                 if k.enabled.any()}
    assert _feed(engine, park.index["A-3F-FB1"], [(1.0, NAN, Quality.HEARTBEAT)]) == []
    engine, park = _engine(warning_below=None, critical_below=30.0, deadband=0.0)
    assert _feed(engine, park.index["A-3F-FB1"], [(29.0, NAN, Quality.HEARTBEAT),
                                                  (30.0, NAN, Quality.HEARTBEAT)]) == [
        (0, 3, 29.0, 30.0), (3, 0, 30.0, 30.0)]


def test_contradictory_limits_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"rules\.battery_low: .*critical_below \(20\) must be "
                       r"below warning_below \(15\)"):
        load_config(EXAMPLE, {("rules", "battery_low"): {"warning_below": 15,
                                                        "critical_below": 20}})


def _of(events: list[dict[str, Any]], sensor: str, rule: str) -> list[tuple[str, str]]:
    return [(e["event"], e["severity"]) for e in events
            if e["sensor_id"] == sensor and e["rule"] == rule]


def test_a_button_payload_with_battery_15_warns_through_the_daemon(daemon: Any,
                                                                   subscriber: Any,
                                                                   device: Any) -> None:
    device.send("A-1F-FB1", {"event": "heartbeat", "battery": 15})
    events = subscriber.wait_events(lambda ev: _of(ev, "A-1F-FB1", "battery_low"))
    (raised,) = [e for e in events if e["rule"] == "battery_low"]
    assert (raised["severity"], raised["value"], raised["threshold"], raised["unit"]) == (
        "warning", 15, 20, "%")
    assert "电池电量低" in raised["message"] and "15 %" in raised["message"]
    # a heartbeat without a battery, then one within the deadband: nothing; then above it
    device.send("A-1F-FB1", {"event": "heartbeat"})
    device.send("A-1F-FB1", {"event": "heartbeat", "battery": 23})
    device.send("A-1F-FB1", {"event": "heartbeat", "battery": 80})
    events = subscriber.wait_events(
        lambda ev: ("cleared", "warning") in _of(ev, "A-1F-FB1", "battery_low"))
    assert _of(events, "A-1F-FB1", "battery_low") == [("raised", "warning"),
                                                      ("cleared", "warning")]
    assert not _of(events, "A-1F-FB1", "button_latch")  # a heartbeat is no press
