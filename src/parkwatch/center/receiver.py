"""The center's MQTT side of the ingest: one persistent session on the central broker, its
messages decoded into batches ready for a transaction (:mod:`parkwatch.center.intake`), and
their acknowledgements once the ingest says a batch is committed.

It runs in a process of its own (``ingest.process: true``, the default), so that receiving and
decoding use another core than the database writes (one Python process runs Python on one
core at a time), or inside the center's process.  Either way it tells the ingest what happens
through one callable, with these messages:

* ``("batch", number, Decoded)``: a batch to write; the ingest answers :meth:`Receiver.ack`
  with its number once it is committed.  Numbers start again with each receiver, so an
  acknowledgement meant for a receiver that died is never applied to the next one's messages.
* ``("state", up)``: the broker connection was made or lost.
* ``("subscribed", ok)``: the broker answered the subscriptions (False: it refused some).
* ``("rejected", totals)``: the refusals counted so far, by reason, when they change.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from parkwatch.center.config import CenterConfig
from parkwatch.center.contract import filters
from parkwatch.center.intake import Decoder, Publish, to_wire
from parkwatch.logsetup import setup_logging
from parkwatch.mqttlink.link import MqttLink
from parkwatch.rejections import Rejections

log = logging.getLogger("parkwatch.center")

#: how often the refusals' rate-limited summary is logged
SUMMARY_S = 60.0


class Receiver:
    def __init__(self, cfg: CenterConfig, tell: Callable[[tuple[Any, ...]], None],
                 clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.tell = tell
        self.clock = clock
        self.topics = filters(cfg.topic_prefix, cfg.ingest.share_group)
        self.rejections = Rejections(log, "center ingest")
        self.decoder = Decoder(cfg.topic_prefix, self.rejections)
        #: each read's messages, and when they arrived; None stops the decode thread
        self._inbox: queue.SimpleQueue[tuple[list[Publish], float] | None] = \
            queue.SimpleQueue()
        self._pending: dict[int, list[int]] = {}  # batch number → its QoS 1 message ids
        self._pending_lock = threading.Lock()
        self._numbers = 0
        self._told_rejections = 0
        self._stop = threading.Event()
        self.link = MqttLink("center", cfg.broker, cfg.client_id,
                             clean_session=False, on_connected=self._subscribe)
        client = self.link.client
        client.manual_ack_set(True)  # after the commit (see Receiver.ack)
        client.on_message = self._on_message
        client.on_publish_batch = self._on_publishes
        client.on_subscribe = self._on_subscribe
        self.link.state_listeners.append(lambda up: self.tell(("state", up)))
        self._thread = threading.Thread(target=self._decode_loop,
                                        name="parkwatch-center-decode", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self.link.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Disconnect; what was not acknowledged stays in the session, for the next start."""
        self._stop.set()
        self._inbox.put(None)
        self._thread.join(timeout)
        self.link.stop()
        self.rejections.flush()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def ack(self, number: int) -> None:
        """Batch `number` is committed: its messages are acknowledged to the broker (one
        write); an unknown number (a batch of an earlier receiver) is ignored."""
        with self._pending_lock:
            mids = self._pending.pop(number, None)
        if mids:
            self.link.client.ack_many(mids)

    # --- the network thread ---------------------------------------------------------------
    def _subscribe(self, link: MqttLink) -> None:
        link.client.subscribe([(t, 1) for t in self.topics.values()])

    def _on_subscribe(self, _c: Any, _u: Any, _mid: int, codes: Any, _p: Any) -> None:
        refused = [t for t, c in zip(self.topics.values(), codes, strict=False)
                   if getattr(c, "is_failure", False)]
        if refused:
            log.error("center: the broker refused the subscription(s) %s (check its ACL)",
                      ", ".join(refused))
        else:
            log.info("center: subscribed to %s", ", ".join(self.topics.values()))
        self.tell(("subscribed", not refused))

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
        last_summary = time.monotonic()
        while not self._stop.is_set():
            if carry:
                packets, received_at, carry = carry, carried_at, []
            else:
                try:
                    first = self._inbox.get(timeout=SUMMARY_S)
                except queue.Empty:
                    first = ([], 0.0)
                if first is None:
                    break
                packets, received_at = first
            while len(packets) < limit:
                try:
                    more = self._inbox.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._inbox.put(None)
                    break
                packets = packets + more[0]
            if len(packets) > limit:
                packets, carry, carried_at = packets[:limit], packets[limit:], received_at
            if packets:
                self._decode(packets, received_at)
            if time.monotonic() - last_summary >= SUMMARY_S:
                last_summary = time.monotonic()
                self.rejections.flush()

    def _decode(self, packets: list[Publish], received_at: float) -> None:
        try:
            decoded = self.decoder(packets, received_at)
        except Exception:  # the ingest must outlive one bad batch: it stays unacked
            log.exception("center ingest: a batch of %d message(s) could not be decoded; "
                          "they stay unacknowledged and come again with the next session",
                          len(packets))
            return
        rejected = sum(self.rejections.total.values())
        if rejected != self._told_rejections:
            self._told_rejections = rejected
            self.tell(("rejected", dict(self.rejections.total)))
        with self._pending_lock:
            self._numbers += 1
            number = self._numbers
            self._pending[number] = decoded.mids
        self.tell(("batch", number, decoded))


def receiver_main(cfg: CenterConfig, conn: Any, log_level: int) -> None:
    """The receiver process's entry point: it answers to the center over `conn`, and ends
    when the center says stop or goes away."""
    # Ctrl-C and systemd's stop (sent to every process of the unit) are the center's to
    # handle: it stops this process itself, after its last commit
    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    setup_logging(logging.getLevelName(log_level))
    lock = threading.Lock()

    def tell(msg: tuple[Any, ...]) -> None:
        with lock, contextlib.suppress(OSError, ValueError):
            conn.send_bytes(to_wire(msg))

    receiver = Receiver(cfg, tell)
    receiver.start()
    try:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                return
            if msg[0] == "ack":
                receiver.ack(msg[1])
            elif msg[0] == "stop":
                return
    finally:
        receiver.stop()
