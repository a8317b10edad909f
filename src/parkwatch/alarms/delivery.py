"""Couriers: one thread per target carries the outbox's rows to it, in order, until each is
delivered or expired.

A target's failures never delay another target: each has its own thread, its own store
connection and its own backoff.  Within a target, rows go out in commit order (an alarm's
changes arrive in `seq` order, and the retained state on the uplink is always the latest).
Delivery is at-least-once: a row is marked delivered only after the target confirmed it (the
broker's PUBACK, a 2xx answer), so a crash in between sends it again with the same
(alarm_id, seq), by which receivers deduplicate.

**Express.**  A courier that has nothing left to carry lets the pipeline thread publish the
next committed change itself, the moment it is committed (:meth:`Courier.express`); the courier
then only waits for the broker's confirmation and marks the row.  A change no longer waits for
the courier's thread to wake and read it back from the store, which was most of the alarm
latency on a quiet gateway.  Order holds: the pipeline publishes only while the courier is idle
(every older row delivered), and once it declines, the courier carries the rest in order.
The committer asks for the courier's idle mark before it commits (:meth:`Courier.idle_mark`)
and hands it back with the rows: a courier that has read the outbox since (and so may have
delivered those very rows itself) declines, so no change is ever published twice.

When the store cannot write (its disk is full), alarms must still go out.  The alarm service then
hands its changes to the couriers in memory (:meth:`Courier.offer`); they are sent after the
target's committed rows, and when the disk takes them later their rows are marked delivered
without a second sending.  A mark the disk refuses is kept in memory and written when it can.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from parkwatch.alarms.store import OutboxReader, Pending
from parkwatch.alarms.uplink import Topics
from parkwatch.config.delivery import Backoff, MqttTarget, WebhookTarget
from parkwatch.mqtt.link import MqttLink

log = logging.getLogger("parkwatch.delivery")

SIGNATURE_HEADER = "X-Parkwatch-Signature"
#: how long the broker may take to confirm (PUBACK) a QoS 1 publish before we try again
PUBACK_TIMEOUT_S = 10.0
#: how long an express publish waits for the link's network thread to write it; the pipeline
#: goes on after this even when the socket is full (the courier confirms either way)
EXPRESS_WRITE_S = 0.002


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


def _confirm(infos: list, what: str) -> None:
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
    halves apart let the committer publish and the courier confirm (express)."""

    link: MqttLink

    def publish(self, row: Pending) -> list[Any]:
        raise NotImplementedError

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

    def publish(self, row: Pending) -> list[Any]:
        self._connected()
        closed = json.loads(row.payload)["event"] == "closed"
        return [self.link.publish(self.topics.events, row.payload),
                self.link.publish(self.topics.alarm(row.alarm_id),
                                  b"" if closed else row.payload, retain=True)]


class MqttSender(MqttPublisher):
    """A subscriber's own topic on the uplink broker (e.g. a tenant's app)."""

    def __init__(self, link: MqttLink, cfg: MqttTarget) -> None:
        self.link = link
        self.topic = cfg.topic

    def publish(self, row: Pending) -> list[Any]:
        self._connected()
        return [self.link.publish(self.topic.replace("{subscriber}", row.subscriber),
                                  row.payload)]


class Courier:
    """Carries one target's outbox rows, retrying with backoff until delivered or expired."""

    def __init__(self, name: str, sender: Sender, store_path: Path, backoff: Backoff,
                 clock: Callable[[], float] = time.time,
                 ready: threading.Event | None = None,
                 on_delivered: Callable[[float], None] | None = None) -> None:
        self.name = name
        self.sender = sender
        self.store_path = store_path
        self.backoff = backoff
        self.clock = clock
        self.ready = ready  # e.g. the broker link's `connected`: wait for it, not backoff
        self.delivered = 0
        self.failures = 0
        self.expired = 0
        self.last_latency_s: float | None = None
        #: self-metrics: called with each delivered row's commit → confirmation seconds
        self.on_delivered = on_delivered
        self.failing = False
        #: changes the store could not commit yet, to send after the committed rows
        self._memory: deque[Pending] = deque()
        self._memory_lock = threading.Lock()
        #: (alarm_id, seq, subscriber) sent from memory: their rows, once committed, are marked
        self._sent_from_memory: set[tuple[str, int, str]] = set()
        #: rows done whose mark the disk refused: id -> (state, at), written when it can
        self._unmarked: dict[int, tuple[str, float]] = {}
        #: rows whose failure the disk could not record: id -> retry time
        self._retry_at: dict[int, float] = {}
        #: express: the courier sleeps with every row delivered, so the pipeline may publish
        #: the next ones itself; (alarm_id, seq, subscriber) -> what the sender published
        self._idle = False
        #: how many times the courier has fallen idle: an idle mark names one idle spell
        self._idle_spells = 0
        self._express_lock = threading.Lock()
        self._expressed: dict[tuple[str, int, str], list[Any]] = {}
        self.expressed = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"parkwatch-courier-{name}",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def wake(self) -> None:
        self._wake.set()

    def idle_mark(self) -> int | None:
        """Before a commit: this idle spell's mark, or None while the courier is busy."""
        with self._express_lock:
            return self._idle_spells if self._idle else None

    def express(self, rows: list[Pending], mark: int | None) -> None:
        """Committed changes for this target, in commit order (the committing thread, right
        after the commit), with the courier's :meth:`idle_mark` from before that commit:
        published at once when the courier has been idle all along (it cannot have read them
        from the outbox) and its sender can split publishing from confirming; else the
        courier is woken to carry them."""
        sender = self.sender
        with self._express_lock:
            if self._idle and mark == self._idle_spells and isinstance(sender, MqttPublisher) \
                    and (self.ready is None or self.ready.is_set()):
                try:
                    for row in rows:
                        key = (row.alarm_id, row.seq, row.subscriber)
                        self._expressed[key] = sender.publish(row)
                        self.expressed += 1
                    # the network thread writes it now, not when this thread next lets go of
                    # the GIL (up to a switch interval later, several times over)
                    sender.link.wait_written(EXPRESS_WRITE_S)
                except DeliveryError:
                    self._idle = False  # the courier carries this one and the rest, in order
                except Exception:  # a sender bug must not fail the batch already committed
                    self._idle = False
                    log.exception("courier %s: publishing at commit failed; the courier sends "
                                  "it", self.name)
            else:
                self._idle = False
        self._wake.set()

    def offer(self, rows: list[Pending]) -> None:
        """Deliver changes the store could not commit (disk full) from memory meanwhile."""
        with self._memory_lock:
            self._memory.extend(rows)
        self._wake.set()

    def stop(self, timeout: float = 1.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def _sleep(self, seconds: float) -> None:
        self._wake.wait(max(0.0, min(seconds, 60.0)))
        self._wake.clear()

    def _run(self) -> None:
        outbox = OutboxReader(self.store_path, self.name)
        try:
            while not self._stop.is_set():
                try:
                    self._step(outbox)
                except Exception:  # the store or a sender misbehaved: never lose the courier
                    log.exception("courier %s: unexpected error; retrying in 1 s", self.name)
                    self._sleep(1.0)
        finally:
            outbox.close()

    def _mark(self, outbox: OutboxReader, row_id: int, state: str, at: float) -> None:
        try:
            if state == "delivered":
                outbox.delivered(row_id, at)
            else:
                outbox.expired(row_id, at)
        except sqlite3.Error as exc:
            if not self._unmarked:
                log.error("courier %s: cannot record a delivery in the store (%s); kept in "
                          "memory and written once the store takes it", self.name, exc)
            self._unmarked[row_id] = (state, at)
            return
        self._unmarked.pop(row_id, None)

    def _head(self, outbox: OutboxReader) -> Pending | None:
        """The next row: the oldest committed one, else the oldest held in memory."""
        for row_id, (state, at) in list(self._unmarked.items()):
            self._mark(outbox, row_id, state, at)
            if row_id in self._unmarked:
                break  # the disk still refuses: try again next step
        while (row := outbox.head(self._unmarked)) is not None:
            key = (row.alarm_id, row.seq, row.subscriber)
            if key in self._sent_from_memory:  # committed at last; it went out from memory
                self._sent_from_memory.discard(key)
                with self._express_lock:
                    self._expressed.pop(key, None)
                self._mark(outbox, row.id, "delivered", self.clock())
                continue
            with self._memory_lock:  # committed before memory got to it: send it from here
                for held in [m for m in self._memory if (m.alarm_id, m.seq, m.subscriber) == key]:
                    self._memory.remove(held)
            retry = self._retry_at.get(row.id)
            return row if retry is None else replace(row, next_at=max(row.next_at, retry))
        with self._memory_lock:
            return self._memory[0] if self._memory else None

    def _done_with_memory_head(self, row: Pending) -> None:
        with self._memory_lock:
            if self._memory and self._memory[0] is row:
                self._memory.popleft()

    def _idle_sleep(self, seconds: float) -> None:
        """Nothing to carry: sleep, and let the pipeline publish what is committed meanwhile
        (unless something arrived since the store was read)."""
        with self._express_lock:
            if self._wake.is_set():
                return
            # not while changes sent from memory wait for their rows: those are only marked
            self._idle = not self._sent_from_memory and not self._memory
            if self._idle:
                self._idle_spells += 1
        self._sleep(seconds)

    def _step(self, outbox: OutboxReader) -> None:
        with self._express_lock:
            self._idle = False
        self._wake.clear()
        row = self._head(outbox)
        if row is None:
            if self._unmarked:
                self._sleep(1.0)  # a refused mark: try it again soon
            else:
                self._idle_sleep(60.0)
            return
        held = row.id < 0  # from memory: its change is not committed yet
        now = self.clock()
        if row.expires_at <= now:
            with self._express_lock:
                self._expressed.pop((row.alarm_id, row.seq, row.subscriber), None)
            if held:
                self._done_with_memory_head(row)
            else:
                self._mark(outbox, row.id, "expired", now)
            self.expired += 1
            log.error("delivery to %s of alarm %s seq %d expired after %d attempt(s): given up",
                      row.subscriber, row.alarm_id, row.seq, row.attempts)
            return
        wait = row.next_at - now
        if wait > 0:
            self._sleep(min(wait, row.expires_at - now))
            return
        if self.ready is not None and not self.ready.is_set():
            self.ready.wait(1.0)
            return
        with self._express_lock:
            published = self._expressed.pop((row.alarm_id, row.seq, row.subscriber), None)
        try:
            if published is not None:
                assert isinstance(self.sender, MqttPublisher)  # only such senders publish early
                self.sender.confirm(published)
            else:
                self.sender.send(row)
        except DeliveryError as exc:
            self.failures += 1
            delay = min(self.backoff.max_s,
                        self.backoff.initial_s * self.backoff.factor ** min(row.attempts, 30))
            if held:
                with self._memory_lock:
                    if self._memory and self._memory[0] is row:
                        self._memory[0] = replace(row, attempts=row.attempts + 1,
                                                  next_at=now + delay)
            else:
                try:
                    outbox.failed(row.id, now, now + delay, str(exc))
                    self._retry_at.pop(row.id, None)
                except sqlite3.Error:
                    self._retry_at[row.id] = now + delay
            if not self.failing:
                self.failing = True
                log.warning("target %s failing (%s); retrying alarm %s seq %d with backoff",
                            self.name, exc, row.alarm_id, row.seq)
            return
        done = self.clock()
        if held:
            self._done_with_memory_head(row)
            self._sent_from_memory.add((row.alarm_id, row.seq, row.subscriber))
        else:
            self._retry_at.pop(row.id, None)
            self._mark(outbox, row.id, "delivered", done)
        self.delivered += 1
        self.last_latency_s = done - row.created_at
        if self.on_delivered is not None:
            self.on_delivered(self.last_latency_s)
        if self.failing:
            self.failing = False
            log.warning("target %s delivers again", self.name)

    @property
    def idle(self) -> bool:
        """Asleep with every row delivered: the next committed change is published by the
        committer itself (express)."""
        return self._idle

    def health(self) -> dict[str, object]:
        return {"delivered": self.delivered, "expressed": self.expressed,
                "failures": self.failures, "expired": self.expired, "failing": self.failing}
