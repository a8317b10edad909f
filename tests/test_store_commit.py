"""The alarm store's group commit: everything a group holds (alarms, changes, deliveries,
suppressions, the couriers' marks) written byte for byte in one durable statement, or nothing of
it.  A real SQLite file in tmp_path, read back the way the couriers and the API read it."""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from parkwatch.alarms import groupwrite
from parkwatch.alarms.records import Delivery, Record, Suppression
from parkwatch.alarms.store import AlarmStore, OutboxReader

AT = 1_765_000_000.125


def _record(alarm_id: str, seq: int, message: str, *, closed: bool = False,
            next_due: float | None = None, expires_at: float = AT + 3600,
            subscribers: tuple[str, ...] = ("center",)) -> Record:
    payload = json.dumps({"alarm_id": alarm_id, "seq": seq, "message": message},
                         ensure_ascii=False).encode("utf-8")
    return Record(alarm_id=alarm_id, source="A-1F-WL1", rule="water_level", seq=seq,
                  event="raised" if seq == 1 else "cleared", active=seq == 1,
                  acknowledged=False, closed=closed, next_due=next_due, at=AT + seq,
                  state={"seq": seq, "note": message}, payload=payload,
                  deliveries=[Delivery(s, "uplink", "all", expires_at) for s in subscribers],
                  suppressions=[Suppression("tenant:huaxin", "drill", "D1", "演练")]
                  if seq == 2 else [])


@pytest.fixture(params=["one statement", "per table"])
def store(request: pytest.FixtureRequest, tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[AlarmStore]:
    """Both ways a group is written (small groups, large groups) write the same rows."""
    monkeypatch.setattr(groupwrite, "ONE_STATEMENT_MAX",
                        10**9 if request.param == "one statement" else -1)
    s = AlarmStore(tmp_path / "alarms.db")
    yield s
    s.close()


def test_a_group_is_written_byte_for_byte(store, tmp_path):
    tricky = '水位 "超限" \\ 第\u00a02 层 \n\t 😀'
    a1, a2 = _record("ALM1", 1, tricky, next_due=math.inf), _record("ALM1", 2, "恢复")
    b1 = _record("ALM2", 1, "x", expires_at=math.inf, subscribers=("center", "ops"))
    store.commit([a1, a2, b1])

    rows = OutboxReader(tmp_path / "alarms.db", "uplink").after(0, 10)
    assert [(r.alarm_id, r.seq, r.subscriber) for r in rows] == [
        ("ALM1", 1, "center"), ("ALM1", 2, "center"), ("ALM2", 1, "center"), ("ALM2", 1, "ops")]
    assert [r.payload for r in rows] == [a1.payload, a2.payload, b1.payload, b1.payload]
    assert rows[2].expires_at >= 1e300  # "never" expires
    db = store.db
    # the alarm row holds the group's last change of it
    seq, active, state, event, next_due = db.execute(
        "SELECT seq, active, state, event, next_due FROM alarms WHERE alarm_id='ALM1'").fetchone()
    assert (seq, active, json.loads(state), event.encode()) == (2, 0, a2.state, a2.payload)
    assert next_due is None
    (due,) = db.execute("SELECT next_due FROM alarms WHERE alarm_id='ALM2'").fetchone()
    assert due is None
    assert db.execute("SELECT event, at FROM changes WHERE alarm_id='ALM1' ORDER BY seq"
                      ).fetchall() == [("raised", AT + 1), ("cleared", AT + 2)]
    assert db.execute("SELECT subscriber, cause, ref, reason FROM suppressions").fetchall() == [
        ("tenant:huaxin", "drill", "D1", "演练")]


def test_marks_ride_with_the_next_group(store, tmp_path):
    store.commit([_record("ALM1", 1, "a", subscribers=("center", "ops", "duty"))])
    ids = [r.id for r in OutboxReader(tmp_path / "alarms.db", "uplink").after(0, 10)]
    store.commit([_record("ALM2", 1, "b")],
                 [(ids[0], "delivered", AT + 5), (ids[1], "delivered", AT + 7),
                  (ids[2], "expired", AT + 9)])
    got = store.db.execute("SELECT id, state, attempts, done_at FROM outbox WHERE "
                           "alarm_id='ALM1' ORDER BY id").fetchall()
    assert got == [(ids[0], "delivered", 1, AT + 7), (ids[1], "delivered", 1, AT + 7),
                   (ids[2], "expired", 0, AT + 9)]
    store.commit([], [(ids[0], "delivered", AT + 11)])  # marks alone
    assert store.db.execute("SELECT attempts FROM outbox WHERE id=?", (ids[0],)).fetchone() \
        == (2,)


def test_a_group_that_fails_leaves_nothing_half_written(store, tmp_path):
    store.commit([_record("ALM1", 1, "a")])
    (row_id,) = [r.id for r in OutboxReader(tmp_path / "alarms.db", "uplink").after(0, 10)]
    before = {t: store.db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
              for t in ("alarms", "changes", "outbox", "suppressions")}
    # the same change again (its key exists): the whole group is refused
    with pytest.raises(sqlite3.IntegrityError):
        store.commit([_record("ALM2", 1, "new"), _record("ALM1", 2, "b"),
                      _record("ALM1", 1, "again")], [(row_id, "delivered", AT + 3)])
    after = {t: store.db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in before}
    assert after == before
    assert store.db.execute("SELECT state FROM outbox WHERE id=?", (row_id,)).fetchone() == (
        "pending",)
    store.commit([_record("ALM2", 1, "new")])  # the store takes the next group as ever
    assert store.db.execute("SELECT count(*) FROM alarms").fetchone() == (2,)


def test_a_small_group_is_one_statement_a_large_one_a_few(tmp_path):
    """A group is one step in SQLite, its fsync included: the committing thread lets go of
    the GIL and takes it back once, however many tables it touches.  One too large for one
    statement's parameters is a few multi-row statements per table in one transaction."""
    store = AlarmStore(tmp_path / "alarms.db")
    statements: list[str] = []
    store.db.set_trace_callback(statements.append)
    store.commit([_record(f"ALM{k}", 1, "a") for k in range(40)] + [_record("ALM0", 2, "b")],
                 [(1, "delivered", AT), (2, "expired", AT)])
    store.db.set_trace_callback(None)
    # (sqlite3 reports each step of the trigger too, with the statement's own text)
    (only,) = set(statements)
    assert only.startswith("INSERT INTO commit_rows")
    assert store.db.execute("SELECT count(*) FROM alarms").fetchone() == (40,)
    assert store.db.execute("SELECT count(*) FROM changes").fetchone() == (41,)
    assert store.db.execute("SELECT count(*) FROM commit_rows").fetchone() == (0,)
    big = groupwrite.ONE_STATEMENT_MAX + 1
    statements.clear()
    store.db.set_trace_callback(statements.append)
    store.commit([_record(f"BIG{k}", 1, "a") for k in range(big)])
    store.db.set_trace_callback(None)
    assert statements[0] == "BEGIN IMMEDIATE" and statements[-1] == "COMMIT"
    per_table = big // groupwrite._CHUNK + 1  # multi-row statements of at most _CHUNK rows
    assert 4 <= len(statements) <= 2 + 3 * per_table
    assert not any("commit_rows" in s for s in statements)
    store.close()
