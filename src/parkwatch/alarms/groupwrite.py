"""How a group of alarm changes is written: one statement, unless the group is very large.

Python's sqlite3 lets go of the GIL for each statement it runs and takes it back after.  With
the pipeline busy, each take can wait a whole switch interval, and in an alarm storm the commit
stage spent most of its time waiting for the GIL, not writing.  So a group is **one
statement**: its changes as the rows of a multi-row insert into a temporary table, each with its
deliveries and suppressions as a small JSON array, and a trigger on that table writes each row
into the tables (the couriers' delivery marks ride on the first row); the whole transaction,
its fsync included, then runs in one step with the GIL released.  A group of more changes than
:data:`ONE_STATEMENT_MAX` (a statement's parameters are bounded) is written with **a few
multi-row statements per table** inside one transaction instead (:func:`_insert`).  Both write
the same rows.

An earlier form of the one statement carried the whole group as one JSON document; SQLite
3.40 parses a JSON text again for each field taken from it, and every row of the document held
the event and the alarm's state, so a storm's groups cost SQLite several times the CPU of
plain parameters.  Here only the few short deliveries are JSON.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterable
from typing import Any

import orjson

from parkwatch.alarms.records import Mark, Record

#: the columns of one change in the one statement
_WIDTH = 18
#: the most changes a group written as one statement holds (1,024 rows of 18 parameters stay
#: below SQLite's default of 32,766 parameters a statement)
ONE_STATEMENT_MAX = 1024

#: The temporary table and its trigger (``->>``: SQLite 3.38).  A row without an alarm id
#: writes no change: it carries the marks of a group without changes, or pads the statement.
#: The WHERE before ``ON CONFLICT`` is what SQLite's documentation asks of an upsert's SELECT.
GROUP_SQL = """
CREATE TEMP TABLE IF NOT EXISTS commit_rows (
    alarm_id, source, rule, seq, active, acknowledged, closed, next_due, at, state, payload,
    event, deliveries, suppressions, delivered, delivered_at, expired, expired_at);
CREATE TEMP TRIGGER IF NOT EXISTS commit_rows_apply AFTER INSERT ON commit_rows BEGIN
    INSERT INTO alarms (alarm_id, source, rule, seq, active, acknowledged, closed, next_due,
                        changed_at, state, event)
        SELECT NEW.alarm_id, NEW.source, NEW.rule, NEW.seq, NEW.active, NEW.acknowledged,
               NEW.closed, NEW.next_due, NEW.at, NEW.state, NEW.payload
        WHERE NEW.alarm_id IS NOT NULL
        ON CONFLICT (alarm_id) DO UPDATE SET seq=excluded.seq, active=excluded.active,
            acknowledged=excluded.acknowledged, closed=excluded.closed,
            next_due=excluded.next_due, changed_at=excluded.changed_at, state=excluded.state,
            event=excluded.event;
    INSERT INTO changes (alarm_id, seq, event, at, payload)
        SELECT NEW.alarm_id, NEW.seq, NEW.event, NEW.at, NEW.payload
        WHERE NEW.alarm_id IS NOT NULL;
    INSERT OR IGNORE INTO outbox (alarm_id, seq, subscriber, target, reason, created_at,
                                  next_at, expires_at)
        SELECT NEW.alarm_id, NEW.seq, d.value->>0, d.value->>1, d.value->>2, NEW.at, NEW.at,
               d.value->>3
        FROM json_each(NEW.deliveries) AS d;
    INSERT INTO suppressions (alarm_id, seq, subscriber, cause, ref, reason, at)
        SELECT NEW.alarm_id, NEW.seq, s.value->>0, s.value->>1, s.value->>2, s.value->>3,
               NEW.at
        FROM json_each(NEW.suppressions) AS s;
    UPDATE outbox SET state='delivered', done_at=NEW.delivered_at, attempts=attempts+1
        WHERE NEW.delivered IS NOT NULL AND id IN (SELECT value FROM json_each(NEW.delivered));
    UPDATE outbox SET state='expired', done_at=NEW.expired_at
        WHERE NEW.expired IS NOT NULL AND id IN (SELECT value FROM json_each(NEW.expired));
    DELETE FROM commit_rows WHERE rowid = NEW.rowid;
END;
"""


#: the most rows one statement inserts (256 × 11 columns stays far below SQLite's 32,766
#: parameters per statement)
_CHUNK = 256

_ALARMS = ("INSERT INTO alarms", 11, "ON CONFLICT (alarm_id) DO UPDATE SET seq=excluded.seq, "
           "active=excluded.active, acknowledged=excluded.acknowledged, "
           "closed=excluded.closed, next_due=excluded.next_due, "
           "changed_at=excluded.changed_at, state=excluded.state, event=excluded.event")


def write_group(db: sqlite3.Connection, records: list[Record], marks: list[Mark]) -> None:
    """Changes with their deliveries and suppressions, and the couriers' delivery marks, in
    one durable transaction (each row of a mark's state takes the latest time of that state's
    marks: they are at most a read-ahead apart)."""
    if len(records) <= ONE_STATEMENT_MAX:
        _one_statement(db, records, marks)
        return
    alarms, changes, outbox, suppressions = _rows(records)
    db.execute("BEGIN IMMEDIATE")
    try:
        _insert(db, _ALARMS[0], _ALARMS[1], alarms, _ALARMS[2])
        _insert(db, "INSERT INTO changes", 5, changes)
        _insert(db, "INSERT OR IGNORE INTO outbox (alarm_id, seq, subscriber, target, reason, "
                "created_at, next_at, expires_at)", 8, outbox)
        _insert(db, "INSERT INTO suppressions (alarm_id, seq, subscriber, cause, ref, reason, "
                "at)", 7, suppressions)
        mark(db, marks)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


_json_state = json.JSONEncoder(ensure_ascii=False).encode


def _dumps(state: dict[str, Any]) -> str:
    """An alarm's state as JSON text (orjson, much cheaper than the standard encoder, which
    every change paid for; a NaN reading or limit is written as null, which the restore reads
    back as NaN); what orjson refuses, the standard encoder writes."""
    try:
        return orjson.dumps(state, option=orjson.OPT_SERIALIZE_NUMPY).decode("utf-8")
    except TypeError:  # orjson.JSONEncodeError
        return _json_state(state)


def _rows(records: list[Record]) -> tuple[list[Any], ...]:
    """(alarms, changes, outbox, suppressions) rows, as SQL parameters."""
    alarms: list[Any] = []
    changes: list[Any] = []
    outbox: list[Any] = []
    suppressions: list[Any] = []
    dumps = _dumps
    for r in records:
        text = r.payload.decode("utf-8")
        alarms.append((r.alarm_id, r.source, r.rule, r.seq, r.active, r.acknowledged, r.closed,
                       r.next_due, r.at, dumps(r.state), text))
        changes.append((r.alarm_id, r.seq, r.event, r.at, text))
        outbox += [(r.alarm_id, r.seq, d.subscriber, d.target, d.reason, r.at, r.at,
                    d.expires_at) for d in r.deliveries]
        suppressions += [(r.alarm_id, r.seq, s.subscriber, s.cause, s.ref, s.reason, r.at)
                         for s in r.suppressions]
    return alarms, changes, outbox, suppressions


def _one_statement(db: sqlite3.Connection, records: list[Record], marks: list[Mark]) -> None:
    """The group as the rows of one insert into ``commit_rows`` (its trigger writes them)."""
    done: dict[str, tuple[list[int], float]] = {}
    for m in marks:
        ids, at = done.get(m[1], ([], m[2]))
        ids.append(m[0])
        done[m[1]] = ids, max(at, m[2])
    dl, dt = done.get("delivered", (None, None))
    ex, et = done.get("expired", (None, None))
    first = (None if dl is None else json.dumps(dl), dt, None if ex is None else json.dumps(ex),
             et)
    params: list[Any] = []
    dumps = _dumps
    for k, r in enumerate(records):
        params += (r.alarm_id, r.source, r.rule, r.seq, r.active, r.acknowledged, r.closed,
                   r.next_due, r.at, dumps(r.state), r.payload.decode("utf-8"), r.event,
                   _list([(d.subscriber, d.target, d.reason, _real(d.expires_at))
                          for d in r.deliveries]),
                   _list([(s.subscriber, s.cause, s.ref, s.reason) for s in r.suppressions]))
        params += first if k == 0 else (None, None, None, None)
    if not records:  # the marks alone
        params += (None,) * (_WIDTH - 4) + first
    rows = _rows_of(max(1, len(records)))
    params += (None,) * (_WIDTH * (rows - max(1, len(records))))  # rows that write nothing
    db.execute(_statement(rows), params)


def _list(items: list[tuple[Any, ...]]) -> str | None:
    return orjson.dumps(items).decode("utf-8") if items else None


def _rows_of(n: int) -> int:
    """The rows of the statement for `n` changes: `n` up to 16, else the next power of two
    (the rest rows of nulls, which write nothing), so that a storm's groups of every size
    share a few compiled statements instead of compiling one for each size."""
    return n if n <= 16 else 1 << (n - 1).bit_length()


_statements: dict[int, str] = {}


def _statement(rows: int) -> str:
    """``INSERT INTO commit_rows VALUES (...), ...`` with `rows` rows."""
    text = _statements.get(rows)
    if text is None:
        one = f"({','.join('?' * _WIDTH)})"
        text = _statements[rows] = f"INSERT INTO commit_rows VALUES {','.join([one] * rows)}"
    return text


def _real(x: float | None) -> float | None:
    """A time for the JSON document, which has no infinity: "never" as a time beyond any
    clock (1e300 s), and NaN as NULL (as SQLite stores a NaN bound as a parameter)."""
    if x is None or -1e300 < x < 1e300:
        return x
    return None if x != x else math.copysign(1e300, x)


def _insert(db: sqlite3.Connection, head: str, width: int, rows: list[Any],
            tail: str = "") -> None:
    """``head VALUES (...), (...) tail`` with all of `rows`, in as few statements as chunks
    of a power of two rows take (a handful of distinct statements, which sqlite3 caches)."""
    start = 0
    while start < len(rows):
        n = min(_CHUNK, 1 << ((len(rows) - start).bit_length() - 1))
        values = ",".join([f"({','.join('?' * width)})"] * n)
        db.execute(f"{head} VALUES {values} {tail}",
                   [v for row in rows[start:start + n] for v in row])
        start += n


def mark(db: sqlite3.Connection, marks: Iterable[Mark]) -> None:
    """Set rows delivered or expired: one statement per state, whatever the number of rows,
    its ids as one JSON array (each row takes the latest time of its state's marks)."""
    by_state: dict[str, list[Mark]] = {}
    for m in marks:
        by_state.setdefault(m[1], []).append(m)
    for state, rows in by_state.items():
        db.execute("UPDATE outbox SET state=?1, done_at=?2, attempts=attempts+?3 "
                   "WHERE id IN (SELECT value FROM json_each(?4))",
                   (state, max(m[2] for m in rows), int(state == "delivered"),
                    json.dumps([m[0] for m in rows])))
