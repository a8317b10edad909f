"""Read-only views of the alarm store for the HTTP API, /metrics, the status and the CLI.

A read runs on a connection of its own (``synchronous=NORMAL``; it never writes), so a reader
never waits for the commit stage and the commit stage never waits for a reader.  The
connections are a small pool the reading threads share, at most :data:`POOL` of them (a read
takes milliseconds; one more waits its turn).  Each thread used to open its own and keep it
until the thread ended, which the HTTP API's thread per request made a new connection per
request: its schema and cache built and freed every time, and, since SQLite defers closing a
database's file while another connection holds a lock on it, a descriptor left open for every
request that ran alongside another (62 descriptors where 23 were needed, under a burst of
connections: benchmarks/soak.py).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from parkwatch.alarms.store import connect

#: connections a reader keeps at most (its first burst of reads opens them all: the count of
#: open descriptors stays put after it)
POOL = 2
#: how long a read waits for a free connection before it gives up (TimeoutError)
WAIT_S = 30.0


class StoreReader:
    """Read-only views for the HTTP API and the CLI, on a pool of up to :data:`POOL`
    connections shared by the threads that read."""

    def __init__(self, path: Path, size: int = POOL) -> None:
        self.path = path
        self._free = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []
        self._closed = False
        self.opened = 0  # connections opened over this reader's life

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """A connection of the pool for one read, given back after it."""
        if not self._free.acquire(timeout=WAIT_S):
            raise TimeoutError(f"no free connection to {self.path} in {WAIT_S:g} s")
        try:
            with self._lock:
                db = self._idle.pop() if self._idle else None
            if db is None:
                db = connect(self.path, "NORMAL")
                self.opened += 1
            try:
                yield db
            finally:
                with self._lock:
                    keep = not self._closed
                    if keep:
                        self._idle.append(db)
                if not keep:
                    db.close()
        finally:
            self._free.release()

    def alarms(self, include_closed: bool = False, limit: int = 500) -> list[dict[str, Any]]:
        """The latest event of each alarm (open ones, or also closed ones), newest first."""
        where = "" if include_closed else "WHERE closed=0"
        with self._db() as db:
            rows = db.execute(f"SELECT event FROM alarms {where} ORDER BY changed_at DESC "
                              "LIMIT ?", (limit,)).fetchall()
        return [json.loads(r[0]) for r in rows]

    def alarm(self, alarm_id: str) -> dict[str, Any] | None:
        """An alarm's latest event with its history, deliveries and suppressions."""
        with self._db() as db:
            return self._alarm(db, alarm_id)

    def _alarm(self, db: sqlite3.Connection, alarm_id: str) -> dict[str, Any] | None:
        row = db.execute("SELECT event, state, next_due FROM alarms WHERE alarm_id=?",
                         (alarm_id,)).fetchone()
        if row is None:
            return None
        state = json.loads(row[1])
        out: dict[str, Any] = {"alarm": json.loads(row[0])}
        out["details"] = {k: state.get(k) for k in ("ack_note", "reset_by", "reset_note",
                                                     "drill_id", "told", "auto_closed")}
        out["details"]["next_escalation_at"] = row[2]
        out["changes"] = [
            {"seq": s, "event": e, "at": at} for s, e, at in db.execute(
                "SELECT seq, event, at FROM changes WHERE alarm_id=? ORDER BY seq", (alarm_id,))]
        out["deliveries"] = [dict(zip(
            ("seq", "subscriber", "target", "reason", "state", "attempts", "created_at",
             "done_at", "last_error"), r, strict=True)) for r in db.execute(
            "SELECT seq, subscriber, target, reason, state, attempts, created_at, done_at, "
            "last_error FROM outbox WHERE alarm_id=? ORDER BY id", (alarm_id,))]
        out["suppressions"] = _suppressions(db, alarm_id, 500)
        return out

    def drill_alarms(self, drill_id: str, limit: int = 1000) -> list[dict[str, Any]]:
        """Every alarm the store keeps that was raised during the declared drill `drill_id`,
        oldest raise first: each as :meth:`alarm` gives it, with ``raised``, its raised event
        (the press: where, what, the reading's time), for the drill report.  The drill is in
        each alarm's state; a report is rare, so the alarms are scanned rather than indexed."""
        with self._db() as db, _snapshot(db):
            ids = [r[0] for r in db.execute(
                "SELECT alarm_id FROM alarms WHERE state->>'drill_id' = ? "
                "ORDER BY state->>'raised_at', alarm_id LIMIT ?", (drill_id, limit))]
            out = []
            for alarm_id in ids:
                found = self._alarm(db, alarm_id)
                if found is None:  # purged between the two reads
                    continue
                row = db.execute("SELECT payload FROM changes WHERE alarm_id=? AND "
                                 "event='raised' ORDER BY seq LIMIT 1", (alarm_id,)).fetchone()
                found["raised"] = json.loads(row[0]) if row is not None else None
                out.append(found)
        return out

    def suppressions(self, alarm_id: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
        with self._db() as db:
            return _suppressions(db, alarm_id, limit)

    def outbox_stats(self, now: float) -> dict[str, dict[str, float]]:
        """Per target: pending rows and the age of the oldest, expired rows."""
        with self._db() as db:
            rows = db.execute("SELECT target, state, count(*), min(created_at) FROM outbox "
                              "WHERE state!='delivered' GROUP BY target, state").fetchall()
        out: dict[str, dict[str, float]] = {}
        for target, state, n, oldest in rows:
            t = out.setdefault(target, {"pending": 0, "oldest_pending_s": 0.0, "expired": 0})
            t[state] = n
            if state == "pending":
                t["oldest_pending_s"] = max(0.0, now - oldest)
        return out

    def close(self) -> None:
        """Close the idle connections; one in use is closed when its read ends (a read after
        this opens a connection for itself alone)."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for db in idle:
            db.close()


@contextmanager
def _snapshot(db: sqlite3.Connection) -> Iterator[None]:
    """Several reads as of one moment (one read transaction): a report whose alarms, changes
    and deliveries agree with each other."""
    db.execute("BEGIN")
    try:
        yield
    finally:
        db.execute("COMMIT")


def _suppressions(db: sqlite3.Connection, alarm_id: str | None,
                  limit: int) -> list[dict[str, Any]]:
    where, args = ("WHERE alarm_id=?", (alarm_id, limit)) if alarm_id else ("", (limit,))
    rows = db.execute(
        f"SELECT alarm_id, seq, subscriber, cause, ref, reason, at FROM suppressions {where} "
        "ORDER BY id DESC LIMIT ?", args).fetchall()
    return [dict(zip(("alarm_id", "seq", "subscriber", "cause", "ref", "reason", "at"), r,
                     strict=True)) for r in rows]
