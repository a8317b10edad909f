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
* Three threads, so that receiving, decoding and writing overlap: the client's network
  thread hands over each read's messages in bulk, the decode thread makes the next batch's
  rows (:mod:`parkwatch.center.intake`) while the write thread commits the last and then
  acknowledges its messages in one write.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt

from parkwatch.center.config import CenterConfig
from parkwatch.center.contract import filters
from parkwatch.center.intake import Decoded, Decoder, Publish
from parkwatch.center.store import CenterStore, Stored, StoreUnavailable
from parkwatch.mqttlink.link import MqttLink
from parkwatch.rejections import Rejections

log = logging.getLogger("parkwatch.center")

_STOP = None
#: decoded batches that may wait for the write thread (the broker holds the rest)
READY_MAX = 2


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
        self.decoder = Decoder(cfg.topic_prefix, self.rejections)
        #: each read's messages, and when they arrived
        self._inbox: queue.SimpleQueue[tuple[list[Publish], float] | None] = \
            queue.SimpleQueue()
        self._ready: queue.Queue[Decoded | None] = queue.Queue(READY_MAX)
        self._stop = threading.Event()
        self.link = MqttLink("center", cfg.broker, cfg.client_id,
                             clean_session=False, on_connected=self._subscribe)
        client = self.link.client
        client.manual_ack_set(True)  # after the commit: see the module
        client.on_message = self._on_message
        client.on_publish_batch = self._on_publishes
        client.on_subscribe = self._on_subscribe
        #: the broker acknowledged the subscriptions of this connection
        self.subscribed = threading.Event()
        self._threads = [
            threading.Thread(target=self._decode_loop, name="parkwatch-center-decode",
                             daemon=True),
            threading.Thread(target=self._write_loop, name="parkwatch-center-ingest",
                             daemon=True)]

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        for thread in self._threads:
            thread.start()
        self.link.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop taking messages, write the batch in hand, disconnect: what was not written
        stays unacknowledged in the session, for the next start."""
        self._stop.set()
        self._inbox.put(_STOP)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self.link.stop()

    @property
    def alive(self) -> bool:
        return all(thread.is_alive() for thread in self._threads)

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
        """A message paho decoded itself (the first of a read, a QoS 2 one...)."""
        self._inbox.put(([(msg.topic, bytes(msg.payload), msg.mid, msg.qos)], self.clock()))

    def _on_publishes(self, packets: list[Publish]) -> None:
        """The whole messages of one read, parsed in bulk by the client."""
        self._inbox.put((packets, self.clock()))

    # --- the decode thread ----------------------------------------------------------------
    def _decode_loop(self) -> None:
        limit = self.cfg.ingest.batch_max
        carry: list[Publish] = []
        carried_at = 0.0
        while not self._stop.is_set():
            if carry:
                packets, received_at, carry = carry, carried_at, []
            else:
                first = self._inbox.get()
                if first is _STOP:
                    break
                packets, received_at = first
            while len(packets) < limit:
                try:
                    more = self._inbox.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    self._inbox.put(_STOP)
                    break
                packets = packets + more[0]
            if len(packets) > limit:
                packets, carry, carried_at = packets[:limit], packets[limit:], received_at
            try:
                decoded = self.decoder(packets, received_at)
            except Exception:  # the ingest must outlive one bad batch: it stays unacked
                log.exception("center ingest: a batch of %d message(s) could not be decoded; "
                              "they stay unacknowledged and come again with the next session",
                              len(packets))
                continue
            while not self._stop.is_set():
                try:
                    self._ready.put(decoded, timeout=0.5)
                    break
                except queue.Full:
                    continue
        with contextlib.suppress(queue.Full):  # full: the write thread sees the stop itself
            self._ready.put_nowait(_STOP)

    # --- the write thread -----------------------------------------------------------------
    def _write_loop(self) -> None:
        while not self._stop.is_set():
            decoded = self._ready.get()
            if decoded is _STOP:
                break
            try:
                self._commit(decoded)
            except _Stopping:
                log.warning("center: stopping with %d message(s) not written (the database "
                            "is down); unacknowledged, they come again with the next session",
                            len(decoded.mids))
                return
            except Exception:  # the ingest must outlive one bad batch: it stays unacked
                log.exception("center ingest: a batch of %d message(s) failed; they stay "
                              "unacknowledged and come again with the next session",
                              len(decoded.mids))
                continue
            self.link.client.ack_many(decoded.mids)

    def _commit(self, decoded: Decoded) -> None:
        """Write until it is written: a database that is down holds the batch (and, by not
        acknowledging it, the broker holds what follows)."""
        wait = 0.5
        lost_at: float | None = None
        result: Stored | None = None
        while True:
            try:
                now = self.clock()
                if decoded.rows is not None:
                    result = self.store.store_rows(decoded.rows, decoded.offered)
                for park, status in decoded.statuses:
                    self.store.store_status(park, status, now)
                break
            except StoreUnavailable as exc:
                if lost_at is None:
                    lost_at = time.monotonic()
                    self.figures.database_up = False
                    log.error("center: database unavailable (%s); %d event(s) wait, retrying "
                              "with backoff up to %.0f s", exc, decoded.offered,
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
        f.statuses += len(decoded.statuses)
        if result is not None:
            f.stored += result.stored
            f.duplicates += result.duplicates
            for park, n in decoded.by_park.items():
                f.by_park[park] = f.by_park.get(park, 0) + n
            if decoded.latest_change:
                f.lag_s = max(0.0, now - decoded.latest_change)
        for notify in self.on_commit:
            notify()
