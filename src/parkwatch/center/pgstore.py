"""The center's shared database: PostgreSQL through psycopg 3.

One connection writes, one reads (each behind a lock).  A batch of events is three statements
whose rows travel as arrays (``INSERT ... SELECT FROM unnest(...) ON CONFLICT``), sent with
BEGIN and COMMIT in one pipeline: one round trip per batch, however large.

When the server goes away (restart, failover, network) the call that notices drops its
connection and tries once more on a new one; if the server does not answer it raises
:class:`StoreUnavailable` and the next call connects again.  Running a write twice is
harmless (every write is idempotent), so a COMMIT whose answer was lost is simply redone.
"""

from __future__ import annotations

import contextlib
import threading
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from parkwatch.center import rows as R
from parkwatch.center.sqlbase import SqlStore, T, Tx
from parkwatch.center.storetypes import StoreError, StoreUnavailable

CONNECT_TIMEOUT_S = 5
#: pg_advisory_xact_lock key of schema migrations (any constant shared by every instance)
MIGRATION_LOCK = zlib.crc32(b"parkwatch.center schema") & 0x7FFFFFFF
#: the SQL type of each column, for the arrays of a bulk write
_TYPES = {"alarm_id": "text", "seq": "int4", "park": "text", "event": "text",
          "changed_at": "float8", "received_at": "float8", "body": "text", "building": "text",
          "floor": "text", "zone": "text", "sensor_id": "text", "sensor_kind": "text",
          "rule": "text", "severity": "text", "active": "bool", "acknowledged": "bool",
          "drill": "bool", "raised_at": "float8", "acked_by": "text", "acked_at": "float8",
          "last_event": "text", "tenant": "text"}
#: a server that vanished without closing the connection (power loss, a cut network) is
#: noticed within about half a minute instead of a call hanging on it (libpq's TCP options)
_KEEPALIVE: dict[str, Any] = {"keepalives": 1, "keepalives_idle": 10,
                              "keepalives_interval": 5, "keepalives_count": 3,
                              "tcp_user_timeout": 30_000}
#: the errors that mean the connection (not the statement) failed
_LOST = (psycopg.OperationalError, psycopg.InterfaceError)


def _unnest(columns: Sequence[str]) -> str:
    """Rows from one array parameter per column, sent in binary (%b): a text array would quote
    every element, a regular expression over each event's JSON."""
    return "SELECT * FROM unnest(" + ", ".join(f"%b::{_TYPES[c]}[]" for c in columns) + ")"


def _arrays(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    return [list(col) for col in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


EVENTS_SQL = (f"INSERT INTO events ({', '.join(R.EVENT_COLUMNS)}) {_unnest(R.EVENT_COLUMNS)} "
              f"ON CONFLICT DO NOTHING")
ALARMS_SQL = R.upsert_alarm_sql(_unnest(R.ALARM_COLUMNS))
TENANTS_SQL = (f"INSERT INTO alarm_tenants (alarm_id, tenant) "
               f"{_unnest(('alarm_id', 'tenant'))} ON CONFLICT DO NOTHING")


class PgTx:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self.conn.execute(sql.replace("?", "%s"), params).rowcount

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return list(self.conn.execute(sql.replace("?", "%s"), params).fetchall())

    def script(self, sql: str) -> None:
        self.conn.execute(sql.encode())  # several statements: no parameters

    def lock_schema(self) -> None:
        self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))


class _Link:
    """One connection, made again after it was lost."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.lock = threading.Lock()
        self.conn: psycopg.Connection[Any] | None = None

    def get(self) -> tuple[psycopg.Connection[Any], bool]:
        """The connection, and whether it is new."""
        if self.conn is not None and not self.conn.closed and not self.conn.broken:
            return self.conn, False
        self.drop()
        try:
            self.conn = psycopg.connect(self.url, autocommit=True,
                                        connect_timeout=CONNECT_TIMEOUT_S,
                                        application_name="parkwatch-center", **_KEEPALIVE)
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"连不上 PostgreSQL (cannot reach PostgreSQL): "
                                   f"{str(exc).strip()}") from exc
        return self.conn, True

    def drop(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(psycopg.Error):
                self.conn.close()
            self.conn = None


class PostgresStore(SqlStore):
    DIALECT = "postgresql"

    def __init__(self, url: str) -> None:
        super().__init__()
        self._writer = _Link(url)
        self._reader = _Link(url)
        self._closed = False

    def _run(self, link: _Link, lock: threading.Lock, fn: Callable[[Tx], T],
             pipeline: bool = False) -> T:
        with lock:
            if self._closed:
                raise StoreError("the center store is closed")
            while True:
                conn, new = link.get()
                try:
                    if pipeline:
                        with conn.pipeline(), conn.transaction():
                            return fn(PgTx(conn))
                    with conn.transaction():
                        return fn(PgTx(conn))
                except _LOST as exc:
                    if not (conn.closed or conn.broken):
                        raise  # the statement failed, not the connection
                    link.drop()
                    if new:  # a fresh connection failed too: the server is not there
                        raise StoreUnavailable(f"PostgreSQL 连接中断 (lost the connection to "
                                               f"PostgreSQL): {str(exc).strip()}") from exc

    def _write(self, fn: Callable[[Tx], T]) -> T:
        return self._run(self._writer, self._write_lock, fn)

    def _read(self, fn: Callable[[Tx], T]) -> T:
        return self._run(self._reader, self._read_lock, fn)

    def _write_batch(self, batch: R.Batch) -> int:
        def write(tx: Tx) -> psycopg.Cursor[Any]:
            assert isinstance(tx, PgTx)
            cur = tx.conn.cursor()
            cur.execute(EVENTS_SQL, _arrays(batch.events, len(R.EVENT_COLUMNS)))
            tx.conn.execute(ALARMS_SQL, _arrays(batch.alarms, len(R.ALARM_COLUMNS)))
            if batch.tenants:
                tx.conn.execute(TENANTS_SQL, _arrays(batch.tenants, 2))
            return cur  # its rowcount is known once the pipeline has synced (at COMMIT)

        return self._run(self._writer, self._write_lock, write, pipeline=True).rowcount

    def close(self) -> None:
        with self._write_lock, self._read_lock:
            self._closed = True
            self._writer.drop()
            self._reader.drop()
