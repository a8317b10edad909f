"""The command-center contract (DESIGN §3.1) as a channel: built in, not configured, so not in
the registry.  Each change goes out as the event on ``…/events`` and the alarm's retained state
on ``…/alarms/{id}`` (empty once closed), both QoS 1 and confirmed by the broker; the courier
waits for the broker instead of backing off far (:data:`UPLINK_BACKOFF`).

The daemon's courier and the uplink process's (:mod:`parkwatch.alarms.courierworker`) both take
:func:`carrier`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from parkwatch.alarms.channels.base import Carrier
from parkwatch.alarms.senders import MqttPublisher
from parkwatch.config.delivery import Backoff

if TYPE_CHECKING:  # the topics come from the park config, which imports the channels
    from parkwatch.alarms.store import Pending
    from parkwatch.alarms.uplink import Topics
    from parkwatch.mqttlink.link import MqttLink
    from parkwatch.mqttlink.manypublish import Message

#: the uplink courier's backoff: short, since it is only tried while the broker is connected
UPLINK_BACKOFF = Backoff(initial_s=1.0, max_s=30.0)


class UplinkSender(MqttPublisher):
    """The command-center contract: the event, then the alarm's retained state (empty when
    closed), both QoS 1 and confirmed by the broker."""

    def __init__(self, link: MqttLink, topics: Topics) -> None:
        self.link = link
        self.topics = topics

    def messages(self, row: Pending) -> list[Message]:
        closed = (row.event or json.loads(row.payload)["event"]) == "closed"
        return [(self.topics.events, row.payload, False),
                (self.topics.alarm(row.alarm_id), b"" if closed else row.payload, True)]


def carrier(link: MqttLink, topics: Topics) -> Carrier:
    """The uplink courier's sender, backoff and readiness (the link connected)."""
    return Carrier(UplinkSender(link, topics), UPLINK_BACKOFF, link.connected)
