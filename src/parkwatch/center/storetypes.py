"""The command center storage's plain types: a write's outcome and the errors callers handle
(:mod:`parkwatch.center.store` gives them out; the backends raise them)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

#: a history bound: seconds since 1970, or an aware datetime
TimeBound = float | datetime | None


@dataclass(frozen=True)
class Stored:
    """What one :meth:`CenterStore.store_events` call did."""

    stored: int  # (alarm_id, seq) rows newly written
    duplicates: int  # already there (or twice in the batch): changed nothing


class StoreError(RuntimeError):
    """A problem of the center's database that retrying will not fix."""


class StoreUnavailable(StoreError):
    """The database cannot be reached now (PostgreSQL down or restarting, SQLite locked by
    another writer): nothing of the call was written; keep the events and call again later.
    The same store object reconnects by itself."""


class SchemaTooNew(StoreError):
    """The database was migrated by a newer release of the center: this one must not write to
    it."""


class BadEvent(StoreError):
    """An event without the fields the store needs (``alarm_id``, ``seq``, ``park``, ...)."""
