"""Readings no sensor can send, and readings a broken sensor sends (issue 22, done-point 3).

``1e308``, ``±inf`` and ``NaN`` are rejected and counted before the rules; a plausible value
outside the sensor's measuring range (a 4-20 mA loop beyond NAMUR NE43's limits included)
raises ``sensor_fault`` and moves no process rule.  Every test here runs with every warning
turned into an error, numpy's RuntimeWarning (overflow, invalid value) included.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import EXAMPLE, Subscriber, lora_park, wait_until, write_yaml
from parkwatch.config import ConfigError
from parkwatch.config.measuring import PLAUSIBLE_LIMIT
from parkwatch.daemon.inbox import Inbox
from parkwatch.daemon.pipeline import Pipeline
from parkwatch.drivers.modbus_rtu.loop import loop_values
from parkwatch.drivers.mqtt.driver import MqttDriver
from parkwatch.firmware_sim.modbus_wiring import build_bus_from_config
from parkwatch.park import ParkModel
from parkwatch.plausible import screen
from parkwatch.readings import Quality, ReadingBatch
from parkwatch.rejections import Rejections
from parkwatch.rules import registry, snapshot
from parkwatch.rules.engine import RuleEngine
from parkwatch.rules.registry import RULE_NAMES
from parkwatch.rules.transitions import Severity, Transitions
from parkwatch.schema import load_config

T0 = 1_763_800_000.0
GOOD, COMM_FAIL = int(Quality.GOOD), int(Quality.COMM_FAIL)
NORMAL, WARNING = int(Severity.NORMAL), int(Severity.WARNING)
#: the process rules: none of them may move on a reading no sensor can send or a broken one's
PROCESS = {"high_threshold", "low_threshold", "rate_of_rise", "flapping", "floor_load",
           "floor_data"}
#: the values of the issue: what Python's json makes of 1e308, Infinity, -Infinity, NaN, 1e309
GARBAGE = [1e308, math.inf, -math.inf, math.nan, -1e308, float("1e309")]


@pytest.fixture(autouse=True)
def warnings_are_errors() -> Iterator[None]:
    """numpy's RuntimeWarning (and every other warning) raises in the code under test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def park_with(overrides: dict[tuple[Any, ...], Any] | None = None) -> ParkModel:
    """The example park, every rule on, with the given overrides."""
    return ParkModel(load_config(EXAMPLE, overrides or {}))


RANGED: dict[tuple[Any, ...], Any] = {
    ("rules", "water_level", "range"): {"min": 0, "max": 500},
    ("sensors", 5, "range"): {"min": -100, "max": 20_000},  # A-2F-LC1, kg
}


def rows(tr: Transitions) -> list[tuple[int, str, int, int, float, float | None]]:
    return [(s, RULE_NAMES[r], o, n, v, None if math.isnan(t) else t)
            for s, r, o, n, v, t, _ts in tr.rows()]


def feed(engine: RuleEngine, sensor: int, values: list[float], t: float,
         step: float = 1.0) -> list[tuple[int, str, int, int, float, float | None]]:
    out = []
    for k, v in enumerate(values):
        out += rows(engine.evaluate(ReadingBatch.from_columns([sensor], [v], [t + k * step],
                                                              [GOOD])))
    return out


# --- the screen every driver's readings pass ------------------------------------------------


def test_the_screen_counts_and_drops_values_no_sensor_can_send() -> None:
    rej = Rejections(logging.getLogger("parkwatch.test"), "driver t")
    batch = ReadingBatch.from_columns(
        [0, 1, 2, 3, 4, 5, 6, 7],
        [1.0, 1e308, math.inf, -math.inf, math.nan, math.nan, PLAUSIBLE_LIMIT, -1e13],
        [T0] * 8, [GOOD, GOOD, GOOD, GOOD, GOOD, COMM_FAIL, GOOD, GOOD])
    kept = screen(batch, rej, lambda i: f"S{i}")
    # a comm-fail marker carries NaN by design; the limit itself is plausible
    assert kept.sensor.tolist() == [0, 5, 6]
    assert dict(rej.total) == {"not_finite": 3, "implausible": 2}
    assert screen(kept, rej) is kept  # nothing to drop: the batch itself, no copy


# --- NAMUR NE43 ---------------------------------------------------------------------------


@pytest.mark.parametrize(("ma", "want"), [
    (4.0, 0.0), (12.0, 200.0), (20.0, 400.0),  # linear
    (3.8, 0.0), (3.9, 0.0), (20.5, 400.0), (20.2, 400.0),  # saturation: the range's ends
    (3.7, -7.5), (3.6, -10.0), (0.0, -100.0),  # a failure, beyond the range (0 mA: open loop)
    (20.6, 415.0), (21.0, 425.0), (22.0, 450.0)])
def test_the_loop_current_is_a_measurement_only_within_namur_ne43(ma: float, want: float) -> None:
    got = loop_values(np.array([ma]), np.array([0.0]), np.array([400.0]))[0]
    assert got == pytest.approx(want)
    assert (0.0 <= got <= 400.0) == (3.8 <= ma <= 20.5)


# --- config -------------------------------------------------------------------------------


def test_ranges_and_signals_are_checked(tmp_path: Path) -> None:
    def problems(overrides: dict[tuple[Any, ...], Any]) -> str:
        with pytest.raises(ConfigError) as exc:
            load_config(EXAMPLE, overrides)
        return str(exc.value)

    assert "min (5) must be below max (5)" in problems(
        {("rules", "water_level", "range"): {"min": 5, "max": 5}})
    assert "less than or equal to 1000000000000" in problems(
        {("sensors", 5, "range"): {"min": 0, "max": 1e13}})
    assert "a fire button has no measuring range" in problems(
        {("sensors", 0, "range"): {"min": 0, "max": 1}})
    assert "needs a range" in problems({("sensors", 17, "signal"): "4-20mA"})  # B-B1-WL2
    assert "does not read a loop current" in problems(  # A-1F-WL1, on MQTT
        {("sensors", 9, "signal"): "4-20mA", ("sensors", 9, "range"): {"min": 0, "max": 1}})
    cfg = load_config(EXAMPLE, {**RANGED, ("sensors", 16, "range"): None})
    ranged = {s.id: cfg.range_for(s) for s in cfg.sensors if cfg.range_for(s) is not None}
    assert sorted(ranged) == ["A-1F-WL1", "A-2F-LC1", "B-B1-WL2"]  # B-B1-WL1: null, no range


def test_a_park_without_ranges_keeps_its_fingerprints_with_the_new_kind(monkeypatch) -> None:
    """Upgrading to a parkwatch with sensor_fault must not start any sensor afresh (and so
    clear its alarms): the fingerprints are those of a registry without the kind."""
    park = park_with()
    with_kind = snapshot._fingerprints(park)
    without = {k: v for k, v in registry.RULE_KINDS.items() if k != "sensor_fault"}
    monkeypatch.setattr(snapshot, "RULE_KINDS", without)
    assert snapshot._fingerprints(park) == with_kind
    # a range shapes the state of its sensor alone
    ranged = snapshot._fingerprints(park_with({("sensors", 5, "range"): {"min": 0, "max": 9}}))
    w = snapshot.DIGEST_CHARS
    changed = [i for i in range(len(park)) if ranged["sensor"][i * w:(i + 1) * w]
               != with_kind["sensor"][i * w:(i + 1) * w]]
    assert changed == [5]


# --- the rule engine ----------------------------------------------------------------------


def test_values_no_sensor_can_send_move_no_rule() -> None:
    """Should a driver let them through (a recording, an extension): no rule moves, nothing
    warns, with and without a measuring range, floors and flapping on."""
    for overrides in ({}, RANGED):
        park = park_with(overrides)
        engine = RuleEngine(park, start=T0)
        sensors = [park.index[s] for s in ("A-1F-WL1", "A-2F-LC1", "B-B1-WL1", "A-2F-LC2")]
        before = {s: feed(engine, s, [10.0, 10.0], T0) for s in sensors}
        assert all(r == [] for r in before.values())
        for s in sensors:
            assert feed(engine, s, GARBAGE * 4, T0 + 10, step=0.001) == []
        assert rows(engine.evaluate(ReadingBatch.from_columns(
            sensors * len(GARBAGE), GARBAGE * len(sensors), [T0 + 20] * (4 * len(GARBAGE)),
            [GOOD] * (4 * len(GARBAGE))))) == []
        assert engine.stats["unusable"] == 5 * len(sensors) * len(GARBAGE)
        assert engine.stats["out_of_range"] == 0


def test_a_reading_outside_the_range_raises_sensor_fault_and_moves_nothing_else() -> None:
    park = park_with(RANGED)
    engine = RuleEngine(park, start=T0)
    wl = park.index["A-1F-WL1"]  # limits 30 / 50 cm, rate 2 / 5 cm per minute, range 0-500
    assert feed(engine, wl, [10.0, 10.0], T0) == []
    # far above: the sensor is broken, not the sump flooded
    got = feed(engine, wl, [600.0], T0 + 300)
    assert got == [(wl, "sensor_fault", NORMAL, WARNING, 600.0, 500.0)]
    # more of it, and off the other side, change nothing (no flapping, no rate, no repeat)
    assert feed(engine, wl, [5000.0, 700.0, -5.0, 600.0, -40.0] * 6, T0 + 301) == []
    assert engine.stats["out_of_range"] == 31
    # back inside: cleared, naming the bound crossed back; the process rules judge it again
    got = feed(engine, wl, [20.0], T0 + 400)
    assert got == [(wl, "sensor_fault", WARNING, NORMAL, 20.0, 0.0)]
    assert {r[1] for r in feed(engine, wl, [35.0], T0 + 700)} == {"high_threshold",
                                                                  "rate_of_rise"}
    # the bounds themselves are inside the range: a full sump at 500 cm is a flood
    assert [(r[1], r[3]) for r in feed(engine, wl, [500.0], T0 + 1000)] == [
        ("high_threshold", int(Severity.CRITICAL)), ("rate_of_rise", int(Severity.CRITICAL))]


def test_an_out_of_range_load_cell_is_not_summed_into_its_floor() -> None:
    park = park_with(RANGED)
    engine = RuleEngine(park, start=T0)
    lc1, lc2 = park.index["A-2F-LC1"], park.index["A-2F-LC2"]
    engine.evaluate(ReadingBatch.from_columns([lc1, lc2], [1000.0, 1000.0], [T0, T0],
                                              [GOOD, GOOD]))
    # 1e6 kg would be a 9800 kN floor against its 6000 kN capacity: floor_load critical
    got = rows(engine.evaluate(ReadingBatch.from_columns([lc1], [1e6], [T0 + 1], [GOOD])))
    assert got == [(lc1, "sensor_fault", NORMAL, WARNING, 1e6, 20_000.0)]
    fl = engine.kinds["floor_load"]
    assert fl.value[lc1] == 1000.0  # the cell's last good value stands


def test_extreme_values_inside_every_limit_never_warn() -> None:
    """Values at ±PLAUSIBLE_LIMIT, on every kind, at the same instant and a microsecond apart
    (rate divisions by zero or nearly), summed into floors, flapping: no warning, only
    alarms."""
    park = park_with({("rules", "load_cell", "rate"): {"window_s": 1e-3, "rise_warning": 1.0,
                                                      "rise_critical": 1e15}})
    engine = RuleEngine(park, start=T0)
    values = [PLAUSIBLE_LIMIT, -PLAUSIBLE_LIMIT, 0.0, PLAUSIBLE_LIMIT] * 8
    measuring = [i.index for i in park.sensors if i.config.kind != "fire_button"]
    n = len(measuring)
    fired: set[str] = set()
    t = T0
    for k, v in enumerate(values):
        # the same instant twice (a rise over no time), then 0.6 ms on: a judged rise of
        # about 1e17 a minute
        for dt in (0.0, 0.0) if k % 5 == 0 else (6e-4,):
            t += dt
            tr = engine.evaluate(ReadingBatch.from_columns(measuring, [v] * n, [t] * n,
                                                           [GOOD] * n))
            fired |= {r[1] for r in rows(tr)}
        if k % 7 == 6:  # now and then a long silence: stale cells, no data
            fired |= {r[1] for r in rows(engine.tick(t + 1e6))}
    assert {"high_threshold", "rate_of_rise", "floor_load", "flapping"} <= fired
    assert engine.stats["unusable"] == 0


# --- the pipeline: every driver's readings are screened ---------------------------------


class ForeignDriver:
    """An extension's driver that hands over whatever it decoded."""

    def __init__(self, batch: ReadingBatch) -> None:
        self.batch = batch
        self.rejections = Rejections(logging.getLogger("parkwatch.test"), "driver foreign")

    def decode(self, items: list[Any]) -> ReadingBatch:
        return self.batch


def test_the_pipeline_screens_every_driver() -> None:
    park = park_with()
    engine = RuleEngine(park, start=T0)
    pipeline = Pipeline(Inbox(), engine, None)  # type: ignore[arg-type]  # decode only
    wl = park.index["A-1F-WL1"]
    src = ForeignDriver(ReadingBatch.from_columns(
        [wl] * 7, [12.0, *GARBAGE], [T0] * 7, [GOOD] * 7))
    batch = pipeline._decode(src, [(src,)])  # type: ignore[arg-type]
    assert batch.value.tolist() == [12.0]
    assert dict(src.rejections.total) == {"implausible": 2, "not_finite": 4}


def test_the_mqtt_driver_rejects_them_as_it_decodes() -> None:
    cfg = load_config(EXAMPLE)
    park = ParkModel(cfg)
    driver = MqttDriver(next(d for d in cfg.drivers if d.type == "mqtt"), park, None, cfg)
    payloads = [b'{"value": 1e308}', b'{"value": NaN}', b'{"value": Infinity}',
                b'{"value": -Infinity}', b'{"value": 1e309}', b"-1e308", b"NaN"]
    items = [(driver, "devices/A-1F-WL1/up", p, T0, 0, 0) for p in payloads]
    # B-B1-WL1 reports metres, scaled ×100: 1e11 m is 1e13 cm
    items.append((driver, "devices/B-B1-WL1/up", b'{"value": 1e11}', T0, 0, 0))
    items.append((driver, "devices/A-1F-WL1/up", b'{"value": 12}', T0, 0, 0))
    batch = driver.decode(items)
    assert batch.value.tolist() == [12.0] and driver.accepted == 1
    assert dict(driver.rejections.total) == {"implausible": 3, "bad_value": 5}


# --- end to end ---------------------------------------------------------------------------


def _of(events: list[dict[str, Any]], sensor: str) -> list[dict[str, Any]]:
    return [e for e in events if e["sensor_id"] == sensor]


def test_end_to_end_through_mosquitto(tmp_path: Path, broker: Any) -> None:
    """The issue's attack on a water gauge, through a real broker and the daemon: counted
    rejections, a sensor fault, no process alarm, no failed batch."""
    from conftest import Device
    from parkwatch.daemon.app import Daemon

    data = lora_park(tmp_path, broker.port)
    data["rules"]["water_level"]["range"] = {"min": 0, "max": 500}
    cfg = load_config(write_yaml(data, tmp_path / "park.yaml"))
    sub = Subscriber(broker)
    daemon = Daemon(cfg)
    daemon.start()
    device = Device(broker)
    try:
        lora = daemon.drivers[0]
        assert lora.link.connected.wait(5)
        wait_until(lambda: lora.subscribed.is_set())
        device.send("A-1F-WL1", {"value": 12})
        for raw in (b'{"value": 1e308}', b'{"value": NaN}', b'{"value": Infinity}',
                    b'{"value": -Infinity}', b'{"value": 1e309}', b'{"value": -1e308}'):
            device.send("A-1F-WL1", raw)
        device.send("A-1F-WL1", {"value": 612})  # plausible, but no 0-5 m gauge reads it
        events = sub.wait_events(lambda ev: any(e["rule"] == "sensor_fault"
                                                for e in _of(ev, "A-1F-WL1")))
        device.send("A-1F-WL1", {"value": 12.5})
        events = sub.wait_events(lambda ev: any(e["event"] == "cleared"
                                                for e in _of(ev, "A-1F-WL1")))
        mine = _of(events, "A-1F-WL1")
        assert [(e["rule"], e["event"]) for e in mine] == [("sensor_fault", "raised"),
                                                           ("sensor_fault", "cleared")]
        raised = mine[0]
        assert (raised["severity"], raised["value"], raised["threshold"], raised["unit"]) == (
            "warning", 612, 500, "cm")
        assert "传感器故障" in raised["message"] and "超出量程" in raised["message"]
        assert not [e for e in events if e["rule"] in PROCESS]
        assert dict(lora.rejections.total) == {"bad_value": 4, "implausible": 2}
        counts = daemon.counts()
        assert counts["rejected"] == 6 and counts["out_of_range"] == 1
        assert counts["pipeline_errors"] == 0
    finally:
        device.close()
        daemon.stop()
        sub.close()


LOOP = """
park: {{id: bench, name: 试验园区}}
gateway: {{id: gw-bench, state_dir: state, status_interval_s: 5}}
brokers: {{local: {{host: 127.0.0.1, port: {port}}}}}
uplink: {{broker: local}}
landlord: {{id: l, name: 业主}}
buildings: [{{id: A, floors: [{{id: B1, rated_load_kn_m2: 4.0, area_m2: 500}}]}}]
rules: {{water_level: {{high_warning: 300, high_critical: 350, deadband: 5}}}}
drivers:
  - {{id: bus, type: modbus_rtu, port: {tty}, baudrate: 19200, poll_interval_s: 0.1,
     timeout_s: 0.1, retries: 0}}
sensors:
  - {{id: WL1, kind: water_level, building: A, floor: B1, driver: bus, address: "1/ir0",
     signal: 4-20mA, scale: 0.001, range: {{min: 0, max: 400}}}}
  - {{id: WL2, kind: water_level, building: A, floor: B1, driver: bus,
     address: "2/hr0:float32"}}
"""


def test_a_broken_4_20_ma_loop_through_the_modbus_driver(tmp_path: Path, broker: Any) -> None:
    """A transmitter behind an analogue input module reporting µA: a broken wire and NE43's
    failure currents raise sensor_fault, saturation does not; a float32 register holding
    NaN is counted as not_finite."""
    from parkwatch.daemon.app import Daemon

    path = tmp_path / "park.yaml"
    path.write_text(LOOP.format(port=broker.port, tty=tmp_path / "ttyRS485"), encoding="utf-8")
    cfg = load_config(path)
    bus = build_bus_from_config(cfg.drivers[0], cfg).start()
    sub = Subscriber(broker)
    daemon = Daemon(cfg, tmp_path / "state")
    daemon.start()
    def faults(n: int) -> list[dict[str, Any]]:
        return sub.wait_events(lambda ev: len([e for e in ev if e["rule"] == "sensor_fault"])
                               >= n, timeout=10)

    try:
        bus.set_sensor("WL1", 200.0)  # 12 mA
        bus.slaves[2].set("2/hr0:float32", math.nan)
        wait_until(lambda: daemon.drivers[0].rejections.total.get("not_finite", 0) > 0,
                   timeout=10, what="the NaN register counted")
        bus.set_loop_current("WL1", 0.0)  # the wire is cut
        (raised,) = faults(1)
        assert (raised["event"], raised["value"], raised["threshold"]) == ("raised", -100, 0)
        bus.set_loop_current("WL1", 3.9)  # saturated low: a measurement at min
        cleared = faults(2)[1]
        assert (cleared["event"], cleared["value"]) == ("cleared", 0)
        bus.set_loop_current("WL1", 20.7)  # between NE43's 20.5 and 21 mA: no measurement
        again = faults(3)[2]
        assert (again["event"], again["threshold"]) == ("raised", 400)
        assert again["value"] == pytest.approx(417.5)
        bus.set_sensor("WL1", 340.0)  # a real, high level: the process rule, and the fault ends
        events = sub.wait_events(lambda ev: any(e["rule"] == "high_threshold" for e in ev),
                                 timeout=10)
        assert [e["event"] for e in events if e["rule"] == "sensor_fault"] == [
            "raised", "cleared", "raised", "cleared"]
        assert [e["value"] for e in events if e["rule"] == "high_threshold"] == [
            pytest.approx(340.0)]
        assert daemon.counts()["pipeline_errors"] == 0
    finally:
        daemon.stop()
        sub.close()
        bus.stop()



def test_a_sensor_fault_outlives_a_restart(tmp_path: Path) -> None:
    """The fault's state is saved like every kind's: after a restart the sensor is still
    known to be off its range (no second raise), and the next reading inside clears it."""
    from parkwatch.rules.snapshot import restore_state, save_state

    park = park_with(RANGED)
    engine = RuleEngine(park, start=T0)
    wl = park.index["A-1F-WL1"]
    assert [r[1] for r in feed(engine, wl, [-3.0], T0)] == ["sensor_fault"]
    save_state(engine, tmp_path / "rules.npz")
    again = RuleEngine(park_with(RANGED), start=T0 + 60)
    restored = restore_state(again, tmp_path / "rules.npz")
    assert "A-1F-WL1" in restored.kept_ids
    assert feed(again, wl, [-4.0], T0 + 61) == []
    assert feed(again, wl, [4.0], T0 + 62) == [(wl, "sensor_fault", WARNING, NORMAL, 4.0, 0.0)]


def test_a_snapshot_from_before_the_kind_restores_every_sensor(tmp_path: Path) -> None:
    """A gateway upgraded from a parkwatch without sensor_fault: its snapshot lacks the kind's
    arrays, and every sensor keeps its state (a limit alarm stays raised, no event)."""
    from parkwatch.rules.snapshot import restore_state, save_state

    park = park_with()
    engine = RuleEngine(park, start=T0)
    wl = park.index["A-1F-WL1"]
    assert [r[1] for r in feed(engine, wl, [55.0], T0)] == ["high_threshold"]
    path = tmp_path / "rules.npz"
    save_state(engine, path)
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files if not k.startswith("sensor_fault.")}
    np.savez(path, **arrays)
    again = RuleEngine(park_with(), start=T0 + 60)
    restored = restore_state(again, path)
    assert restored.kept == park.size and not restored.reset
    assert again.kinds["threshold"].level[wl] == engine.kinds["threshold"].level[wl] != 0
    assert feed(again, wl, [56.0], T0 + 61) == []
