"""What one alarm change writes to the alarm store, and what a courier's mark says: the records
the store, its group writer and the alarm service pass between them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: a courier's outbox row done: (id, 'delivered' or 'expired', when)
Mark = tuple[int, str, float]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One (change, subscriber) to deliver through a target."""

    subscriber: str
    target: str
    reason: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class Suppression:
    subscriber: str
    cause: str
    ref: str
    reason: str


@dataclass(slots=True)
class Record:
    """Everything one change writes: the alarm's new state, the event, deliveries, mutes."""

    alarm_id: str
    source: str
    rule: str
    seq: int
    event: str
    active: bool
    acknowledged: bool
    closed: bool
    next_due: float | None
    at: float
    state: dict[str, Any]
    payload: bytes
    deliveries: list[Delivery]
    suppressions: list[Suppression]
    #: the event as built (not stored): telemetry writes it without parsing the payload again
    doc: dict[str, Any] | None = None
