"""The center's ingest: every park's events, alarm states and gateway statuses from the central
broker into the store, in batches, acknowledged to the broker only once they are written.

* One MQTT session per instance (client id ``parkwatch-center-<instance>`` by default,
  persistent, QoS 1), held by the receiver (:mod:`parkwatch.center.receiver`), which decodes
  the messages into batches.  It runs in a process of its own by default
  (``ingest.process``), so that receiving and decoding use another core than the writes; a
  receiver process that dies is logged and started again, and the broker holds its
  unacknowledged messages meanwhile.
  The events come through a shared subscription (``$share/<group>/…``), so instances that
  share a group share the events; retained alarm states and gateway statuses go to every
  instance (they are idempotent).
* A batch is acknowledged (PUBACK) after the transaction that stored it committed.  An
  instance killed before that leaves it unacknowledged in its session: the broker sends it
  again when the instance reconnects (what the broker guarantees, and what it does not, is in
  docs/center.md).
* While the database is down, the batch in hand waits and is written when it returns; the
  broker holds the rest (it sends a session no more unacknowledged messages than its
  in-flight window).  Loss and return are logged once each.
* Storage is idempotent by (alarm_id, seq): a duplicate changes nothing and is counted.
* The console's commands (acknowledgements) go out on a connection of their own
  (``<client id>-commands``, clean session), so that a command never waits behind a flood.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from parkwatch.center.config import CenterConfig
from parkwatch.center.contract import filters
from parkwatch.center.intake import Decoded, from_wire
from parkwatch.center.receiver import Receiver, receiver_main
from parkwatch.center.store import CenterStore, Stored, StoreUnavailable
from parkwatch.mqttlink.link import MqttLink
from parkwatch.rejections import Rejections

log = logging.getLogger("parkwatch.center")

_STOP = None
#: decoded batches that may wait for the write thread (the broker holds the rest)
READY_MAX = 2
#: pause before starting a dead receiver process again: doubled each time it dies young
RESTART_S, RESTART_MAX_S = 1.0, 30.0
#: a receiver that ran this long before dying was not crash-looping: the pause starts over
STABLE_S = 60.0


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
        self.topics = filters(cfg.topic_prefix, cfg.ingest.share_group)
        self.figures = IngestFigures()
        #: called after every committed batch (the console's live board); each must return
        #: at once
        self.on_commit: list[Callable[[], None]] = []
        #: the receiver's refusals by reason (it logs them itself, rate-limited)
        self.rejections = Rejections(log, "center ingest")
        #: the receiver is connected to the broker / its subscriptions were acknowledged
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        #: the console's commands to the gateways
        self.commands = MqttLink("center commands", cfg.broker, f"{cfg.client_id}-commands",
                                 clean_session=True)
        self.restarts = 0  # receiver processes started again after one died
        #: (receiver generation, batch number, batch); None wakes a write thread to stop
        self._ready: queue.Queue[tuple[int, int, Decoded] | None] = queue.Queue(READY_MAX)
        #: the receiver's generation (a new one numbers its batches from 1 again), the next
        #: batch number to acknowledge, and the later ones done: acknowledgements go out in
        #: the order the messages came (MQTT 3.1.1 4.6), whichever write thread finished
        self._generation = 0
        self._next_ack = 1
        self._done: dict[int, bool] = {}  # batch number → committed (False: failed)
        self._ack_lock = threading.Lock()
        self._figures_lock = threading.Lock()
        self._lost_at = 0.0  # when the database was lost
        self._stop = threading.Event()
        self._receiver: Receiver | None = None
        self._conn: Any = None
        self._proc: Any = None
        self._send_lock = threading.Lock()
        self._writers = [threading.Thread(target=self._write_loop,
                                          name=f"parkwatch-center-ingest-{i}", daemon=True)
                         for i in range(max(1, store.batch_writers))]
        self._reader = threading.Thread(target=self._read_loop,
                                        name="parkwatch-center-receiver", daemon=True)

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        for writer in self._writers:
            writer.start()
        if self.cfg.ingest.process:
            self._spawn()
            self._reader.start()
        else:
            self._receiver = Receiver(self.cfg, self._heard, self.clock)
            self._receiver.start()
        self.commands.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Write the batch in hand and acknowledge it, then stop the receiver: what was not
        written stays unacknowledged in the session, for the next start."""
        self._stop.set()
        for _writer in self._writers:
            with contextlib.suppress(queue.Full):  # full: a write thread sees the stop itself
                self._ready.put_nowait(_STOP)
        deadline = time.monotonic() + timeout
        for writer in self._writers:
            writer.join(max(0.0, deadline - time.monotonic()))
        if self._receiver is not None:
            self._receiver.stop(timeout)
        if self._proc is not None:
            self._send(("stop",))
            self._proc.join(timeout)
            if self._proc.is_alive():
                log.warning("center: the receiver process did not stop; terminating it")
                self._proc.terminate()
                self._proc.join(2.0)
            self._reader.join(2.0)
        self.commands.stop()
        self._state(False)

    @property
    def alive(self) -> bool:
        """The write thread runs, and the receiver (its process is started again when it
        dies, by the reader thread)."""
        if not all(writer.is_alive() for writer in self._writers):
            return False
        if self._receiver is not None:
            return self._receiver.alive
        return self._reader.is_alive()

    @property
    def receiver_pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    # --- the receiver ---------------------------------------------------------------------
    def _spawn(self) -> None:
        ctx = multiprocessing.get_context("spawn")  # never fork a threaded server
        mine, theirs = ctx.Pipe()
        proc = ctx.Process(target=receiver_main, name="parkwatch-center-receiver",
                           args=(self.cfg, theirs, logging.getLogger().level), daemon=True)
        proc.start()
        theirs.close()
        with self._ack_lock, self._send_lock:  # no acknowledgement of the last one goes to it
            self._generation += 1
            self._next_ack, self._done = 1, {}
            self._conn, self._proc = mine, proc
        self._started_at = time.monotonic()

    def _read_loop(self) -> None:
        """The receiver process's messages; a process that died is started again, at once
        the first time, then after a growing pause."""
        pause = RESTART_S
        while True:
            while True:
                try:
                    msg = from_wire(self._conn.recv_bytes())
                except (EOFError, OSError):
                    break
                self._heard(msg)
            if self._stop.is_set():
                return
            self._state(False)
            self._proc.join(1.0)
            lived = time.monotonic() - self._started_at
            pause = RESTART_S if lived >= STABLE_S else pause
            log.error("center: the receiver process ended (exit code %s) after %.0f s; "
                      "starting it again in %.0f s; its unacknowledged messages wait in the "
                      "broker", self._proc.exitcode, lived, pause if self.restarts else 0)
            if self.restarts and self._stop.wait(pause):
                return
            if self.restarts:
                pause = min(pause * 2, RESTART_MAX_S)
            self.restarts += 1
            self._spawn()

    def _heard(self, msg: tuple[Any, ...]) -> None:
        """One message of the receiver (see :mod:`parkwatch.center.receiver`)."""
        what = msg[0]
        if what == "batch":
            while not self._stop.is_set():
                try:
                    self._ready.put((self._generation, msg[1], msg[2]), timeout=0.5)
                    return
                except queue.Full:
                    continue
        elif what == "state":
            self._state(bool(msg[1]))
        elif what == "subscribed":
            if msg[1]:
                self.subscribed.set()
        elif what == "rejected":
            total = self.rejections.total  # set, never cleared: a scrape reading it
            for reason, n in msg[1].items():  # meanwhile must not see a counter drop
                total[reason] = n

    def _state(self, up: bool) -> None:
        if up:
            self.connected.set()
        else:
            self.connected.clear()
            self.subscribed.clear()

    def _send(self, msg: tuple[Any, ...]) -> None:
        # a receiver gone: its unacknowledged messages come again, to the next one
        with self._send_lock, contextlib.suppress(OSError, ValueError, AttributeError):
            self._conn.send(msg)

    def _settled(self, generation: int, number: int, committed: bool) -> None:
        """Batch `number` of receiver `generation` is committed (or failed: its messages stay
        unacknowledged, and those after it are acknowledged all the same); acknowledge every
        batch up to the first one still being written."""
        with self._ack_lock:
            if generation != self._generation:
                return  # that receiver is gone: its messages come again to this one
            self._done[number] = committed
            while self._next_ack in self._done:
                if self._done.pop(self._next_ack):
                    if self._receiver is not None:
                        self._receiver.ack(self._next_ack)
                    else:
                        self._send(("ack", self._next_ack))
                self._next_ack += 1

    # --- the write thread -----------------------------------------------------------------
    def _write_loop(self) -> None:
        while not self._stop.is_set():
            item = self._ready.get()
            if item is _STOP:
                break
            generation, number, decoded = item
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
                self._settled(generation, number, False)
                continue
            self._settled(generation, number, True)

    def _database(self, up: bool, why: str) -> None:
        """The database was lost or came back: logged once, whichever write thread saw it."""
        with self._figures_lock:
            if self.figures.database_up == up:
                return
            self.figures.database_up = up
            if not up:
                self._lost_at = time.monotonic()
                log.error("center: database unavailable (%s), retrying with backoff up to "
                          "%.0f s", why, self.cfg.ingest.retry_max_s)
            else:
                log.warning("center: database back after %.1f s; the waiting events are "
                            "written", time.monotonic() - self._lost_at)

    def _commit(self, decoded: Decoded) -> None:
        """Write until it is written: a database that is down holds the batch (and, by not
        acknowledging it, the broker holds what follows)."""
        wait = 0.5
        waited = False
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
                if not waited:
                    waited = True
                    self._database(False, f"{exc}; {decoded.offered} event(s) wait")
                if self._stop.wait(wait):
                    raise _Stopping from exc
                wait = min(wait * 2, self.cfg.ingest.retry_max_s)
        if waited:
            self._database(True, "")
        with self._figures_lock:
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
