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
#: rows published to an MQTT target before the courier waits for their confirmations
WINDOW = 32


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


class Publisher:
    """A sender whose send splits into publishing (put on the wire, not waited for) and
    confirming (wait for the target's answer): the committer may then publish a change the
    moment it is committed and leave the courier to confirm it (express,
    :mod:`parkwatch.alarms.express`), and a courier may keep :attr:`window` rows in flight.
    A publish must never wait for the network: it raises :class:`DeliveryError` when it
    cannot go out at once, and the courier sends the row itself."""

    #: rows a courier publishes before it waits for their confirmations
    window: int = 1

    def publish(self, row: Pending) -> Any:
        """Put `row` on the wire; what :meth:`confirm` takes."""
        raise NotImplementedError

    def publish_rows(self, rows: list[Pending]) -> list[Any]:
        """:meth:`publish` for each of `rows`, in order."""
        return [self.publish(row) for row in rows]

    def confirm(self, handle: Any) -> None:
        """Wait until the target took the row published as `handle`."""
        raise NotImplementedError

    def written(self, timeout_s: float) -> None:
        """After the committer's publishes: let them reach the wire (at most `timeout_s`)."""

    def send(self, row: Pending) -> None:
        self.confirm(self.publish(row))


class MqttPublisher(Publisher):
    """Send = publish (QoS 1, queued on the link) + confirm (wait for every PUBACK).  A row is
    a few messages (:meth:`messages`); a courier's window of rows goes to the link's network
    thread at once (:meth:`publish_rows`)."""

    link: MqttLink
    window = WINDOW

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

    def confirm(self, handle: list[Any]) -> None:
        _confirm(handle, self.link.where)

    def written(self, timeout_s: float) -> None:
        # written now, by this thread (or, over TLS, by the network thread while this one
        # waits with the GIL released), not after a thread's wake-up or a switch interval
        self.link.wait_written(timeout_s)

    def _connected(self) -> None:
        if not self.link.connected.is_set():
            raise DeliveryError(f"{self.link.where} not connected")
