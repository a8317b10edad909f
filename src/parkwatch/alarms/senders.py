"""Senders: how one outbox row reaches one kind of target.

A sender either takes the row (returns) or raises :class:`DeliveryError`, which the courier
(:mod:`parkwatch.alarms.delivery`) retries with backoff; it never retries by itself.  An MQTT
sender also splits the send into publishing and confirming (:class:`MqttPublisher`), so the
committer can publish a change at once and a courier can keep several in flight.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import time
import urllib.error
import urllib.request
from typing import Any, Protocol

from parkwatch.alarms.store import Pending
from parkwatch.alarms.uplink import Topics
from parkwatch.config.delivery import MqttTarget, WebhookTarget
from parkwatch.mqtt.link import MqttLink
from parkwatch.mqtt.manypublish import Message

log = logging.getLogger("parkwatch.delivery")

SIGNATURE_HEADER = "X-Parkwatch-Signature"
#: how long the broker may take to confirm (PUBACK) a QoS 1 publish before we try again
PUBACK_TIMEOUT_S = 10.0


class DeliveryError(Exception):
    """The target did not take the delivery; it is retried after a backoff."""


class Sender(Protocol):
    def send(self, row: Pending) -> None: ...


def sign(secret: str, body: bytes) -> str:
    """The signature header value: ``sha256=`` and the hex HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect of a POST would be followed as a bodiless GET: treat it as a failure."""

    def redirect_request(self, *_args: object, **_kw: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


class WebhookSender:
    """POSTs the event JSON; any answer but 2xx, a timeout or a refused connection is a failure."""

    def __init__(self, name: str, cfg: WebhookTarget) -> None:
        self.name = name
        self.url = str(cfg.url)
        self.timeout = cfg.timeout_s
        self.secret = cfg.secret()

    def send(self, row: Pending) -> None:
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "parkwatch",
            "X-Parkwatch-Subscriber": row.subscriber,
            "X-Parkwatch-Delivery": f"{row.alarm_id}/{row.seq}",
        }
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, row.payload)
        req = urllib.request.Request(self.url, data=row.payload, headers=headers, method="POST")
        try:
            with _OPENER.open(req, timeout=self.timeout) as resp:
                resp.read(65536)
        except urllib.error.HTTPError as exc:  # any answer but 2xx, redirects included
            raise DeliveryError(f"HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            raise DeliveryError(f"{type(reason).__name__}: {reason}") from None


class LogSender:
    def __init__(self, name: str) -> None:
        self.log = logging.getLogger(f"parkwatch.notify.{name}")

    def send(self, row: Pending) -> None:
        event = json.loads(row.payload)
        self.log.info("to %s: %s (alarm %s seq %d, %s)", row.subscriber, event["message"],
                      row.alarm_id, row.seq, row.reason)


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


class MqttSender(MqttPublisher):
    """A subscriber's own topic on the uplink broker (e.g. a tenant's app)."""

    def __init__(self, link: MqttLink, cfg: MqttTarget) -> None:
        self.link = link
        self.topic = cfg.topic

    def messages(self, row: Pending) -> list[Message]:
        return [(self.topic.replace("{subscriber}", row.subscriber), row.payload, False)]
