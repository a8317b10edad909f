"""The log channel: each delivery written to the daemon's log (journald), on the logger
``parkwatch.notify.{target name}``; it never fails."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Literal

from parkwatch.alarms.channels.base import NOBODY, Carrier, Channel, People
from parkwatch.config.delivery import Backoff, TargetBase

if TYPE_CHECKING:
    from parkwatch.alarms.store import Pending
    from parkwatch.mqttlink.link import MqttLink


class LogTarget(TargetBase):
    """Writes each delivery to the daemon's log (journald)."""

    type: Literal["log"]


class LogSender:
    def __init__(self, name: str) -> None:
        self.log = logging.getLogger(f"parkwatch.notify.{name}")

    def send(self, row: Pending) -> None:
        event = json.loads(row.payload)
        self.log.info("to %s: %s (alarm %s seq %d, %s)", row.subscriber, event["message"],
                      row.alarm_id, row.seq, row.reason)


def _carrier(name: str, _target: LogTarget, _link: MqttLink,
             _people: People = NOBODY) -> Carrier:
    return Carrier(LogSender(name), Backoff())


CHANNEL = Channel(LogTarget, _carrier)
