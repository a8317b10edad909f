"""The center's ingest: every park's events, alarm states and gateway statuses from the central
broker into the store, in batches, acknowledged to the broker only once they are written.

* One MQTT session per instance (client id ``parkwatch-center-<instance>`` by default,
  persistent, QoS 1).
  The events come through a shared subscription (``$share/<group>/…``), so instances that
  share a group share the events; retained alarm states and gateway statuses go to every
  instance (they are idempotent).
* A message is acknowledged (PUBACK) after the transaction that stored it committed.  An
  instance killed before that leaves it unacknowledged in its session: the broker sends it
  again when the instance reconnects (what the broker guarantees, and what it does not, is in
  docs/center.md).
* While the database is down, the batch in hand waits and is written when it returns; the
  broker holds the rest (it sends a session no more unacknowledged messages than its
  in-flight window).  Loss and return are logged once each.
* Storage is idempotent by (alarm_id, seq): a duplicate changes nothing and is counted.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import paho.mqtt.client as mqtt

from parkwatch.center.config import CenterConfig
from parkwatch.center.contract import classify, event_problem, filters
from parkwatch.center.store import BadEvent, CenterStore, StoreUnavailable
from parkwatch.mqttlink.link import MqttLink
from parkwatch.rejections import Rejections

log = logging.getLogger("parkwatch.center")

#: (topic, payload, mid, qos, received_at) as the network thread queues it
Received = tuple[str, bytes, int, int, float]
_STOP = None


class _Stopping(Exception):
    """The center stops while the database is down."""


@dataclass
class IngestFigures:
    """What /metrics and /healthz say of the ingest."""

    stored: int = 0
    duplicates: int = 0
    statuses: int = 0
    batches: int = 0
    #: seconds from an event's change at the gateway to its commit here, of the last batch
    lag_s: float = 0.0
    database_up: bool = True
    by_park: dict[str, int] = field(default_factory=dict)


class Ingest:
    def __init__(self, cfg: CenterConfig, store: CenterStore,
                 clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.store = store
        self.clock = clock
        self.prefix = cfg.topic_prefix
        self.topics = filters(cfg.topic_prefix, cfg.ingest.share_group)
        self.figures = IngestFigures()
        #: called after every committed batch (the console's live board); each must return
        #: at once
        self.on_commit: list[Callable[[], None]] = []
        self.rejections = Rejections(log, "center ingest")
        self._queue: queue.SimpleQueue[Received | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        self.link = MqttLink("center", cfg.broker, cfg.client_id,
                             clean_session=False, on_connected=self._subscribe)
        self.link.client.manual_ack_set(True)  # after the commit: see the module
        self.link.client.on_message = self._on_message
        self.link.client.on_subscribe = self._on_subscribe
        #: the broker acknowledged the subscriptions of this connection
        self.subscribed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="parkwatch-center-ingest",
                                        daemon=True)

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()
        self.link.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop taking messages, write the batch in hand, disconnect: what was not written
        stays unacknowledged in the session, for the next start."""
        self._stop.set()
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self.link.stop()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # --- the network thread ---------------------------------------------------------------
    def _subscribe(self, link: MqttLink) -> None:
        self.subscribed.clear()
        link.client.subscribe([(t, 1) for t in self.topics.values()])

    def _on_subscribe(self, _c: Any, _u: Any, _mid: int, codes: Any, _p: Any) -> None:
        refused = [t for t, c in zip(self.topics.values(), codes, strict=False)
                   if getattr(c, "is_failure", False)]
        if refused:
            log.error("center: the broker refused the subscription(s) %s (check its ACL)",
                      ", ".join(refused))
            return
        log.info("center: subscribed to %s", ", ".join(self.topics.values()))
        self.subscribed.set()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self._queue.put((msg.topic, bytes(msg.payload), msg.mid, msg.qos, self.clock()))

    # --- the writer thread ----------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            first = self._queue.get()
            if first is _STOP:
                break
            batch = [first]
            while len(batch) < self.cfg.ingest.batch_max:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    self._queue.put(_STOP)
                    break
                batch.append(nxt)
            try:
                self._write(batch)
            except Exception:  # the ingest must outlive one bad batch: it stays unacked
                log.exception("center ingest: a batch of %d message(s) failed; they stay "
                              "unacknowledged and come again with the next session", len(batch))

    def _write(self, batch: list[Received]) -> None:
        events: list[dict[str, Any]] = []
        statuses: list[tuple[str, dict[str, Any] | None]] = []
        for topic, payload, _mid, _qos, _at in batch:
            kind = classify(topic, self.prefix)
            if kind is None:
                self.rejections.reject("unknown_topic", topic)
                continue
            what, park = kind
            if what == "gateway":
                statuses.append((park, self._status(topic, payload)))
                continue
            if what == "alarms" and not payload:
                continue  # a closed alarm's retained state removed: its events say so
            try:
                doc = orjson.loads(payload)
            except (orjson.JSONDecodeError, RecursionError):
                self.rejections.reject("bad_json", f"{topic}: {payload[:200]!r}")
                continue
            problem = event_problem(doc, park)
            if problem is not None:
                self.rejections.reject("bad_event", f"{topic}: {problem}")
                continue
            events.append(doc)
        try:
            self._commit(events, statuses)
        except _Stopping:
            log.warning("center: stopping with %d message(s) not written (the database is "
                        "down); unacknowledged, they come again with the next session",
                        len(batch))
            return
        ack = self.link.client.ack
        for _topic, _payload, mid, qos, _at in batch:
            if qos:
                ack(mid, qos)

    def _status(self, topic: str, payload: bytes) -> dict[str, Any] | None:
        if not payload:
            return None
        try:
            doc = json.loads(payload)
        except (ValueError, RecursionError):
            self.rejections.reject("bad_json", f"{topic}: {payload[:200]!r}")
            return None
        return doc if isinstance(doc, dict) else None

    def _store(self, events: list[dict[str, Any]], now: float) -> tuple[int, int]:
        """(stored, duplicates) of a batch, in one transaction; when the store refuses one
        of its events, each is written alone and the refused ones are counted."""
        try:
            got = self.store.store_events(events, now)
            return got.stored, got.duplicates
        except BadEvent:
            stored = duplicates = 0
            for doc in events:
                try:
                    one = self.store.store_events([doc], now)
                except BadEvent as exc:
                    self.rejections.reject("bad_event", str(exc))
                    continue
                stored, duplicates = stored + one.stored, duplicates + one.duplicates
            return stored, duplicates

    def _commit(self, events: list[dict[str, Any]],
                statuses: list[tuple[str, dict[str, Any] | None]]) -> None:
        """Write until it is written: a database that is down holds the batch (and, by not
        acknowledging it, the broker holds what follows)."""
        wait = 0.5
        lost_at: float | None = None
        while True:
            try:
                now = self.clock()
                result = self._store(events, now) if events else None
                for park, status in statuses:
                    self.store.store_status(park, status, now)
                break
            except StoreUnavailable as exc:
                if lost_at is None:
                    lost_at = time.monotonic()
                    self.figures.database_up = False
                    log.error("center: database unavailable (%s); %d event(s) wait, retrying "
                              "with backoff up to %.0f s", exc, len(events),
                              self.cfg.ingest.retry_max_s)
                if self._stop.wait(wait):
                    raise _Stopping from exc
                wait = min(wait * 2, self.cfg.ingest.retry_max_s)
        if lost_at is not None:
            self.figures.database_up = True
            log.warning("center: database back after %.1f s; the waiting events are written",
                        time.monotonic() - lost_at)
        f = self.figures
        f.batches += 1
        f.statuses += len(statuses)
        if result is not None:
            f.stored += result[0]
            f.duplicates += result[1]
            for doc in events:
                f.by_park[doc["park"]] = f.by_park.get(doc["park"], 0) + 1
            f.lag_s = max(0.0, now - _latest_change(events))
        for notify in self.on_commit:
            notify()


def _latest_change(events: list[dict[str, Any]]) -> float:
    """The latest `changed_at` of the events (RFC 3339 with milliseconds), as epoch seconds."""
    latest = max(doc["changed_at"] for doc in events)  # the format sorts as text
    try:
        return datetime.fromisoformat(latest.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0
