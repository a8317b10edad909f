"""What the board takes from the broker: contract payloads checked for what it needs, and the
reason for one it cannot use (counted and shown, never raised past the board)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any


def parse_time(text: Any) -> float | None:
    """Epoch seconds of an RFC 3339 time, None when absent or unreadable."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class Malformed(ValueError):
    """A payload the board cannot use; the message is the reason shown to the operator."""


_ALARM_FIELDS: tuple[tuple[str, type | tuple[type, ...]], ...] = (
    ("alarm_id", str), ("seq", int), ("event", str), ("severity", str), ("active", bool),
    ("acknowledged", bool))


def alarm_payload(payload: bytes) -> dict[str, Any]:
    """The alarm event in a payload, checked for what the board needs; raises Malformed."""
    try:
        event = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise Malformed("not JSON") from None
    if not isinstance(event, dict):
        raise Malformed("not a JSON object")
    for name, kind in _ALARM_FIELDS:
        value = event.get(name)
        # bool is an int in Python: a seq of `true` is as wrong as a seq of "1"
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise Malformed(f"missing or bad '{name}'")
    if event["seq"] < 1 or not event["alarm_id"]:
        raise Malformed("bad 'alarm_id' or 'seq'")
    tenants = event.get("tenants", [])
    if not isinstance(tenants, list):
        raise Malformed("bad 'tenants'")
    for name in ("rule", "sensor_kind", "sensor_id", "building", "floor", "zone"):
        if not isinstance(event.get(name), str | None):
            raise Malformed(f"bad '{name}'")
    event.setdefault("tenants", [])
    for name in ("rule", "sensor_kind"):
        event.setdefault(name, None)
    return event
