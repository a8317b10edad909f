"""Simulated MQTT field devices: wireless load cells, water gauges and fire buttons.

Each device publishes what real firmware would: its raw reading (before the gateway's
scale/offset) as JSON with a millisecond timestamp, and for buttons an event with battery.

Without ``logins`` the devices share one connection per broker, with that broker's credentials
from the config, like a network server forwarding for all of them.  With ``logins`` (sensor id
-> password) each device has a connection of its own and logs in with its sensor id, as a
device that speaks MQTT itself does on the shipped, locked-down broker (whose ACL lets it
publish only its own uplink).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from parkwatch.config.brokers import BrokerConfig
from parkwatch.config.model import ParkConfig, SensorConfig
from parkwatch.drivers.mqtt.config import MqttDriverConfig, sensor_topic
from parkwatch.mqttlink.link import set_nodelay


class MqttDeviceFleet:
    """Every MQTT-attached sensor of a park config, publishing on that config's brokers."""

    def __init__(self, cfg: ParkConfig, client_prefix: str = "parkwatch-sim",
                 logins: Mapping[str, str] | None = None) -> None:
        self.cfg = cfg
        self.devices: dict[str, tuple[SensorConfig, MqttDriverConfig, str]] = {}
        drivers = {d.id: d for d in cfg.drivers if d.type == "mqtt"}
        #: connection name (a broker's, or a device's with `logins`) -> its client
        self.clients: dict[str, mqtt.Client] = {}
        self.brokers: dict[str, str] = {}  # connection name -> broker name
        self._via: dict[str, str] = {}  # sensor id -> connection name
        self.battery: dict[str, float] = {}
        self.own_logins = logins is not None
        for s in cfg.sensors:
            drv = drivers.get(s.driver)
            if drv is None:
                continue
            self.devices[s.id] = (s, drv, sensor_topic(drv, s.id, s.address))
            via = s.id if logins is not None else drv.broker
            self._via[s.id] = via
            if via not in self.clients:
                login = (s.id, logins[s.id]) if logins is not None else None
                self.clients[via] = self._client(cfg.brokers[drv.broker],
                                                 f"{client_prefix}-{via}", login)
                self.brokers[via] = drv.broker
            if s.kind == "fire_button":
                self.battery[s.id] = 95.0
        self.sent = 0
        self._lock = threading.Lock()

    @staticmethod
    def _client(broker: BrokerConfig, client_id: str,
                login: tuple[str, str] | None = None) -> mqtt.Client:
        """A device connection to `broker`: as `login` (user, password) when given, else with
        the broker's credentials from the config."""
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        c.on_socket_open = lambda _c, _u, sock: set_nodelay(sock)
        if login is not None:
            c.username_pw_set(*login)
        elif broker.username:
            c.username_pw_set(broker.username, broker.password())
        if broker.tls is not None:
            c.tls_set(ca_certs=str(broker.tls.ca_file),
                      certfile=str(broker.tls.cert_file) if broker.tls.cert_file else None,
                      keyfile=str(broker.tls.key_file) if broker.tls.key_file else None)
        c.max_queued_messages_set(0)
        return c

    def start(self, timeout: float = 10.0) -> None:
        for name, c in self.clients.items():
            broker = self.cfg.brokers[self.brokers[name]]
            c.connect(broker.host, broker.port, keepalive=30)
            c.loop_start()
        deadline = time.monotonic() + timeout
        while not all(c.is_connected() for c in self.clients.values()):
            if time.monotonic() > deadline:
                raise ConnectionError("simulated devices could not connect to their broker(s)")
            time.sleep(0.02)

    def stop(self) -> None:
        for c in self.clients.values():
            c.disconnect()
            c.loop_stop()

    def kind(self, sensor_id: str) -> str:
        return self.devices[sensor_id][0].kind

    def _publish(self, sensor_id: str, doc: Any) -> None:
        _s, _drv, topic = self.devices[sensor_id]
        payload = json.dumps(doc, ensure_ascii=False).encode() if not isinstance(
            doc, bytes) else doc
        with self._lock:
            self.sent += 1
        self.clients[self._via[sensor_id]].publish(topic, payload, qos=1)

    def _stamp(self, drv: MqttDriverConfig, doc: dict[str, Any]) -> dict[str, Any]:
        if drv.time_field:
            doc[drv.time_field] = int(time.time() * 1000)
        return doc

    def reading(self, sensor_id: str, value: float) -> None:
        """Publish a measurement given in the sensor's configured unit (after scaling)."""
        s, drv, _ = self.devices[sensor_id]
        raw = round((value - s.offset) / s.scale, 4)
        if not drv.value_field:
            self._publish(sensor_id, json.dumps(raw).encode())
            return
        doc: dict[str, Any] = {}
        node = doc
        *parents, leaf = drv.value_field.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = raw
        self._publish(sensor_id, self._stamp(drv, doc))

    def button(self, sensor_id: str, event: str) -> None:
        """press / reset / heartbeat / test, with the button's battery level."""
        _, drv, _ = self.devices[sensor_id]
        self.battery[sensor_id] = max(5.0, self.battery[sensor_id] - 0.01)
        doc: dict[str, Any] = {drv.event_field: event}
        if drv.battery_field:
            doc[drv.battery_field] = round(self.battery[sensor_id], 1)
        self._publish(sensor_id, self._stamp(drv, doc))

    def raw(self, sensor_id: str, payload: bytes) -> None:
        """Publish arbitrary bytes as this device (fault injection)."""
        self._publish(sensor_id, payload)
