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
        #: the command center's mutes (docs/contract.md, "Mutes"): commands in, replies and
        #: the retained list of mutes in force out
        self.mute = f"{base}/commands/mute"
        self.unmute = f"{base}/commands/unmute"
        self.replies = f"{base}/replies"
        self.mutes = f"{base}/mutes"

    def alarm(self, alarm_id: str) -> str:
        return f"{self.alarms}/{alarm_id}"


class UplinkPublisher:
    def __init__(self, cfg: ParkConfig,
                 on_ack: Callable[[bytes], None] = lambda _payload: None,
                 on_mute: Callable[[str, bytes], None] = lambda _c, _p: None) -> None:
        self.cfg = cfg
        self.topics = Topics(cfg)
        self.on_ack = on_ack
        self.on_mute = on_mute  # (mute | unmute, payload)
        #: the list of mutes in force, published retained at each connect and change
        self.mute_list: list[dict[str, Any]] | None = None
        self.link = MqttLink(
            "uplink", cfg.brokers[cfg.uplink.broker],
            cfg.brokers[cfg.uplink.broker].client_id(cfg.gateway.id, "uplink"),
            clean_session=False, will=(self.topics.gateway, OFFLINE),
            on_connected=self._subscribe,
        )
        self.link.client.message_callback_add(self.topics.ack, self._on_ack)
        for command, topic in (("mute", self.topics.mute), ("unmute", self.topics.unmute)):
            self.link.client.message_callback_add(
                topic, lambda _c, _u, msg, command=command: self.on_mute(command,
                                                                         bytes(msg.payload)))

    def _subscribe(self, link: MqttLink) -> None:
        link.client.subscribe([(self.topics.ack, 1), (self.topics.mute, 1),
                               (self.topics.unmute, 1)])
        if self.mute_list is not None:
            self.publish_mutes(self.mute_list)

    def publish_reply(self, reply: dict[str, Any]) -> None:
        """A command's reply (QoS 1, not retained): what the command center shows."""
        self.link.publish(self.topics.replies, json.dumps(reply, ensure_ascii=False).encode())

    def publish_mutes(self, mutes: list[dict[str, Any]]) -> None:
        """The mutes in force, retained: a command center sees them when it subscribes."""
        self.mute_list = mutes
        self.link.publish(self.topics.mutes, json.dumps(
            {"schema": "parkwatch.mutes/1", "gateway": self.cfg.gateway.id, "mutes": mutes},
            ensure_ascii=False).encode(), retain=True)

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
