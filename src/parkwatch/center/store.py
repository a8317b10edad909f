"""The command center's storage: what it promises, and opening it from a URL.

Every event is stored once by (``alarm_id``, ``seq``) whatever order and however often it
arrives (the contract's delivery is at least once); an alarm's current state is its event of
the highest seq.  Two backends with the same behaviour and the same tests: SQLite (the
embedded default: a file, nothing to install) and PostgreSQL (several center instances
sharing one database).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from parkwatch.center.photos import Photo
from parkwatch.center.rows import Batch
from parkwatch.center.storetypes import (
    BadEvent,
    SchemaTooNew,
    Stored,
    StoreError,
    StoreUnavailable,
    TimeBound,
)
from parkwatch.center.tickets import Actor

__all__ = ["BadEvent", "CenterStore", "SchemaTooNew", "StoreError", "StoreUnavailable",
           "Stored", "TimeBound", "open_store"]

class TicketStore(Protocol):
    """Hazard tickets (:mod:`parkwatch.center.sqltickets`; the rules:
    :mod:`parkwatch.center.tickets`)."""

    def open_ticket(self, fields: dict[str, Any], actor: Actor, now: float,
                    deadline_hours: dict[str, float], photos: Sequence[Photo] = ()) -> str:
        ...

    def act(self, ticket_id: str, action: str, actor: Actor, now: float, *,
            note: str | None = None, photos: Sequence[Photo] = (),
            tenant: str | None = None, deadline_at: float | None = None) -> dict[str, Any]:
        ...

    def escalate_overdue(self, now: float, after_hours: tuple[float, ...],
                         notices: Callable[[dict[str, Any], float], list[dict[str, Any]]]
                         | None = None) -> list[dict[str, Any]]:
        ...

    def claim_notices(self, now: float, lease_s: float, limit: int = 20
                      ) -> list[dict[str, Any]]:
        ...

    def notice_sent(self, notice_id: str, now: float) -> None:
        ...

    def notice_failed(self, notice_id: str, error: str, next_at: float, give_up: bool) -> None:
        ...

    def notices(self, ticket_id: str | None = None) -> list[dict[str, Any]]:
        ...

    def ticket(self, ticket_id: str, actor: Actor) -> dict[str, Any] | None:
        ...

    def tickets(self, actor: Actor, *, park: str | None = None, tenant: str | None = None,
                state: str | None = None, open_only: bool = False,
                alarm_id: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
        ...

    def photo(self, photo_id: str, actor: Actor) -> tuple[str, str, bytes] | None:
        ...

    def ticket_counts(self, now: float) -> list[tuple[str, str, int, int]]:
        ...


class MuteStore(Protocol):
    """The console's mutes (:mod:`parkwatch.center.sqlmutes`)."""

    def record_mute(self, command_id: str, park: str, mute_id: str, command: str,
                    spec: dict[str, Any] | None, by: str, note: str | None, signed: bool,
                    nonce: str | None, issued_at: float) -> None:
        ...

    def mute_replied(self, park: str, reply: dict[str, Any], at: float) -> bool:
        ...

    def set_gateway_mutes(self, park: str, doc: dict[str, Any], at: float) -> None:
        ...

    def mute_commands(self, limit: int = 200) -> list[dict[str, Any]]:
        ...

    def gateway_mutes(self) -> dict[str, list[dict[str, Any]]]:
        ...


class CenterStore(TicketStore, MuteStore, Protocol):
    """The center's database.  Thread-safe: the ingest writes while the console reads."""

    #: how many :meth:`store_rows` calls may run at once, each on a connection of its own
    batch_writers: int

    def migrate(self, upto: int | None = None) -> int:
        """Apply the pending schema versions (up to ``upto``, default all this release
        knows), each in a transaction; the version now.  :class:`SchemaTooNew` when the
        database is newer than this release."""
        ...

    def store_events(self, events: list[dict[str, Any]], received_at: float) -> Stored:
        """Store contract events idempotently by (alarm_id, seq), in one transaction; an
        alarm's state follows its highest seq."""
        ...

    def store_rows(self, batch: Batch, offered: int) -> Stored:
        """:meth:`store_events` of rows made beforehand (:func:`parkwatch.center.rows.batch`)
        from ``offered`` events: the ingest prepares the next batch while this one is
        written."""
        ...

    def store_status(self, park: str, status: dict[str, Any] | None,
                     received_at: float) -> None:
        """A gateway's retained status (None: an empty retained payload); an older one
        (``received_at``) does not replace a newer."""
        ...

    def alarm(self, alarm_id: str) -> dict[str, Any] | None:
        """The alarm's state (the ``alarms`` columns, ``event`` the latest event as a dict,
        ``tenants``) and ``events``: every stored event in seq order; None if unknown."""
        ...

    def open_alarms(self, park: str | None = None) -> list[dict[str, Any]]:
        """The latest event of each open (not closed) alarm, most severe then oldest first."""
        ...

    def history(self, *, park: str | None = None, building: str | None = None,
                tenant: str | None = None, rule: str | None = None, kind: str | None = None,
                severity: str | None = None, since: TimeBound = None, until: TimeBound = None,
                drill: bool | None = None, limit: int = 1000,
                hazard: str | None = None) -> list[dict[str, Any]]:
        """The latest event of each alarm raised in [since, until) that matches every filter
        given (``kind``: the sensor kind; ``hazard``: fire, overload, water or fault, see
        :mod:`parkwatch.center.hazards`), newest first, at most ``limit``."""
        ...

    def event_times(self, alarm_ids: list[str]) -> dict[str, dict[str, float]]:
        """For each alarm that has them, the gateway's time (``changed_at``, epoch seconds)
        of its first ``raised``, ``acknowledged`` and ``cleared`` event, keyed by that
        event's name."""
        ...

    def park_places(self, park: str) -> dict[str, Any]:
        """The places and sensors of ``park`` that have had alarms: ``sensors``, the latest
        event of the most recently raised alarm of each (building, floor, zone, sensor_id),
        and ``tenants``, the distinct ``(building, floor, zone, tenant)`` of its alarms."""
        ...

    def gateways(self) -> list[dict[str, Any]]:
        """Each park's ``{"park", "status" (dict or None), "received_at"}``, by park."""
        ...

    def add_user(self, name: str, password_hash: str, role: str, now: float, *,
                 park: str | None = None, tenant: str | None = None,
                 buildings: tuple[str, ...] = ()) -> bool:
        """A console user (a role of :data:`parkwatch.center.tickets.ROLES`, with the scope
        of an inspector, landlord or tenant officer); False when the name is taken."""
        ...

    def set_password(self, name: str, password_hash: str, *,
                     end_sessions: bool = False) -> bool:
        """A new password hash; ``end_sessions``: every login of the user ends.  False when
        the user is unknown."""
        ...

    def user(self, name: str) -> dict[str, Any] | None:
        """``{"name", "password_hash", "role", "park", "tenant", "buildings"}``, None if
        unknown."""
        ...

    def users(self, not_before: float = 0.0) -> list[dict[str, Any]]:
        """Every user's ``{"name", "role", "created_at", "sessions"}`` (logins created at or
        after ``not_before``), by name."""
        ...

    def remove_user(self, name: str) -> bool:
        """The user and their logins gone (their recorded commands stay); False: unknown."""
        ...

    def open_session(self, session_id: str, name: str, now: float, older_than: float) -> None:
        """A login; sessions created before ``older_than`` are removed."""
        ...

    def session_user(self, session_id: str, not_before: float) -> dict[str, Any] | None:
        """``{"name", "role"}`` of a live session's user, else None."""
        ...

    def end_session(self, session_id: str) -> None:
        """A logout."""
        ...

    def record_command(self, command_id: str, park: str, alarm_id: str, command: str,
                       author: str, note: str | None, now: float) -> None:
        """A command the center publishes, recorded with its author."""
        ...

    def commands(self, alarm_id: str) -> list[dict[str, Any]]:
        ...

    def mark_alarm(self, command_id: str, park: str, alarm_id: str, false_alarm: bool,
                   author: str, note: str | None, now: float) -> None:
        """An operator marks an alarm as a false alarm (误报), or takes the mark back; recorded
        as the alarm's mark (the latest wins) and as a command with its author."""
        ...

    def alarm_mark(self, alarm_id: str) -> dict[str, Any] | None:
        """The alarm's latest marking ``{"false_alarm", "marked_by", "marked_at", "note"}``,
        None if never marked."""
        ...

    def false_alarms(self, alarm_ids: list[str]) -> set[str]:
        """Those of ``alarm_ids`` currently marked as false alarms."""
        ...

    def ping(self) -> bool:
        """Whether the database answers now (for /healthz); never raises."""
        ...

    def close(self) -> None:
        ...


def open_store(url: str, *, migrate: bool = True) -> CenterStore:
    """The store at ``url``: ``sqlite:///path/center.db`` (``sqlite:////abs/path`` or
    ``sqlite:///relative``), or ``postgresql://user@host:port/db`` (any libpq URL).  Applies
    the pending schema versions unless ``migrate`` is false.  A PostgreSQL that is down does
    not stop the store from opening when ``migrate`` is false: its calls raise
    :class:`StoreUnavailable` until it answers."""
    store: CenterStore
    if url.startswith("sqlite://"):
        from parkwatch.center.sqlitestore import SqliteStore

        path = url.removeprefix("sqlite://").removeprefix("/")
        if not path:
            raise StoreError(f"数据库地址缺少文件路径 (no file path in the database URL): {url}")
        store = SqliteStore(path)
    elif url.startswith(("postgresql://", "postgres://")):
        from parkwatch.center.pgstore import PostgresStore

        store = PostgresStore(url)
    else:
        raise StoreError(f"不认识的数据库地址 (unknown database URL; use sqlite:///FILE or "
                         f"postgresql://USER@HOST:PORT/DB): {url}")
    if migrate:
        try:
            store.migrate()
        except BaseException:
            store.close()
            raise
    return store
