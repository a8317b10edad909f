"""Simulated wireless outputs: sounders, strobes and relay boxes that take their commands from
an MQTT topic and report the state they are in, as the firmware of such a device does.

Each logs in with its output id when ``logins`` has one (the shipped ACL lets it read its own
`devices/<id>/set` and write its own `devices/<id>/state`).  A stuck device answers nothing it
is told: its state stays where it was, which the gateway's supervision must notice.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import paho.mqtt.client as mqtt

from parkwatch.config.model import ParkConfig
from parkwatch.config.outputs import OutputConfig
from parkwatch.firmware_sim.mqtt_devices import MqttDeviceFleet


class MqttOutputDevices:
    """Every MQTT output of a park config (a `topic` on an mqtt driver's broker)."""

    def __init__(self, cfg: ParkConfig, client_prefix: str = "parkwatch-sim",
                 logins: Mapping[str, str] | None = None) -> None:
        drivers = {d.id: d for d in cfg.drivers if d.type == "mqtt"}
        self.cfg = cfg
        self.outputs: dict[str, OutputConfig] = {o.id: o for o in cfg.outputs
                                                 if o.driver in drivers and o.topic}
        self.on: dict[str, bool] = dict.fromkeys(self.outputs, False)
        self.stuck: set[str] = set()
        #: told (output id, on) when a device switches (the simulator's display, tests)
        self.on_change: Callable[[str, bool], None] | None = None
        self._lock = threading.Lock()
        self.clients: dict[str, mqtt.Client] = {}
        self._broker = {oid: drivers[o.driver].broker for oid, o in self.outputs.items()}
        for oid in self.outputs:
            login = (oid, logins[oid]) if logins is not None and oid in logins else None
            c = MqttDeviceFleet._client(cfg.brokers[self._broker[oid]],
                                        f"{client_prefix}-out-{oid}", login)
            c.user_data_set(oid)
            c.on_connect = self._on_connect
            c.on_message = self._on_message
            self.clients[oid] = c

    def start(self, timeout: float = 10.0) -> None:
        for oid, c in self.clients.items():
            broker = self.cfg.brokers[self._broker[oid]]
            c.connect(broker.host, broker.port, keepalive=30)
            c.loop_start()
        deadline = time.monotonic() + timeout
        while not all(c.is_connected() for c in self.clients.values()):
            if time.monotonic() > deadline:
                raise ConnectionError("simulated outputs could not connect to their broker(s)")
            time.sleep(0.02)

    def stop(self) -> None:
        for c in self.clients.values():
            c.disconnect()
            c.loop_stop()

    def stick(self, output_id: str, stuck: bool = True) -> None:
        """Make a device ignore its commands (a dead siren), or answer them again."""
        with self._lock:
            (self.stuck.add if stuck else self.stuck.discard)(output_id)

    def _on_connect(self, client: mqtt.Client, oid: Any, _f: Any, _rc: Any, _p: Any) -> None:
        o = self.outputs[oid]
        client.subscribe(o.topic or "", qos=1)
        self._report(client, oid)

    def _on_message(self, client: mqtt.Client, oid: Any, msg: mqtt.MQTTMessage) -> None:
        o = self.outputs[oid]
        text = msg.payload.decode("utf-8", "replace").strip()
        if text not in (o.payload_on, o.payload_off):
            return  # not a command this device knows
        with self._lock:
            if oid in self.stuck:
                return
            changed = self.on[oid] != (text == o.payload_on)
            self.on[oid] = text == o.payload_on
        self._report(client, oid)
        if changed and self.on_change is not None:
            self.on_change(oid, self.on[oid])

    def _report(self, client: mqtt.Client, oid: str) -> None:
        o = self.outputs[oid]
        if o.state_topic:
            client.publish(o.state_topic, o.payload_on if self.on[oid] else o.payload_off,
                           qos=1, retain=True)
