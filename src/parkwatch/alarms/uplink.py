"""The command-center side of the contract (DESIGN §3.1) on the uplink broker.

Each alarm change goes to `{prefix}/{park}/events` (QoS 1, not retained) and the alarm's current
state to `{prefix}/{park}/alarms/{alarm_id}` (QoS 1, retained; an empty retained payload once
the alarm is closed, so late subscribers see exactly the open alarms).  The gateway status is
retained on `{prefix}/{park}/gateway` with `{"state":"offline"}` as the MQTT last will.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

from parkwatch.alarms.event import EventBuilder, encode
from parkwatch.alarms.lifecycle import Change
from parkwatch.config.model import ParkConfig
from parkwatch.mqtt.link import MqttLink

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
    def __init__(self, cfg: ParkConfig, builder: EventBuilder) -> None:
        self.cfg = cfg
        self.builder = builder
        self.topics = Topics(cfg)
        self.published = 0
        self.link = MqttLink(
            "uplink", cfg.brokers[cfg.uplink.broker],
            cfg.brokers[cfg.uplink.broker].client_id(cfg.gateway.id, "uplink"),
            clean_session=False, will=(self.topics.gateway, OFFLINE),
        )

    def start(self) -> None:
        self.link.start()

    def publish_changes(self, changes: list[Change]) -> list[dict[str, Any]]:
        events = []
        for change in changes:
            event = self.builder.build(change)
            payload = encode(event)
            self.link.publish(self.topics.events, payload)
            state = b"" if change.event == "closed" else payload
            self.link.publish(self.topics.alarm(change.alarm.alarm_id), state, retain=True)
            self.published += 1
            events.append(event)
            log.info("alarm %s %s %s %s at %s", event["event"], event["severity"],
                     event["rule"], event["sensor_id"], event["observed_at"])
        return events

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
