"""Inhibition rules (alarms.inhibit) on the example park, driven by readings through the rule
engine and the alarm service with a controllable clock, the suppressions read back through
the local HTTP API: a comm fault on the RS-485 bus mutes the no-data alarms of the other
sensors on that bus (recorded, visible, the command center still told), not those of another
driver; a fire is never muted; once the source clears, the target's next change is delivered
again; a restart finds the active sources again; a rule that names fire is a config error."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from conftest import EXAMPLE, http_json
from parkwatch.alarms.service import AlarmService
from parkwatch.alarms.store import AlarmStore
from parkwatch.alarms.views import StoreReader
from parkwatch.config import ConfigError
from parkwatch.daemon.httpapi import ApiServer
from parkwatch.park import ParkModel
from parkwatch.readings import Quality, ReadingBatch
from parkwatch.rules.engine import RuleEngine
from parkwatch.rules.registry import RULE_NAMES
from parkwatch.rules.transitions import Severity, Transitions
from parkwatch.schema import load_config

T0 = 1_795_000_000.0
TOKEN = "inhibit-test-token-0123456789"
BUS = ("B-B1-WL2", "B-3F-LC2", "B-1F-FB2", "B-2F-FB2")  # driver rs485-b
SCALE = "A-3F-LC2"  # driver scale-a3
RULES = [
    {"id": "bus-down", "source": {"rules": ["comm_fault"]},
     "target": {"rules": ["no_data", "floor_data", "sensor_fault"]}, "equal": ["driver"],
     "reason": "总线故障时只报总线"},
    # a target that matches anything still never mutes a fire
    {"id": "bus-down-all", "source": {"rules": ["comm_fault"]}, "target": {},
     "equal": ["driver"]},
]


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


class Gateway:
    """The example park's engine, alarm store and service, as the daemon builds them."""

    def __init__(self, tmp: Path, clock: Clock) -> None:
        self.cfg = load_config(EXAMPLE, {("gateway", "state_dir"): str(tmp),
                                         ("alarms", "inhibit"): RULES})
        self.park = ParkModel(self.cfg)
        self.engine = RuleEngine(self.park, start=clock())
        self.path = tmp / "alarms.db"
        self.store = AlarmStore(self.path)
        self.clock = clock
        self.service = AlarmService(self.cfg, self.park, self.engine, self.store, clock=clock)
        self.service.restore(set())

    def read(self, rows: list[tuple[str, float, Quality]]) -> list[dict[str, Any]]:
        """Readings (sensor, value, quality) at the clock's time, through the rule engine."""
        before = self._seen()
        batch = ReadingBatch.from_columns([self.park.index[s] for s, _v, _q in rows],
                                          [v for _s, v, _q in rows],
                                          [self.clock()] * len(rows),
                                          [int(q) for _s, _v, q in rows])
        self.service.apply(self.engine.evaluate(batch))
        return self._events()[before:]

    def tick(self) -> list[dict[str, Any]]:
        before = self._seen()
        self.service.apply(self.engine.tick(self.clock()))
        return self._events()[before:]

    def _seen(self) -> int:
        return int(self.store.db.execute("SELECT count(*) FROM changes").fetchone()[0])

    def _events(self) -> list[dict[str, Any]]:
        rows = self.store.db.execute("SELECT payload FROM changes ORDER BY rowid").fetchall()
        return [json.loads(r[0]) for r in rows]

    def told(self, event: dict[str, Any]) -> set[str]:
        rows = self.store.db.execute("SELECT subscriber FROM outbox WHERE alarm_id=? AND seq=?",
                                     (event["alarm_id"], event["seq"])).fetchall()
        return {r[0] for r in rows}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ApiServer]:
    server = ApiServer("127.0.0.1", 0, TOKEN, StoreReader(tmp_path / "alarms.db"),
                       lambda *_a: pytest.fail("no command here"), dict)
    server.start()
    yield server
    server.stop()


def _of(events: list[dict[str, Any]], sensor: str, rule: str, what: str = "raised"
        ) -> dict[str, Any]:
    (event,) = [e for e in events
                if e["sensor_id"] == sensor and e["rule"] == rule and e["event"] == what]
    return event


def _bus_down(g: Gateway, clock: Clock) -> dict[str, Any]:
    """The RS-485 bus's water gauge stops answering (COMM_FAIL) while the rest still report;
    after 30 s its comm fault is raised.  Returns that raise."""
    events: list[dict[str, Any]] = []
    for step in range(8):
        clock.t = T0 + 1 + 5 * step
        events += g.read([("B-B1-WL2", math.nan, Quality.COMM_FAIL),
                          *((s, 0.0, Quality.GOOD) for s in (*BUS[1:], SCALE))])
    return _of(events, "B-B1-WL2", "comm_fault")


def test_a_bus_comm_fault_mutes_no_data_on_that_bus_only(tmp_path: Path, clock: Clock,
                                                         api: ApiServer) -> None:
    g = Gateway(tmp_path, clock)
    source = _bus_down(g, clock)
    assert g.told(source) == {"uplink", "facilities"}  # the source itself is told as usual

    # then every sensor of the bus and the scale fall silent: no data, 10 s later
    clock.t += 11
    events = g.tick()
    scale = _of(events, SCALE, "no_data")
    assert g.told(scale) == {"uplink", "facilities"}  # another driver: not muted
    muted = [_of(events, s, "no_data") for s in BUS]  # the gauge's own no-data too
    for event in muted:
        assert g.told(event) == {"uplink"}  # the command center still has it
    status, body = http_json(api.port, "GET", "/api/suppressions", token=TOKEN)
    assert status == 200
    inhibited = [s for s in body["suppressions"] if s["cause"] == "inhibit"]
    assert {(s["alarm_id"], s["subscriber"]) for s in inhibited} == {
        (e["alarm_id"], "facilities") for e in muted}
    for s in inhibited:
        assert s["ref"] == f"bus-down/{source['alarm_id']}"
        assert "抑制规则 bus-down" in s["reason"] and source["alarm_id"] in s["reason"]
        assert "B栋" in s["reason"] and "通讯故障" in s["reason"]
        assert "总线故障时只报总线" in s["reason"]
    status, detail = http_json(api.port, "GET", f"/api/alarms/{muted[0]['alarm_id']}",
                               token=TOKEN)
    assert status == 200
    assert [(s["cause"], s["subscriber"]) for s in detail["suppressions"]] == [
        ("inhibit", "facilities")]

    # a fire on the same bus is never muted, whatever the rules say
    clock.t += 1
    fire = _of(g.read([("B-1F-FB2", 1.0, Quality.GOOD)]), "B-1F-FB2", "button_latch")
    assert {"landlord", "jiali", "hengtong"} <= g.told(fire)
    assert not [s for s in StoreReader(g.path).suppressions(fire["alarm_id"])]

    # the bus answers again: the comm fault clears; the target's next change is delivered
    clock.t += 1
    cleared = g.read([("B-B1-WL2", 30.0, Quality.GOOD)])
    assert g.told(_of(cleared, "B-B1-WL2", "comm_fault", "cleared")) == {"uplink", "facilities"}
    back = _of(g.read([("B-3F-LC2", 0.0, Quality.GOOD)]), "B-3F-LC2", "no_data", "cleared")
    assert g.told(back) == {"uplink", "facilities"}
    g.store.close()


def test_a_restart_finds_the_active_sources_again(tmp_path: Path, clock: Clock) -> None:
    g = Gateway(tmp_path, clock)
    source = _bus_down(g, clock)
    g.store.close()
    g = Gateway(tmp_path, clock)  # a new process: the comm fault restored from the store
    clock.t += 1
    before = g._seen()
    g.service.apply(Transitions.build(
        np.array([g.park.index["B-3F-LC2"]]), RULE_NAMES.index("sensor_fault"),
        np.array([int(Severity.NORMAL)]), np.array([int(Severity.WARNING)]),
        np.array([-5.0]), np.array([0.0]), np.array([clock()])))
    (fault,) = g._events()[before:]
    assert g.told(fault) == {"uplink"}
    (muted,) = StoreReader(g.path).suppressions(fault["alarm_id"])
    assert (muted["cause"], muted["ref"]) == ("inhibit", f"bus-down/{source['alarm_id']}")
    g.store.close()


def test_an_inhibition_rule_may_not_target_fire(tmp_path: Path) -> None:
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    data["alarms"]["inhibit"] = [{"id": "x", "source": {"rules": ["comm_fault"]},
                                  "target": {"kinds": ["fault", "fire"]}}]
    path = tmp_path / "park.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    lines = path.read_text(encoding="utf-8").splitlines()
    start = lines.index("  inhibit:")
    line = next(i for i in range(start, len(lines)) if lines[i].strip() == "kinds:") + 1
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert (f"park.yaml:{line}: alarms.inhibit[0].target.kinds: a fire alarm is never "
            "inhibited") in str(err.value)
    data["alarms"]["inhibit"][0]["target"] = {"rules": ["no_data", "button_latch"]}
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"alarms\.inhibit\[0\]\.target\.rules: a fire alarm "
                       "is never inhibited"):
        load_config(path)
    data["alarms"]["inhibit"][0]["target"] = {"rules": ["no_data"], "drivers": ["rs485-x"]}
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"park\.yaml:\d+: alarms\.inhibit\[0\]\.target\."
                       r"drivers\[0\]: unknown driver 'rs485-x'"):
        load_config(path)
