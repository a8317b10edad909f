"""Floor and zone load against rated capacity, and the data-quality alarm when a cell is out.

Issue "done when" point 3: a floor with one stale load cell raises a data-quality alarm, not a
false "normal"; a floor at 85 % of rated capacity raises a warning; at 100 %, critical.

Rated capacity = rated live load (kN/m²) × area (m²); a cell weighing kg loads the floor with
kg × 9.80665 / 1000 kN.  Engine stories are told in seconds after the engine's start; each
transition is (group or sensor, rule, old severity, new severity, value, threshold, t).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import Device, Subscriber, wait_until
from parkwatch.devtools.localbroker import LocalMosquitto
from parkwatch.park import ParkModel
from parkwatch.readings import Quality, ReadingBatch
from parkwatch.rules.engine import RuleEngine
from parkwatch.rules.registry import RULE_NAMES
from parkwatch.rules.transitions import Severity, Transitions
from parkwatch.schema import load_config

T0 = 1_763_800_000.0
G = 9.80665


def kn(kg: float) -> Any:
    """The floor load of `kg` on a cell, in kN, as an approximate expected value."""
    return pytest.approx(kg * G / 1000)


BASE = """\
park: {id: p, name: P}
gateway: {id: gw, state_dir: state}
brokers: {local: {host: 127.0.0.1}}
uplink: {broker: local}
landlord: {id: l, name: L}
"""

# two tenants share 2F: Acme rents its east zone, Bolt the west one
TENANTS = """
tenants:
  - {id: acme, name: Acme, occupies: [{building: A, floor: 2F, zone: east}]}
  - {id: bolt, name: Bolt, occupies: [{building: A, floor: 2F, zone: west}]}
"""

# 2F: 4.0 kN/m² × 100 m² = 400 kN (warning 340, critical 400, deadband 8); its east zone is
# let on its own and has its own 50 m² (200 kN); the west zone has no area of its own.
# Three cells weighing kg; a cell without a good reading for 60 s makes the sum unknown.
FLOOR = TENANTS + """
drivers: [{id: lora, type: mqtt, broker: local}]
buildings:
  - id: A
    floors:
      - id: 2F
        rated_load_kn_m2: 4.0
        area_m2: 100
        zones:
          - {id: east, area_m2: 50}
          - {id: west}
rules:
  floor_load: {stale_after_s: 60}
sensors:
  - {id: E1, kind: load_cell, building: A, floor: 2F, zone: east, driver: lora}
  - {id: W1, kind: load_cell, building: A, floor: 2F, zone: west, driver: lora}
  - {id: W2, kind: load_cell, building: A, floor: 2F, zone: west, driver: lora}
"""

# 3F: 5.0 kN/m² × 80 m² = 400 kN, weighed by cells in t, kN and N
UNITS = """
drivers: [{id: lora, type: mqtt, broker: local}]
buildings:
  - id: A
    floors:
      - {id: 2F, rated_load_kn_m2: 4.0, area_m2: 100}
      - {id: 3F, rated_load_kn_m2: 5.0, area_m2: 80}
sensors:
  - {id: T1, kind: load_cell, building: A, floor: 3F, driver: lora, unit: t}
  - {id: K1, kind: load_cell, building: A, floor: 3F, driver: lora, unit: kN}
  - {id: N1, kind: load_cell, building: A, floor: 3F, driver: lora, unit: N}
"""

# 2F weighed by two cells in kN on an RS-485 bus, whose driver reports failed polls
BUS = """
drivers: [{id: bus, type: modbus_rtu, port: /dev/ttyUSB0}]
buildings: [{id: A, floors: [{id: 2F, rated_load_kn_m2: 4.0, area_m2: 100}]}]
sensors:
  - {id: B1, kind: load_cell, building: A, floor: 2F, driver: bus, address: "1/hr0", unit: kN}
  - {id: B2, kind: load_cell, building: A, floor: 2F, driver: bus, address: "2/hr0", unit: kN}
"""

Row = tuple[str, str, str, str, float | None, float | None, float]

LOAD, DATA = "floor_load", "floor_data"


def _num(x: float) -> float | None:
    return None if math.isnan(x) else x


class Rig:
    def __init__(self, tmp_path: Path, text: str) -> None:
        path = tmp_path / "park.yaml"
        path.write_text(BASE + dedent(text))
        self.park = ParkModel(load_config(path))
        self.engine = RuleEngine(self.park, start=T0)

    def rows(self, tr: Transitions) -> list[Row]:
        return [(self.park.ident(s), RULE_NAMES[r], Severity(o).label, Severity(n).label,
                 _num(v), _num(thr), round(ts - T0, 6))
                for s, r, o, n, v, thr, ts in tr.rows()]

    def feed(self, t: float, *readings: tuple[Any, ...]) -> list[Row]:
        """One batch at time t of (sensor id, value[, quality]); quality defaults to GOOD."""
        full = [(r[0], r[1], r[2] if len(r) > 2 else Quality.GOOD) for r in readings]
        batch = ReadingBatch.from_columns([self.park.index[r[0]] for r in full],
                                          [r[1] for r in full], [T0 + t] * len(full),
                                          [int(r[2]) for r in full])
        return self.rows(self.engine.evaluate(batch))

    def tick(self, t: float) -> list[Row]:
        return self.rows(self.engine.tick(T0 + t))

    def next_due(self) -> float:
        return self.engine.next_due() - T0


@pytest.fixture
def floor(tmp_path: Path) -> Rig:
    return Rig(tmp_path, FLOOR)


def test_floors_and_zones_with_an_area_are_groups_numbered_after_the_sensors(floor: Rig) -> None:
    p = floor.park
    assert [(g.id, g.kind, g.capacity_kn, [p.ident(m) for m in g.members], g.tenants, g.index)
            for g in p.groups] == [
        ("A/2F", "floor", 400.0, ["E1", "W1", "W2"], ("acme", "bolt"), 3),
        ("A/2F/east", "zone", 200.0, ["E1"], ("acme",), 4),
    ]
    assert p.size == 5 and p.idents()[3:] == ["A/2F", "A/2F/east", "gateway:gw"]  # then itself


def test_85_percent_warns_100_percent_is_critical_and_the_deadband_clears(floor: Rig) -> None:
    # 10 000 + 12 000 + 12 000 kg = 333.4 kN: 83 % of 400 kN
    assert floor.feed(0, ("E1", 10_000), ("W1", 12_000), ("W2", 12_000)) == []
    # 34 700 kg = 340.3 kN: at 85 %
    assert floor.feed(10, ("W2", 12_700)) == [
        ("A/2F", LOAD, "normal", "warning", kn(34_700), 340.0, 10)]
    # 40 800 kg = 400.1 kN: at 100 %
    assert floor.feed(20, ("W2", 18_800)) == [
        ("A/2F", LOAD, "warning", "critical", kn(40_800), 400.0, 20)]
    # 39 000 kg = 382.5 kN: under 400 - 8 kN, back to warning (whose limit, 340, it names)
    assert floor.feed(30, ("W2", 17_000)) == [
        ("A/2F", LOAD, "critical", "warning", kn(39_000), 340.0, 30)]
    # 33 900 kg = 332.4 kN: under 85 % but within the 8 kN deadband, still a warning
    assert floor.feed(40, ("W2", 11_900)) == []
    # 33 800 kg = 331.5 kN: under 340 - 8 kN, cleared
    assert floor.feed(50, ("W2", 11_800)) == [
        ("A/2F", LOAD, "warning", "normal", kn(33_800), 340.0, 50)]


def test_a_jump_from_normal_past_100_percent_is_one_critical_raise(floor: Rig) -> None:
    assert floor.feed(0, ("E1", 10_000), ("W1", 20_000), ("W2", 12_000)) == [
        ("A/2F", LOAD, "normal", "critical", kn(42_000), 400.0, 0)]
    assert floor.feed(5, ("W1", 0)) == [("A/2F", LOAD, "critical", "normal", kn(22_000), 400.0,
                                         5)]


def test_a_zone_with_its_own_area_is_judged_against_its_own_capacity(floor: Rig) -> None:
    assert floor.feed(0, ("E1", 10_000), ("W1", 5_000), ("W2", 5_000)) == []
    # 17 400 kg = 170.6 kN: 85 % of the east zone's 200 kN, while the floor is at 67 %
    assert floor.feed(10, ("E1", 17_400)) == [
        ("A/2F/east", LOAD, "normal", "warning", kn(17_400), 170.0, 10)]


def test_cells_in_t_kn_and_n_sum_into_one_floor_load(tmp_path: Path) -> None:
    rig = Rig(tmp_path, UNITS)
    # 20 t + 100 kN + 50 000 N = 196.133 + 100 + 50 kN = 346.133 kN: 86.5 % of 400 kN
    assert rig.feed(0, ("T1", 20), ("K1", 100), ("N1", 50_000)) == [
        ("A/3F", LOAD, "normal", "warning", pytest.approx(346.133), 340.0, 0)]


@pytest.mark.parametrize(("total", "expected"), [
    (339.9, []),
    (340.0, [("A/3F", LOAD, "normal", "warning", 340.0, 340.0, 0)]),
    (399.9, [("A/3F", LOAD, "normal", "warning", 399.9, 340.0, 0)]),
    (400.0, [("A/3F", LOAD, "normal", "critical", 400.0, 400.0, 0)]),
])
def test_the_limits_are_85_and_100_percent_of_rated_capacity_inclusive(
        tmp_path: Path, total: float, expected: list[Row]) -> None:
    rig = Rig(tmp_path, UNITS)
    assert rig.feed(0, ("T1", 0), ("K1", total), ("N1", 0)) == expected


def test_a_stale_cell_raises_floor_data_and_holds_the_load_alarm(floor: Rig) -> None:
    assert floor.feed(0, ("E1", 10_000), ("W1", 12_000), ("W2", 12_700)) == [
        ("A/2F", LOAD, "normal", "warning", kn(34_700), 340.0, 0)]
    assert floor.feed(30, ("E1", 10_000), ("W1", 12_000)) == []  # W2 silent from now on
    assert floor.next_due() == 60  # W2's last good reading + 60 s
    assert floor.tick(59) == []
    assert floor.tick(60) == [("A/2F", DATA, "normal", "warning", 1.0, None, 60)]
    assert floor.tick(65) == []  # raised once
    # E1 + W1 alone are 22 000 kg = 215.7 kN (54 %): summing them would say "normal"; the load
    # alarm stays at warning instead while W2 is out
    assert floor.feed(70, ("E1", 10_000), ("W1", 12_000)) == []
    assert floor.feed(80, ("W1", 2_000)) == []
    # W2 is back: the data alarm clears and the whole floor is weighed again
    assert floor.feed(90, ("W2", 2_000)) == [
        ("A/2F", DATA, "warning", "normal", 0.0, None, 90),
        ("A/2F", LOAD, "warning", "normal", kn(14_000), 340.0, 90),
    ]


def test_a_stale_cell_noticed_by_a_reading_of_another_cell(floor: Rig) -> None:
    # without a tick in between, the next reading of the floor finds W2 out
    assert floor.feed(0, ("E1", 10_000), ("W1", 12_000), ("W2", 12_700))[0][3] == "warning"
    assert floor.feed(75, ("E1", 10_000), ("W1", 11_000)) == [
        ("A/2F", DATA, "normal", "warning", 1.0, None, 75)]


def test_a_stale_cell_of_a_zone_puts_out_both_the_zone_and_the_floor(floor: Rig) -> None:
    floor.feed(0, ("E1", 10_000), ("W1", 12_000), ("W2", 12_000))
    assert floor.feed(30, ("W1", 12_000), ("W2", 12_000)) == []
    assert floor.tick(60) == [("A/2F", DATA, "normal", "warning", 1.0, None, 60),
                              ("A/2F/east", DATA, "normal", "warning", 1.0, None, 60)]
    assert floor.feed(61, ("E1", 10_000)) == [
        ("A/2F", DATA, "warning", "normal", 0.0, None, 61),
        ("A/2F/east", DATA, "warning", "normal", 0.0, None, 61),
    ]


def test_unusable_readings_neither_move_the_load_nor_keep_a_cell_fresh(floor: Rig) -> None:
    assert floor.feed(0, ("E1", 10_000), ("W1", 12_000), ("W2", 12_700))[0][3] == "warning"
    for t, quality in [(10, Quality.UNSTABLE), (20, Quality.BAD), (40, Quality.GOOD)]:
        value = math.nan if quality == Quality.GOOD else 0.0
        assert floor.feed(t, ("E1", 10_000), ("W1", 12_000), ("W2", value, quality)) == []
    assert floor.tick(60) == [("A/2F", DATA, "normal", "warning", 1.0, None, 60)]


def test_a_comm_fail_reading_raises_floor_data_at_once(tmp_path: Path) -> None:
    rig = Rig(tmp_path, BUS)
    assert rig.feed(0, ("B1", 200), ("B2", 150)) == [
        ("A/2F", LOAD, "normal", "warning", 350.0, 340.0, 0)]
    assert rig.feed(5, ("B2", math.nan, Quality.COMM_FAIL)) == [
        ("A/2F", DATA, "normal", "warning", 1.0, None, 5)]
    assert rig.feed(6, ("B1", 100)) == []  # 100 kN alone is no sum: the warning holds
    assert rig.feed(7, ("B2", 150)) == [
        ("A/2F", DATA, "warning", "normal", 0.0, None, 7),
        ("A/2F", LOAD, "warning", "normal", 250.0, 340.0, 7),
    ]


def test_cells_not_heard_from_yet_get_stale_after_s_from_the_start(floor: Rig) -> None:
    # W2 has not reported since the gateway started: the floor waits for it, the east zone
    # (E1 alone) is judged at once
    assert floor.feed(10, ("E1", 10_000), ("W1", 12_000)) == []
    assert floor.next_due() == 60
    assert floor.tick(59) == []
    assert floor.tick(60) == [("A/2F", DATA, "normal", "warning", 1.0, None, 60)]
    assert floor.feed(65, ("W2", 12_700)) == [
        ("A/2F", DATA, "warning", "normal", 0.0, None, 65),
        ("A/2F", LOAD, "normal", "warning", kn(34_700), 340.0, 65),
    ]


def test_cells_not_heard_from_yet_found_by_a_reading_after_the_grace(floor: Rig) -> None:
    assert floor.feed(10, ("E1", 10_000), ("W1", 12_000)) == []
    assert floor.feed(59, ("E1", 10_000)) == []
    assert floor.feed(61, ("E1", 10_000)) == [("A/2F", DATA, "normal", "warning", 1.0, None, 61)]


# --- end to end: devices → Mosquitto → daemon → command center ------------------------------

E2E_STALE_S = 3.0

E2E = TENANTS + """
drivers: [{id: lora, type: mqtt, broker: local}]
buildings:
  - id: A
    floors:
      - id: 2F
        rated_load_kn_m2: 4.0
        area_m2: 100
        zones: [{id: east}, {id: west}]
sensors:
  - {id: C1, kind: load_cell, building: A, floor: 2F, zone: east, driver: lora}
  - {id: C2, kind: load_cell, building: A, floor: 2F, zone: west, driver: lora}
  - {id: C3, kind: load_cell, building: A, floor: 2F, zone: west, driver: lora}
"""


@pytest.fixture
def floor_daemon(broker: LocalMosquitto, tmp_path: Path) -> Iterator[Any]:
    from parkwatch.daemon.app import Daemon

    path = tmp_path / "park.yaml"
    path.write_text(BASE + dedent(E2E))
    cfg = load_config(path, {("brokers", "local", "port"): broker.port,
                             ("gateway", "state_dir"): str(tmp_path / "state"),
                             ("rules", "floor_load", "stale_after_s"): E2E_STALE_S})
    d = Daemon(cfg)
    d.start()
    (drv,) = d.drivers
    assert drv.link.connected.wait(5) and d.uplink.link.connected.wait(5)
    wait_until(drv.subscribed.is_set)
    yield d
    d.stop()


def _at(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _floor(events: list[dict[str, Any]], rule: str, kind: str | None = None) -> list[dict]:
    return [e for e in events if e["rule"] == rule and (kind is None or e["event"] == kind)]


def test_e2e_floor_overload_and_a_silent_cell(floor_daemon: Any, broker: LocalMosquitto,
                                              subscriber: Subscriber, device: Device) -> None:
    def weigh(c1: float, c2: float, c3: float | None) -> None:
        for sensor, kg in (("C1", c1), ("C2", c2), ("C3", c3)):
            if kg is not None:
                device.send(sensor, {"value": kg})

    weigh(10_000, 12_000, 12_000)  # 333.4 kN: 83 %
    weigh(10_000, 12_000, 12_700)  # 340.3 kN: 85 %
    events = subscriber.wait_events(lambda ev: _floor(ev, LOAD, "raised"))
    (warning,) = _floor(events, LOAD)
    assert {k: warning[k] for k in ("sensor_id", "sensor_kind", "building", "floor", "zone",
                                    "tenants", "severity", "threshold", "unit")} == {
        "sensor_id": None, "sensor_kind": None, "building": "A", "floor": "2F", "zone": None,
        "tenants": ["acme", "bolt"], "severity": "warning", "threshold": 340.0, "unit": "kN"}
    assert warning["value"] == kn(34_700)

    weigh(10_000, 12_000, 18_800)  # 400.1 kN: 100 %
    events = subscriber.wait_events(lambda ev: _floor(ev, LOAD, "severity_changed"))
    (critical,) = _floor(events, LOAD, "severity_changed")
    assert critical["alarm_id"] == warning["alarm_id"]
    assert (critical["severity"], critical["threshold"], critical["unit"]) == (
        "critical", 400.0, "kN")
    assert critical["value"] == kn(40_800)

    # C3 falls silent while C1 and C2 keep reporting (so that only C3 goes stale); after
    # stale_after_s the floor's sum is unknown
    deadline = time.monotonic() + E2E_STALE_S + 5
    while not _floor(subscriber.events(), DATA, "raised"):
        assert time.monotonic() < deadline, "no floor_data alarm for the silent cell"
        weigh(10_000, 12_000, None)
        time.sleep(0.3)
    (data,) = _floor(subscriber.events(), DATA)
    assert {k: data[k] for k in ("sensor_id", "sensor_kind", "building", "floor", "zone",
                                 "tenants", "severity", "value", "unit")} == {
        "sensor_id": None, "sensor_kind": None, "building": "A", "floor": "2F", "zone": None,
        "tenants": ["acme", "bolt"], "severity": "warning", "value": 1.0, "unit": None}
    # the pipeline's clock ticks date it when C3 went stale: stale_after_s after its last
    # reading, the one that made the floor critical
    assert _at(data["observed_at"]) - _at(critical["observed_at"]) == pytest.approx(
        E2E_STALE_S, abs=0.002)

    # C1 and C2 are unloaded: alone they would read "normal", but C3 is still out, so the
    # floor does not clear (the events below show its only clear after C3's data alarm clears)
    seen = floor_daemon.engine.stats["evaluated"]
    weigh(0, 0, None)
    wait_until(lambda: floor_daemon.engine.stats["evaluated"] >= seen + 2)
    # C3 reports again: the data alarm clears and the floor is weighed again, 2 000 kg in all
    weigh(0, 0, 2_000)
    events = subscriber.wait_events(lambda ev: _floor(ev, LOAD, "cleared"))
    floor_events = [(e["rule"], e["event"]) for e in events if e["sensor_id"] is None]
    assert floor_events == [(LOAD, "raised"), (LOAD, "severity_changed"), (DATA, "raised"),
                            (DATA, "cleared"), (LOAD, "cleared")]
    (cleared,) = _floor(events, LOAD, "cleared")
    assert cleared["value"] == kn(2_000) and cleared["alarm_id"] == warning["alarm_id"]


def _stale_due_everywhere(rule: Any) -> float:
    """When floor_load's tick next matters, worked out from every cell of every group (what
    the rule keeps up to date for the groups each batch touches)."""
    due = math.inf
    for g, start in enumerate(rule.starts):
        if rule.data_raised[g]:
            continue
        for m in rule.members[start:start + rule.sizes[g]]:
            due = min(due, math.inf if rule.failed[m] else rule.good_ts[m] + rule.stale_after)
    if rule.durations.active:
        due = min(due, rule.durations.next_due())
    return due


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(st.tuples(
    st.floats(0.5, 40), st.sampled_from(["tick", "E1", "W1", "W2", "E1W2", "all"]),
    st.sampled_from([Quality.GOOD, Quality.GOOD, Quality.COMM_FAIL, Quality.UNSTABLE]),
    st.floats(0, 40_000)), min_size=1, max_size=25))
def test_the_kept_stale_times_match_a_scan_of_every_cell(tmp_path_factory: Any,
                                                        steps: list[Any]) -> None:
    """Whatever the batches, ticks, failures and unusable readings: the time the floor rule
    says its next tick matters is the one a scan of all its cells gives, and the engine's
    kept next_due is up to date."""
    rig = Rig(tmp_path_factory.mktemp("floor"), FLOOR)
    rule = rig.engine.kinds["floor_load"]
    t = 0.0
    for gap, what, quality, kg in steps:
        t += gap
        if what == "tick":
            rig.tick(t)
        else:
            cells = {"E1W2": ["E1", "W2"], "all": ["E1", "W1", "W2"]}.get(what, [what])
            rig.feed(t, *[(c, kg, quality) for c in cells])
        assert rule.next_due() == _stale_due_everywhere(rule)
        # and the engine's kept answer is every kind's, as of this step
        assert rig.engine.next_due() == min(k.next_due() for k in rig.engine.tickers)
