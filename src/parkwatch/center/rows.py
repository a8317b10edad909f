"""Contract events as database rows, the same for every backend.

A batch is reduced before it reaches the database: the same (alarm_id, seq) twice in one batch
is one row (the second a duplicate), and each alarm's state is written once, from its highest
seq in the batch; the database keeps whichever of that and the stored state has the higher seq.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
import orjson

from parkwatch.center.contract import Event, event_from_dict
from parkwatch.center.storetypes import BadEvent, TimeBound

#: the event columns, in the order of :attr:`Batch.events` rows
EVENT_COLUMNS = ("alarm_id", "seq", "park", "event", "changed_at", "received_at", "body")
#: the alarm state columns, in the order of :attr:`Batch.alarms` rows
ALARM_COLUMNS = ("alarm_id", "park", "building", "floor", "zone", "sensor_id", "sensor_kind",
                 "rule", "severity", "active", "acknowledged", "drill", "raised_at",
                 "changed_at", "acked_by", "acked_at", "last_event", "event", "seq")
#: most severe first (an unknown severity after the known ones)
SEVERITY_ORDER = ("critical", "warning", "info")
SEVERITY_RANK_SQL = ("CASE severity "
                     + " ".join(f"WHEN '{s}' THEN {i}" for i, s in enumerate(SEVERITY_ORDER))
                     + f" ELSE {len(SEVERITY_ORDER)} END")


def bound(value: TimeBound) -> float | None:
    if value is None or isinstance(value, float | int):
        return value
    if value.tzinfo is None:
        raise ValueError(f"a history bound needs a time zone: {value!r}")
    return value.timestamp()


@dataclass
class Batch:
    events: list[tuple[Any, ...]]  # EVENT_COLUMNS, one per distinct (alarm_id, seq)
    #: ALARM_COLUMNS, one per alarm: its highest seq here.  First the ``raised_here`` alarms
    #: whose seq 1 is in the batch (new to the database, unless sent before), then the rest
    alarms: list[tuple[Any, ...]]
    tenants: list[tuple[str, str]]  # distinct (alarm_id, tenant), in the same two parts
    duplicates_in_batch: int
    raised_here: int = 0  # how many of ``alarms`` have their seq 1 in this batch
    tenants_raised_here: int = 0  # how many of ``tenants`` belong to those alarms


#: where an event's JSON is in an EVENT_COLUMNS row, and in an ALARM_COLUMNS row (``event``)
EVENT_BODY = EVENT_COLUMNS.index("body")
ALARM_BODY = ALARM_COLUMNS.index("event")


def batch(events: list[Event], bodies: list[bytes], received_at: float) -> Batch:
    """Rows for ``events`` (checked as they were decoded); ``bodies``: each event's JSON as
    it arrived, UTF-8, stored as it is."""
    rows: dict[tuple[str, int], tuple[Any, ...]] = {}
    top: dict[str, tuple[Event, bytes, float]] = {}
    tenants: dict[tuple[str, str], None] = {}
    for ev, body in zip(events, bodies, strict=True):
        alarm_id, seq = key = ev.alarm_id, ev.seq
        if key in rows:
            continue
        changed = ev.changed_at.timestamp()
        rows[key] = (alarm_id, seq, ev.park, ev.event, changed, received_at, body)
        known = top.get(alarm_id)
        if known is None or known[0].seq < seq:
            top[alarm_id] = (ev, body, changed)
        for t in ev.tenants:
            tenants[(alarm_id, t)] = None
    raised = {alarm_id for alarm_id in top if (alarm_id, 1) in rows}
    alarms = [_alarm_row(*top[alarm_id]) for alarm_id in top if alarm_id in raised]
    alarms += [_alarm_row(*top[alarm_id]) for alarm_id in top if alarm_id not in raised]
    new_tenants = [t for t in tenants if t[0] in raised]
    return Batch(list(rows.values()), alarms, new_tenants + [t for t in tenants
                                                             if t[0] not in raised],
                 len(events) - len(rows), len(raised), len(new_tenants))


def batch_of_dicts(docs: list[dict[str, Any]], received_at: float) -> Batch:
    """Rows for events given as dicts; :class:`BadEvent` (and nothing stored) if one is not
    an event of the contract."""
    try:
        events = [event_from_dict(doc) for doc in docs]
    except msgspec.ValidationError as exc:
        raise BadEvent(f"告警事件不符合约定 (not an alarm event of the contract): {exc}") from exc
    return batch(events, [orjson.dumps(doc) for doc in docs], received_at)


def _alarm_row(ev: Event, body: bytes, changed: float) -> tuple[Any, ...]:
    acked_at = ev.acked_at
    return (ev.alarm_id, ev.park, ev.building, ev.floor, ev.zone, ev.sensor_id,
            ev.sensor_kind, ev.rule, ev.severity, ev.active, ev.acknowledged, ev.drill,
            ev.raised_at.timestamp(), changed, ev.acked_by,
            None if acked_at is None else acked_at.timestamp(), ev.event, body, ev.seq)


def as_text(rows: list[tuple[Any, ...]], at: int) -> list[tuple[Any, ...]]:
    """``rows`` with the JSON at column `at` as text, for a driver that takes text only as
    ``str`` (sqlite3; psycopg's arrays)."""
    return [(*row[:at], row[at].decode(), *row[at + 1:]) for row in rows]


def upsert_alarm_sql(placeholders: str) -> str:
    """The state write: a new alarm is inserted, a stored one replaced only by a higher seq
    (so a lower seq that arrives late, or a duplicate, changes nothing)."""
    cols = ", ".join(ALARM_COLUMNS)
    updates = ", ".join(f"{c} = excluded.{c}" for c in ALARM_COLUMNS if c != "alarm_id")
    return (f"INSERT INTO alarms ({cols}) {placeholders} ON CONFLICT (alarm_id) DO UPDATE SET "
            f"{updates} WHERE excluded.seq > alarms.seq")


def state_dict(columns: list[str], row: tuple[Any, ...]) -> dict[str, Any]:
    """An ``alarms`` row as a dict: booleans as bool, ``event`` parsed."""
    out = dict(zip(columns, row, strict=True))
    for key in ("active", "acknowledged", "drill"):
        out[key] = bool(out[key])
    out["event"] = orjson.loads(out["event"])
    return out
