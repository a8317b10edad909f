"""AlarmBook (raise / change / clear / acknowledge / close) and the contract events it becomes."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from parkwatch.alarms.event import EventBuilder, load_schema
from parkwatch.alarms.lifecycle import AlarmBook, Change
from parkwatch.alarms.timestamps import rfc3339_ms
from parkwatch.park import ParkModel
from parkwatch.readings import Quality, ReadingBatch
from parkwatch.rules.engine import RuleEngine
from parkwatch.rules.registry import RULE_NAMES
from parkwatch.rules.transitions import Severity, Transitions
from parkwatch.schema import load_config

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "park.yaml"
SCHEMA = load_schema()
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
T0 = 1_763_800_000.0  # 2025-11-22T08:26:40Z
N, W, C = int(Severity.NORMAL), int(Severity.WARNING), int(Severity.CRITICAL)


def make_park(overrides: dict[tuple[Any, ...], Any] | None = None) -> ParkModel:
    return ParkModel(load_config(EXAMPLE, overrides))


@pytest.fixture(scope="module")
def park() -> ParkModel:
    return make_park()


class Clock:
    def __init__(self, t: float = T0 + 100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def tr(sensor: int, rule: str, old: int, new: int, value: float, threshold: float,
       ts: float) -> Transitions:
    return Transitions.build(np.array([sensor]), RULE_NAMES.index(rule), np.array([old]),
                             np.array([new]), np.array([value], float),
                             np.array([threshold], float), np.array([ts], float))


def events(changes: list[Change]) -> list[str]:
    return [c.event for c in changes]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def book(clock: Clock) -> AlarmBook:
    return AlarmBook(clock)


# --- lifecycle ----------------------------------------------------------------------------


def test_raise_change_clear_counts_seq_with_a_stable_id(park: ParkModel, book: AlarmBook,
                                                        clock: Clock) -> None:
    lc = park.index["A-2F-LC1"]
    raised = book.apply(tr(lc, "high_threshold", N, W, 8100, 8000, T0 + 1))
    clock.t += 5
    changed = book.apply(tr(lc, "high_threshold", W, C, 10100, 10000, T0 + 2))
    clock.t += 5
    cleared = book.apply(tr(lc, "high_threshold", C, N, 100, 10000, T0 + 3))
    changes = raised + changed + cleared
    assert events(changes) == ["raised", "severity_changed", "cleared"]
    assert [c.alarm.seq for c in changes] == [1, 2, 3]
    assert len({c.alarm.alarm_id for c in changes}) == 1
    assert [c.alarm.severity for c in changes] == [Severity.WARNING, Severity.CRITICAL,
                                                   Severity.CRITICAL]
    assert [c.alarm.active for c in changes] == [True, True, False]
    assert [c.alarm.value for c in changes] == [8100, 10100, 100]
    assert [c.alarm.observed_at for c in changes] == [T0 + 1, T0 + 2, T0 + 3]
    assert [c.alarm.raised_at for c in changes] == [T0 + 100] * 3
    assert [c.alarm.changed_at for c in changes] == [T0 + 100, T0 + 105, T0 + 110]
    # cleared but not acknowledged: the alarm stays open
    assert list(book.open) == [changes[0].alarm.alarm_id]


def test_changes_are_snapshots(park: ParkModel, book: AlarmBook) -> None:
    lc = park.index["A-2F-LC1"]
    first = book.apply(tr(lc, "high_threshold", N, W, 8100, 8000, T0 + 1))[0]
    book.apply(tr(lc, "high_threshold", W, N, 100, 8000, T0 + 2))
    assert (first.alarm.seq, first.alarm.active, first.alarm.value) == (1, True, 8100)


def test_acknowledge_after_clear_closes(park: ParkModel, book: AlarmBook, clock: Clock) -> None:
    wl = park.index["A-1F-WL1"]
    alarm_id = book.apply(tr(wl, "high_threshold", N, W, 31, 30, T0))[0].alarm.alarm_id
    book.apply(tr(wl, "high_threshold", W, N, 20, 30, T0 + 1))
    clock.t = T0 + 500
    changes = book.acknowledge(alarm_id, "王工", "pump checked")
    assert events(changes) == ["acknowledged", "closed"]
    assert [c.alarm.seq for c in changes] == [3, 4]
    ack = changes[0].alarm
    assert (ack.acknowledged, ack.acked_by, ack.acked_at, ack.ack_note) == (
        True, "王工", T0 + 500, "pump checked")
    assert changes[1].alarm.closed and not changes[1].alarm.active
    assert alarm_id not in book.open
    with pytest.raises(KeyError):
        book.acknowledge(alarm_id, "王工")  # closed alarms are gone from the book


def test_acknowledge_while_active_then_clear_closes(park: ParkModel, book: AlarmBook) -> None:
    fb = park.index["A-1F-FB1"]
    alarm_id = book.apply(tr(fb, "button_latch", N, C, 1.0, math.nan, T0))[0].alarm.alarm_id
    acked = book.acknowledge(alarm_id, "值班员")
    assert events(acked) == ["acknowledged"]
    assert acked[0].alarm.active and acked[0].alarm.seq == 2
    assert alarm_id in book.open
    cleared = book.apply(tr(fb, "button_latch", C, N, 0.0, math.nan, T0 + 60))
    assert events(cleared) == ["cleared", "closed"]
    assert [c.alarm.seq for c in cleared] == [3, 4]
    assert all(c.alarm.alarm_id == alarm_id for c in cleared)
    assert cleared[1].alarm.acked_by == "值班员"
    assert book.open == {}


def test_acknowledging_twice_changes_nothing(park: ParkModel, book: AlarmBook,
                                             clock: Clock) -> None:
    fb = park.index["A-1F-FB1"]
    alarm_id = book.apply(tr(fb, "button_latch", N, C, 1.0, math.nan, T0))[0].alarm.alarm_id
    assert events(book.acknowledge(alarm_id, "alice")) == ["acknowledged"]
    clock.t += 10
    assert book.acknowledge(alarm_id, "bob") == []
    alarm = book.open[alarm_id]
    assert (alarm.acked_by, alarm.acked_at, alarm.seq) == ("alice", T0 + 100, 2)


def test_acknowledging_an_unknown_id_raises_key_error(book: AlarmBook) -> None:
    with pytest.raises(KeyError):
        book.acknowledge("01JDOESNOTEXIST0000000000", "alice")


def test_returning_condition_opens_a_new_alarm(park: ParkModel, book: AlarmBook,
                                               clock: Clock) -> None:
    lc = park.index["A-2F-LC1"]
    first = book.apply(tr(lc, "high_threshold", N, W, 8100, 8000, T0))[0].alarm.alarm_id
    book.apply(tr(lc, "high_threshold", W, N, 7000, 8000, T0 + 1))
    clock.t += 1
    again = book.apply(tr(lc, "high_threshold", N, W, 8200, 8000, T0 + 2))
    assert events(again) == ["raised"]
    second = again[0].alarm.alarm_id
    assert second != first
    assert again[0].alarm.seq == 1
    assert set(book.open) == {first, second}
    assert not book.open[first].active and book.open[second].active
    # closing the old one leaves the new one alone
    assert events(book.acknowledge(first, "alice")) == ["acknowledged", "closed"]
    assert list(book.open) == [second] and book.open[second].active
    assert not book.open[second].acknowledged


def test_high_and_low_on_one_sensor_are_separate_alarms(book: AlarmBook) -> None:
    park = make_park({("rules", "water_level", "low_warning"): 10.0,
                      ("rules", "water_level", "low_critical"): 5.0})
    engine = RuleEngine(park)
    wl = park.index["A-1F-WL1"]
    high = book.apply(engine.evaluate(ReadingBatch.from_columns([wl], [55.0], [T0], [0])))
    jump = book.apply(engine.evaluate(ReadingBatch.from_columns([wl], [1.0], [T0 + 1], [0])))
    assert [(c.event, c.alarm.rule) for c in high + jump] == [
        ("raised", "high_threshold"), ("cleared", "high_threshold"), ("raised", "low_threshold")]
    assert jump[0].alarm.alarm_id == high[0].alarm.alarm_id != jump[1].alarm.alarm_id
    assert (jump[1].alarm.severity, jump[1].alarm.threshold) == (Severity.CRITICAL, 5.0)


def test_clear_without_a_known_alarm_is_ignored(park: ParkModel, book: AlarmBook) -> None:
    lc = park.index["A-2F-LC1"]
    assert book.apply(tr(lc, "high_threshold", W, N, 100, 8000, T0)) == []
    assert book.open == {}


def test_engine_driven_fire_drill(park: ParkModel, book: AlarmBook, clock: Clock) -> None:
    engine = RuleEngine(park)
    fb = park.index["B-B1-FB1"]

    def feed(value: float, ts: float, q: int = Quality.GOOD) -> list[Change]:
        return book.apply(engine.evaluate(ReadingBatch.from_columns([fb], [value], [ts], [q])))

    raised = feed(1.0, T0)
    assert events(raised) == ["raised"] and raised[0].alarm.rule == "button_latch"
    assert feed(math.nan, T0 + 1, Quality.HEARTBEAT) == []
    assert feed(1.0, T0 + 2) == []
    cleared = feed(0.0, T0 + 3)
    assert events(cleared) == ["cleared"]
    assert cleared[0].alarm.observed_at == T0 + 3
    assert events(book.acknowledge(raised[0].alarm.alarm_id, "消防中控")) == [
        "acknowledged", "closed"]


# --- contract events ----------------------------------------------------------------------


def _lifecycle(park: ParkModel, sensor_id: str) -> list[Change]:
    """A whole life: raise, change, acknowledge, clear+close (or raise, ack, clear for buttons)."""
    clock = Clock()
    book = AlarmBook(clock)
    s = park.index[sensor_id]
    if park.sensors[s].config.kind == "fire_button":
        changes = book.apply(tr(s, "button_latch", N, C, 1.0, math.nan, T0 + 0.1234))
    else:
        changes = book.apply(tr(s, "high_threshold", N, W, 42.0, 40.0, T0 + 0.1234))
        clock.t += 1
        changes += book.apply(tr(s, "high_threshold", W, C, 61.5, 60.0, T0 + 1))
    clock.t += 1
    changes += book.acknowledge(changes[0].alarm.alarm_id, "王工", "on my way")
    clock.t += 1
    rule = "button_latch" if park.sensors[s].config.kind == "fire_button" else "high_threshold"
    changes += book.apply(tr(s, rule, C, N, 0.0, math.nan if rule == "button_latch" else 60.0,
                             T0 + 2))
    return changes


@pytest.mark.parametrize("sensor_id", ["A-1F-FB1", "A-2F-LC1", "B-B1-WL1", "B-2F-LC1"])
def test_every_event_validates_and_has_every_field(park: ParkModel, sensor_id: str) -> None:
    builder = EventBuilder(park)
    changes = _lifecycle(park, sensor_id)
    built = [builder.build(c) for c in changes]
    assert [e["event"] for e in built][-2:] == ["cleared", "closed"]
    for e in built:
        VALIDATOR.validate(e)
        assert set(e) == set(SCHEMA["properties"]) == set(SCHEMA["required"])
        assert e["schema"] == "parkwatch.alarm/1"
        assert e["park"] == "xinqiao" and e["gateway"] == "xinqiao-gw1"
        assert e["sensor_id"] == sensor_id
        assert e["message"]
    assert [e["seq"] for e in built] == list(range(1, len(built) + 1))
    assert len({e["alarm_id"] for e in built}) == 1


def test_fire_button_event_fields(park: ParkModel) -> None:
    e = [EventBuilder(park).build(c) for c in _lifecycle(park, "A-2F-FB1")]
    raised, ack, cleared, closed = e
    assert (raised["building"], raised["floor"], raised["zone"]) == ("A", "2F", "east")
    # 厂中厂: every tenant of the building must hear about a fire
    assert raised["tenants"] == ["huaxin", "yongsheng", "ruifeng"]
    assert (raised["sensor_kind"], raised["rule"], raised["severity"]) == (
        "fire_button", "button_latch", "critical")
    assert (raised["value"], raised["threshold"], raised["unit"]) == (1.0, None, None)
    assert (raised["active"], raised["acknowledged"], raised["acked_by"], raised["acked_at"]) \
        == (True, False, None, None)
    assert (raised["escalation_level"], raised["drill"]) == (0, False)
    assert (ack["acknowledged"], ack["acked_by"], ack["acked_at"]) == (
        True, "王工", rfc3339_ms(T0 + 101))
    assert (cleared["active"], cleared["value"]) == (False, 0.0)
    assert (closed["active"], closed["acknowledged"]) == (False, True)


def test_threshold_event_fields(park: ParkModel) -> None:
    e = [EventBuilder(park).build(c) for c in _lifecycle(park, "B-B1-WL1")]
    raised, changed = e[0], e[1]
    assert (raised["building"], raised["floor"], raised["zone"]) == ("B", "B1", None)
    assert raised["tenants"] == ["hengtong"]
    assert (raised["value"], raised["threshold"], raised["unit"]) == (42.0, 40.0, "cm")
    assert (raised["severity"], changed["severity"]) == ("warning", "critical")
    assert (changed["event"], changed["value"], changed["threshold"]) == (
        "severity_changed", 61.5, 60.0)


def test_times_are_rfc3339_ms_utc(park: ParkModel) -> None:
    e = [EventBuilder(park).build(c) for c in _lifecycle(park, "A-2F-LC1")]
    assert e[0]["observed_at"] == "2025-11-22T08:26:40.123Z"  # the reading's device time
    assert e[0]["raised_at"] == "2025-11-22T08:28:20.000Z"  # the book's clock
    assert e[1]["observed_at"] == "2025-11-22T08:26:41.000Z"
    assert [x["changed_at"] for x in e] == [rfc3339_ms(T0 + 100), rfc3339_ms(T0 + 101),
                                            rfc3339_ms(T0 + 102), rfc3339_ms(T0 + 103),
                                            rfc3339_ms(T0 + 103)]
    assert {x["raised_at"] for x in e} == {rfc3339_ms(T0 + 100)}
    pattern = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
    for x in e:
        for key in ("observed_at", "raised_at", "changed_at"):
            assert pattern.match(x[key]), (key, x[key])


def test_rfc3339_ms() -> None:
    assert rfc3339_ms(T0 + 0.1234) == "2025-11-22T08:26:40.123Z"
    assert rfc3339_ms(T0 + 0.9996) == "2025-11-22T08:26:41.000Z"  # rounds into the next second
    assert rfc3339_ms(0.0) == "1970-01-01T00:00:00.000Z"


def test_messages_are_chinese_by_default(park: ParkModel) -> None:
    builder = EventBuilder(park)
    fire = [builder.build(c) for c in _lifecycle(park, "A-1F-FB1")]
    assert fire[0]["message"] == ("【火警】A栋 一层 一键报警按钮（一层东门按钮）被按下，"
                                  "请立即核实并组织疏散！")
    assert fire[2]["message"] == "【火警复位】A栋 一层 一键报警按钮（一层东门按钮）已复位"
    load = [builder.build(c) for c in _lifecycle(park, "A-2F-LC1")]
    assert load[0]["message"] == ("【楼层称重预警】A栋 二层 东区 二层东区货架称重 当前 42 kg，"
                                  "超过预警限值 40 kg")
    assert "严重" in load[1]["message"]


def test_messages_are_english_when_configured() -> None:
    park = make_park({("alarms",): {"language": "en"}})
    builder = EventBuilder(park)
    fire = [builder.build(c) for c in _lifecycle(park, "A-1F-FB1")]
    assert fire[0]["message"] == ("FIRE: alarm button 一层东门按钮 pressed at A栋 一层; "
                                  "verify and evacuate now!")
    assert fire[2]["message"] == "Fire alarm button 一层东门按钮 at A栋 一层 has been reset"
    load = [builder.build(c) for c in _lifecycle(park, "A-2F-LC1")]
    assert load[0]["message"] == ("floor load warning at A栋 二层 东区: 二层东区货架称重 reads "
                                  "42 kg, above 40 kg")
    for e in fire + load:
        VALIDATOR.validate(e)
        info = park.sensors[park.index[e["sensor_id"]]]
        words = e["message"].replace(info.place, "").replace(info.config.name or "", "")
        assert words.isascii(), e["message"]  # only the names from the config are Chinese


def test_custom_message_template_is_used() -> None:
    park = make_park({("alarms",): {"messages": {
        "high_threshold.raised": "超载！{sensor_id}@{place} {value} ≥ {threshold}（{tenants}）",
        "default": "{event}: {sensor}",
    }}})
    builder = EventBuilder(park)
    e = [builder.build(c) for c in _lifecycle(park, "A-2F-LC1")]
    assert e[0]["message"] == "超载！A-2F-LC1@A栋 二层 东区 42 kg ≥ 40 kg（华鑫五金）"
    # a built-in '{rule}.{event}' template still wins over the custom 'default'
    assert e[1]["message"].startswith("【楼层称重严重】")
    assert e[-1]["message"] == "已关闭: 二层东区货架称重"
    for x in e:
        VALIDATOR.validate(x)


def test_schema_rejects_a_broken_event(park: ParkModel) -> None:
    """The validator used above is not vacuous."""
    event = EventBuilder(park).build(_lifecycle(park, "A-2F-LC1")[0])
    for key, bad in (("seq", 0), ("severity", "major"), ("observed_at", "2025-11-22T08:26:40Z"),
                     ("alarm_id", "not-a-ulid")):
        broken = {**event, key: bad}
        assert not VALIDATOR.is_valid(broken), key
    missing = dict(event)
    del missing["drill"]
    assert not VALIDATOR.is_valid(missing)
