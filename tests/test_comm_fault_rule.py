"""comm_fault: raised after comm_fault_after_s of only COMM_FAIL, cleared by the next data."""

from __future__ import annotations

import math

from parkwatch.park import ParkModel
from parkwatch.readings import Quality, ReadingBatch
from parkwatch.rules.engine import RuleEngine
from parkwatch.rules.registry import RULE_NAMES
from parkwatch.schema import load_config

CONFIG = """
park: {id: p, name: P}
gateway: {id: gw, state_dir: state}
brokers: {local: {host: 127.0.0.1}}
uplink: {broker: local}
landlord: {id: l, name: L}
buildings: [{id: A, floors: [{id: 1F, rated_load_kn_m2: 4.0, area_m2: 100}]}]
drivers:
  - {id: bus, type: modbus_rtu, port: /dev/ttyUSB0, comm_fault_after_s: 10}
  - {id: lora, type: mqtt, broker: local}
sensors:
  - {id: LC, kind: load_cell, building: A, floor: 1F, driver: bus, address: 1/hr0}
  - {id: FB, kind: fire_button, building: A, floor: 1F, driver: bus, address: 2/di0}
  - {id: WL, kind: water_level, building: A, driver: lora}
"""


def engine(tmp_path):
    path = tmp_path / "park.yaml"
    path.write_text(CONFIG)
    park = ParkModel(load_config(path))
    return park, RuleEngine(park)


def feed(eng, park, rows):
    b = ReadingBatch.from_columns([park.index[s] for s, *_ in rows], [v for _, v, _, _ in rows],
                                  [t for *_, t, _ in rows], [q for *_, q in rows])
    return [(park.sensors[s].id, RULE_NAMES[r], o, n)
            for s, r, o, n, *_ in eng.evaluate(b).rows() if RULE_NAMES[r] == "comm_fault"]


def test_raised_after_the_timeout_and_cleared_by_the_first_good_reading(tmp_path):
    park, eng = engine(tmp_path)
    fail, nan = Quality.COMM_FAIL, math.nan
    assert feed(eng, park, [("LC", nan, 100.0, fail)]) == []
    assert feed(eng, park, [("LC", nan, 105.0, fail)]) == []
    assert feed(eng, park, [("LC", nan, 110.0, fail)]) == [("LC", "comm_fault", 0, 2)]
    assert feed(eng, park, [("LC", nan, 111.0, fail)]) == []  # held, not repeated
    assert feed(eng, park, [("LC", 500.0, 112.0, Quality.GOOD)]) == [("LC", "comm_fault", 2, 0)]


def test_an_answer_in_between_restarts_the_clock(tmp_path):
    park, eng = engine(tmp_path)
    fail, nan = Quality.COMM_FAIL, math.nan
    rows = [("FB", nan, 0.0, fail), ("FB", 0.0, 9.0, Quality.GOOD), ("FB", nan, 12.0, fail),
            ("FB", nan, 21.0, fail)]
    assert feed(eng, park, rows) == []
    assert feed(eng, park, [("FB", nan, 22.0, fail)]) == [("FB", "comm_fault", 0, 2)]


def test_a_comm_fault_does_not_touch_process_alarms_or_mqtt_sensors(tmp_path):
    park, eng = engine(tmp_path)
    fail, nan = Quality.COMM_FAIL, math.nan
    b = ReadingBatch.from_columns([park.index["WL"]] * 2 + [park.index["FB"]],
                                  [nan, nan, 1.0], [0.0, 100.0, 100.0],
                                  [fail, fail, Quality.GOOD])
    rows = [(park.sensors[s].id, RULE_NAMES[r]) for s, r, *_ in eng.evaluate(b).rows()]
    assert rows == [("FB", "button_latch")]
