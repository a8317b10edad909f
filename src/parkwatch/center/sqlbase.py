"""What both backends share: the schema migration steps, the reads and the status write.

A backend runs a function in a transaction (a :class:`Tx`) on its write connection or on its
read connection, each behind a lock (the ingest writes while the console reads), and may run
it again on a new connection when the old one was lost; it writes events in bulk its own way.
Queries are written with ``?``; each backend's :class:`Tx` turns them into its own parameter
style.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import orjson

from parkwatch.center import rows as R
from parkwatch.center.hazards import HAZARD_SQL
from parkwatch.center.schemaversions import (
    VERSION_TABLE,
    check_not_newer,
    latest,
    migrations,
)
from parkwatch.center.sqlaccounts import AccountsSql
from parkwatch.center.sqlmutes import MutesSql
from parkwatch.center.sqlnotices import NoticesSql
from parkwatch.center.sqltickets import TicketsSql
from parkwatch.center.sqltx import Tx
from parkwatch.center.storetypes import Stored, TimeBound

T = TypeVar("T")

__all__ = ["SqlStore", "T", "Tx"]


class SqlStore(AccountsSql, TicketsSql, MutesSql, NoticesSql):
    """The backend-neutral part of a :class:`~parkwatch.center.store.CenterStore`."""

    DIALECT = ""

    def __init__(self) -> None:
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self.version = 0

    # --- what a backend provides ------------------------------------------------------------

    def _write(self, fn: Callable[[Tx], T]) -> T:
        """``fn`` in a transaction on the write connection, under the write lock: committed
        when it returns, rolled back when it raises."""
        raise NotImplementedError

    def _read(self, fn: Callable[[Tx], T]) -> T:
        """``fn`` in a transaction on the read connection, under the read lock."""
        raise NotImplementedError

    def _write_batch(self, batch: R.Batch) -> int:
        """Write ``batch`` in bulk, in one transaction; how many event rows were new."""
        raise NotImplementedError

    # --- schema -----------------------------------------------------------------------------

    def schema_version(self) -> int:
        return self._read(self._version)

    @staticmethod
    def _version(tx: Tx) -> int:
        found = tx.all("SELECT MAX(version) FROM schema_version")
        return int(found[0][0] or 0)

    def migrate(self, upto: int | None = None) -> int:
        known = migrations(self.DIALECT)
        target = len(known) if upto is None else upto
        if not 0 <= target <= len(known):
            raise ValueError(f"schema version {target}: this release knows 1 to {len(known)}")

        def prepare(tx: Tx) -> None:
            tx.lock_schema()
            tx.script(VERSION_TABLE)

        def step(tx: Tx) -> int | None:
            """One version more, or the version now when there is nothing to do."""
            tx.lock_schema()  # another instance may have migrated meanwhile
            current = self._version(tx)
            check_not_newer(current, self.DIALECT)
            if current >= target:
                return current
            nxt = known[current]
            tx.script(nxt.sql)
            tx.run("INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                   (nxt.version, nxt.name, time.time()))
            return None

        self._write(prepare)
        while (now := self._write(step)) is None:
            pass
        self.version = now
        return now

    @property
    def latest_version(self) -> int:
        return latest(self.DIALECT)

    # --- writes -----------------------------------------------------------------------------

    def store_events(self, events: list[dict[str, Any]], received_at: float) -> Stored:
        return self.store_rows(R.batch_of_dicts(events, received_at), len(events))

    def store_rows(self, batch: R.Batch, offered: int) -> Stored:
        if not batch.events:
            return Stored(0, offered)
        new = self._write_batch(batch)
        return Stored(new, offered - new)

    def store_status(self, park: str, status: dict[str, Any] | None,
                     received_at: float) -> None:
        body = None if status is None else orjson.dumps(status).decode()
        sql = ("INSERT INTO gateways (park, status, received_at) VALUES (?, ?, ?) "
               "ON CONFLICT (park) DO UPDATE SET status = excluded.status, "
               "received_at = excluded.received_at "
               "WHERE excluded.received_at >= gateways.received_at")
        self._write(lambda tx: tx.run(sql, (park, body, received_at)))

    # --- reads ------------------------------------------------------------------------------

    def alarm(self, alarm_id: str) -> dict[str, Any] | None:
        cols = list(R.ALARM_COLUMNS)

        def read(tx: Tx) -> tuple[list[tuple[Any, ...]], ...]:
            state = tx.all(f"SELECT {', '.join(cols)} FROM alarms WHERE alarm_id = ?",
                           (alarm_id,))
            if not state:
                return [], [], []
            return (state, tx.all("SELECT body FROM events WHERE alarm_id = ? ORDER BY seq",
                                  (alarm_id,)),
                    tx.all("SELECT tenant FROM alarm_tenants WHERE alarm_id = ? "
                           "ORDER BY tenant", (alarm_id,)))

        state, events, tenants = self._read(read)
        if not state:
            return None
        out = R.state_dict(cols, state[0])
        out["tenants"] = [t for (t,) in tenants]
        out["events"] = [orjson.loads(b) for (b,) in events]
        return out

    def open_alarms(self, park: str | None = None) -> list[dict[str, Any]]:
        where, params = ["last_event <> 'closed'"], []
        if park is not None:
            where.append("park = ?")
            params.append(park)
        sql = (f"SELECT event FROM alarms WHERE {' AND '.join(where)} "
               f"ORDER BY {R.SEVERITY_RANK_SQL}, raised_at IS NULL, raised_at, alarm_id")
        found = self._read(lambda tx: tx.all(sql, params))
        return [orjson.loads(b) for (b,) in found]

    def history(self, *, park: str | None = None, building: str | None = None,
                tenant: str | None = None, rule: str | None = None, kind: str | None = None,
                severity: str | None = None, since: TimeBound = None, until: TimeBound = None,
                drill: bool | None = None, limit: int = 1000,
                hazard: str | None = None) -> list[dict[str, Any]]:
        where: list[str] = []
        params: list[Any] = []
        if hazard is not None:
            where.append(f"{HAZARD_SQL} = ?")
            params.append(hazard)
        for column, value in (("park", park), ("building", building), ("rule", rule),
                              ("sensor_kind", kind), ("severity", severity), ("drill", drill)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if tenant is not None:
            where.append("alarm_id IN (SELECT alarm_id FROM alarm_tenants WHERE tenant = ?)")
            params.append(tenant)
        for op, at in ((">=", R.bound(since)), ("<", R.bound(until))):
            if at is not None:
                where.append(f"raised_at {op} ?")
                params.append(at)
        sql = "SELECT event FROM alarms"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY raised_at IS NULL, raised_at DESC, alarm_id DESC LIMIT ?"
        params.append(max(0, int(limit)))
        found = self._read(lambda tx: tx.all(sql, params))
        return [orjson.loads(b) for (b,) in found]

    def event_times(self, alarm_ids: list[str]) -> dict[str, dict[str, float]]:
        found: list[tuple[Any, ...]] = []

        def read(part: list[str]) -> Callable[[Tx], list[tuple[Any, ...]]]:
            sql = ("SELECT alarm_id, event, MIN(changed_at) FROM events WHERE alarm_id IN ("
                   + ", ".join("?" * len(part)) + ") AND event IN ('raised', 'acknowledged', "
                   "'cleared') AND changed_at IS NOT NULL GROUP BY alarm_id, event")
            return lambda tx: tx.all(sql, part)

        for part in chunks(sorted(set(alarm_ids)), 500):  # a bounded statement per read
            found += self._read(read(part))
        out: dict[str, dict[str, float]] = {}
        for alarm_id, kind, at in found:
            out.setdefault(alarm_id, {})[kind] = float(at)
        return out
    def park_places(self, park: str) -> dict[str, Any]:
        """What the store has seen of a park's layout (the contract carries none): ``sensors``,
        the latest event of each place-and-sensor's most recently raised alarm, and
        ``tenants``, the ``(building, floor, zone, tenant)`` of its alarms."""
        latest_sql = (
            "SELECT event FROM (SELECT event, ROW_NUMBER() OVER (PARTITION BY building, "
            "floor, zone, sensor_id ORDER BY raised_at IS NULL, raised_at DESC, "
            "alarm_id DESC) AS n FROM alarms WHERE park = ?) AS latest WHERE n = 1")
        tenants_sql = ("SELECT DISTINCT a.building, a.floor, a.zone, t.tenant FROM alarms AS a "
                       "JOIN alarm_tenants AS t ON t.alarm_id = a.alarm_id WHERE a.park = ?")

        def read(tx: Tx) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
            return tx.all(latest_sql, (park,)), tx.all(tenants_sql, (park,))

        latest_rows, tenant_rows = self._read(read)
        return {"sensors": [orjson.loads(b) for (b,) in latest_rows],
                "tenants": [tuple(r) for r in tenant_rows]}

    def gateways(self) -> list[dict[str, Any]]:
        found = self._read(
            lambda tx: tx.all("SELECT park, status, received_at FROM gateways ORDER BY park"))
        return [{"park": park, "status": None if status is None else orjson.loads(status),
                 "received_at": received_at} for park, status, received_at in found]

    # --- the console's users and commands -----------------------------------------------------

    def record_command(self, command_id: str, park: str, alarm_id: str, command: str,
                       author: str, note: str | None, now: float) -> None:
        """A command the center publishes, with its author (before it is published)."""
        self._write(lambda tx: tx.run(
            "INSERT INTO commands (command_id, park, alarm_id, command, author, note, "
            "issued_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (command_id, park, alarm_id, command, author, note, now)))

    def mark_alarm(self, command_id: str, park: str, alarm_id: str, false_alarm: bool,
                   author: str, note: str | None, now: float) -> None:
        """An operator's false-alarm mark (or its removal) and its command row, in one
        transaction: the latest marking of an alarm replaces the one before."""
        command = "mark_false" if false_alarm else "unmark_false"

        def mark(tx: Tx) -> None:
            tx.run("INSERT INTO alarm_marks (alarm_id, false_alarm, marked_by, marked_at, note) "
                   "VALUES (?, ?, ?, ?, ?) ON CONFLICT (alarm_id) DO UPDATE SET "
                   "false_alarm = excluded.false_alarm, marked_by = excluded.marked_by, "
                   "marked_at = excluded.marked_at, note = excluded.note",
                   (alarm_id, false_alarm, author, now, note))
            tx.run("INSERT INTO commands (command_id, park, alarm_id, command, author, note, "
                   "issued_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (command_id, park, alarm_id, command, author, note, now))

        self._write(mark)

    def alarm_mark(self, alarm_id: str) -> dict[str, Any] | None:
        """``{"false_alarm", "marked_by", "marked_at", "note"}`` of an alarm; None: never
        marked."""
        found = self._read(lambda tx: tx.all(
            "SELECT false_alarm, marked_by, marked_at, note FROM alarm_marks "
            "WHERE alarm_id = ?", (alarm_id,)))
        if not found:
            return None
        false_alarm, by, at, note = found[0]
        return {"false_alarm": bool(false_alarm), "marked_by": by, "marked_at": float(at),
                "note": note}

    def false_alarms(self, alarm_ids: list[str]) -> set[str]:
        """Those of ``alarm_ids`` an operator marked as false alarms (and did not unmark)."""
        found: list[tuple[Any, ...]] = []

        def read(part: list[str]) -> Callable[[Tx], list[tuple[Any, ...]]]:
            sql = ("SELECT alarm_id FROM alarm_marks WHERE false_alarm = ? AND alarm_id IN ("
                   + ", ".join("?" * len(part)) + ")")
            return lambda tx: tx.all(sql, [True, *part])

        for part in chunks(sorted(set(alarm_ids)), 500):
            found += self._read(read(part))
        return {alarm_id for (alarm_id,) in found}

    def commands(self, alarm_id: str) -> list[dict[str, Any]]:
        """The commands given for an alarm, oldest first."""
        cols = ("command_id", "park", "alarm_id", "command", "author", "note", "issued_at")
        found = self._read(lambda tx: tx.all(
            f"SELECT {', '.join(cols)} FROM commands WHERE alarm_id = ? "
            "ORDER BY issued_at, command_id", (alarm_id,)))
        return [dict(zip(cols, row, strict=True)) for row in found]

    def ping(self) -> bool:
        try:
            self._read(lambda tx: tx.all("SELECT 1"))
            return True
        except Exception:  # whatever the database says: it does not answer as it should
            return False


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
