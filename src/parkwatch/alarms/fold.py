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
"""

from __future__ import annotations

import logging
import threading

from parkwatch.alarms.store import FOLD_EVERY, AlarmStore, connect

log = logging.getLogger("parkwatch.alarms")


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
        try:
            while True:
                self._due.wait()
                self._due.clear()
                if self._stop:
                    return
                try:
                    self.store.checkpoint(db)
                except Exception:  # the log must keep folding: never lose this thread
                    log.exception("alarm store %s: fold failed", self.store.path)
        finally:
            db.close()
