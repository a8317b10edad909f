"""The uplink courier's process: the command center's deliveries on a core of their own.

One Python process runs Python on one core at a time.  In a burst of alarm changes, carrying
them to the command center (reading the outbox, publishing two QoS 1 messages a change,
handling the broker's PUBACKs) cost the interpreter almost as much as routing and committing
them, and both waited for each other.  With ``uplink.process: true`` the uplink's courier runs
here instead: it *is* :class:`~parkwatch.alarms.delivery.Courier` with the uplink channel's
sender (:mod:`parkwatch.alarms.channels.uplink`), on a broker connection of its own (client id
``…-uplink-alarms``), reading the store's outbox from its own connection.  The daemon keeps
its own uplink connection for the gateway status, its last will and the operators' commands;
its side is :class:`parkwatch.alarms.courierproc.CourierProcess`.

**Messages to the daemon** (``multiprocessing`` connection, pickled):

* ``("marks", [(id, state, at), ...])``: rows delivered or expired, for the daemon's commit
  stage (the store's only writer) to record;
* ``("stats", {...}, [latency_s, ...])``: the courier's counters and the latencies of the rows
  delivered since the last report, when they changed;
* ``("state", connected)``: its broker connection came or went;
* ``("idle", spell)``: the courier fell idle, every row delivered (its idle mark, see
  :mod:`parkwatch.alarms.express`).

**Messages from the daemon**: ``("wake",)`` (rows were committed), ``("express", [Pending,
...], spell)`` (rows committed while the daemon believed the courier idle in that spell:
published at once if it still is), ``("first", [(alarm_id, seq, subscriber, sensor), ...],
publish)`` (fire raises: published at once unless the courier may hold them already or
`publish` is false, else sent ahead by the courier), ``("offer", [Pending, ...])`` (changes the
store could not commit, to send from memory), ``("stop",)``.  The end of the connection (the
daemon died) ends this process too.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from pathlib import Path
from typing import Any

from parkwatch.alarms.channels import uplink
from parkwatch.alarms.delivery import Courier
from parkwatch.alarms.records import Mark
from parkwatch.alarms.store import OutboxReader
from parkwatch.alarms.uplink import Topics
from parkwatch.config.delivery import UPLINK
from parkwatch.config.model import ParkConfig
from parkwatch.daemon.memory import settle_heap
from parkwatch.logsetup import setup_logging
from parkwatch.mqttlink.link import MqttLink

log = logging.getLogger("parkwatch.delivery")

#: how often the counters and latencies are reported at most
REPORT_S = 0.1


class CourierWorker:
    def __init__(self, cfg: ParkConfig, store_path: Path, conn: Any) -> None:
        self.conn = conn
        self._send_lock = threading.Lock()
        broker = cfg.brokers[cfg.uplink.broker]
        self.link = MqttLink("uplink-alarms", broker,
                             broker.client_id(cfg.gateway.id, "uplink-alarms"),
                             clean_session=False)
        self.link.state_listeners.append(lambda up: self._send(("state", up)))
        self._latencies: list[float] = []
        self._lock = threading.Lock()
        carrier = uplink.carrier(self.link, Topics(cfg))
        self.courier = Courier(UPLINK, carrier.sender, store_path, carrier.backoff,
                               ready=carrier.ready, on_delivered=self._delivered,
                               marks=self._marks)
        self.courier.on_idle = lambda spell: self._send(("idle", spell))
        self.store_path = store_path
        self._stop = threading.Event()
        self._reported: dict[str, Any] = {}

    def _send(self, msg: tuple[Any, ...]) -> None:
        with self._send_lock, contextlib.suppress(OSError, ValueError):
            self.conn.send(msg)  # a daemon gone: the command loop ends this process

    def _delivered(self, latency_s: float) -> None:
        with self._lock:
            self._latencies.append(latency_s)

    def _marks(self, marks: list[Mark]) -> None:
        self._report()  # the counters first: a mark tells the daemon a row is delivered
        self._send(("marks", marks))

    def _report(self) -> None:
        c = self.courier
        stats = {"delivered": c.delivered, "failures": c.failures, "expired": c.expired,
                 "expressed": c.expressed, "prioritised": c.prioritised,
                 "failing": c.failing, "idle": c.idle, "last_latency_s": c.last_latency_s}
        with self._lock:
            latencies, self._latencies = self._latencies, []
        if latencies or stats != self._reported:
            self._reported = stats
            self._send(("stats", stats, latencies))

    def _reporter(self) -> None:
        while not self._stop.wait(REPORT_S):
            self._report()

    def run(self) -> None:
        reporter = threading.Thread(target=self._reporter, name="parkwatch-courier-report",
                                    daemon=True)
        self.link.start()
        self.courier.start()
        reporter.start()
        try:
            self._commands()
        finally:
            self.courier.stop(5.0)  # its last marks go to the daemon
            self._stop.set()
            reporter.join(1.0)
            self._report()
            self.link.stop()

    def _commands(self) -> None:
        """The daemon's wake-ups, fire raises, held changes and stop, until it says stop or
        goes away."""
        courier = self.courier
        outbox = OutboxReader(self.store_path, UPLINK)  # this thread's: fire raises' ids
        try:
            while True:
                try:
                    msg = self.conn.recv()
                except (EOFError, OSError):
                    return
                what = msg[0]
                if what == "wake":
                    courier.wake()
                elif what == "express":
                    courier.express(msg[1], msg[2])
                elif what == "first":
                    self._first(outbox, msg[1], msg[2])
                elif what == "offer":
                    courier.offer(msg[1])
                elif what == "stop":
                    return
        finally:
            outbox.close()

    def _first(self, outbox: OutboxReader, named: list[tuple[str, int, str, str]],
               publish: bool) -> None:
        """Fire raises committed meanwhile: published from here if the courier cannot hold
        them yet, else (or when a row of their sensor waits) sent first by the courier."""
        keys = [(a, s, sub) for a, s, sub, _ in named]
        sensors = [sensor for *_, sensor in named]
        if publish:  # a row whose delivery is recorded is no longer pending
            found = [(row, sensor) for key, sensor in zip(keys, sensors, strict=True)
                     if (row := outbox.pending(*key)) is not None]
            if found:
                self.courier.priority_read([r for r, _ in found], [s for _, s in found])
                self.courier.wake()
            return
        self.courier.send_first(keys, sensors)


def courier_main(cfg: ParkConfig, store_path: str, conn: Any, log_level: int) -> None:
    """The child process's entry point."""
    # Ctrl-C, a reload and systemd's stop (sent to every process of the unit) are the
    # daemon's to handle: it stops this process itself, once its last changes are committed
    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    setup_logging(logging.getLevelName(log_level))
    try:
        worker = CourierWorker(cfg, Path(store_path), conn)
        settle_heap()  # the park, as in the daemon: out of the cycle collector's full walks
        worker.run()
    except Exception:
        log.exception("courier %s: process failed", UPLINK)
        raise
