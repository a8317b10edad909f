"""The store's write-ahead log, folded into its database file beside the commit stage.

A fold (a passive checkpoint) copies the committed pages from the log into the database file
and fsyncs it.  Run by the committing thread, it held up every commit behind it: with a
database of 100,000 alarms a fold took most of a second in a burst of changes, and a fire
press waited for it (benchmarks/openalarms.py, benchmarks/peers.py).  In write-ahead-log mode
a checkpoint on another connection runs alongside the writer, so the commit stage only says
that a fold is due (every :data:`~parkwatch.alarms.store.FOLD_EVERY` commits) and a thread of
its own, on its own connection, does it.  SQLite's automatic checkpoint (inside the commit
that grows the log past 1,000 pages) is turned off on the writer's connection for the same
reason; a fold that fails (a full disk) loses nothing, and is tried again when the next is
due.

A fold copies the log's pages, but the log starts over only when a commit begins with every
page copied and no one reading the log (readers use it for as long as a page they read is
there); the file then keeps its size.  Under a steady stream of changes the couriers are
nearly always reading one, so the log grew for minutes (4.6 MB at five fire alarms a second).
So when a fold leaves more than :data:`~parkwatch.alarms.store.WAL_LIMIT` (1 MiB) in the log,
the folder asks for a restart at once, which takes only when no one is writing or reading then
(it never waits); past :data:`WAL_CAP` (4 MiB) it waits up to :data:`CAP_WAIT_MS` for them,
holding new commits back meanwhile (readers take milliseconds).  The commit that starts the log
over cuts the file back to 1 MiB (``journal_size_limit``).  So the log stays near 1 MiB and
never much past 4 MiB plus what one fold's commits add while it runs.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time

from parkwatch.alarms.store import FOLD_EVERY, WAL_FRAME, WAL_LIMIT, AlarmStore, connect

log = logging.getLogger("parkwatch.alarms")

#: past this much log a fold waits (up to CAP_WAIT_MS) for its writer and readers to start it
#: over
WAL_CAP = 4 << 20
CAP_WAIT_MS = 250
#: attempts at a restart that waits for no one, a millisecond more apart each time
RESTART_TRIES = 8


class Folder:
    def __init__(self, store: AlarmStore) -> None:
        self.store = store
        self._due = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="parkwatch-fold", daemon=True)

    def start(self) -> None:
        self.store.db.execute("PRAGMA wal_autocheckpoint=0")  # this thread folds instead
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def committed(self) -> None:
        """A commit's changes are on their way (the commit stage): fold when one is due."""
        if self.store.unfolded >= FOLD_EVERY:
            self.store.unfolded = 0
            self._due.set()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop = True
        self._due.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        db = connect(self.store.path)
        db.execute("PRAGMA busy_timeout=0")  # never waits, but for a log past WAL_CAP
        try:
            while True:
                self._due.wait()
                self._due.clear()
                if self._stop:
                    return
                try:
                    self.fold(db)
                except Exception:  # the log must keep folding: never lose this thread
                    log.exception("alarm store %s: fold failed", self.store.path)
        finally:
            db.close()

    def fold(self, db: sqlite3.Connection) -> None:
        """Copy the log into the database file; start it over when it grew past 1 MiB."""
        folded = self.store.checkpoint(db)
        if folded is None:
            return
        in_log, copied = folded
        size = in_log * WAL_FRAME
        if size > WAL_CAP:
            self.store.restart_log(db, CAP_WAIT_MS)
        elif size > WAL_LIMIT and copied == in_log:
            for k in range(RESTART_TRIES):  # the moment after a commit is its readers' busiest
                if self.store.restart_log(db, 0) or self._stop:
                    return
                time.sleep(0.001 * (k + 1))
