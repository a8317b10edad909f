"""Which sensor an MQTT message is: the driver cuts the sensor id out of its topic template
(it keeps no topic per sensor), so these are the cases a table lookup used to settle by
itself: another driver's sensor, a sensor on a fixed address of its own, extra or missing
topic levels, and scaling only for the sensors that have it."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import pytest

from parkwatch.config import load_config
from parkwatch.drivers.mqtt.driver import MqttDriver
from parkwatch.park import ParkModel

PARK = textwrap.dedent("""\
    park: {id: testpark, name: Test Park}
    gateway: {id: test-gw1}
    brokers:
      local: {host: 127.0.0.1, port: 1883}
    uplink: {broker: local}
    landlord: {id: landlord, name: Landlord Co}
    buildings:
      - id: A
        floors:
          - {id: 1F, rated_load_kn_m2: 10.0, area_m2: 1000}
    drivers:
      - {id: lora, type: mqtt, broker: local, topic: "site/{sensor_id}/up"}
      - {id: wifi, type: mqtt, broker: local, topic: "wifi/{sensor_id}"}
    sensors:
      - {id: LC1, kind: load_cell, building: A, floor: 1F, driver: lora}
      - {id: LC2, kind: load_cell, building: A, floor: 1F, driver: lora, scale: 2.0, offset: 1}
      - {id: FB1, kind: fire_button, building: A, floor: 1F, driver: lora}
      - {id: WL1, kind: water_level, building: A, floor: 1F, driver: lora,
         address: "legacy/pump-room/level"}
      - {id: LC9, kind: load_cell, building: A, floor: 1F, driver: wifi}
    """)
NOW = 1_795_000_000.0


@pytest.fixture
def drivers(tmp_path: Path) -> dict[str, MqttDriver]:
    path = tmp_path / "park.yaml"
    path.write_text(PARK, encoding="utf-8")
    cfg = load_config(path)
    park = ParkModel(cfg)
    out = {d.id: MqttDriver(d, park, None, cfg) for d in cfg.drivers}  # never started
    for d in out.values():
        d.rejections.log = logging.getLogger("parkwatch.test")
    return out


def _decode(driver: MqttDriver, *messages: tuple[str, bytes]) -> list[tuple[str, float]]:
    batch = driver.decode([(driver, topic, payload, NOW) for topic, payload in messages])
    return [(driver._park.sensors[i].id, v)
            for i, v in zip(batch.sensor.tolist(), batch.value.tolist(), strict=True)]


def test_a_templated_topic_reaches_its_sensor(drivers):
    assert _decode(drivers["lora"], ("site/LC1/up", b'{"value": 5.5}')) == [("LC1", 5.5)]
    assert _decode(drivers["wifi"], ("wifi/LC9", b'{"value": 7}')) == [("LC9", 7.0)]


def test_scale_and_offset_apply_to_their_sensor_only(drivers):
    got = _decode(drivers["lora"], ("site/LC2/up", b'{"value": 10}'),
                  ("site/LC1/up", b'{"value": 10}'))
    assert got == [("LC2", 21.0), ("LC1", 10.0)]


def test_a_fixed_address_reaches_its_sensor_and_its_id_on_the_template_does_not(drivers):
    lora = drivers["lora"]
    assert _decode(lora, ("legacy/pump-room/level", b'{"value": 12}')) == [("WL1", 12.0)]
    assert _decode(lora, ("site/WL1/up", b'{"value": 12}')) == []
    assert lora.rejections.total["unknown_sensor"] == 1


@pytest.mark.parametrize("topic", [
    "site/LC9/up",  # the other driver's sensor, on this driver's template
    "site/ghost/up",  # no such sensor
    "site//up", "site/up", "site/LC1/up/extra", "site/A/LC1/up", "xsite/LC1/up",
    "site/LC1/upx", "site/LC1", "legacy/pump-room", "",
])
def test_topics_that_are_no_sensor_of_this_driver_are_counted_as_unknown(drivers, topic):
    lora = drivers["lora"]
    assert _decode(lora, (topic, b'{"value": 1}')) == []
    assert lora.rejections.total == {"unknown_sensor": 1}
    assert lora.accepted == 0


def test_a_button_is_read_as_an_event(drivers):
    assert _decode(drivers["lora"], ("site/FB1/up", b'{"event": "press"}')) == [("FB1", 1.0)]


def test_each_driver_lists_its_sensors_topics(drivers):
    assert sorted(drivers["lora"].topics()) == [
        "legacy/pump-room/level", "site/FB1/up", "site/LC1/up", "site/LC2/up"]
    assert drivers["wifi"].topics() == ["wifi/LC9"]
    assert drivers["lora"].filters == ["site/+/up", "legacy/pump-room/level"]
    assert drivers["lora"].health()["sensors"] == 4
