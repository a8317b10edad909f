"""Which sensor an MQTT message is: the driver cuts the sensor id out of its topic template
(it keeps no topic per sensor), so these are the cases a table lookup used to settle by
itself: another driver's sensor, a sensor on a fixed address of its own, extra or missing
topic levels, and scaling only for the sensors that have it.  And when a driver counts as
connected: only once the broker has acknowledged its subscription."""

from __future__ import annotations

import logging
import queue
import textwrap
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from conftest import wait_until
from parkwatch.drivers.mqtt.driver import MqttDriver
from parkwatch.park import ParkModel
from parkwatch.schema import load_config

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
      - {id: spare, type: mqtt, broker: local, topic: "spare/{sensor_id}"}
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
    batch = driver.decode([(driver, topic, payload, NOW, 0, 0) for topic, payload in messages])
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


def _code(value: int) -> ReasonCode:
    return ReasonCode(PacketTypes.SUBACK, identifier=value)


def test_a_driver_is_connected_only_once_its_subscription_is_acknowledged(drivers, caplog):
    """On a first start the broker drops what is published before the subscription (no
    session holds it): health, and so READY=1 and /healthz, wait for the SUBACK; a refusal
    (the broker's ACL) is logged with the filters it refused."""
    lora = drivers["lora"]
    told: list[bool] = []  # the daemon publishes its status on each
    lora.state_listeners.append(told.append)
    lora.link.connected.set()  # as the network thread does on CONNACK
    lora._subscribe(lora.link)  # (no broker here: the SUBACK is played below)
    assert lora.health()["connected"] is False
    with caplog.at_level(logging.ERROR, logger="parkwatch.drivers.mqtt"):
        lora._on_subscribe(None, None, 1, [_code(0), _code(0x80)])
    assert lora.health()["connected"] is False
    assert "refused the subscription to legacy/pump-room/level" in caplog.text
    assert "ACL" in caplog.text
    assert "driver lora: subscribed" not in caplog.text
    with caplog.at_level(logging.INFO, logger="parkwatch.drivers.mqtt"):
        lora._on_subscribe(None, None, 2, [_code(0), _code(1)])
    assert lora.health()["connected"] is True
    assert "driver lora: subscribed to site/+/up, legacy/pump-room/level for 4" in caplog.text
    assert told == [True]  # not at the CONNACK, nor at the refusal: at the granted SUBACK
    lora.link.connected.clear()
    lora._link_state(False)  # the link lost, as MqttLink tells its listeners
    assert told == [True, False]
    lora.link.connected.set()
    lora._subscribe(lora.link)  # the reconnect: not connected again until the next SUBACK
    assert lora.health()["connected"] is False


def test_a_driver_without_sensors_has_nothing_to_wait_for(drivers):
    spare = drivers["spare"]
    assert spare.filters == []
    spare.link.connected.set()
    spare._subscribe(spare.link)
    assert spare.health()["connected"] is True


def test_a_reading_sent_once_the_driver_says_connected_arrives(broker, tmp_path):
    """The user-visible side, on a real Mosquitto: a driver that says it is connected hears
    the very next reading (QoS 0: nothing would bring back one the broker dropped)."""
    path = tmp_path / "park.yaml"
    path.write_text(PARK.replace("port: 1883", f"port: {broker.port}"), encoding="utf-8")
    cfg = load_config(path)
    park = ParkModel(cfg)
    inbox: queue.Queue[tuple[Any, ...]] = queue.Queue()
    lora = MqttDriver(next(d for d in cfg.drivers if d.id == "lora"), park, inbox, cfg)
    device = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    device.connect(broker.host, broker.port)
    device.loop_start()
    lora.start()
    try:
        wait_until(lambda: lora.health()["connected"], 10, "the driver connected")
        device.publish("site/LC1/up", b'{"value": 5.5}', qos=0).wait_for_publish(5)
        item = inbox.get(timeout=5)
        assert (item[1], item[2]) == ("site/LC1/up", b'{"value": 5.5}')
    finally:
        lora.stop()
        device.loop_stop()
        device.disconnect()
