"""RuleEngine with the threshold (hysteresis) and fire-button latch rules, on the example park."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parkwatch.park import ParkModel
from parkwatch.readings import Quality, ReadingBatch
from parkwatch.rules.engine import RuleEngine
from parkwatch.rules.registry import RULE_NAMES
from parkwatch.rules.transitions import Severity, Transitions
from parkwatch.schema import load_config

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "park.yaml"
T0 = 1_763_800_000.0

NORMAL, WARNING, CRITICAL = int(Severity.NORMAL), int(Severity.WARNING), int(Severity.CRITICAL)
HIGH, LOW, LATCH = "high_threshold", "low_threshold", "button_latch"

# water levels get low limits too (10 / 5 cm) so both sides can be exercised
WATER_LOWS = {("rules", "water_level", "low_warning"): 10.0,
              ("rules", "water_level", "low_critical"): 5.0}


# the limit rules alone: no floor sums, no flap detection (tests/test_rules_reference.py has all)
ALONE: dict[tuple[Any, ...], Any] = {("rules", "floor_load", "enabled"): False,
                                     ("rules", "flapping"): None}


def make_park(overrides: dict[tuple[Any, ...], Any] | None = None) -> ParkModel:
    return ParkModel(load_config(EXAMPLE, {**ALONE, **(overrides or {})}))


@pytest.fixture(scope="module")
def park() -> ParkModel:
    return make_park()


@pytest.fixture(scope="module")
def low_park() -> ParkModel:
    return make_park(WATER_LOWS)


Reading = tuple[int, float, float, int]  # sensor index, value, device time, quality


def batch(*readings: tuple[Any, ...]) -> ReadingBatch:
    """Readings as (sensor, value, ts[, quality]); quality defaults to GOOD."""
    full = [(r[0], r[1], r[2], r[3] if len(r) > 3 else Quality.GOOD) for r in readings]
    return ReadingBatch.from_columns([r[0] for r in full], [r[1] for r in full],
                                     [r[2] for r in full], [int(r[3]) for r in full])


def rows(tr: Transitions) -> list[tuple[int, str, int, int]]:
    """(sensor, rule name, old severity, new severity) per transition, in emitted order."""
    return [(s, RULE_NAMES[r], o, n) for s, r, o, n, *_ in tr.rows()]


def full_rows(tr: Transitions) -> list[tuple[int, str, int, int, float, float | None, float]]:
    return [(s, RULE_NAMES[r], o, n, v, None if math.isnan(t) else t, ts)
            for s, r, o, n, v, t, ts in tr.rows()]


class Feeder:
    """Feeds one sensor's GOOD readings one at a time with increasing device time."""

    def __init__(self, engine: RuleEngine, sensor: int) -> None:
        self.engine, self.sensor, self.t = engine, sensor, T0

    def __call__(self, value: float, quality: int = Quality.GOOD) -> list[tuple[Any, ...]]:
        self.t += 1.0
        tr = self.engine.evaluate(batch((self.sensor, value, self.t, quality)))
        return [(RULE_NAMES[r], o, n, t if not math.isnan(t) else None)
                for _s, r, o, n, _v, t, _ts in tr.rows()]


# --- threshold: high side -----------------------------------------------------------------


def test_load_cell_raises_warning_then_critical(park: ParkModel) -> None:
    feed = Feeder(RuleEngine(park), park.index["A-2F-LC1"])
    assert feed(5000) == []
    assert feed(7999.9) == []
    assert feed(8000) == [(HIGH, NORMAL, WARNING, 8000.0)]
    assert feed(9000) == []  # still warning: a held state is not repeated
    assert feed(10000) == [(HIGH, WARNING, CRITICAL, 10000.0)]
    assert feed(12000) == []


def test_jump_straight_past_both_limits_is_one_transition(park: ParkModel) -> None:
    feed = Feeder(RuleEngine(park), park.index["A-2F-LC1"])
    assert feed(15000) == [(HIGH, NORMAL, CRITICAL, 10000.0)]
    assert feed(0) == [(HIGH, CRITICAL, NORMAL, 10000.0)]


def test_clear_only_below_limit_minus_deadband(park: ParkModel) -> None:
    feed = Feeder(RuleEngine(park), park.index["A-2F-LC1"])
    feed(10500)
    assert feed(9999) == []  # below the critical limit but inside its deadband
    assert feed(9800) == []  # exactly limit - deadband still holds
    # falling back to warning names the warning limit now in force
    assert feed(9799.9) == [(HIGH, CRITICAL, WARNING, 8000.0)]
    assert feed(7900) == []
    assert feed(7800) == []
    assert feed(7799.9) == [(HIGH, WARNING, NORMAL, 8000.0)]
    assert feed(7900) == []  # back inside the band from below: not a new raise
    assert feed(8000) == [(HIGH, NORMAL, WARNING, 8000.0)]


def test_oscillation_inside_deadband_produces_no_transitions(park: ParkModel) -> None:
    feed = Feeder(RuleEngine(park), park.index["A-2F-LC1"])
    assert feed(8000) == [(HIGH, NORMAL, WARNING, 8000.0)]
    wobble = [7801, 8150, 7850, 8001, 7999, 7800, 8199, 7900] * 5
    assert [feed(v) for v in wobble] == [[]] * len(wobble)
    # the same around the critical limit
    assert feed(10000) == [(HIGH, WARNING, CRITICAL, 10000.0)]
    wobble = [9801, 10100, 9850, 9999.5, 10000, 9800] * 5
    assert [feed(v) for v in wobble] == [[]] * len(wobble)


@pytest.mark.parametrize(("sensor", "limit", "severity"), [
    ("A-2F-LC1", 8000.0, WARNING), ("A-2F-LC1", 10000.0, CRITICAL),
    ("A-4F-LC1", 6500.0, WARNING), ("A-4F-LC1", 8000.0, CRITICAL),
    ("A-1F-WL1", 30.0, WARNING), ("A-1F-WL1", 50.0, CRITICAL),
    ("B-B1-WL1", 40.0, WARNING), ("B-B1-WL1", 60.0, CRITICAL),
])
def test_value_exactly_at_the_limit_raises(park: ParkModel, sensor: str, limit: float,
                                           severity: int) -> None:
    feed = Feeder(RuleEngine(park), park.index[sensor])
    below = feed(math.nextafter(limit, -math.inf))
    if severity == WARNING:
        assert below == []
        assert feed(limit) == [(HIGH, NORMAL, WARNING, limit)]
    else:  # just below critical is already a warning
        assert below == [(HIGH, NORMAL, WARNING, _warn(park, sensor))]
        assert feed(limit) == [(HIGH, WARNING, CRITICAL, limit)]


def _warn(park: ParkModel, sensor: str) -> float:
    lim = park.cfg.thresholds_for(park.sensors[park.index[sensor]].config)
    assert lim is not None and lim.high_warning is not None
    return lim.high_warning


def test_sensor_override_beats_kind_defaults(park: ParkModel) -> None:
    engine = RuleEngine(park)
    a4, a2 = park.index["A-4F-LC1"], park.index["A-2F-LC1"]
    wl_a, wl_b = park.index["A-1F-WL1"], park.index["B-B1-WL1"]
    tr = engine.evaluate(batch((a4, 7000, T0), (a2, 7000, T0), (wl_a, 35, T0), (wl_b, 35, T0)))
    assert sorted(rows(tr)) == [(a4, HIGH, NORMAL, WARNING), (wl_a, HIGH, NORMAL, WARNING)]


def test_critical_only_limit_goes_straight_to_critical() -> None:
    park = make_park({("rules", "load_cell", "high_warning"): None})
    feed = Feeder(RuleEngine(park), park.index["A-2F-LC1"])
    assert feed(9000) == []  # the default 8000 warning is disabled
    assert feed(9999.9) == []
    assert feed(10000) == [(HIGH, NORMAL, CRITICAL, 10000.0)]
    assert feed(9850) == []
    assert feed(9800) == []
    assert feed(9799) == [(HIGH, CRITICAL, NORMAL, 10000.0)]
    # A-4F-LC1 sets its own warning limit explicitly: it keeps it
    feed4 = Feeder(RuleEngine(park), park.index["A-4F-LC1"])
    assert feed4(6500) == [(HIGH, NORMAL, WARNING, 6500.0)]


# --- threshold: low side ------------------------------------------------------------------


def test_low_limits_mirror_high_ones(low_park: ParkModel) -> None:
    feed = Feeder(RuleEngine(low_park), low_park.index["A-1F-WL1"])
    assert feed(20) == []
    assert feed(10.1) == []
    assert feed(10) == [(LOW, NORMAL, WARNING, 10.0)]
    assert feed(6) == []
    assert feed(5) == [(LOW, WARNING, CRITICAL, 5.0)]
    assert feed(7.9) == []
    assert feed(8) == []  # low_critical + deadband still holds
    assert feed(8.1) == [(LOW, CRITICAL, WARNING, 10.0)]  # the warning limit in force
    assert feed(13) == []
    assert feed(13.1) == [(LOW, WARNING, NORMAL, 10.0)]
    assert feed(11) == []


def test_low_critical_only_limit() -> None:
    park = make_park({("rules", "water_level", "low_critical"): 5.0})
    feed = Feeder(RuleEngine(park), park.index["A-1F-WL1"])
    assert feed(5.1) == []
    assert feed(5) == [(LOW, NORMAL, CRITICAL, 5.0)]
    assert feed(8) == []
    assert feed(8.01) == [(LOW, CRITICAL, NORMAL, 5.0)]


def test_jump_from_high_critical_to_low_clears_high_before_raising_low(
        low_park: ParkModel) -> None:
    engine = RuleEngine(low_park)
    wl = low_park.index["A-1F-WL1"]
    assert rows(engine.evaluate(batch((wl, 55, T0)))) == [(wl, HIGH, NORMAL, CRITICAL)]
    got = full_rows(engine.evaluate(batch((wl, 2, T0 + 1))))
    assert got == [(wl, HIGH, CRITICAL, NORMAL, 2.0, 50.0, T0 + 1),
                   (wl, LOW, NORMAL, CRITICAL, 2.0, 5.0, T0 + 1)]
    # and back up: the low clear comes before the high raise
    got = full_rows(engine.evaluate(batch((wl, 35, T0 + 2))))
    assert got == [(wl, LOW, CRITICAL, NORMAL, 35.0, 5.0, T0 + 2),
                   (wl, HIGH, NORMAL, WARNING, 35.0, 30.0, T0 + 2)]


def test_jump_across_in_a_busy_batch_keeps_clear_before_raise(low_park: ParkModel) -> None:
    engine = RuleEngine(low_park)
    wa, wb, lc = (low_park.index[s] for s in ("A-1F-WL1", "B-B1-WL1", "A-2F-LC1"))
    engine.evaluate(batch((wa, 55, T0), (wb, 1, T0)))
    got = rows(engine.evaluate(batch((lc, 9000, T0 + 1), (wa, 0, T0 + 1), (wb, 70, T0 + 1))))
    assert sorted(got) == sorted([(lc, HIGH, NORMAL, WARNING),
                                  (wa, HIGH, CRITICAL, NORMAL), (wa, LOW, NORMAL, CRITICAL),
                                  (wb, LOW, CRITICAL, NORMAL), (wb, HIGH, NORMAL, CRITICAL)])
    for s in (wa, wb):
        mine = [r for r in got if r[0] == s]
        assert mine[0][3] == NORMAL and mine[1][3] == CRITICAL, mine


# --- ordering, bad data, stale data -------------------------------------------------------


def test_readings_of_one_sensor_in_one_batch_are_evaluated_in_order(park: ParkModel) -> None:
    lc, wl, a4 = park.index["A-2F-LC1"], park.index["A-1F-WL1"], park.index["A-4F-LC1"]
    readings = [(lc, 8000, T0 + 1), (wl, 31, T0 + 1), (lc, 10000, T0 + 2), (lc, 9500, T0 + 3),
                (a4, 9000, T0 + 1), (wl, 10, T0 + 2), (lc, 7000, T0 + 4), (lc, 8500, T0 + 5),
                (wl, 60, T0 + 3)]
    together = full_rows(RuleEngine(park).evaluate(batch(*readings)))
    one_by_one_engine = RuleEngine(park)
    one_by_one = [r for rd in readings for r in full_rows(one_by_one_engine.evaluate(batch(rd)))]
    assert sorted(together) == sorted(one_by_one)
    assert [r[1:4] for r in together if r[0] == lc] == [
        (HIGH, NORMAL, WARNING), (HIGH, WARNING, CRITICAL), (HIGH, CRITICAL, WARNING),
        (HIGH, WARNING, NORMAL), (HIGH, NORMAL, WARNING)]
    assert [r[4] for r in together if r[0] == lc] == [8000, 10000, 9500, 7000, 8500]
    assert [r[1:4] for r in together if r[0] == wl] == [
        (HIGH, NORMAL, WARNING), (HIGH, WARNING, NORMAL), (HIGH, NORMAL, CRITICAL)]


@pytest.mark.parametrize("quality", [Quality.UNSTABLE, Quality.OVERLOAD, Quality.HEARTBEAT,
                                     Quality.TEST, Quality.COMM_FAIL, Quality.BAD])
def test_non_good_quality_changes_nothing(park: ParkModel, quality: Quality) -> None:
    engine = RuleEngine(park)
    lc = park.index["A-2F-LC1"]
    assert engine.evaluate(batch((lc, 20000, T0, quality))).rows() == []
    assert rows(engine.evaluate(batch((lc, 8500, T0 + 1)))) == [(lc, HIGH, NORMAL, WARNING)]
    assert engine.evaluate(batch((lc, 0, T0 + 2, quality))).rows() == []
    assert engine.evaluate(batch((lc, 20000, T0 + 3, quality))).rows() == []
    # the alarm is exactly where the last GOOD reading left it
    assert engine.evaluate(batch((lc, 8500, T0 + 4))).rows() == []
    assert rows(engine.evaluate(batch((lc, 0, T0 + 5)))) == [(lc, HIGH, WARNING, NORMAL)]


def test_nan_value_changes_nothing(park: ParkModel) -> None:
    engine = RuleEngine(park)
    lc, fb = park.index["A-2F-LC1"], park.index["A-1F-FB1"]
    assert engine.evaluate(batch((lc, math.nan, T0), (fb, math.nan, T0))).rows() == []
    engine.evaluate(batch((lc, 10500, T0 + 1), (fb, 1.0, T0 + 1)))
    assert engine.evaluate(batch((lc, math.nan, T0 + 2), (fb, math.nan, T0 + 2))).rows() == []
    assert engine.evaluate(batch((lc, math.inf, T0 + 3), (lc, -math.inf, T0 + 4))).rows() == []
    assert engine.stats["unusable"] == 6
    assert rows(engine.evaluate(batch((lc, 100, T0 + 5)))) == [(lc, HIGH, CRITICAL, NORMAL)]


def test_older_reading_is_dropped_and_counted(park: ParkModel) -> None:
    engine = RuleEngine(park)
    lc = park.index["A-2F-LC1"]
    assert rows(engine.evaluate(batch((lc, 9000, T0 + 10)))) == [(lc, HIGH, NORMAL, WARNING)]
    assert engine.evaluate(batch((lc, 0, T0 + 5))).rows() == []  # would have cleared
    assert engine.stats["out_of_order"] == 1
    # inside one batch too: the second reading is older than the first
    assert engine.evaluate(batch((lc, 9100, T0 + 20), (lc, 0, T0 + 15))).rows() == []
    assert engine.stats["out_of_order"] == 2
    # an equal device time is not out of order
    assert rows(engine.evaluate(batch((lc, 0, T0 + 20)))) == [(lc, HIGH, WARNING, NORMAL)]
    assert engine.stats["out_of_order"] == 2


def test_stale_reading_of_one_sensor_does_not_affect_others(park: ParkModel) -> None:
    engine = RuleEngine(park)
    a, b = park.index["A-2F-LC1"], park.index["B-2F-LC1"]
    engine.evaluate(batch((a, 100, T0 + 100)))
    got = rows(engine.evaluate(batch((a, 9000, T0 + 1), (b, 9000, T0 + 1))))
    assert got == [(b, HIGH, NORMAL, WARNING)]
    assert engine.stats["out_of_order"] == 1


# --- fire-button latch --------------------------------------------------------------------


def test_button_press_latches_critical_until_reset(park: ParkModel) -> None:
    feed = Feeder(RuleEngine(park), park.index["A-1F-FB1"])
    assert feed(1.0) == [(LATCH, NORMAL, CRITICAL, None)]
    assert feed(math.nan, Quality.HEARTBEAT) == []
    assert feed(math.nan, Quality.TEST) == []
    assert feed(1.0) == []  # a second press while latched emits nothing
    assert feed(math.nan, Quality.HEARTBEAT) == []
    assert feed(0.0) == [(LATCH, CRITICAL, NORMAL, None)]
    assert feed(0.0) == []  # a reset of an idle button emits nothing
    assert feed(1.0) == [(LATCH, NORMAL, CRITICAL, None)]


def test_heartbeat_and_test_on_idle_button_change_nothing(park: ParkModel) -> None:
    engine = RuleEngine(park)
    fb = park.index["B-B1-FB1"]
    got = engine.evaluate(batch((fb, math.nan, T0, Quality.HEARTBEAT),
                                (fb, math.nan, T0 + 1, Quality.TEST),
                                (fb, math.nan, T0 + 2, Quality.HEARTBEAT)))
    assert got.rows() == []
    assert engine.stats["liveness"] == 3
    assert engine.stats["unusable"] == 0


def test_press_and_reset_in_one_batch_are_both_reported_in_order(park: ParkModel) -> None:
    engine = RuleEngine(park)
    fb, other = park.index["A-3F-FB1"], park.index["B-1F-FB1"]
    got = full_rows(engine.evaluate(batch((fb, 1.0, T0), (other, 1.0, T0),
                                          (fb, 0.0, T0 + 1), (fb, 1.0, T0 + 2))))
    assert [r for r in got if r[0] == fb] == [
        (fb, LATCH, NORMAL, CRITICAL, 1.0, None, T0), (fb, LATCH, CRITICAL, NORMAL, 0.0, None,
                                                       T0 + 1),
        (fb, LATCH, NORMAL, CRITICAL, 1.0, None, T0 + 2)]
    assert [r for r in got if r[0] == other] == [(other, LATCH, NORMAL, CRITICAL, 1.0, None, T0)]


def test_button_press_value_never_triggers_thresholds_and_load_cells_never_latch(
        park: ParkModel) -> None:
    engine = RuleEngine(park)
    fb, lc = park.index["A-1F-FB1"], park.index["A-2F-LC1"]
    got = rows(engine.evaluate(batch((fb, 1.0, T0), (lc, 1.0, T0))))
    assert got == [(fb, LATCH, NORMAL, CRITICAL)]
    assert engine.evaluate(batch((lc, 0.0, T0 + 1))).rows() == []


# --- model-based check against a plain per-sensor reference --------------------------------

REF_OVERRIDES: dict[tuple[Any, ...], Any] = {
    **WATER_LOWS,
    ("sensors", 14, "thresholds"): {"high_warning": None},  # B-2F-LC1: critical only
    ("sensors", 15, "thresholds"): {"high_warning": None, "high_critical": None,  # B-3F-LC1
                                    "low_warning": 500.0, "deadband": 50.0},  # low warning only
    ("sensors", 7, "thresholds"): {"deadband": 0.0},  # A-3F-LC1: no hysteresis at all
}
REF_PARK = make_park(REF_OVERRIDES)
REF_SENSORS = ["A-2F-LC1", "A-3F-LC1", "A-4F-LC1", "B-2F-LC1", "B-3F-LC1", "A-1F-WL1",
               "B-B1-WL1", "A-1F-FB1"]
assert REF_PARK.sensors[14].id == "B-2F-LC1" and REF_PARK.sensors[15].id == "B-3F-LC1"
assert REF_PARK.sensors[7].id == "A-3F-LC1"

_SEV = (NORMAL, WARNING, CRITICAL)


def _limits(sensor: int) -> dict[str, dict[int, float]]:
    """{'high': {level: limit}, 'low': {level: limit}} from the effective config."""
    lim = REF_PARK.cfg.thresholds_for(REF_PARK.sensors[sensor].config)
    assert lim is not None
    out: dict[str, dict[int, float]] = {"high": {}, "low": {}}
    for side, warn, crit in (("high", lim.high_warning, lim.high_critical),
                             ("low", lim.low_warning, lim.low_critical)):
        if warn is not None:
            out[side][1] = warn
        if crit is not None:
            out[side][2] = crit
    return out


class Reference:
    """Threshold + hysteresis and the button latch, one reading at a time, in plain Python."""

    def __init__(self) -> None:
        self.last_ts: dict[int, float] = {}
        self.level: dict[int, tuple[int, int]] = {}  # (high level, low level), 0..2
        self.latched: dict[int, bool] = {}
        self.out: dict[int, list[tuple[Any, ...]]] = {}
        self.out_of_order = 0

    def feed(self, sensor: int, value: float, ts: float, quality: int) -> None:
        if ts < self.last_ts.get(sensor, -math.inf):
            self.out_of_order += 1
            return
        self.last_ts[sensor] = ts
        if quality != Quality.GOOD or not math.isfinite(value):
            return
        out = self.out.setdefault(sensor, [])
        if REF_PARK.sensors[sensor].config.kind == "fire_button":
            was = self.latched.get(sensor, False)
            now = True if value == 1.0 else False if value == 0.0 else was
            self.latched[sensor] = now
            if now != was:
                out.append((LATCH, CRITICAL if was else NORMAL, CRITICAL if now else NORMAL,
                            value, None, ts))
            return
        d = REF_PARK.cfg.thresholds_for(REF_PARK.sensors[sensor].config).deadband  # type: ignore[union-attr]
        limits = _limits(sensor)
        hi, lo = self.level.get(sensor, (0, 0))

        def side(cur: int, lims: dict[int, float], beyond: Any, back: float) -> int:
            raised = max((lvl for lvl, x in lims.items() if beyond(value, x)), default=0)
            held = max((lvl for lvl, x in lims.items()
                        if lvl <= cur and beyond(value, x - back)), default=0)
            return max(raised, held)

        new_hi = side(hi, limits["high"], lambda v, x: v >= x, d)
        new_lo = 0 if new_hi else side(lo, limits["low"], lambda v, x: v <= x, -d)
        changes = []
        for rule, old, new, lims in ((HIGH, hi, new_hi, limits["high"]),
                                     (LOW, lo, new_lo, limits["low"])):
            if old != new:
                # the limit in force at the new level; for a clear, the one left
                changes.append((rule, _SEV[old], _SEV[new], value, lims[new or old], ts))
        changes.sort(key=lambda c: c[2] != NORMAL)  # the side left is cleared first
        out.extend(changes)
        self.level[sensor] = (new_hi, new_lo)


def _interesting(sensor: int) -> list[float]:
    if REF_PARK.sensors[sensor].config.kind == "fire_button":
        return [0.0, 1.0, 0.5]
    lim = REF_PARK.cfg.thresholds_for(REF_PARK.sensors[sensor].config)
    assert lim is not None
    points = []
    for x in _limits(sensor)["high"].values():
        points += [x, x - lim.deadband, math.nextafter(x, -math.inf),
                   math.nextafter(x - lim.deadband, -math.inf), x + 1]
    for x in _limits(sensor)["low"].values():
        points += [x, x + lim.deadband, math.nextafter(x, math.inf),
                   math.nextafter(x + lim.deadband, math.inf), x - 1]
    return points


@st.composite
def reading_batches(draw: st.DrawFn) -> list[list[Reading]]:
    n = draw(st.integers(1, 60))
    readings: list[Reading] = []
    for i in range(n):
        sensor = REF_PARK.index[draw(st.sampled_from(REF_SENSORS))]
        value = draw(st.one_of(
            st.sampled_from(_interesting(sensor)),
            st.floats(-50, 12000, allow_nan=False),
            st.just(math.nan),
        ))
        back = draw(st.sampled_from([0, 0, 0, 0, 0, 1, 3]))
        quality = draw(st.sampled_from([Quality.GOOD] * 8 + [Quality.UNSTABLE, Quality.BAD,
                                                             Quality.HEARTBEAT]))
        readings.append((sensor, value, T0 + i - back, int(quality)))
    cuts = sorted(draw(st.sets(st.integers(1, n - 1), max_size=n)) if n > 1 else set())
    bounds = [0, *cuts, n]
    return [readings[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=reading_batches())
def test_engine_matches_plain_reference(batches: list[list[Reading]]) -> None:
    engine = RuleEngine(REF_PARK)
    ref = Reference()
    got: dict[int, list[tuple[Any, ...]]] = {}
    for b in batches:
        for r in b:
            ref.feed(*r)
        tr = engine.evaluate(batch(*b))
        for s, rule, old, new, v, thr, ts in full_rows(tr):
            got.setdefault(s, []).append((rule, old, new, v, thr, ts))
    want = {s: t for s, t in ref.out.items() if t}
    assert got == want
    assert engine.stats["out_of_order"] == ref.out_of_order


def test_reference_matches_engine_on_a_known_sequence() -> None:
    """The reference itself is right on a hand-checked case (so the property means something)."""
    ref = Reference()
    lc = REF_PARK.index["A-2F-LC1"]
    for i, v in enumerate([8000, 9000, 10000, 9800, 9799, 7800, 7799]):
        ref.feed(lc, v, T0 + i, Quality.GOOD)
    assert [c[:3] for c in ref.out[lc]] == [(HIGH, NORMAL, WARNING), (HIGH, WARNING, CRITICAL),
                                            (HIGH, CRITICAL, WARNING), (HIGH, WARNING, NORMAL)]
    assert np.isclose([c[4] for c in ref.out[lc]], [8000, 10000, 8000, 8000]).all()
