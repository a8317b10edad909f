"""The rule kinds as a field engineer sees them: durations, rate of rise, no-data, flapping and
bad data.  Each test is a short story told in device seconds after the engine started.

Every transition is shown as (sensor, rule, old severity, new severity, value, threshold, t),
t in seconds after the engine's start; None where the engine has no value or limit to give.
"""

from __future__ import annotations

import math
from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest

from parkwatch.park import ParkModel
from parkwatch.readings import Quality, ReadingBatch
from parkwatch.rules.engine import RuleEngine
from parkwatch.rules.registry import RULE_NAMES
from parkwatch.rules.transitions import Severity, Transitions
from parkwatch.schema import load_config

T0 = 1_763_800_000.0  # the engine starts here; every time below is seconds after it

BASE = """\
park: {id: p, name: P}
gateway: {id: gw, state_dir: state}
brokers: {local: {host: 127.0.0.1}}
uplink: {broker: local}
landlord: {id: l, name: L}
buildings: [{id: A, floors: [{id: 1F, rated_load_kn_m2: 4.0, area_m2: 100}]}]
drivers:
  - {id: lora, type: mqtt, broker: local}
  - id: bus
    type: modbus_rtu
    port: /dev/ttyUSB0
    poll_interval_s: 2
    di_interval_s: 0.5
    slaves: [{slave: 3, interval_s: 5}]
"""

Row = tuple[str, str, str, str, float | None, float | None, float]


def _num(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 6)


class Rig:
    """One park (BASE plus the test's own rules and sensors) and a rule engine started at T0."""

    def __init__(self, tmp_path: Path, text: str) -> None:
        path = tmp_path / "park.yaml"
        path.write_text(BASE + dedent(text))
        self.park = ParkModel(load_config(path))
        self.engine = RuleEngine(self.park, start=T0)

    def rows(self, tr: Transitions) -> list[Row]:
        return [(self.park.ident(s), RULE_NAMES[r], Severity(o).label, Severity(n).label,
                 _num(v), _num(thr), round(ts - T0, 6))
                for s, r, o, n, v, thr, ts in tr.rows()]

    def feed(self, *readings: tuple[Any, ...]) -> list[Row]:
        """One batch of (sensor id, value, t[, quality]) readings; quality defaults to GOOD."""
        full = [(r[0], r[1], r[2], r[3] if len(r) > 3 else Quality.GOOD) for r in readings]
        batch = ReadingBatch.from_columns([self.park.index[r[0]] for r in full],
                                          [r[1] for r in full], [T0 + r[2] for r in full],
                                          [int(r[3]) for r in full])
        return self.rows(self.engine.evaluate(batch))

    def series(self, sensor: str, values: list[float], t0: float = 0.0,
               step: float = 1.0) -> list[Row]:
        """Readings of one sensor, one batch each, `step` seconds apart from `t0`."""
        out: list[Row] = []
        for i, v in enumerate(values):
            out += self.feed((sensor, v, t0 + i * step))
        return out

    def tick(self, t: float) -> list[Row]:
        return self.rows(self.engine.tick(T0 + t))

    def next_due(self) -> float:
        return self.engine.next_due() - T0


# --- durations: for_s and clear_for_s --------------------------------------------------------

# a rack load cell that must stay over its limit a minute before anyone is called, and back
# under it half a minute before the alarm clears; no floor sums, to keep the story to one cell
DURATIONS = """
rules:
  load_cell: {high_warning: 800, high_critical: 1000, deadband: 50, for_s: 60, clear_for_s: 30}
  floor_load: {enabled: false}
sensors:
  - {id: LC, kind: load_cell, building: A, floor: 1F, driver: lora}
"""

HIGH = "high_threshold"


@pytest.fixture
def dur(tmp_path: Path) -> Rig:
    return Rig(tmp_path, DURATIONS)


def test_over_the_limit_for_less_than_for_s_raises_nothing(dur: Rig) -> None:
    assert dur.feed(("LC", 850, 0)) == []
    assert dur.feed(("LC", 900, 30)) == []
    assert dur.feed(("LC", 700, 59)) == []  # back under limit - deadband a second too early
    assert dur.next_due() == math.inf
    assert dur.tick(600) == []
    assert dur.feed(("LC", 720, 600)) == []


def test_held_for_for_s_a_later_reading_raises_it_dated_when_the_hold_elapsed(dur: Rig) -> None:
    assert dur.feed(("LC", 850, 0)) == []
    assert dur.feed(("LC", 860, 30)) == []
    # the reading at 90 s notices that the hold elapsed at 60 s; the value shown is the last
    # one seen while the alarm was pending
    assert dur.feed(("LC", 870, 90)) == [("LC", HIGH, "normal", "warning", 860, 800, 60)]
    assert dur.feed(("LC", 880, 120)) == []


def test_held_for_for_s_the_clock_raises_it_at_exactly_start_plus_for_s(dur: Rig) -> None:
    assert dur.feed(("LC", 850, 0)) == []
    assert dur.next_due() == 60
    assert dur.tick(30) == []
    assert dur.tick(59.999) == []
    assert dur.tick(60) == [("LC", HIGH, "normal", "warning", 850, 800, 60)]
    assert dur.next_due() == math.inf
    assert dur.tick(61) == []
    assert dur.feed(("LC", 870, 90)) == []  # raised once, not again


def test_a_late_tick_still_dates_the_alarm_when_the_hold_elapsed(dur: Rig) -> None:
    assert dur.feed(("LC", 850, 0)) == []
    assert dur.tick(500) == [("LC", HIGH, "normal", "warning", 850, 800, 60)]


def test_clear_for_s_delays_the_clear(dur: Rig) -> None:
    dur.feed(("LC", 850, 0))
    assert dur.tick(60) == [("LC", HIGH, "normal", "warning", 850, 800, 60)]
    # a dip under the limit that comes back within 30 s clears nothing
    assert dur.feed(("LC", 700, 100)) == []
    assert dur.next_due() == 130
    assert dur.feed(("LC", 820, 120)) == []
    assert dur.next_due() == math.inf
    assert dur.tick(200) == []
    # down for good: cleared 30 s after it went under limit - deadband (750)
    assert dur.feed(("LC", 700, 300)) == []
    assert dur.tick(329) == []
    assert dur.tick(330) == [("LC", HIGH, "warning", "normal", 700, 800, 330)]


def test_rising_into_critical_during_the_hold_raises_critical_when_it_elapses(dur: Rig) -> None:
    assert dur.feed(("LC", 850, 0)) == []
    assert dur.feed(("LC", 1100, 30)) == []  # the clock keeps running from the first crossing
    assert dur.next_due() == 60
    assert dur.tick(60) == [("LC", HIGH, "normal", "critical", 1100, 1000, 60)]


def test_falling_back_to_warning_during_the_hold_raises_warning(dur: Rig) -> None:
    assert dur.feed(("LC", 850, 0)) == []
    assert dur.feed(("LC", 1100, 20)) == []
    assert dur.feed(("LC", 900, 40)) == []  # under critical - deadband (950): warning again
    assert dur.tick(60) == [("LC", HIGH, "normal", "warning", 900, 800, 60)]


def test_escalating_to_critical_must_hold_for_s_too(dur: Rig) -> None:
    dur.feed(("LC", 850, 0))
    assert dur.tick(60) == [("LC", HIGH, "normal", "warning", 850, 800, 60)]
    assert dur.feed(("LC", 1050, 100)) == []
    assert dur.feed(("LC", 1020, 159)) == []
    assert dur.feed(("LC", 1030, 160)) == [("LC", HIGH, "warning", "critical", 1020, 1000, 160)]


# --- rate of rise ----------------------------------------------------------------------------

# a drainage-ditch gauge: rising 1.5 cm a minute is a warning, 3 cm a minute critical, judged
# over the last 5 minutes (and only once the readings span half of that)
RATE = """
rules:
  water_level:
    rate: {window_s: 300, rise_warning: 1.5, rise_critical: 3.0}
sensors:
  - {id: WL, kind: water_level, building: A, driver: lora}
"""


@pytest.fixture
def rate(tmp_path: Path) -> Rig:
    return Rig(tmp_path, RATE)


def test_rising_2_cm_a_minute_raises_once_the_readings_span_half_the_window(rate: Rig) -> None:
    # a gauge reporting every 2.5 minutes (half the window: each reading is kept as a sample
    # and the rise is measured from the reading 300 s earlier), 5 cm higher each time: 2 cm/min
    assert rate.feed(("WL", 10, 0)) == []
    assert rate.feed(("WL", 12.5, 75)) == []  # an extra reading: 75 s is too short to judge
    assert rate.feed(("WL", 15, 150)) == [("WL", "rate_of_rise", "normal", "warning", 2.0, 1.5,
                                          150)]
    assert rate.feed(("WL", 20, 300)) == []  # still 2 cm/min: held, not repeated
    # the water stops rising at 20 cm: 15 -> 20 cm over the last 300 s is 1 cm/min
    assert rate.feed(("WL", 20, 450)) == [("WL", "rate_of_rise", "warning", "normal", 1.0, 1.5,
                                          450)]
    assert rate.feed(("WL", 20, 600)) == []


def test_a_fast_rise_goes_straight_to_critical_in_cm_per_minute(rate: Rig) -> None:
    # 2 cm every 30 s is 4 cm/min, above the 3 cm/min critical limit
    out = rate.series("WL", [10.0 + 2 * i for i in range(6)], step=30)
    assert out == [("WL", "rate_of_rise", "normal", "critical", 4.0, 3.0, 150)]


def test_a_slow_rise_raises_nothing(rate: Rig) -> None:
    # 1 cm a minute for 20 minutes: the water goes up 20 cm, never fast
    assert rate.series("WL", [10.0 + 0.5 * i for i in range(41)], step=30) == []


def test_a_single_step_after_a_gap_is_not_judged(rate: Rig) -> None:
    assert rate.series("WL", [10.0] * 11, step=30) == []  # steady for 5 minutes
    # ten minutes of silence, then 15 cm higher: no reading inside the window to compare with
    assert rate.feed(("WL", 25, 900)) == []
    # and the readings after it compare with the step itself: flat, nothing to report
    assert rate.series("WL", [25.0] * 11, t0=930, step=30) == []


def test_a_jump_is_judged_as_its_average_rise_once_the_span_is_half_the_window(
        rate: Rig) -> None:
    # 10 -> 30 cm between two readings a minute apart is not judged on its own (60 s is under
    # half the window); once the readings span 150 s the rise is judged: 20 cm in 2.5 minutes
    assert rate.feed(("WL", 10, 0)) == []
    assert rate.feed(("WL", 30, 60)) == []
    assert rate.feed(("WL", 30, 120)) == []
    assert rate.feed(("WL", 30, 150)) == [("WL", "rate_of_rise", "normal", "critical", 8.0, 3.0,
                                          150)]


# --- no data (deadman) -----------------------------------------------------------------------

# an MQTT fire button that sends a heartbeat every minute: three missed ones (180 s) raise the
# no-data alarm; Modbus sensors are expected at their poll interval (contacts: the DI lane)
NO_DATA = """
rules:
  water_level: {no_data: {missed: 3, min_s: 0}}
  fire_button: {no_data: {missed: 3, min_s: 10}}
sensors:
  - {id: FB, kind: fire_button, building: A, floor: 1F, driver: lora, report_interval_s: 60}
  - {id: WL, kind: water_level, building: A, driver: lora}
  - {id: WL2, kind: water_level, building: A, driver: bus, address: "1/hr0"}
  - {id: WL3, kind: water_level, building: A, driver: bus, address: "3/hr0"}
  - {id: FB2, kind: fire_button, building: A, floor: 1F, driver: bus, address: "2/di0"}
"""

NO_DATA_FB = 180.0


@pytest.fixture
def nd(tmp_path: Path) -> Rig:
    return Rig(tmp_path, NO_DATA)


def _only(rows: list[Row], sensor: str) -> list[Row]:
    return [r for r in rows if r[0] == sensor]


def test_silence_beyond_missed_intervals_raises_no_data_via_tick(nd: Rig) -> None:
    nd.feed(("FB", math.nan, 100, Quality.HEARTBEAT))
    assert _only(nd.tick(279), "FB") == []
    assert _only(nd.tick(280), "FB") == [("FB", "no_data", "normal", "warning", None,
                                          NO_DATA_FB, 280)]
    assert _only(nd.tick(900), "FB") == []  # raised once


@pytest.mark.parametrize("quality", [Quality.HEARTBEAT, Quality.TEST, Quality.GOOD])
def test_any_reading_clears_no_data(nd: Rig, quality: Quality) -> None:
    value = 0.0 if quality == Quality.GOOD else math.nan  # GOOD 0.0: a reset, no press
    assert _only(nd.tick(200), "FB") == [("FB", "no_data", "normal", "warning", None,
                                          NO_DATA_FB, 180)]
    assert nd.feed(("FB", value, 600, quality)) == [("FB", "no_data", "warning", "normal", None,
                                                     NO_DATA_FB, 600)]


def test_a_reading_after_the_silence_without_a_tick_raises_then_clears(nd: Rig) -> None:
    assert nd.feed(("FB", math.nan, 500, Quality.HEARTBEAT)) == [
        ("FB", "no_data", "normal", "warning", None, NO_DATA_FB, 180),
        ("FB", "no_data", "warning", "normal", None, NO_DATA_FB, 500),
    ]
    assert _only(nd.tick(600), "FB") == []  # heard at 500: due again at 680


def test_the_engine_start_counts_as_heard(nd: Rig) -> None:
    assert nd.tick(0) == []
    assert _only(nd.tick(179.9), "FB") == []
    # the button's first message ever, 170 s after start: no alarm, nothing to clear
    assert nd.feed(("FB", math.nan, 170, Quality.HEARTBEAT)) == []
    assert _only(nd.tick(349), "FB") == []
    assert _only(nd.tick(350), "FB") == [("FB", "no_data", "normal", "warning", None,
                                          NO_DATA_FB, 350)]


def test_modbus_sensors_are_expected_at_their_poll_interval(nd: Rig) -> None:
    p = nd.park
    interval = {s: p.report_interval[p.index[s]] for s in ("FB", "WL", "WL2", "WL3", "FB2")}
    assert interval["FB"] == 60  # its own report_interval_s
    assert math.isnan(interval["WL"])  # an MQTT device without one: not watched
    assert interval["WL2"] == 2  # poll_interval_s
    assert interval["WL3"] == 5  # slave 3's own interval_s
    assert interval["FB2"] == 0.5  # di_interval_s: the contact lane
    assert nd.next_due() == 6
    # 3 × 2 s; the button contact's 3 × 0.5 s is floored at min_s 10
    assert nd.tick(6) == [("WL2", "no_data", "normal", "warning", None, 6, 6)]
    assert nd.tick(10) == [("FB2", "no_data", "normal", "warning", None, 10, 10)]
    assert nd.tick(15) == [("WL3", "no_data", "normal", "warning", None, 15, 15)]
    assert nd.tick(10_000) == [("FB", "no_data", "normal", "warning", None, 180, 180)]
    # a driver that reports COMM_FAIL is alive: no_data clears (a comm_fault is another matter)
    assert nd.feed(("WL2", math.nan, 10_001, Quality.COMM_FAIL)) == [
        ("WL2", "no_data", "warning", "normal", None, 6, 10_001)]


# --- flapping --------------------------------------------------------------------------------

FLAPPING = """
rules:
  water_level: {high_warning: 30, high_critical: 50, deadband: 0}
sensors:
  - {id: WL, kind: water_level, building: A, driver: lora}
  - {id: FB, kind: fire_button, building: A, floor: 1F, driver: lora}
"""


def _bounce(lo: float, hi: float, n: int) -> list[float]:
    return [hi, lo] * (n // 2)


def test_a_bouncing_level_gives_one_flapping_alarm_instead_of_a_stream(tmp_path: Path) -> None:
    rig = Rig(tmp_path, FLAPPING)
    out = rig.series("WL", _bounce(29, 31, 30))  # 30 readings, one a second, each a change
    # the first ten changes go out; the eleventh makes 11 of the last 20 (> 50 %) and the
    # flapping alarm stands in for it and for every change after it
    up = ("WL", HIGH, "normal", "warning", 31, 30)
    down = ("WL", HIGH, "warning", "normal", 29, 30)
    assert out == [(*(up if i % 2 == 0 else down), float(i)) for i in range(10)] + [
        ("WL", "flapping", "normal", "warning", 55.0, 50.0, 10)]


def test_flapping_that_reached_critical_is_critical(tmp_path: Path) -> None:
    rig = Rig(tmp_path, FLAPPING)
    out = rig.series("WL", _bounce(29, 55, 30))
    assert len(out) == 11
    assert out[-1] == ("WL", "flapping", "normal", "critical", 55.0, 50.0, 10)
    # warning flapping that then touches critical is escalated
    rig = Rig(tmp_path, FLAPPING)
    assert rig.series("WL", _bounce(29, 31, 20))[-1][1:4] == ("flapping", "normal", "warning")
    assert rig.feed(("WL", 55, 20)) == [("WL", "flapping", "warning", "critical", None, 50.0,
                                         20)]


def test_when_it_calms_down_flapping_clears_and_alarms_catch_up(tmp_path: Path) -> None:
    rig = Rig(tmp_path, FLAPPING)
    rig.series("WL", _bounce(29, 31, 30))  # flapping since t=10; last reading 29 (normal)
    # it settles at 35 cm, a real warning level: the first 35 is one more change, then none;
    # after 17 calm readings only 4 of the last 20 changed (< 25 %)
    calm = rig.series("WL", [35.0] * 17, t0=30)
    assert calm == [
        ("WL", HIGH, "normal", "warning", 35, 30, 46),  # brought up to date ...
        ("WL", "flapping", "warning", "normal", 20.0, 25.0, 46),  # ... then flapping clears
    ]
    # from now on every change is delivered again
    assert rig.feed(("WL", 20, 47)) == [("WL", HIGH, "warning", "normal", 20, 30, 47)]


FLAPPING_RATE = """
rules:
  water_level:
    high_warning: 30
    high_critical: 200
    rate: {window_s: 300, rise_warning: 1.5}
sensors:
  - {id: WL, kind: water_level, building: A, driver: lora}
"""


def test_a_rate_alarm_brought_up_to_date_after_flapping_shows_the_rate(tmp_path: Path) -> None:
    rig = Rig(tmp_path, FLAPPING_RATE)
    # a reading every 150 s (half the window: the rise is measured from the reading 300 s back)
    assert rig.series("WL", [31.0, 29.0] * 10, step=150)[-1][1:4] == ("flapping", "normal",
                                                                       "warning")
    # then a steady rise of 4 cm per 150 s (1.6 cm/min) from 32 cm: the warning level and, from
    # the third reading on, the rate alarm change while flapping and are held back; after 18
    # readings only 4 of the last 20 changed and the alarms are brought up to date
    calm = rig.series("WL", [32.0 + 4 * k for k in range(18)], t0=3000, step=150)
    assert [r[1:4] for r in calm] == [(HIGH, "normal", "warning"),
                                      ("rate_of_rise", "normal", "warning"),
                                      ("flapping", "warning", "normal")]
    # the caught-up rate alarm shows a rise in cm/min like any rate alarm, not the level in cm
    # of the reading that ended the flapping (100 cm here)
    assert calm[1] == ("WL", "rate_of_rise", "normal", "warning", 1.6, 1.5, 5550)


def test_calming_at_the_level_last_delivered_only_clears_flapping(tmp_path: Path) -> None:
    rig = Rig(tmp_path, FLAPPING)
    rig.series("WL", _bounce(29, 31, 30))  # the last change delivered was back to normal
    calm = rig.series("WL", [29.0] * 16, t0=30)
    assert calm == [("WL", "flapping", "warning", "normal", 20.0, 25.0, 45)]


def test_fire_buttons_never_flap(tmp_path: Path) -> None:
    rig = Rig(tmp_path, FLAPPING)
    out = rig.series("FB", [1.0, 0.0] * 15)  # pressed and reset 15 times
    assert [(r[1], r[3]) for r in out] == [("button_latch", "critical"),
                                           ("button_latch", "normal")] * 15


def test_flapping_null_turns_it_off(tmp_path: Path) -> None:
    rig = Rig(tmp_path, FLAPPING.replace("rules:\n", "rules:\n  flapping: null\n"))
    out = rig.series("WL", _bounce(29, 31, 30))
    assert len(out) == 30 and {r[1] for r in out} == {HIGH}


# --- bad data --------------------------------------------------------------------------------

ALL_KINDS = """
rules:
  load_cell: {high_warning: 800, high_critical: 1000, deadband: 50}
  water_level:
    high_warning: 30
    high_critical: 50
    rate: {window_s: 300, rise_warning: 1.5}
  floor_load: {enabled: false}
sensors:
  - {id: LC, kind: load_cell, building: A, floor: 1F, driver: lora}
  - {id: LCT, kind: load_cell, building: A, floor: 1F, driver: lora,
     thresholds: {for_s: 60, clear_for_s: 60}}
  - {id: WL, kind: water_level, building: A, driver: lora}
  - {id: FB, kind: fire_button, building: A, floor: 1F, driver: lora}
"""

BAD = [(math.nan, Quality.GOOD), (5000.0, Quality.UNSTABLE), (5000.0, Quality.BAD),
       (0.0, Quality.UNSTABLE), (0.0, Quality.BAD), (math.inf, Quality.GOOD)]


def test_bad_readings_raise_nothing_in_any_kind(tmp_path: Path) -> None:
    rig = Rig(tmp_path, ALL_KINDS)
    assert rig.feed(("LC", 100, 0), ("LCT", 100, 0), ("WL", 10, 0), ("FB", 0, 0)) == []
    t = 0.0
    for value, quality in BAD:
        t += 30
        fb = 1.0 if value == 5000.0 else value  # a "press" that cannot be trusted
        assert rig.feed(("LC", value, t, quality), ("LCT", value, t, quality),
                        ("WL", value, t, quality), ("FB", fb, t, quality)) == [], (value, quality)
    assert rig.tick(199) == []
    # the next good readings are judged against good ones only: 10 -> 11 cm in 200 s
    assert rig.feed(("LC", 100, 200), ("LCT", 100, 200), ("WL", 11, 200), ("FB", 0, 200)) == []
    assert rig.tick(1000) == []
    assert rig.engine.stats["unusable"] == 4 * len(BAD)


def test_bad_readings_clear_nothing_in_any_kind(tmp_path: Path) -> None:
    rig = Rig(tmp_path, ALL_KINDS)
    rig.feed(("LC", 100, 0), ("LCT", 100, 0), ("WL", 10, 0))
    raised = rig.feed(("LC", 1200, 200), ("LCT", 1200, 200), ("WL", 45, 200), ("FB", 1, 200))
    raised += rig.tick(260)
    assert sorted(raised) == [
        ("FB", "button_latch", "normal", "critical", 1.0, None, 200),
        ("LC", HIGH, "normal", "critical", 1200, 1000, 200),
        ("LCT", HIGH, "normal", "critical", 1200, 1000, 260),
        ("WL", HIGH, "normal", "warning", 45, 30, 200),
        ("WL", "rate_of_rise", "normal", "warning", 10.5, 1.5, 200),
    ]
    t = 260.0
    for value, quality in BAD:
        t += 1
        assert rig.feed(("LC", value, t, quality), ("LCT", value, t, quality),
                        ("WL", value, t, quality), ("FB", value, t, quality)) == [], (value,
                                                                                      quality)
    assert rig.tick(t + 600) == []
