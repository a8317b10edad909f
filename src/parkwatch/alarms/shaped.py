"""The courier of a notification target with a rate limit or grouping (a chat robot, SMS, a
paced webhook): what :class:`~parkwatch.alarms.shaper.Shaper` says goes out, one message at a
time, within the target's rate window.

Everything else is the plain courier's (:mod:`parkwatch.alarms.delivery`): rows are read from
the outbox after their commit, a row is marked delivered only once the vendor accepted the
message that carried it (at-least-once: a crash in between sends it again), a message that
fails is retried with the target's backoff (the whole target waits, so an outage costs the
vendor no more than one attempt per backoff step), and a row still failing at its expiry is
given up.  Unlike the plain courier, it reads new rows while older ones wait for their group
or for room in the window, and it writes its delivery marks after every message.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections import deque
from dataclasses import replace
from typing import Any

from parkwatch.alarms.delivery import Courier
from parkwatch.alarms.senders import DeliveryError, ManySender
from parkwatch.alarms.shaper import Message, Shaper
from parkwatch.alarms.store import OutboxReader, Pending

log = logging.getLogger("parkwatch.delivery")

#: rows held at most in memory while they wait (more wait in the outbox, read later)
QUEUE_MAX = 4096


class ShapedCourier(Courier):
    """A courier that sends what its :class:`Shaper` chooses, when it says."""

    def __init__(self, *args: Any, shaper: Shaper, timeout_s: float, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.shaper = shaper
        self.timeout_s = timeout_s  # a request's longest: how late it may reach the vendor
        self._retry_at = 0.0
        self.messages = 0  # messages the vendor accepted
        self.folded = 0  # of them, those carrying more than one row
        #: rows wait for their group, the window or the backoff: nothing to carry now
        self._held = False

    @property
    def carrying(self) -> bool:
        """Awake with rows to send now (not rows held for their group or the window: the
        telemetry writer holds its flush only while alarms are on their way)."""
        return not self._held and super().carrying

    def _read(self, outbox: OutboxReader) -> None:
        """Read what was committed since, also while older rows wait."""
        self._held = False
        self._flush_marks(outbox)
        if len(self._queue) < QUEUE_MAX:
            self._refill(outbox)

    def _pop(self, row: Pending) -> None:
        """`row`, wherever it waits, is done with."""
        if row.id >= 0:
            self._queue = deque(r for r in self._queue if r is not row)
            return
        with self._memory_lock:
            self._memory = deque(r for r in self._memory if r is not row)

    def _waiting(self) -> list[Pending]:
        with self._memory_lock:
            return [*self._queue, *self._memory]

    def _carry(self, outbox: OutboxReader) -> None:
        now = self.clock()
        rows = self._waiting()
        for row in [r for r in rows if r.expires_at <= now]:
            self._expire(row, now)
            self.shaper.forget([row])
        rows = [r for r in rows if r.expires_at > now]
        if not rows:
            if self._marks:
                self._sleep(1.0)  # a refused mark: try it again soon
            else:
                self._idle_sleep(60.0)
            return
        soonest = min(r.expires_at for r in rows)
        if self._retry_at > now:
            self._hold(min(self._retry_at, soonest) - now)
            return
        choice = self.shaper.next(rows, now)
        if not isinstance(choice, Message):
            self._hold(min(choice, soonest) - now)
            return
        if self.ready is not None and not self.ready.is_set():
            self.ready.wait(1.0)
            return
        self._deliver(choice, outbox)

    def _hold(self, seconds: float) -> None:
        self._held = True
        self._sleep(seconds)

    def _deliver(self, msg: Message, outbox: OutboxReader) -> None:
        """One message for `msg`'s rows (as many as it can carry), counted in the window."""
        window = self.shaper.window
        place = window.begin(self.clock(), self.timeout_s)
        sender = self.sender
        try:
            if len(msg.rows) > 1 and isinstance(sender, ManySender):
                carried = max(1, min(sender.send_many(msg.rows), len(msg.rows)))
            else:
                sender.send(msg.rows[0])
                carried = 1
        except DeliveryError as exc:
            failed = self.clock()
            window.end(place, failed)
            self._failed_message(msg.rows, failed, exc, outbox)
            return
        finished = self.clock()
        window.end(place, finished)
        self.messages += 1
        self.folded += carried > 1
        for row in msg.rows[:carried]:
            self._delivered(row, finished)
        self.shaper.forget(msg.rows[:carried])
        self._flush_marks(outbox)
        if self.failing:
            self.failing = False
            log.warning("target %s delivers again", self.name)

    def _failed_message(self, rows: list[Pending], now: float, exc: DeliveryError,
                        outbox: OutboxReader) -> None:
        """The message failed: its rows, and the target, wait for the backoff."""
        self.failures += 1
        attempts = max(r.attempts for r in rows)
        delay = min(self.backoff.max_s,
                    self.backoff.initial_s * self.backoff.factor ** min(attempts, 30))
        self._retry_at = now + delay
        again = {id(r): replace(r, attempts=r.attempts + 1, next_at=now + delay) for r in rows}
        self._queue = deque(again.get(id(r), r) for r in self._queue)
        with self._memory_lock:
            self._memory = deque(again.get(id(r), r) for r in self._memory)
        for row in rows:
            if row.id >= 0:  # for the record (the API shows attempts); the retry is kept here
                with contextlib.suppress(sqlite3.Error):
                    outbox.failed(row.id, now, now + delay, str(exc))
        if not self.failing:
            self.failing = True
            log.warning("target %s failing (%s); retrying %d alarm change(s) with backoff",
                        self.name, exc, len(rows))
