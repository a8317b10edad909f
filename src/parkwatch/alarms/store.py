"""The alarm store: every alarm, every change, every delivery, in SQLite (WAL) on the gateway.

One transaction per batch of changes writes the alarms' new state, the changes (the contract
events exactly as they will be sent), one outbox row per (change, subscriber) with the routing
decision, and the suppressions.  Only after that commit does any delivery start, so a crash at
any point loses nothing: on restart the outbox still holds what was not yet delivered.

The pipeline thread is the only writer of alarms and changes (``synchronous=FULL``: a commit
is on disk before delivery starts).  Delivery workers mark their rows on their own connections
(``synchronous=NORMAL``: a mark lost in a power cut means one duplicate delivery, which
receivers drop by (alarm_id, seq)).  HTTP API threads read on theirs.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from parkwatch.alarms.groupwrite import GROUP_SQL, mark, write_group
from parkwatch.alarms.records import Mark, Record
from parkwatch.statedir import private_file

SCHEMA_VERSION = 2

log = logging.getLogger("parkwatch.alarms")

#: commits between two folds of the write-ahead log into the database file (an alarm change is
#: about 15 pages of log); with the fold thread running, SQLite's own checkpoint is off
#: (alarms.fold), so these folds are the only ones
FOLD_EVERY = 16
#: the write-ahead log is cut back to this size whenever it starts over (``PRAGMA
#: journal_size_limit``; without it the file keeps the largest size it ever reached)
WAL_LIMIT = 1 << 20
#: bytes of log a page takes (the store keeps SQLite's 4,096-byte pages; a frame header is 24)
WAL_FRAME = 4096 + 24

#: one row per (change, subscriber, target): a subscriber naming a contact is told on each of
#: the contact's channels (schema 1 had one row per (change, subscriber))
_OUTBOX = """
CREATE TABLE IF NOT EXISTS {table} (
    id INTEGER PRIMARY KEY,          -- delivery order per target
    alarm_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    subscriber TEXT NOT NULL,
    target TEXT NOT NULL,
    reason TEXT NOT NULL,            -- the routing decision
    state TEXT NOT NULL DEFAULT 'pending',   -- pending, delivered, expired
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    next_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    done_at REAL,
    last_error TEXT,
    UNIQUE (alarm_id, seq, subscriber, target)
);
"""
_OUTBOX_INDEXES = """
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (target, state, id);
-- the rows not yet delivered, for the outbox figures of the status and /metrics: without it
-- they read every delivered row of every open alarm (35 ms with 200,000)
CREATE INDEX IF NOT EXISTS outbox_undelivered ON outbox (target, state, created_at)
    WHERE state != 'delivered';
"""
#: schema 1 -> 2: the outbox rebuilt with its new key (SQLite cannot change a UNIQUE), its
#: rows, ids and states kept
_OUTBOX_V2 = (_OUTBOX.format(table="outbox_v2")
              + "INSERT INTO outbox_v2 SELECT * FROM outbox;\n"
              + "DROP TABLE outbox;\nALTER TABLE outbox_v2 RENAME TO outbox;\n"
              + _OUTBOX_INDEXES)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS alarms (
    alarm_id TEXT PRIMARY KEY,
    source TEXT NOT NULL,            -- sensor id, or floor/zone id such as A/2F/east
    rule TEXT NOT NULL,
    seq INTEGER NOT NULL,
    active INTEGER NOT NULL,
    acknowledged INTEGER NOT NULL,
    closed INTEGER NOT NULL,
    next_due REAL,                   -- next escalation step or reminder, NULL when none
    changed_at REAL NOT NULL,
    state TEXT NOT NULL,             -- the Alarm record as JSON
    event TEXT NOT NULL              -- the latest contract event as JSON
);
CREATE INDEX IF NOT EXISTS alarms_open ON alarms (closed, changed_at);
CREATE TABLE IF NOT EXISTS changes (
    alarm_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event TEXT NOT NULL,
    at REAL NOT NULL,
    payload TEXT NOT NULL,           -- the contract event, byte for byte what is delivered
    PRIMARY KEY (alarm_id, seq)
);
{outbox}CREATE TABLE IF NOT EXISTS suppressions (
    id INTEGER PRIMARY KEY,
    alarm_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    subscriber TEXT NOT NULL,
    cause TEXT NOT NULL,             -- silence or drill
    ref TEXT NOT NULL,               -- the silence's or drill's id
    reason TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS suppressions_alarm ON suppressions (alarm_id, seq);
""".replace("{outbox}", _OUTBOX.format(table="outbox") + _OUTBOX_INDEXES)


@dataclass(frozen=True, slots=True)
class Pending:
    """An outbox row due for delivery."""

    id: int
    alarm_id: str
    seq: int
    subscriber: str
    reason: str
    attempts: int
    expires_at: float
    created_at: float
    next_at: float
    payload: bytes
    #: the change's event name ("raised", ..., "closed"): a sender need not parse the payload
    event: str = ""


def connect(path: Path, synchronous: str = "FULL") -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute("PRAGMA busy_timeout=30000")
    db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT}")
    return db


def waiting(db: sqlite3.Connection, target: str, text: str, where: str,
            params: tuple[Any, ...]) -> bool:
    """Whether a row for `target` that also meets `where` waits whose event contains `text`
    (a sensor's id as JSON: a change of that sensor)."""
    return db.execute(
        "SELECT 1 FROM outbox o JOIN changes c ON c.alarm_id=o.alarm_id AND c.seq=o.seq "
        f"WHERE o.target=? AND o.state='pending' AND instr(c.payload, ?) > 0 AND {where} "
        "LIMIT 1", (target, text, *params)).fetchone() is not None


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


class AlarmStore:
    """The pipeline thread's handle on the store (the writer of alarms and changes)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # 0600 before SQLite opens it: its -wal and -shm files take the store's own mode
        self.db = connect(private_file(path), "FULL")
        self.db.executescript(_SCHEMA)  # idempotent; executescript manages its own commit
        with transaction(self.db) as db:
            row = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) == 1:  # one row per (change, subscriber, target) from now on
                for statement in _OUTBOX_V2.split(";\n"):
                    if statement.strip():
                        db.execute(statement)
                db.execute("UPDATE meta SET value=? WHERE key='schema'", (str(SCHEMA_VERSION),))
            elif int(row[0]) != SCHEMA_VERSION:
                raise ValueError(f"{path}: alarm store schema {row[0]}, this parkwatch reads "
                                 f"{SCHEMA_VERSION}")
        self.db.executescript(GROUP_SQL)  # this connection's own (TEMP): made at each open
        self.unfolded = 0  # commits since the log was last folded
        self.folds = 0
        self.restarts = 0  # the log started over by a fold (Folder), not by SQLite alone
        self._fold_failing = False

    def commit(self, records: Iterable[Record], marks: Iterable[Mark] = ()) -> None:
        """Write changes with their deliveries, and the couriers' delivery marks, in one
        durable transaction (:func:`parkwatch.alarms.groupwrite.write_group`)."""
        self.unfolded += 1
        write_group(self.db, list(records), list(marks))

    def sensor_waits(self, target: str, source: str, alarm_id: str, seq: int) -> bool:
        """Whether a change of `source` (a sensor's id, as its events name it) other than
        (`alarm_id`, `seq`) waits for delivery to `target` (one delivered whose mark is not
        written yet counts too)."""
        return waiting(self.db, target, json.dumps(source, ensure_ascii=False),
                       "NOT (o.alarm_id=? AND o.seq=?)", (alarm_id, seq))

    def fold(self) -> None:
        """Every :data:`FOLD_EVERY` commits, copy the write-ahead log into the database file (a
        passive checkpoint; the log then starts over).  The alarm service calls it once a
        commit's changes are on their way: SQLite's automatic checkpoint runs inside the commit
        that fills the log, and its fsyncs of the database file delayed that change's delivery
        by a millisecond or more.  A fold that fails (a full disk) loses nothing: the changes
        stay in the log, and the next fold tries again."""
        if self.unfolded < FOLD_EVERY:
            return
        self.unfolded = 0
        self.checkpoint(self.db)

    def checkpoint(self, db: sqlite3.Connection) -> tuple[int, int] | None:
        """Copy the write-ahead log into the database file now, on `db` (this store's own
        connection, or a folder's: :class:`parkwatch.alarms.fold.Folder`); the pages in the
        log and how many of them are in the database file now (None when it failed)."""
        try:  # all rows fetched: no read left open
            _, in_log, copied = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()[0]
        except sqlite3.Error as exc:
            if not self._fold_failing:
                log.warning("alarm store %s: cannot fold the write-ahead log into the database "
                            "(%s); it grows until this works again, nothing is lost", self.path,
                            exc)
                self._fold_failing = True
            return None
        self.folds += 1
        if self._fold_failing:
            log.info("alarm store %s: the write-ahead log folds into the database again",
                     self.path)
            self._fold_failing = False
        return int(in_log), int(copied)

    def restart_log(self, db: sqlite3.Connection, wait_ms: int) -> bool:
        """Have the write-ahead log start over (a restart checkpoint on `db`, a connection
        that does nothing else): it waits up to `wait_ms` for the writer and then for every
        reader of the log to finish, holding new commits back meanwhile; whether it did (the
        next commit then writes from the log's start, and cuts the file to
        :data:`WAL_LIMIT`)."""
        try:
            db.execute(f"PRAGMA busy_timeout={int(wait_ms)}")
            busy = db.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()[0][0]
        except sqlite3.Error:  # a full disk: the next fold tries again
            return False
        finally:
            with suppress(sqlite3.Error):
                db.execute("PRAGMA busy_timeout=0")
        if busy:
            return False
        self.restarts += 1
        return True

    def open_alarms(self) -> list[tuple[str, dict[str, Any]]]:
        """(source, state) of every alarm that is not closed, oldest first."""
        rows = self.db.execute("SELECT source, state FROM alarms WHERE closed=0 "
                               "ORDER BY changed_at").fetchall()
        return [(source, json.loads(state)) for source, state in rows]

    def cleared_since(self, at: float) -> set[str]:
        """Sources (sensor or floor ids) with an alarm cleared after `at` (by its rule or an
        operator's reset) and no alarm active now."""
        rows = self.db.execute(
            "SELECT DISTINCT a.source FROM changes c JOIN alarms a ON a.alarm_id=c.alarm_id "
            "WHERE c.at>? AND c.event='cleared' AND NOT EXISTS (SELECT 1 FROM alarms b "
            "WHERE b.source=a.source AND b.active=1)", (at,)).fetchall()
        return {r[0] for r in rows}

    def forget(self, alarm_ids: Iterable[str], at: float) -> None:
        """Mark alarms closed whose source left the config (they can never change again)."""
        with transaction(self.db) as db:
            db.executemany("UPDATE alarms SET closed=1, next_due=NULL, changed_at=? "
                           "WHERE alarm_id=?", [(at, a) for a in alarm_ids])

    def purge(self, before: float) -> int:
        """Drop closed alarms last changed before `before`, once nothing of them is pending."""
        with transaction(self.db) as db:
            ids = [r[0] for r in db.execute(
                "SELECT alarm_id FROM alarms a WHERE closed=1 AND changed_at<? AND NOT EXISTS "
                "(SELECT 1 FROM outbox o WHERE o.alarm_id=a.alarm_id AND o.state='pending')",
                (before,))]
            for table in ("outbox", "suppressions", "changes", "alarms"):
                db.executemany(f"DELETE FROM {table} WHERE alarm_id=?", [(a,) for a in ids])
        return len(ids)

    def close(self) -> None:
        self.db.close()


class OutboxReader:
    """A delivery worker's handle: the due rows of one target, and marking them."""

    def __init__(self, path: Path, target: str) -> None:
        self.db = connect(path, "NORMAL")
        self.target = target

    _ROWS = ("SELECT o.id, o.alarm_id, o.seq, o.subscriber, o.reason, o.attempts, o.expires_at, "
             "o.created_at, o.next_at, c.payload, c.event FROM outbox o "
             "JOIN changes c ON c.alarm_id=o.alarm_id AND c.seq=o.seq "
             "WHERE o.target=? AND o.state='pending' AND o.id>? ORDER BY o.id LIMIT ?")

    def after(self, cursor: int, limit: int) -> list[Pending]:
        """The oldest pending rows of this target with an id above `cursor`, in order (ids
        grow in commit order, so deliveries of a target keep their order)."""
        rows = self.db.execute(self._ROWS, (self.target, cursor, limit)).fetchall()
        return [_pending(r) for r in rows]

    def pending(self, alarm_id: str, seq: int, subscriber: str) -> Pending | None:
        """One change's row for this target, if it still waits for delivery."""
        row = self.db.execute(
            self._ROWS.replace("o.id>? ORDER BY o.id LIMIT ?",
                               "o.alarm_id=? AND o.seq=? AND o.subscriber=?"),
            (self.target, alarm_id, seq, subscriber)).fetchone()
        return None if row is None else _pending(row)

    def mentioned(self, cursor: int, before: int, text: str) -> bool:
        """Whether a row of this target after `cursor` and before `before` waits whose
        event contains `text` (a sensor's id as JSON: a row of that sensor)."""
        return waiting(self.db, self.target, text, "o.id>? AND o.id<?", (cursor, before))

    def head(self) -> Pending | None:
        """The oldest pending row of this target."""
        rows = self.after(0, 1)
        return rows[0] if rows else None

    def mark(self, marks: Iterable[Mark]) -> None:
        """Rows done, in one transaction of this connection (a courier without a committer
        to write them: tools and tests)."""
        with transaction(self.db) as db:
            mark(db, marks)

    def failed(self, row_id: int, at: float, retry_at: float, error: str) -> None:
        self.db.execute("UPDATE outbox SET attempts=attempts+1, next_at=?, last_error=? "
                        "WHERE id=?", (retry_at, error[:500], row_id))

    def close(self) -> None:
        self.db.close()


def _pending(r: Any) -> Pending:
    """A row of :attr:`OutboxReader._ROWS` as a :class:`Pending`."""
    return Pending(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8],
                   payload=r[9].encode("utf-8"), event=r[10])
