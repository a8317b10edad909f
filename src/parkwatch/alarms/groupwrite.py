"""How a group of alarm changes is written: one statement when the group is small, a few
multi-row statements per table when it is large.

Python's sqlite3 lets go of the GIL for each statement it runs and takes it back after.  With
the pipeline busy, each take can wait a whole switch interval, and in an alarm storm the commit
stage spent most of its time waiting for the GIL, not writing.  So a small group (a storm's
groups: a handful of changes each) is **one statement**: the group as one JSON document,
inserted into a temporary table whose trigger writes it into the tables; the whole
transaction, its fsync included, then runs in one step with the GIL released.  Reading the
document back costs SQLite about twice the CPU of plain parameters, which for a large group (a
burst of thousands of changes at once) outweighs a handful of GIL takes: a group of more than
:data:`ONE_STATEMENT_MAX` changes is written with **a few multi-row statements per table**
instead (:func:`_insert`).  Both write the same rows.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from parkwatch.alarms.store import Mark, Record

#: the most changes a group written as one statement holds
ONE_STATEMENT_MAX = 64

#: The temporary table and its trigger (``->>``: SQLite 3.38; a JSON ``true`` reads as 1).
GROUP_SQL = """
CREATE TEMP TABLE IF NOT EXISTS commit_group (doc TEXT NOT NULL);
CREATE TEMP TRIGGER IF NOT EXISTS commit_group_apply AFTER INSERT ON commit_group BEGIN
    INSERT INTO alarms (alarm_id, source, rule, seq, active, acknowledged, closed,
                             next_due, changed_at, state, event)
        SELECT r.value->>0, r.value->>1, r.value->>2, r.value->>3, r.value->>4, r.value->>5,
               r.value->>6, r.value->>7, r.value->>8, r.value->>9, r.value->>10
        FROM json_each(NEW.doc, '$.r') AS r WHERE true
        ON CONFLICT (alarm_id) DO UPDATE SET seq=excluded.seq, active=excluded.active,
            acknowledged=excluded.acknowledged, closed=excluded.closed,
            next_due=excluded.next_due, changed_at=excluded.changed_at, state=excluded.state,
            event=excluded.event;
    INSERT INTO changes (alarm_id, seq, event, at, payload)
        SELECT r.value->>0, r.value->>3, r.value->>11, r.value->>8, r.value->>10
        FROM json_each(NEW.doc, '$.r') AS r;
    INSERT OR IGNORE INTO outbox (alarm_id, seq, subscriber, target, reason, created_at,
                                       next_at, expires_at)
        SELECT o.value->>0, o.value->>1, o.value->>2, o.value->>3, o.value->>4, o.value->>5,
               o.value->>5, o.value->>6
        FROM json_each(NEW.doc, '$.o') AS o;
    INSERT INTO suppressions (alarm_id, seq, subscriber, cause, ref, reason, at)
        SELECT s.value->>0, s.value->>1, s.value->>2, s.value->>3, s.value->>4, s.value->>5,
               s.value->>6
        FROM json_each(NEW.doc, '$.s') AS s;
    UPDATE outbox SET state='delivered', done_at=NEW.doc->>'$.dt', attempts=attempts+1
        WHERE id IN (SELECT value FROM json_each(NEW.doc, '$.d'));
    UPDATE outbox SET state='expired', done_at=NEW.doc->>'$.et'
        WHERE id IN (SELECT value FROM json_each(NEW.doc, '$.e'));
    DELETE FROM commit_group;
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
    alarms, changes, outbox, suppressions = _rows(records, plain=True)
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
    """An alarm's state as JSON text (orjson: a tenth of the standard encoder's time, every
    change pays for it; a NaN reading or limit is written as null, which the restore reads
    back as NaN); what orjson refuses, the standard encoder writes."""
    try:
        return orjson.dumps(state, option=orjson.OPT_SERIALIZE_NUMPY).decode("utf-8")
    except TypeError:  # orjson.JSONEncodeError
        return _json_state(state)


def _rows(records: list[Record], plain: bool) -> tuple[list[Any], ...]:
    """(alarms, changes, outbox, suppressions) rows; `plain`: as SQL parameters, else for
    the JSON document (times made finite, the change's fields folded into its alarm row)."""
    alarms: list[Any] = []
    changes: list[Any] = []
    outbox: list[Any] = []
    suppressions: list[Any] = []
    dumps = _dumps
    real = (lambda x: x) if plain else _real
    for r in records:
        text = r.payload.decode("utf-8")
        row = (r.alarm_id, r.source, r.rule, r.seq, r.active, r.acknowledged, r.closed,
               real(r.next_due), r.at, dumps(r.state), text)
        if plain:
            alarms.append(row)
            changes.append((r.alarm_id, r.seq, r.event, r.at, text))
            outbox += [(r.alarm_id, r.seq, d.subscriber, d.target, d.reason, r.at, r.at,
                        d.expires_at) for d in r.deliveries]
        else:
            alarms.append((*row, r.event))
            outbox += [(r.alarm_id, r.seq, d.subscriber, d.target, d.reason, r.at,
                        _real(d.expires_at)) for d in r.deliveries]
        suppressions += [(r.alarm_id, r.seq, s.subscriber, s.cause, s.ref, s.reason, r.at)
                         for s in r.suppressions]
    return alarms, changes, outbox, suppressions


def _one_statement(db: sqlite3.Connection, records: list[Record], marks: list[Mark]) -> None:
    alarms, _changes, outbox, suppressions = _rows(records, plain=False)
    doc: dict[str, Any] = {"r": alarms, "o": outbox, "s": suppressions}
    for m in marks:
        key, at = ("d", "dt") if m[1] == "delivered" else ("e", "et")
        doc.setdefault(key, []).append(m[0])
        doc[at] = max(doc.get(at, m[2]), m[2])
    db.execute("INSERT INTO commit_group VALUES (?)",
               (json.dumps(doc, ensure_ascii=False, allow_nan=False),))


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
