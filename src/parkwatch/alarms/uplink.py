"""The command-center side of the contract (DESIGN §3.1) on the uplink broker.

Each alarm change goes to `{prefix}/{park}/events` (QoS 1, not retained) and the alarm's current
state to `{prefix}/{park}/alarms/{alarm_id}` (QoS 1, retained; an empty retained payload once
the alarm is closed, so late subscribers see exactly the open alarms); the uplink courier
(:mod:`parkwatch.alarms.delivery`) publishes both from the outbox.  The gateway status is
retained on `{prefix}/{park}/gateway` with `{"state":"offline"}` as the MQTT last will.
Operators acknowledge on `{prefix}/{park}/commands/ack`.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from parkwatch.config.model import ParkConfig
from parkwatch.mqttlink.link import MqttLink

log = logging.getLogger("parkwatch.uplink")

OFFLINE = json.dumps({"state": "offline"}).encode()


class Topics:
    def __init__(self, cfg: ParkConfig) -> None:
        base = f"{cfg.uplink.topic_prefix}/{cfg.park.id}"
        self.events = f"{base}/events"
        self.alarms = f"{base}/alarms"
        self.gateway = f"{base}/gateway"
        self.ack = f"{base}/commands/ack"

    def alarm(self, alarm_id: str) -> str:
        return f"{self.alarms}/{alarm_id}"


class UplinkPublisher:
    def __init__(self, cfg: ParkConfig,
                 on_ack: Callable[[bytes], None] = lambda _payload: None) -> None:
        self.cfg = cfg
        self.topics = Topics(cfg)
        self.on_ack = on_ack
        self.link = MqttLink(
            "uplink", cfg.brokers[cfg.uplink.broker],
            cfg.brokers[cfg.uplink.broker].client_id(cfg.gateway.id, "uplink"),
            clean_session=False, will=(self.topics.gateway, OFFLINE),
            on_connected=self._subscribe,
        )
        self.link.client.message_callback_add(self.topics.ack, self._on_ack)

    def _subscribe(self, link: MqttLink) -> None:
        link.client.subscribe(self.topics.ack, qos=1)

    def _on_ack(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self.on_ack(bytes(msg.payload))  # paho's thread only hands it on

    def start(self) -> None:
        self.link.start()

    def forget(self, alarm_id: str) -> None:
        """Remove the retained state of an alarm this gateway can no longer describe (its
        sensor left the config), so the command center does not show it open forever."""
        self.link.publish(self.topics.alarm(alarm_id), b"", retain=True)

    def publish_status(self, status: dict[str, Any]) -> None:
        payload = json.dumps(status, ensure_ascii=False, separators=(",", ":")).encode()
        self.link.publish(self.topics.gateway, payload, retain=True)

    def stop(self, timeout: float = 1.0) -> None:
        """Say goodbye with a retained offline status, flush what is in flight, disconnect."""
        info = self.link.publish(self.topics.gateway, json.dumps(
            {"state": "offline", "reason": "stopped", "gateway": self.cfg.gateway.id}).encode(),
            retain=True)
        if self.link.connected.is_set():
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout)
        self.link.stop()
