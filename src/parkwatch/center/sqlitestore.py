"""The center's embedded database: one SQLite file (the standard library's sqlite3).

WAL journal, so the console reads while the ingest writes; one write connection (SQLite has
one writer at a time: a second center process on the same file waits up to ``BUSY_S``, then
gets :class:`StoreUnavailable`); ``synchronous=FULL``, so an event the center has stored (and
acknowledged to the broker) survives a power loss, at one fsync per batch.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from parkwatch.center import rows as R
from parkwatch.center.schemaversions import statements
from parkwatch.center.sqlbase import SqlStore, T, Tx
from parkwatch.center.storetypes import StoreError, StoreUnavailable

BUSY_S = 5.0


class SqliteTx:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self.conn.execute(sql, params).rowcount

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        return self.conn.executemany(sql, rows).rowcount

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return list(self.conn.execute(sql, params).fetchall())

    def script(self, sql: str) -> None:
        for statement in statements(sql):  # executescript would commit our transaction
            self.conn.execute(statement)

    def lock_schema(self) -> None:
        pass  # BEGIN IMMEDIATE already holds the database's one write lock


def _unavailable(exc: sqlite3.OperationalError) -> StoreError | None:
    text = str(exc).lower()
    if "locked" in text or "busy" in text or "unable to open" in text or "disk i/o" in text:
        return StoreUnavailable(f"SQLite 数据库暂时不可用 (the SQLite database is not "
                                f"available now): {exc}")
    return None


class SqliteStore(SqlStore):
    DIALECT = "sqlite"
    #: one writer at a time is all SQLite has
    batch_writers = 1

    def __init__(self, path: str | Path, busy_s: float = BUSY_S) -> None:
        super().__init__()
        self.path = Path(path)
        self.busy_s = busy_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._closed = threading.Event()
        try:
            self._writer = self._connect()
            self._writer.execute("PRAGMA journal_mode=WAL")
            self._writer.execute("PRAGMA synchronous=FULL")
            self._reader = self._connect()
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"打不开 SQLite 数据库 (cannot open the SQLite database) "
                                   f"{self.path}: {exc}") from exc

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self.busy_s, isolation_level=None,
                               check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout={int(self.busy_s * 1000)}")
        return conn

    @contextmanager
    def _tx(self, conn: sqlite3.Connection, begin: str) -> Iterator[SqliteTx]:
        if self._closed.is_set():
            raise StoreError("the center store is closed")
        try:
            conn.execute(begin)
            try:
                yield SqliteTx(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            translated = _unavailable(exc)
            if translated is None:
                raise
            raise translated from exc

    def _write(self, fn: Callable[[Tx], T]) -> T:
        with self._write_lock, self._tx(self._writer, "BEGIN IMMEDIATE") as tx:
            return fn(tx)

    def _read(self, fn: Callable[[Tx], T]) -> T:
        with self._read_lock, self._tx(self._reader, "BEGIN") as tx:
            return fn(tx)

    def _write_batch(self, batch: R.Batch) -> int:
        def write(tx: Tx) -> int:
            assert isinstance(tx, SqliteTx)
            cols = R.EVENT_COLUMNS
            new = tx.many(f"INSERT INTO events ({', '.join(cols)}) VALUES "
                          f"({', '.join('?' * len(cols))}) ON CONFLICT DO NOTHING",
                          R.as_text(batch.events, R.EVENT_BODY))
            tx.many(R.upsert_alarm_sql(f"VALUES ({', '.join('?' * len(R.ALARM_COLUMNS))})"),
                    R.as_text(batch.alarms, R.ALARM_BODY))
            if batch.tenants:
                tx.many("INSERT INTO alarm_tenants (alarm_id, tenant) VALUES (?, ?) "
                        "ON CONFLICT DO NOTHING", batch.tenants)
            return new

        return self._write(write)

    def close(self) -> None:
        if self._closed.is_set():
            return
        with self._write_lock, self._read_lock:
            self._closed.set()
            self._reader.close()
            self._writer.close()
