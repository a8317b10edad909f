"""What the center reads of the contract (docs/contract.md): its topics, and the few facts of
an alarm event it must trust before storing it.  The gateways validate every event against
the JSON Schema before they publish; the center checks what its storage depends on, so that a
stray or broken publication is refused and counted, never stored half-understood."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

SCHEMA_ID = "parkwatch.alarm/1"
#: an alarm id: a ULID (26 Crockford base32 characters), safe as a topic level
ALARM_ID = "^[0-9A-HJKMNP-TV-Z]{26}$"
#: an id or a name: text, not empty
_Text = Annotated[str, msgspec.Meta(min_length=1)]
#: a time: RFC 3339 with its offset (the contract's are UTC, ``...Z``), parsed in C
_Time = Annotated[datetime, msgspec.Meta(tz=True)]


def filters(prefix: str, share_group: str | None) -> dict[str, str]:
    """The subscriptions of one instance: the events (shared among the instances when a group
    is set: each event goes to one of them), and the retained alarm states and gateway statuses
    (every instance takes them: a broker gives retained messages to no shared subscription)."""
    events = f"{prefix}/+/events"
    return {"events": f"$share/{share_group}/{events}" if share_group else events,
            "alarms": f"{prefix}/+/alarms/+", "gateway": f"{prefix}/+/gateway"}


def classify(topic: str, prefix: str) -> tuple[str, str] | None:
    """("events" | "alarms" | "gateway", park) of a contract topic, None for another."""
    if not topic.startswith(prefix + "/"):
        return None
    parts = topic[len(prefix) + 1:].split("/")
    if len(parts) == 2 and parts[1] in ("events", "gateway"):
        return parts[1], parts[0]
    if len(parts) == 3 and parts[1] == "alarms":
        return "alarms", parts[0]
    return None


class Event(msgspec.Struct, gc=False):
    """The fields of an alarm event the center stores or reads, typed as the contract's JSON
    schema types them (``alarm-event.schema.json``).  Checking them as the JSON is decoded, in
    msgspec's C code, costs less than decoding first and looking at each field after; a field
    the center does not read (``value``, ``message``...) is skipped, and kept in the stored
    body.  Other fields are the gateways' to check: they validate every event against the
    schema before they publish, and a later schema version may add some."""

    schema: Literal["parkwatch.alarm/1"]
    alarm_id: Annotated[str, msgspec.Meta(pattern=ALARM_ID)]
    seq: Annotated[int, msgspec.Meta(ge=1)]
    event: Literal["raised", "escalated", "severity_changed", "acknowledged", "cleared",
                   "closed", "reminder"]
    park: _Text
    rule: _Text
    severity: _Text
    changed_at: _Time
    raised_at: _Time
    building: _Text | None = None
    floor: _Text | None = None
    zone: _Text | None = None
    sensor_id: _Text | None = None
    sensor_kind: _Text | None = None
    tenants: list[_Text] = []
    active: bool = False
    acknowledged: bool = False
    drill: bool = False
    acked_by: _Text | None = None
    acked_at: _Time | None = None


_ONE = msgspec.json.Decoder(Event)
_MANY = msgspec.json.Decoder(list[Event])


#: a payload refused: ("bad_json" | "bad_event", why)
Refusal = tuple[str, str]


def decode_events(payloads: list[bytes]) -> list[Event | Refusal]:
    """Each payload as an :class:`Event`, or why it is not one.

    The payloads are decoded as one JSON array first, the way a batch arrives whole: one call
    into msgspec instead of one per message.  Each payload sits between two commas of that
    array, so a payload that is not exactly one JSON value either breaks the array or changes
    the count of its items (a payload holding two values needs another holding none, and an
    empty item between two commas is not JSON); then, as for any refusal in the batch, each
    payload is decoded alone, so that a bad one is refused and the others stored."""
    if payloads:
        try:
            events: list[Event | Refusal] = list(_MANY.decode(b"[" + b",".join(payloads) + b"]"))
        except (msgspec.DecodeError, RecursionError):
            pass
        else:
            if len(events) == len(payloads):
                return events
    return [_decode_one(p) for p in payloads]


def _decode_one(payload: bytes) -> Event | Refusal:
    try:
        return _ONE.decode(payload)
    except msgspec.ValidationError as exc:  # JSON, but not an event
        return "bad_event", str(exc)
    except (msgspec.DecodeError, RecursionError) as exc:
        return "bad_json", str(exc)


def event_from_dict(doc: dict[str, Any]) -> Event:
    """An event given as a dict (an API caller's, a test's), checked as a received one is;
    :class:`msgspec.ValidationError` says what is wrong, and where."""
    return msgspec.convert(doc, Event)
