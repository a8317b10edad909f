"""The committer's side doors into a courier: publishing a change the moment it is committed.

**Express.**  A courier that has nothing left to carry lets the committing thread publish the
next committed change itself (:meth:`ExpressLane.express`); the courier then only waits for the
broker's confirmation and marks the row.  Order holds: the committer publishes only while the
courier is idle (every older row delivered), and once it declines, the courier carries the rest
in order.  The committer asks for the courier's idle mark before it commits
(:meth:`ExpressLane.idle_mark`) and hands it back with the rows: a courier that has read the
outbox since (and so may have delivered those very rows itself) declines, so no change is ever
published twice.

**Fire first.**  A fire alarm raised while the courier works through a storm's backlog must
not wait behind it (GB 26875.1 gives the whole chain 10 s).  Its first change (``seq`` 1: the
alarm has nothing before it, so no order of its own can break) is published by the committer
even while the courier is busy (:meth:`ExpressLane.priority`), unless the courier has read the
outbox since the commit began, or was reading it then (:meth:`ExpressLane.read_mark`), or a
change of the same sensor still waits: then the courier may hold the row already, or must send
that change first, and it sends the row next, once the rows in flight are confirmed and behind
any row of its own sensor.  The courier later finds a row the committer published and only
confirms and marks it.  Other changes keep their order; only the fire raise overtakes them.

**From another process.**  A courier in a process of its own (``uplink.process: true``) has
the committed rows handed to it over a pipe, so the committer cannot ask it anything before a
commit.  Instead, the courier reports each idle spell as it begins (:attr:`ExpressLane.on_idle`),
and the committer hands back the last one it heard of with the rows: the same idle mark, and
the same test (:meth:`ExpressLane.express`).  A fire raise is looked up in the outbox there,
and published at once unless the courier is reading or has read past it
(:meth:`ExpressLane.priority_read`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from parkwatch.alarms.senders import DeliveryError, Publisher, Sender
from parkwatch.alarms.store import Pending

log = logging.getLogger("parkwatch.delivery")

#: how long a committer's publish waits for the link's network thread to write it; the
#: committer goes on after this even when the socket is full (the courier confirms either way)
EXPRESS_WRITE_S = 0.002
#: fire raises a courier remembers to send first at most (beyond: a row delivered before it
#: was named leaves its name behind; the oldest names are dropped)
FIRST_MAX = 1024

Key = tuple[str, int, str]


def key_of(row: Pending) -> Key:
    return (row.alarm_id, row.seq, row.subscriber)


class ExpressLane:
    """A courier's state the committing thread may touch, under one lock."""

    name: str
    sender: Sender
    ready: threading.Event | None
    _wake: threading.Event
    #: the last outbox id the courier has read (the courier's)
    _cursor: int

    def _init_express(self) -> None:
        #: asleep with every row delivered (the committer may publish the next ones itself)
        self._idle = False
        #: how many times the courier has fallen idle: an idle mark names one idle spell
        self._idle_spells = 0
        #: how many times the courier has begun to read the outbox, and whether it is reading
        #: now (its read's snapshot of the store may begin after a commit it began before)
        self._reads = 0
        self._reading = False
        self._express_lock = threading.Lock()
        #: (alarm_id, seq, subscriber) -> what the committer published, for the courier to
        #: confirm instead of publishing
        self._expressed: dict[Key, list[Any]] = {}
        self.expressed = 0
        self.prioritised = 0
        #: fire raises the committer left to the courier, with their sensors: sent before the
        #: rows ahead of them that are not of their sensor
        self._first: dict[Key, str] = {}
        #: told each idle spell's mark as it begins (a committer in another process)
        self.on_idle: Callable[[int], None] | None = None

    def idle_mark(self) -> int | None:
        """Before a commit: this idle spell's mark, or None while the courier is busy."""
        with self._express_lock:
            return self._idle_spells if self._idle else None

    def read_mark(self) -> int:
        """Before a commit: how many reads of the outbox the courier has begun, or -1 while
        it is in the middle of one (that read may yet see the commit: the store fixes what a
        read sees when its query starts, not when the courier decides to read)."""
        with self._express_lock:
            return -1 if self._reading else self._reads

    def _begin_read(self) -> None:
        """The courier is about to read the outbox (the rows it gets are its to send)."""
        with self._express_lock:
            self._reads += 1
            self._reading = True

    def _end_read(self) -> None:
        with self._express_lock:
            self._reading = False

    @contextlib.contextmanager
    def _outbox_read(self) -> Iterator[None]:
        """Around the courier's read of the outbox."""
        self._begin_read()
        try:
            yield
        finally:
            self._end_read()

    def _can_publish(self) -> bool:
        return isinstance(self.sender, Publisher) and (
            self.ready is None or self.ready.is_set())

    def express(self, rows: list[Pending], mark: int | None) -> bool:
        """Committed changes for this target, in commit order (the committing thread, right
        after the commit), with the courier's :meth:`idle_mark` from before that commit:
        published at once when the courier has been idle all along (it cannot have read them
        from the outbox) and its sender can split publishing from confirming; else the
        courier is woken to carry them.  True when published here."""
        done = False
        with self._express_lock:
            if self._idle and mark == self._idle_spells and self._can_publish():
                done = self._publish(rows)
            self._idle = done and self._idle  # declined: the courier carries them in order
        self._wake.set()
        return done

    def priority(self, rows: list[Pending], mark: int, sources: list[str] | None = None,
                 publish: bool = True) -> bool:
        """Fire alarms' first changes, committed while the courier is busy, with its
        :meth:`read_mark` from before that commit: published at once unless the courier has
        read the outbox since, or `publish` is False (a row of their sensor still waits): then
        the courier sends them first, but after anything of their `sources`, the sensors they
        belong to.  True when published here."""
        with self._express_lock:
            sources = sources or [""] * len(rows)
            if not publish or mark != self._reads or not self._can_publish():
                self._name_first(list(map(key_of, rows)), sources)
                return False
            return self._publish_first(rows, sources)

    def priority_read(self, rows: list[Pending], sources: list[str]) -> bool:
        """Fire alarms' first changes as the outbox holds them (their ids), handed over by a
        committer in another process: published at once unless the courier is reading the
        outbox or has read past one of them (it may hold them, or have sent them); then it
        sends them first, behind anything of their `sources`.  Rows published already (their
        commit's :meth:`express`) are left alone.  True when none is left to the courier."""
        with self._express_lock:
            keep = [k for k, r in enumerate(rows) if key_of(r) not in self._expressed]
            rows, sources = [rows[k] for k in keep], [sources[k] for k in keep]
            if not rows:
                return True
            if self._reading or any(r.id <= self._cursor for r in rows) or \
                    not self._can_publish():
                self._name_first(list(map(key_of, rows)), sources)
                return False
            return self._publish_first(rows, sources)

    def send_first(self, keys: list[Key], sources: list[str]) -> None:
        """Fire raises for the courier to send first, behind anything of their `sources`
        (the courier in a process of its own is told so; nothing publishes them here)."""
        with self._express_lock:
            self._name_first(keys, sources)
        self._wake.set()

    def _name_first(self, keys: list[Key], sources: list[str]) -> None:
        self._first.update(zip(keys, sources, strict=True))
        while len(self._first) > FIRST_MAX:
            del self._first[next(iter(self._first))]

    def _publish_first(self, rows: list[Pending], sources: list[str]) -> bool:
        """Publish fire raises ahead of the courier (the lock held); those the sender
        refused (its target not connected) are left to the courier to send first."""
        done = self._publish(rows)
        if done:
            self.prioritised += len(rows)
            return True
        left = [k for k, r in enumerate(rows) if key_of(r) not in self._expressed]
        self._name_first([key_of(rows[k]) for k in left], [sources[k] for k in left])
        self.prioritised += len(rows) - len(left)
        return False

    def _publish(self, rows: list[Pending]) -> bool:
        """Publish `rows` for the courier to confirm (the lock held): False when the sender
        refused one (the courier then sends it, and those after it, itself)."""
        sender = self.sender
        assert isinstance(sender, Publisher)
        try:
            for row in rows:
                self._expressed[key_of(row)] = sender.publish(row)
                self.expressed += 1
            sender.written(EXPRESS_WRITE_S)
        except DeliveryError:
            return False
        except Exception:  # a sender bug must not fail the batch already committed
            log.exception("courier %s: publishing at commit failed; the courier sends it",
                          self.name)
            return False
        return True

    @property
    def idle(self) -> bool:
        """Asleep with every row delivered: the next committed change is published by the
        committer itself (express)."""
        return self._idle
