"""Couriers: one thread per target carries the outbox's rows to it, in order, until each is
delivered or expired.

A target's failures never delay another target: each has its own thread, its own store
connection and its own backoff.  Within a target, rows go out in commit order (an alarm's
changes arrive in `seq` order, and the retained state on the uplink is always the latest).
Delivery is at-least-once: a row is marked delivered only after the target confirmed it (the
broker's PUBACK, a 2xx answer), so a crash in between sends it again with the same
(alarm_id, seq), by which receivers deduplicate.

**Throughput.** A courier reads the outbox ahead in chunks, from a cursor (ids grow in commit
order), and keeps up to the sender's window of rows in flight (32 to an MQTT target) before it
waits for their confirmations, in order. Its marks (delivered, expired) go, when its read-ahead
runs dry or every :data:`MARK_BATCH` rows, to the commit stage, the store's only writer, with
its next group (a courier's own writes collided with the commits, and SQLite's busy handler then
slept up to 100 ms). A crash before they are written sends those rows again, deduplicated by
(alarm_id, seq).

**Express** and **fire first**: the committing thread may publish a change itself, the moment
it is committed (:mod:`parkwatch.alarms.express`); the courier then only confirms and marks it.

When the store cannot write (its disk is full), alarms must still go out: the alarm service
hands its changes to the couriers in memory (:meth:`Courier.offer`), sent after the target's
committed rows; once the disk takes them, their rows are only marked delivered.  Marks the disk
refuses are kept in memory and written when it can.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from parkwatch.alarms.express import ExpressLane, Key, key_of
from parkwatch.alarms.records import Mark
from parkwatch.alarms.senders import DeliveryError, Opening, Publisher, Sender
from parkwatch.alarms.store import OutboxReader, Pending
from parkwatch.config.delivery import Backoff

log = logging.getLogger("parkwatch.delivery")

#: rows read from the outbox at a time
READ_AHEAD = 256
#: delivered rows whose marks may wait for one transaction
MARK_BATCH = 256


class Courier(ExpressLane):
    """Carries one target's outbox rows, retrying with backoff until delivered or expired."""

    def __init__(self, name: str, sender: Sender, store_path: Path, backoff: Backoff,
                 clock: Callable[[], float] = time.time,
                 ready: threading.Event | None = None,
                 on_delivered: Callable[[float], None] | None = None,
                 marks: Callable[[list[Mark]], None] | None = None) -> None:
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
        #: self-metrics: called with each delivered row's seconds from change to confirmation
        self.on_delivered = on_delivered
        self.failing = False
        #: committed rows read ahead, in commit order, and the last outbox id read
        self._queue: deque[Pending] = deque()
        self._cursor = 0
        #: (id, state, at) of rows done whose marks are not written yet
        self._marks: list[Mark] = []
        self._marks_failing = False
        #: where the marks are written: the store's writer (the commit stage), which takes
        #: them with its next group; None: on this courier's own connection
        self._mark_sink = marks
        #: changes the store could not commit yet, to send after the committed rows
        self._memory: deque[Pending] = deque()
        self._memory_lock = threading.Lock()
        #: (alarm_id, seq, subscriber) sent from memory: their rows, once committed, are marked
        self._sent_from_memory: set[Key] = set()
        #: fire raises read ahead of the cursor (:meth:`_promote`), to skip when it gets there
        self._early: set[Key] = set()
        self._init_express()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"parkwatch-courier-{name}",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()
        if isinstance(self.sender, Opening):
            self.sender.open(self._thread)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def wake(self) -> None:
        self._wake.set()

    @property
    def carrying(self) -> bool:
        """Awake with committed rows to carry, to a target that takes them."""
        return not self._idle and not self.failing and (
            self.ready is None or self.ready.is_set())

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
            self._flush_marks(outbox)
            outbox.close()

    # --- the outbox --------------------------------------------------------------------

    def _flush_marks(self, outbox: OutboxReader) -> bool:
        """Write the marks that wait, in one transaction; False when the disk refuses."""
        if not self._marks:
            return True
        if self._mark_sink is not None:
            marks, self._marks = self._marks, []
            self._mark_sink(marks)
            return True
        try:
            outbox.mark(self._marks)
        except sqlite3.Error as exc:
            if not self._marks_failing:
                log.error("courier %s: cannot record deliveries in the store (%s); kept in "
                          "memory and written once the store takes them", self.name, exc)
                self._marks_failing = True
            return False
        self._marks = []
        if self._marks_failing:
            log.info("courier %s: deliveries are recorded in the store again", self.name)
            self._marks_failing = False
        return True

    def _refill(self, outbox: OutboxReader) -> None:
        """Read the next committed rows after the cursor; a row that already went out from
        memory is only marked."""
        with self._outbox_read():
            rows = outbox.after(self._cursor, READ_AHEAD)
        for row in rows:
            self._cursor = row.id
            key = key_of(row)
            if key in self._early:  # a fire raise read ahead of its turn: queued already
                self._early.discard(key)
                continue
            if key in self._sent_from_memory:  # committed at last; it went out from memory
                self._sent_from_memory.discard(key)
                with self._express_lock:
                    self._expressed.pop(key, None)
                self._marks.append((row.id, "delivered", self.clock()))
                continue
            with self._memory_lock:  # committed before memory got to it: send it from here
                for held in [m for m in self._memory if key_of(m) == key]:
                    self._memory.remove(held)
            self._queue.append(row)

    def _promote(self, outbox: OutboxReader) -> None:
        """Fire raises the committer named (:meth:`priority`) move ahead of the queue, past
        every row that is not of their own sensor (nothing of their own alarms is ahead of
        them).  One not read yet is read now, and skipped when the cursor gets there,
        unless a row of its sensor waits unread before it: then it keeps its turn."""
        with self._express_lock:
            named, self._first = self._first, {}
        queue = list(self._queue)
        front = 0  # fire raises moved to the very front, kept in their order
        for key, source in named.items():
            # how its events name it (none given: it overtakes every row)
            mention = json.dumps(source, ensure_ascii=False) if source else None
            at = next((i for i, r in enumerate(queue) if key_of(r) == key), None)
            if at is None:
                if key in self._early:
                    continue
                row = outbox.pending(*key)
                if row is None or row.id <= self._cursor or (mention is not None and (
                        outbox.mentioned(self._cursor, row.id, mention))):
                    continue  # delivered already (its mark waits), or it keeps its turn
                self._early.add(key)
                at = len(queue)
            else:
                row = queue.pop(at)
            needle = mention.encode("utf-8") if mention is not None else None
            same = [i for i in range(at) if needle is not None and needle in queue[i].payload]
            at = same[-1] + 1 if same else front
            queue.insert(at, row)
            front += at <= front
        self._queue = deque(queue)

    def _head(self) -> Pending | None:
        """The next row: the oldest committed one, else the oldest held in memory."""
        if self._queue:
            return self._queue[0]
        with self._memory_lock:
            return self._memory[0] if self._memory else None

    def _pop(self, row: Pending) -> None:
        """`row`, the head, is done with."""
        if row.id >= 0:
            self._queue.popleft()
            return
        with self._memory_lock:
            if self._memory and self._memory[0] is row:
                self._memory.popleft()

    def _idle_sleep(self, seconds: float) -> None:
        """Nothing to carry: sleep, and let the committer publish what is committed meanwhile
        (unless something arrived since the store was read)."""
        with self._express_lock:
            if self._wake.is_set():
                return
            # not while changes sent from memory wait for their rows: those are only marked
            self._idle = not self._sent_from_memory and not self._memory
            if self._idle:
                self._idle_spells += 1
            spell = self._idle_spells if self._idle else None
        if spell is not None and self.on_idle is not None:
            self.on_idle(spell)
        self._sleep(seconds)

    # --- one step ------------------------------------------------------------------------

    def _step(self, outbox: OutboxReader) -> None:
        with self._express_lock:
            self._idle = False
        self._wake.clear()
        self._read(outbox)
        if self._first:
            self._promote(outbox)
        self._carry(outbox)

    def _read(self, outbox: OutboxReader) -> None:
        """Read ahead once the queue is empty, writing the marks first."""
        if not self._queue:
            self._flush_marks(outbox)
            self._refill(outbox)
        elif len(self._marks) >= MARK_BATCH:
            self._flush_marks(outbox)

    def _carry(self, outbox: OutboxReader) -> None:
        """Send the head (and the due rows behind it, to a :class:`Publisher`), or wait."""
        row = self._head()
        if row is None:
            if self._marks:
                self._sleep(1.0)  # a refused mark: try it again soon
            else:
                self._idle_sleep(60.0)
            return
        now = self.clock()
        if row.expires_at <= now:
            self._expire(row, now)
            return
        wait = row.next_at - now
        if wait > 0:
            self._sleep(min(wait, row.expires_at - now))
            return
        if self.ready is not None and not self.ready.is_set():
            self.ready.wait(1.0)
            return
        rows = self._window(row, now)
        done, error = self._send(rows)
        finished = self.clock()
        for sent in rows[:done]:
            self._delivered(sent, finished)
        if error is not None:
            self._failed(rows[done], finished, error, outbox)  # the backoff runs from here
        elif self.failing:
            self.failing = False
            log.warning("target %s delivers again", self.name)

    def _window(self, head: Pending, now: float) -> list[Pending]:
        """The head, and the due rows behind it up to the sender's window (a
        :class:`Publisher`'s; 32 for an MQTT target)."""
        if head.id < 0 or not isinstance(self.sender, Publisher):
            return [head]
        rows = [head]
        for row in list(self._queue)[1:self.sender.window]:
            if row.next_at > now or row.expires_at <= now:
                break
            rows.append(row)
        return rows

    def _send(self, rows: list[Pending]) -> tuple[int, DeliveryError | None]:
        """Send `rows` in order: how many the target confirmed, and the error that stopped
        the rest (None: all of them)."""
        sender = self.sender
        if not isinstance(sender, Publisher):
            try:
                sender.send(rows[0])
            except DeliveryError as exc:
                return 0, exc
            return 1, None
        with self._express_lock:  # what the committer published already is only confirmed
            expressed = [key_of(row) in self._expressed for row in rows]
        error: DeliveryError | None = None
        fresh: list[list[Any]] = []
        try:
            fresh = sender.publish_rows([r for r, e in zip(rows, expressed, strict=True) if not e])
        except DeliveryError as exc:
            error = exc
        published: list[list[Any]] = []
        unsent = iter(fresh)
        for row, e in zip(rows, expressed, strict=True):
            if e:
                with self._express_lock:
                    infos = self._expressed.pop(key_of(row))
            else:
                sent = next(unsent, None)
                if sent is None:
                    break  # the publishing failed from here
                infos = sent
            published.append(infos)
        for k, infos in enumerate(published):
            try:
                sender.confirm(infos)
            except DeliveryError as exc:
                return k, exc
        return len(published), error

    def _delivered(self, row: Pending, at: float) -> None:
        self._pop(row)
        if row.id < 0:  # from memory: its row is marked once it is committed
            self._sent_from_memory.add(key_of(row))
        else:
            self._marks.append((row.id, "delivered", at))
        self.delivered += 1
        self.last_latency_s = at - row.created_at
        if self.on_delivered is not None:
            self.on_delivered(self.last_latency_s)

    def _expire(self, row: Pending, now: float) -> None:
        with self._express_lock:
            self._expressed.pop(key_of(row), None)
        self._pop(row)
        if row.id >= 0:
            self._marks.append((row.id, "expired", now))
        self.expired += 1
        log.error("delivery to %s of alarm %s seq %d expired after %d attempt(s): given up",
                  row.subscriber, row.alarm_id, row.seq, row.attempts)

    def _failed(self, row: Pending, now: float, exc: DeliveryError,
                outbox: OutboxReader) -> None:
        """The head failed: it waits for its backoff (the rows behind it wait with it)."""
        self.failures += 1
        delay = min(self.backoff.max_s,
                    self.backoff.initial_s * self.backoff.factor ** min(row.attempts, 30))
        again = replace(row, attempts=row.attempts + 1, next_at=now + delay)
        if row.id >= 0:
            self._queue[0] = again
            # for the record (the API shows attempts); the retry itself is kept here
            with contextlib.suppress(sqlite3.Error):
                outbox.failed(row.id, now, now + delay, str(exc))
        else:
            with self._memory_lock:
                if self._memory and self._memory[0] is row:
                    self._memory[0] = again
        if not self.failing:
            self.failing = True
            log.warning("target %s failing (%s); retrying alarm %s seq %d with backoff",
                        self.name, exc, row.alarm_id, row.seq)

    def health(self) -> dict[str, object]:
        return {"delivered": self.delivered, "expressed": self.expressed,
                "prioritised": self.prioritised, "failures": self.failures,
                "expired": self.expired, "failing": self.failing}
