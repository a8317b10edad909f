"""What a sender is: how one outbox row reaches a target, and the MQTT half shared by the
command-center contract and the MQTT channel.

A sender either takes the row (returns) or raises :class:`DeliveryError`, which the courier
(:mod:`parkwatch.alarms.delivery`) retries with backoff; it never retries by itself.  An MQTT
sender also splits the send into publishing and confirming (:class:`MqttPublisher`), so the
committer can publish a change at once and a courier can keep several in flight.  Each
channel's own sender lives in its module under :mod:`parkwatch.alarms.channels`.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # types only: the channel modules (and so the config schema) load light
    from parkwatch.alarms.store import Pending
    from parkwatch.mqttlink.link import MqttLink
    from parkwatch.mqttlink.manypublish import Message

#: how long the broker may take to confirm (PUBACK) a QoS 1 publish before we try again
PUBACK_TIMEOUT_S = 10.0


class DeliveryError(Exception):
    """The target did not take the delivery; it is retried after a backoff."""


class Sender(Protocol):
    def send(self, row: Pending) -> None: ...


@runtime_checkable
class Opening(Protocol):
    """A sender that holds a connection of its own from the start, not only while a row waits
    (GB/T 26875.3: the device shows itself online to the center and sends its heartbeat)."""

    def send(self, row: Pending) -> None: ...

    def open(self, owner: threading.Thread) -> None:
        """Called once its courier's thread `owner` has started; whatever it keeps running
        ends once `owner` has ended."""
        ...


@runtime_checkable
class ManySender(Protocol):
    """A sender that can also carry several rows in one message (a chat robot's summary)."""

    def send(self, row: Pending) -> None: ...

    def send_many(self, rows: list[Pending]) -> int:
        """One message for the first rows of `rows`, as many as the vendor's length limit
        allows, saying how many more follow; how many it carried (at least one).  Raises
        :class:`DeliveryError` as :meth:`send` does."""
        ...


def _confirm(infos: list[Any], what: str) -> None:
    deadline = time.monotonic() + PUBACK_TIMEOUT_S
    for info in infos:
        try:
            info.wait_for_publish(max(0.01, deadline - time.monotonic()))
        except (RuntimeError, ValueError) as exc:
            raise DeliveryError(f"{what}: {exc}") from None
        if not info.is_published():
            raise DeliveryError(f"{what}: no PUBACK within {PUBACK_TIMEOUT_S:g} s")


class MqttPublisher:
    """Send = publish (QoS 1, queued on the link) + confirm (wait for every PUBACK); the two
    halves apart let the committer publish and the courier confirm (express).  A row is a
    few messages (:meth:`messages`); a courier's window of rows goes to the link's network
    thread at once (:meth:`publish_rows`)."""

    link: MqttLink

    def messages(self, row: Pending) -> list[Message]:
        """What is published for `row`: (topic, payload, retain), in order."""
        raise NotImplementedError

    def publish(self, row: Pending) -> list[Any]:
        self._connected()
        return [self.link.publish(t, p, retain=r) for t, p, r in self.messages(row)]

    def publish_rows(self, rows: list[Pending]) -> list[list[Any]]:
        """:meth:`publish` for each of `rows`, in order, in one hand-over to the link."""
        if not rows:
            return []
        self._connected()
        per_row = [self.messages(row) for row in rows]
        infos = iter(self.link.publish_many([m for msgs in per_row for m in msgs]))
        self.link.write_now()  # no wait for the network thread to wake
        return [[next(infos) for _ in msgs] for msgs in per_row]

    def send(self, row: Pending) -> None:
        self.confirm(self.publish(row))

    def confirm(self, infos: list[Any]) -> None:
        _confirm(infos, self.link.where)

    def _connected(self) -> None:
        if not self.link.connected.is_set():
            raise DeliveryError(f"{self.link.where} not connected")
