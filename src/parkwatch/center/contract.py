"""What the center reads of the contract (docs/contract.md): its topics, and the few facts of
an alarm event it must trust before storing it.  The gateways validate every event against
the JSON Schema before they publish; the center checks what its storage depends on, so that a
stray or broken publication is refused and counted, never stored half-understood."""

from __future__ import annotations

import re
from typing import Any

SCHEMA_ID = "parkwatch.alarm/1"
#: an alarm id: a ULID (26 Crockford base32 characters), safe as a topic level
_ALARM_ID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
_EVENTS = frozenset({"raised", "escalated", "severity_changed", "acknowledged", "cleared",
                     "closed", "reminder"})


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


def event_problem(doc: Any, park: str) -> str | None:
    """Why `doc` cannot be stored as an alarm event of `park` (None: it can)."""
    if type(doc) is dict:  # every event: one expression; a refusal says why below
        get = doc.get
        alarm_id, seq = get("alarm_id"), get("seq")
        if (get("schema") == SCHEMA_ID and type(alarm_id) is str and _ALARM_ID.match(alarm_id)
                and type(seq) is int and seq >= 1 and get("event") in _EVENTS
                and get("park") == park and type(get("rule")) is str
                and type(get("severity")) is str and type(get("changed_at")) is str
                and type(get("raised_at")) is str):
            return None
    return _problem(doc, park)


def _problem(doc: Any, park: str) -> str | None:
    if not isinstance(doc, dict):
        return "not a JSON object"
    if doc.get("schema") != SCHEMA_ID:
        return f"schema is {doc.get('schema')!r}, not {SCHEMA_ID!r}"
    alarm_id, seq = doc.get("alarm_id"), doc.get("seq")
    if not isinstance(alarm_id, str) or not _ALARM_ID.match(alarm_id):
        return "alarm_id is not a ULID"
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        return "seq is not a positive integer"
    if doc.get("event") not in _EVENTS:
        return f"unknown event {doc.get('event')!r}"
    if doc.get("park") != park:
        return f"park {doc.get('park')!r} published on park {park!r}'s topic"
    for key in ("rule", "severity", "changed_at", "raised_at"):
        if not isinstance(doc.get(key), str):
            return f"{key} is missing"
    return None
