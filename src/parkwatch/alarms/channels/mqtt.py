"""The MQTT channel: each event published (QoS 1, PUBACK awaited) on a topic of the uplink
broker, e.g. for a tenant's app; tried only while that broker is connected."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from parkwatch.alarms.channels.base import NOBODY, Carrier, Channel, People
from parkwatch.alarms.senders import MqttPublisher
from parkwatch.config.delivery import Backoff, TargetBase

if TYPE_CHECKING:
    from parkwatch.alarms.store import Pending
    from parkwatch.mqttlink.link import MqttLink
    from parkwatch.mqttlink.manypublish import Message


class MqttTarget(TargetBase):
    """Publishes each event (QoS 1) on a topic of the uplink broker, e.g. for a tenant's app."""

    type: Literal["mqtt"]
    topic: str = Field(pattern=r"^[^+#]+$", description="topic; {subscriber} is replaced")
    retry: Backoff = Field(default_factory=Backoff)
    expire_after_s: float = Field(86_400.0, gt=0, le=30 * 86_400)


class MqttSender(MqttPublisher):
    """A subscriber's own topic on the uplink broker (e.g. a tenant's app)."""

    def __init__(self, link: MqttLink, cfg: MqttTarget) -> None:
        self.link = link
        self.topic = cfg.topic

    def messages(self, row: Pending) -> list[Message]:
        return [(self.topic.replace("{subscriber}", row.subscriber), row.payload, False)]


def _carrier(_name: str, target: MqttTarget, link: MqttLink,
             _people: People = NOBODY) -> Carrier:
    return Carrier(MqttSender(link, target), target.retry, link.connected)


CHANNEL = Channel(MqttTarget, _carrier)
