"""The MQTT driver's worker process: network and decoding on a core of their own.

One Python process runs Python on one core at a time.  Under a flood, the driver's network
loop and the decoding of each JSON payload cost as much as the whole alarm path behind them,
and they compete with it for that core.  With ``process: true`` the driver runs here instead,
in a child process: this process subscribes, receives and decodes exactly as the driver does
in the daemon (it *is* :class:`~parkwatch.drivers.mqtt.driver.MqttDriver`, with an inbox of
its own), and sends the daemon the decoded readings in batches of numpy arrays.  The daemon's
side is :class:`parkwatch.drivers.mqtt.process.MqttProcessDriver`.

**Messages to the daemon** (``multiprocessing`` connection; all but the batches pickled):

* a batch: readings in arrival order, as a frame of bytes (:mod:`~parkwatch.drivers.mqtt.wire`):
  ``urgent`` for fire buttons (the daemon's urgent lane), the ack id naming the QoS 1/2
  messages behind them (none: -1);
* ``("rejected", totals)``: the driver's rejection totals, before the next batch, when they
  changed;
* ``("state", connected)``: subscribed (True) or the link lost (False).

**Messages from the daemon**: ``("ack", [ack_id, ...])`` once the alarm changes those
readings caused are committed (the MQTT acknowledgement waits for that, as in the daemon),
``("stop",)``.  The end of the connection (the daemon died) ends this process too, so a
gateway never keeps an orphan subscribed under the daemon's client id.

Rejected payloads are logged here (same format, same rate limit) and counted there.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from queue import Empty, SimpleQueue
from typing import Any

from parkwatch.config.model import ParkConfig
from parkwatch.daemon.memory import settle_heap
from parkwatch.drivers.mqtt import wire
from parkwatch.drivers.mqtt.driver import QOS, Message, MqttDriver
from parkwatch.logsetup import setup_logging
from parkwatch.park import ParkModel

log = logging.getLogger("parkwatch.drivers.mqtt")

#: messages decoded in one go at most (a flood is sent to the daemon in batches this size)
BATCH = 4096
#: how often the rejections' rate-limited summary is logged, as the daemon does
SUMMARY_S = 60.0


class _Inbox:
    """What the driver puts its messages into: the ordinary and the urgent (fire) lane."""

    def __init__(self) -> None:
        #: None wakes the sender (urgent input, or the end)
        self.queue: SimpleQueue[Message | None] = SimpleQueue()
        self.urgent: SimpleQueue[Message] = SimpleQueue()
        self.put = self.queue.put

    def put_urgent(self, item: Message) -> None:
        self.urgent.put(item)
        self.queue.put(None)  # wakes the sender


class Worker:
    def __init__(self, cfg: ParkConfig, driver_id: str, conn: Any) -> None:
        self.conn = conn
        self.inbox = _Inbox()
        dcfg = next(d for d in cfg.drivers if d.id == driver_id)
        self.driver = MqttDriver(dcfg, ParkModel(cfg), self.inbox, cfg)
        self.driver.state_listeners.append(lambda up: self._send(("state", up)))
        self._send_lock = threading.Lock()
        self._acks: dict[int, list[Message]] = {}  # ack id → the QoS 1/2 messages it settles
        self._acks_lock = threading.Lock()
        self._next_ack = 0
        self._stop = threading.Event()
        self._rejected = 0

    def _send(self, msg: tuple[Any, ...]) -> None:
        with self._send_lock, contextlib.suppress(OSError, ValueError):
            self.conn.send(msg)  # a daemon gone: the command loop ends this process

    def run(self) -> None:
        sender = threading.Thread(target=self._sender, name="parkwatch-worker-send",
                                  daemon=True)
        sender.start()
        self.driver.start()
        try:
            self._commands()
        finally:
            self._stop.set()
            self.inbox.put(None)
            self.driver.stop()
            sender.join(2.0)

    def _commands(self) -> None:
        """The daemon's acknowledgements and stop, until it says stop or goes away."""
        while True:
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):
                return
            if msg[0] == "ack":
                with self._acks_lock:
                    items = [m for i in msg[1] for m in self._acks.pop(i, ())]
                if items:
                    self.driver.settle(items)
            elif msg[0] == "stop":
                return

    def _take(self, timeout: float) -> tuple[list[Message], list[Message]]:
        """(urgent, ordinary) messages: waits up to `timeout` for the first."""
        q, lane = self.inbox.queue, self.inbox.urgent
        ordinary: list[Message] = []
        with contextlib.suppress(Empty):
            first = q.get(timeout=timeout)
            if first is not None:
                ordinary.append(first)
            while len(ordinary) < BATCH:
                item = q.get_nowait()
                if item is not None:
                    ordinary.append(item)
        urgent: list[Message] = []
        with contextlib.suppress(Empty):
            while True:
                urgent.append(lane.get_nowait())
        return urgent, ordinary

    def _sender(self) -> None:
        last_summary = time.monotonic()
        while not self._stop.is_set():
            urgent, ordinary = self._take(SUMMARY_S)
            if urgent:  # a fire button's press first, as in the daemon
                self._batch(True, urgent)
            if ordinary:
                self._batch(False, ordinary)
            if time.monotonic() - last_summary >= SUMMARY_S:
                last_summary = time.monotonic()
                self.driver.rejections.flush()

    def _batch(self, urgent: bool, items: list[Message]) -> None:
        batch = self.driver.decode(items)
        settle = [m for m in items if m[QOS]]  # QoS 1/2: acknowledged once committed
        ack_id = None
        if settle:
            with self._acks_lock:
                self._next_ack += 1
                ack_id = self._next_ack
                self._acks[ack_id] = settle
        rejected = self.driver.rejections.count
        if rejected != self._rejected:
            self._rejected = rejected
            self._send(("rejected", dict(self.driver.rejections.total)))
        if len(batch) or ack_id is not None:
            frame = wire.encode(urgent, batch, ack_id)
            with self._send_lock, contextlib.suppress(OSError, ValueError):
                self.conn.send_bytes(frame)


def worker_main(cfg: ParkConfig, driver_id: str, conn: Any, log_level: int) -> None:
    """The child process's entry point."""
    # Ctrl-C, a reload and systemd's stop (sent to every process of the unit) are the
    # daemon's to handle: it stops this process itself, after its own last batch
    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    setup_logging(logging.getLevelName(log_level))
    try:
        worker = Worker(cfg, driver_id, conn)
        settle_heap()  # the park, as in the daemon: out of the cycle collector's full walks
        worker.run()
    except Exception:
        log.exception("driver %s: worker process failed", driver_id)
        raise
