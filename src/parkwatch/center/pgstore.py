"""The center's shared database: PostgreSQL through psycopg 3.

One connection writes, one reads (each behind a lock).  A batch's new rows, its events and the
alarms raised in it with their tenants, are written with COPY, the fastest way rows reach
PostgreSQL (psycopg's C code formats them, in the binary format), as the database's own bulk
load would.  What may be there already, the state of an alarm raised before and its tenants,
is merged by ``INSERT ... SELECT FROM unnest(...) ON CONFLICT`` (a state is replaced only by a
higher seq), its rows travelling as arrays.  When the COPY meets a row that is there (an
event sent again after a restart), the transaction is undone and the whole batch is merged
that way instead, BEGIN to COMMIT in one pipeline.  A few round trips per batch, however
large.

When the server goes away (restart, failover, network) the call that notices drops its
connection and tries once more on a new one; if the server does not answer it raises
:class:`StoreUnavailable` and the next call connects again.  Running a write twice is
harmless (every write is idempotent), so a COMMIT whose answer was lost is simply redone.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from parkwatch.center import rows as R
from parkwatch.center.sqlbase import SqlStore, T, Tx
from parkwatch.center.storetypes import StoreError, StoreUnavailable

CONNECT_TIMEOUT_S = 5
#: times a transaction the server undid (deadlock, serialization failure) is run again
ROLLBACK_RETRIES = 5
#: batches written at once, each on a connection of its own: one's COPY is formatted while the
#: server stores another's (the writes commute: an event is stored once whatever the order,
#: a state keeps the highest seq)
BATCH_WRITERS = 2
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
# (client_encoding UTF8 on every connection: the events' JSON is sent as the UTF-8 it came in)


#: a batch's three tables and their columns
_BATCH_TABLES = (("events", R.EVENT_COLUMNS), ("alarms", R.ALARM_COLUMNS),
                 ("alarm_tenants", ("alarm_id", "tenant")))


def _unnest(columns: Sequence[str]) -> str:
    """Rows from one array parameter per column, sent in binary (%b): a text array would quote
    every element, a regular expression over each event's JSON."""
    return "SELECT * FROM unnest(" + ", ".join(f"%b::{_TYPES[c]}[]" for c in columns) + ")"


def _arrays(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """One list per column; an event's JSON (UTF-8 bytes, see :func:`_copy`) as text."""
    if not rows:
        return [[] for _ in range(width)]
    return [[v.decode() for v in col] if type(col[0]) is bytes else list(col)
            for col in zip(*rows, strict=True)]


EVENTS_SQL = (f"INSERT INTO events ({', '.join(R.EVENT_COLUMNS)}) {_unnest(R.EVENT_COLUMNS)} "
              f"ON CONFLICT DO NOTHING")
ALARMS_SQL = R.upsert_alarm_sql(_unnest(R.ALARM_COLUMNS))
TENANTS_SQL = (f"INSERT INTO alarm_tenants (alarm_id, tenant) "
               f"{_unnest(('alarm_id', 'tenant'))} ON CONFLICT DO NOTHING")


def _copy(cur: psycopg.Cursor[Any], table: str, cols: Sequence[str],
          rows: list[tuple[Any, ...]]) -> None:
    """COPY in PostgreSQL's binary format: cheaper to make and to read than text (no number
    printed and parsed again, no escaping of the JSON), for the client and the server.

    An event's JSON arrives as UTF-8 bytes and goes as they are: a text value's binary form
    is its bytes in the client encoding (UTF-8 here), the same as a bytea's, so it is written
    with psycopg's bytea dumper (PostgreSQL's ``textrecv`` still checks the encoding)."""
    if rows:
        with cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["bytea" if type(v) is bytes else _TYPES[c]
                            for c, v in zip(cols, rows[0], strict=True)])
            for row in rows:
                copy.write_row(row)


def _load(tx: Tx, batch: R.Batch) -> int:
    """The batch's new rows by COPY, and the state of the alarms raised before (with their
    tenants) merged; UniqueViolation when a row is there already."""
    assert isinstance(tx, PgTx)
    with tx.conn.cursor() as cur:
        for (table, cols), rows in zip(_BATCH_TABLES, (
                batch.events, batch.alarms[:batch.raised_here],
                batch.tenants[:batch.tenants_raised_here]), strict=True):
            _copy(cur, table, cols, rows)
    alarms, tenants = batch.alarms[batch.raised_here:], batch.tenants[batch.tenants_raised_here:]
    if alarms or tenants:
        with tx.conn.pipeline():
            _merge(tx, [], alarms, tenants)
    return len(batch.events)


def _merge(tx: Tx, events: list[tuple[Any, ...]], alarms: list[tuple[Any, ...]],
           tenants: list[tuple[str, str]]) -> psycopg.Cursor[Any]:
    """Rows that may be there already: an event stored before and a tenant known before are
    skipped, an alarm's state replaced only by a higher seq.  The cursor's rowcount is how
    many events were new, once a pipeline around this has synced."""
    assert isinstance(tx, PgTx)
    cur = tx.conn.cursor()
    if events:
        cur.execute(EVENTS_SQL, _arrays(events, len(R.EVENT_COLUMNS)))
    if alarms:
        tx.conn.execute(ALARMS_SQL, _arrays(alarms, len(R.ALARM_COLUMNS)))
    if tenants:
        tx.conn.execute(TENANTS_SQL, _arrays(tenants, 2))
    return cur


def _unusable(conn: psycopg.Connection[Any]) -> bool:
    """The connection cannot run another statement: closed, broken, or left in pipeline mode
    (a server that shut down while a pipeline was in flight leaves it "busy", and every later
    query on it is refused): it is dropped and another made."""
    return bool(conn.closed or conn.broken
                or conn.pgconn.pipeline_status != psycopg.pq.PipelineStatus.OFF)


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
                                        application_name="parkwatch-center",
                                        client_encoding="UTF8", **_KEEPALIVE)
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
        self.batch_writers = BATCH_WRITERS
        #: the connections batches are written on (the first is the one other writes use)
        self._batch_links: list[tuple[_Link, threading.Lock]] = [
            (self._writer, self._write_lock),
            *((_Link(url), threading.Lock()) for _ in range(BATCH_WRITERS - 1))]
        self._free: queue.SimpleQueue[tuple[_Link, threading.Lock]] = queue.SimpleQueue()
        for pair in self._batch_links:
            self._free.put(pair)

    def _run(self, link: _Link, lock: threading.Lock, fn: Callable[[Tx], T],
             pipeline: bool = False) -> T:
        with lock:
            if self._closed:
                raise StoreError("the center store is closed")
            undone = 0
            while True:
                conn, new = link.get()
                try:
                    if pipeline:  # BEGIN, the statements and COMMIT in one round trip
                        with conn.pipeline(), conn.transaction():
                            return fn(PgTx(conn))
                    with conn.transaction():
                        return fn(PgTx(conn))
                except psycopg.errors.TransactionRollback:
                    # a deadlock with another instance writing the same alarms: the server
                    # undid this transaction whole, and running it again is safe
                    undone += 1
                    if undone >= ROLLBACK_RETRIES:
                        raise
                    continue
                except _LOST as exc:
                    if not _unusable(conn):
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
        link, lock = self._free.get()
        try:
            try:
                return self._run(link, lock, lambda tx: _load(tx, batch))
            except psycopg.errors.UniqueViolation:  # sent before (after a restart): merged
                def merge(tx: Tx) -> psycopg.Cursor[Any]:
                    return _merge(tx, batch.events, batch.alarms, batch.tenants)

                return max(self._run(link, lock, merge, pipeline=True).rowcount, 0)
        finally:
            self._free.put((link, lock))

    def close(self) -> None:
        with contextlib.ExitStack() as held:
            for _link, lock in self._batch_links:
                held.enter_context(lock)
            held.enter_context(self._read_lock)
            self._closed = True
            for link, _lock in self._batch_links:
                link.drop()
            self._reader.drop()
