"""The commit stage: alarm changes to the store in groups, then to the dispatcher.

**Group commit.**  In the daemon the commit runs on a thread of its own.  The pipeline hands
over each batch's changes (:meth:`Committer.submit`) and goes on evaluating the next batch
while the store writes and fsyncs; whatever was handed over meanwhile is written together in
the next transaction, with one fsync.  Groups grow with the backlog by themselves, and the
fsync (milliseconds) no longer stops the evaluation of readings.  The order of changes is the
order of submission, and nothing is handed to a courier before it is on disk.

**Fire first.**  A fire alarm's first change (:func:`~parkwatch.alarms.dispatch.fire_raise`)
is not queued behind the changes submitted before it: the next group commits it first, in a
transaction of its own, and hands it to the dispatcher before the rest of that group is
written.  Nothing of its own alarm can come before it, and it overtakes nothing of its own
sensor (a button's earlier alarm, reset just before the press): one sensor's changes keep
their order, and so do all the others.

**After the commit.**  What must wait for a batch's changes to be on disk (acknowledging its
MQTT messages to the broker, so a crash before the commit has the broker send them again) is
handed over with them, and runs right after their transaction, in submission order
(:meth:`Committer.after`).  Work that needs every change so far on disk (an operator's
command answered, a reload) waits with :meth:`Committer.flush`; the rule-state writer waits,
on its own thread, until the changes made before its copy are on disk
(:meth:`Committer.durable`), so the pipeline never stops for it.

If the store cannot commit (its disk is full), the changes are held in memory, handed to the
couriers to deliver from there at once, and committed with the next commit that succeeds (or
:meth:`Committer.retry`): a full disk must not silence an alarm.

Without a thread (``threaded=False``: tools, tests) each submission commits at once, on the
caller's thread.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable

from parkwatch.alarms.dispatch import Dispatcher, fire_raise
from parkwatch.alarms.fold import Folder
from parkwatch.alarms.records import Mark, Record
from parkwatch.alarms.store import AlarmStore

log = logging.getLogger("parkwatch.alarms")

#: one submission: changes (maybe none) and what runs once they are on disk
_Item = tuple[list[Record], Callable[[], None] | None]


class Committer:
    def __init__(self, store: AlarmStore, dispatcher: Dispatcher, threaded: bool = True) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.threaded = threaded
        self.committed = 0  # changes on disk
        self.groups = 0  # transactions that wrote them
        self.store_errors = 0
        self._unsaved: list[Record] = []  # changes a failed commit holds until the next one
        self._queue: list[_Item] = []
        #: fire alarms' first changes, committed ahead of the queue
        self._urgent: list[Record] = []
        #: the couriers' delivery marks, written with the next group (this thread is the
        #: store's only writer: a courier's own transactions collided with the commits, and
        #: SQLite's busy handler then slept for up to 100 ms at a time)
        self._marks: list[Mark] = []
        #: store maintenance (purge, forget) to run on this thread between groups
        self._chores: list[Callable[[], None]] = []
        #: submissions so far, and how many of them are on disk (a failing store holds back)
        self.submitted = 0
        self._durable = 0
        self._busy = False
        self._stopping = False
        self._marks_failing = False
        #: self-metrics: called with ("queued", s) for the oldest batch of a transaction and
        #: ("written", s) for its write and fsync
        self.on_commit: Callable[[str, float], None] | None = None
        #: folds the store's log on a thread of its own once this thread runs (None: here)
        self.folder: Folder | None = None
        self._since: float | None = None  # when the oldest waiting submission came
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="parkwatch-committer",
                                        daemon=True)

    # --- the pipeline's side -------------------------------------------------------------

    def submit(self, records: list[Record], after: Callable[[], None] | None = None) -> None:
        """Commit `records` (in order after everything submitted before), then run `after`."""
        if not self.threaded:
            self.submitted += 1
            self._commit_group([(records, after)], self.submitted)
            return
        with self._cond:
            urgent = _overtaking(records, self._queue)
            if urgent:
                chosen = {id(r) for r in urgent}
                records = [r for r in records if id(r) not in chosen]
            self.submitted += 1
            if self._since is None:
                self._since = time.monotonic()
            self._urgent += urgent
            if records or after is not None or not urgent:
                self._queue.append((records, after))
            self._cond.notify_all()

    def after(self, fn: Callable[[], None]) -> None:
        """Run `fn` once every change submitted so far is on disk: at once if none waits."""
        if not self.threaded:
            fn()
            return
        with self._cond:
            if self._queue or self._urgent or self._busy:
                self.submitted += 1
                self._queue.append(([], fn))
                self._cond.notify_all()
                return
        fn()

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every change submitted so far is committed (or held, if the store
        refuses); False when that took longer than `timeout`."""
        if not self.threaded:
            return True
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._urgent or self._chores or self._busy:
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    return False
                self._cond.wait(left)
        return True

    def mark(self, marks: list[Mark]) -> None:
        """A courier's rows done: written with the next group (at once if none waits)."""
        if not self.threaded:
            self._write_marks(marks)
            return
        with self._cond:
            self._marks += marks
            self._cond.notify_all()

    def chore(self, fn: Callable[[], None]) -> None:
        """Run store maintenance on the writer thread, between two groups."""
        if not self.threaded:
            fn()
            return
        with self._cond:
            self._chores.append(fn)
            self._cond.notify_all()

    def durable(self, mark: int, timeout: float) -> bool:
        """Wait until the first `mark` submissions are on disk (see :attr:`submitted`); False
        when they are not within `timeout` (a slow or failing store)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._durable < mark:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def retry(self) -> None:
        """Try again to commit the changes a failing store holds (the status tick)."""
        if self._unsaved:
            self.submit([])

    @property
    def unsaved(self) -> int:
        """Alarm changes a failing store commit still holds (not yet on disk)."""
        return len(self._unsaved)

    @property
    def waiting(self) -> int:
        """Submissions not yet committed."""
        return len(self._queue) + bool(self._urgent)

    @property
    def busy(self) -> bool:
        """Changes wait to be committed, or a group is being written."""
        return bool(self._queue or self._urgent or self._busy)

    # --- the thread ----------------------------------------------------------------------

    def start(self) -> None:
        if self.threaded:
            self.folder = Folder(self.store)
            self.folder.start()
            self._thread.start()

    @property
    def alive(self) -> bool:
        """The commit thread runs, and the folder beside it (a log never folded grows)."""
        return not self.threaded or (self._thread.is_alive() and (
            self.folder is None or self.folder.alive))

    def close(self) -> None:
        """After :meth:`stop` and once the couriers have stopped: write the marks they handed
        over last, on this thread (the store has no other writer any more)."""
        if self.threaded and self._thread.is_alive():
            return  # still committing (stop timed out): never two writers on one connection
        with self._cond:
            marks, self._marks = self._marks, []
        if marks:
            self._write_marks(marks)

    def stop(self, timeout: float = 1.0) -> None:
        """Commit what was submitted, then end the thread and the folder (marks handed over
        later wait for :meth:`close`)."""
        if self.threaded and self._thread.is_alive():
            with self._cond:
                self._stopping = True
                self._cond.notify_all()
            self._thread.join(timeout)
        if self.folder is not None:
            self.folder.stop()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not (self._queue or self._urgent or self._marks or self._chores
                           or self._stopping):
                    self._cond.wait()
                if not (self._queue or self._urgent or self._marks or self._chores):
                    return
                group, self._queue = self._queue, []
                urgent, self._urgent = self._urgent, []
                since, self._since = self._since, None
                marks, self._marks = self._marks, []
                chores, self._chores = self._chores, []
                upto = self.submitted
                self._busy = True
            try:
                if since is not None and self.on_commit is not None:
                    self.on_commit("queued", time.monotonic() - since)
                for chore in chores:
                    chore()
                if urgent:  # fire first: a transaction of its own, ahead of the group
                    self._commit_group([(urgent, None)], None if group else upto)
                if group:
                    self._commit_group(group, upto, marks)
                elif marks:
                    self._write_marks(marks)
            except Exception:  # the alarm path must outlive any one bad group
                log.exception("alarm committer: a group of %d submission(s) failed", len(group))
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    # --- one group -----------------------------------------------------------------------

    def _write_marks(self, marks: list[Mark]) -> None:
        try:
            self.store.commit([], marks)
        except sqlite3.Error as exc:
            self._requeue(marks, exc)
            return
        self._marks_written()

    def _marks_written(self) -> None:
        if self._marks_failing:
            log.info("alarm store %s: deliveries are recorded again", self.store.path)
            self._marks_failing = False

    def _requeue(self, marks: list[Mark], exc: sqlite3.Error) -> None:
        """Marks the disk refused wait for the next write (a mark lost in a crash means one
        delivery sent again)."""
        with self._cond:
            if not self._marks_failing:
                log.error("alarm store %s: cannot record deliveries (%s); kept in memory and "
                          "written once the store takes them", self.store.path, exc)
                self._marks_failing = True
            self._marks[:0] = marks

    def _commit_group(self, group: list[_Item], upto: int | None,
                      marks: list[Mark] | None = None) -> None:
        """`group`'s changes and `marks` in one transaction; then the first `upto`
        submissions are on disk (None: not known yet)."""
        if self._save([r for records, _ in group for r in records], marks or []) and (
                upto is not None):
            self._durable = upto
        for _, after in group:
            if after is not None:
                after()

    def _save(self, records: list[Record], marks: list[Mark]) -> bool:
        """Commit, or hold the changes in memory, deliver them from there, and try again with
        the next commit (or the status tick): a disk that fails for a while loses nothing and
        delays no alarm; only a crash before the disk recovers would forget the held ones.
        True when everything so far is on disk."""
        if not records and not self._unsaved:
            if marks:
                self._write_marks(marks)
            return True
        self._unsaved += records
        ticket = self.dispatcher.prepare()
        started = time.monotonic()
        try:
            self.store.commit(self._unsaved, marks)
        except sqlite3.Error as exc:
            self.store_errors += 1
            if marks:
                self._requeue(marks, exc)
            if len(self._unsaved) == len(records):  # the first failure of an outage
                log.error("alarm store %s: cannot commit (%s); %d change(s) held in memory and "
                          "delivered from there, committed once the store takes them (retried "
                          "with the next change and every status interval)",
                          self.store.path, exc, len(self._unsaved))
            self.dispatcher.hold(records)
            return False
        if len(self._unsaved) > len(records):
            log.warning("alarm store %s: commits again; %d held change(s) saved and sent",
                        self.store.path, len(self._unsaved) - len(records))
        if self.on_commit is not None:
            self.on_commit("written", time.monotonic() - started)
        if marks:
            self._marks_written()
        self.committed += len(self._unsaved)
        self.groups += 1
        saved, self._unsaved = self._unsaved, []
        self.dispatcher.dispatch(saved, ticket, self._sensor_waits)
        if self.folder is not None:  # now that they are on their way
            self.folder.committed()
        else:
            self.store.fold()
        return True

    def _sensor_waits(self, target: str, record: Record) -> bool:
        """Whether a row of `record`'s sensor, other than its own, waits for `target`."""
        return self.store.sensor_waits(target, record.source, record.alarm_id, record.seq)


def _overtaking(records: list[Record], queued: list[_Item]) -> list[Record]:
    """The fire raises among `records` that may be committed ahead of the queue: no change
    of their sensor is queued, or submitted with them, before them."""
    if not any(r.seq == 1 and fire_raise(r) for r in records):
        return []
    ahead = {r.source for items, _ in queued for r in items}
    out = []
    for r in records:
        if r.source not in ahead and r.seq == 1 and fire_raise(r):
            out.append(r)
        ahead.add(r.source)
    return out
