"""Decoding one MQTT device payload into (value, device time, quality, battery).

Accepted forms: a JSON object with the configured value / time / event / battery fields
(dotted paths), a bare JSON number, and for buttons a bare event word.  Anything else raises
:class:`Rejected` with a reason that is counted.

A flood is mostly one shape, ``{"value": 1234.5, "ts": 1763800000123}``: that shape is read
by the C JSON scanner directly and its fields checked inline (under a microsecond a payload);
anything else takes the general path below it, which gives the same result with the reasons.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import datetime
from typing import Any

from parkwatch.readings import Quality

BUTTON_EVENTS = {"press": (1.0, Quality.GOOD), "reset": (0.0, Quality.GOOD),
                 "heartbeat": (math.nan, Quality.HEARTBEAT), "test": (math.nan, Quality.TEST)}


class Rejected(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason, self.detail = reason, detail


def get_path(obj: dict[str, Any], path: str) -> Any:
    node: Any = obj
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def number(x: Any) -> float | None:
    """A finite JSON number (booleans are not numbers here)."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    try:
        f = float(x)
    except OverflowError:  # an integer beyond float range, e.g. 10**400
        return None
    return f if math.isfinite(f) else None


def device_time(raw: Any, unit: str) -> float | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        try:
            dt = datetime.fromisoformat(raw)
        except ValueError:
            raise Rejected("bad_timestamp", f"unreadable time {raw[:40]!r}") from None
        if dt.tzinfo is None:
            raise Rejected("bad_timestamp", f"time {raw[:40]!r} has no UTC offset")
        return dt.timestamp()
    t = number(raw)
    if t is None:
        raise Rejected("bad_timestamp", f"time {raw!r:.40} is not a number")
    if unit == "ms" or (unit == "auto" and t > 1e11):
        t /= 1000.0
    return t


#: one JSON value at a position of a str -> (value, end); the C scanner json.loads uses, without
#: the whitespace handling and three Python frames around it
# (set by JSONDecoder.__init__, so typeshed does not list it)
_scan: Callable[[str, int], tuple[Any, int]] = (
    json.JSONDecoder().scan_once)  # type: ignore[attr-defined]


#: integers up to this convert to float exactly
_EXACT = 2**53


def _top_key(path: str | None) -> str | None:
    """The key of a path that is one key deep (read with ``dict.get``), else None."""
    return path if path and "." not in path else None


#: (value, device time, quality, battery)
Reading = tuple[float, float, int, float]


def _common_reader(value_field: str, time_field: str | None, time_unit: str,
                   battery_field: str | None, max_bytes: int,
                   max_skew_s: float) -> Callable[[bytes, float], Reading | None] | None:
    """A reader of the common shape: a JSON object whose value is a finite number and whose
    time (if any) an integer or float near the gateway clock.  It answers None for anything
    else, which the general path then reads, or rejects with its reason.  Its settings live
    in the closure: a flood calls it for every message."""
    value_key, time_key, battery_key = (_top_key(value_field), _top_key(time_field),
                                        _top_key(battery_field))
    if value_key is None or (time_field and time_key is None) or (
            battery_field and battery_key is None):
        return None  # dotted paths: the general path's get_path
    ms_above = {"ms": -math.inf, "auto": 1e11}.get(time_unit, math.inf)  # ms beyond this
    good = Quality.GOOD
    nan = math.nan

    def read(payload: bytes, now: float) -> Reading | None:
        if len(payload) > max_bytes:
            return None
        try:
            doc, end = _scan(payload.decode("utf-8"), 0)
        except (ValueError, StopIteration, RecursionError):  # UnicodeDecodeError too
            return None
        if end != len(payload) or doc.__class__ is not dict:  # not ASCII, spaces, not an object
            return None
        value = doc.get(value_key)
        if value.__class__ is int and -_EXACT <= value <= _EXACT:
            value = float(value)
        if value.__class__ is not float or value - value != 0.0:  # not a finite number
            return None
        ts = now
        if time_key is not None:
            t = doc.get(time_key)
            if t is not None:
                if not ((t.__class__ is int and -_EXACT <= t <= _EXACT)
                        or (t.__class__ is float and t - t == 0.0)):
                    return None
                ts = t / 1000.0 if t > ms_above else float(t)
                if not abs(ts - now) <= max_skew_s:
                    return None
        battery = nan
        if battery_key is not None:
            b = doc.get(battery_key)
            if b is not None:
                b = number(b)
                if b is None or not 0.0 <= b <= 100.0:
                    return None  # the general path ignores it, and says nothing either
                battery = b
        return value, ts, good, battery

    return read


class PayloadDecoder:
    def __init__(self, value_field: str, time_field: str | None, time_unit: str,
                 event_field: str, battery_field: str | None, max_bytes: int,
                 max_skew_s: float) -> None:
        self.value_field = value_field
        self.time_field = time_field
        self.time_unit = time_unit
        self.event_field = event_field
        self.battery_field = battery_field
        self.max_bytes = max_bytes
        self.max_skew_s = max_skew_s
        #: the flood's shape, read without the general path's reasons; None when the fields
        #: are dotted paths (the general path reads those)
        self.read_common: Callable[[bytes, float], Reading | None] | None = _common_reader(
            value_field, time_field, time_unit, battery_field, max_bytes, max_skew_s)

    def decode(self, payload: bytes, is_button: bool, now: float) -> Reading:
        if self.read_common is not None and not is_button:
            reading = self.read_common(payload, now)
            if reading is not None:
                return reading
        return self._decode(payload, is_button, now)

    def _decode(self, payload: bytes, is_button: bool,
                now: float) -> tuple[float, float, int, float]:
        """Every accepted form, and the reason for every rejection."""
        if len(payload) > self.max_bytes:
            raise Rejected("too_large", f"{len(payload)} bytes > {self.max_bytes}")
        try:
            # strictly UTF-8 (RFC 8259): json.loads on bytes would guess UTF-16/32 and read
            # garbage such as b"1\x002\x00" as the number 12
            doc = json.loads(payload.decode("utf-8"))
        except RecursionError:
            raise Rejected("malformed_json", "JSON nested too deeply") from None
        except (ValueError, UnicodeDecodeError):
            word = payload.strip().lower()
            if is_button and word in (b"press", b"reset", b"heartbeat", b"test"):
                doc = word.decode()
            else:
                raise Rejected("malformed_json", "not JSON") from None
        ts = now
        battery = math.nan
        if isinstance(doc, dict):
            if self.time_field:
                t = device_time(get_path(doc, self.time_field), self.time_unit)
                if t is not None:
                    if not abs(t - now) <= self.max_skew_s:
                        raise Rejected("bad_timestamp", f"device time {t:.0f} is "
                                       f"{t - now:+.0f} s from the gateway clock")
                    ts = t
            if self.battery_field:
                b = number(get_path(doc, self.battery_field))
                if b is not None and 0.0 <= b <= 100.0:
                    battery = b
            if is_button:
                event = doc.get(self.event_field) if self.event_field else None
                if event is None:
                    v = number(get_path(doc, self.value_field)) if self.value_field else None
                    if v not in (0.0, 1.0):
                        raise Rejected("missing_event", f"no '{self.event_field}' field")
                    return v, ts, Quality.GOOD, battery  # contact style: 1 pressed, 0 reset
                value, quality = self._button(event)
                return value, ts, quality, battery
            if not self.value_field:
                raise Rejected("missing_value", "JSON object but value_field is ''")
            raw = get_path(doc, self.value_field)
            if raw is None:
                raise Rejected("missing_value", f"no '{self.value_field}' field")
            v = number(raw)
            if v is None:
                raise Rejected("bad_value", f"'{self.value_field}' is {raw!r:.40}, not a number")
            return v, ts, Quality.GOOD, battery
        if is_button:
            if isinstance(doc, str):
                value, quality = self._button(doc)
                return value, ts, quality, battery
            if number(doc) in (0.0, 1.0):
                return float(doc), ts, Quality.GOOD, battery  # contact style: 1 pressed, 0 reset
            raise Rejected("missing_event", f"button payload {doc!r:.40} is not an event")
        v = number(doc)
        if v is None:
            raise Rejected("bad_value", f"payload {doc!r:.40} is not a number")
        return v, ts, Quality.GOOD, battery

    @staticmethod
    def _button(event: Any) -> tuple[float, int]:
        if not isinstance(event, str) or event.lower() not in BUTTON_EVENTS:
            raise Rejected("bad_event", f"unknown button event {event!r:.40}")
        value, quality = BUTTON_EVENTS[event.lower()]
        return value, quality
