"""InfluxDB line protocol, written in bulk.

A point's measurement and tags depend only on its sensor, so each sensor's line prefix
(`water_level,building=A,park=xinqiao,sensor=W1 `) is escaped once, when the park is loaded.
A batch of readings then becomes text with one `str.format` per point over numpy columns,
a handful of vectorised masks choosing the line shape; no `Point` objects, no per-point
branching.  Timestamps are integer milliseconds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import numpy as np

from parkwatch.park import ParkModel
from parkwatch.readings import ReadingBatch
from parkwatch.telemetry.schema import ALARM_EVENT, READING_MEASUREMENT

_MEASUREMENT_ESC = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n"})
_KEY_ESC = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n"})
_STRING_ESC = str.maketrans({'"': r"\"", "\\": r"\\", "\n": r"\n"})
_KEY_SPECIAL = re.compile(r"[,= \n]")

#: readings per chunk of text handed to the sink
CHUNK = 5000
#: readings formatted by one C-level join: it holds the GIL throughout (about 1 µs a reading),
#: and the pipeline thread waiting to raise an alarm must get it back within a fraction of a ms
SLICE = 250


def escape_key(text: str) -> str:
    """A tag key, tag value or field key.  Most need no escaping and are returned as they are,
    not copied: a large park's sensor prefixes then share the config's strings."""
    return text.translate(_KEY_ESC) if _KEY_SPECIAL.search(text) else text


def quote(text: str) -> str:
    """A string field value, quoted."""
    return f'"{text.translate(_STRING_ESC)}"'


def prefix(measurement: str, tags: Mapping[str, str | None]) -> str:
    """`measurement,k=v,... ` with the tags sorted by key (InfluxDB's preferred order) and
    empty ones left out; ends in the space before the fields."""
    parts = [measurement.translate(_MEASUREMENT_ESC)]
    parts += [f"{escape_key(k)}={escape_key(v)}" for k, v in sorted(tags.items()) if v]
    return ",".join(parts) + " "


def field_value(value: Any) -> str | None:
    """A field value in line protocol; None when it cannot be written (NaN, ±inf, None)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    return quote(str(value))


def fields_text(fields: Mapping[str, Any]) -> str | None:
    """The fields part of a line (`k=v,k=v`); None when no field has a value."""
    parts = [f"{escape_key(k)}={v}" for k, raw in fields.items()
             if (v := field_value(raw)) is not None]
    return ",".join(parts) if parts else None


def line(pre: str, fields: Mapping[str, Any], ms: int) -> str | None:
    """One point from a prefix; None when no field has a value (such a point is invalid)."""
    text = fields_text(fields)
    return None if text is None else f"{pre}{text} {ms}\n"


def to_ms(ts: np.ndarray) -> np.ndarray:
    return np.rint(ts * 1000.0).astype(np.int64)


class ReadingLines:
    """Readings of one park to line protocol: one measurement per sensor kind, the sensor's
    place and tenants as tags, `value`, `quality` and (when reported) `battery` as fields."""

    _SHAPES = (  # (value finite, battery finite) → the fields part of the line
        (True, False, "{}value={!r},quality={}i {}\n"),
        (True, True, "{}value={!r},quality={}i,battery={!r} {}\n"),
        (False, False, "{}quality={}i {}\n"),
        (False, True, "{}quality={}i,battery={!r} {}\n"),
    )

    def __init__(self, park: ParkModel) -> None:
        park_id = park.cfg.park.id
        self.prefix = np.array([prefix(READING_MEASUREMENT[s.config.kind].name, {
            "park": park_id, "building": s.config.building, "floor": s.config.floor,
            "zone": s.config.zone, "tenant": ",".join(s.tenants), "sensor": s.id,
        }) for s in park.sensors], dtype=object)

    def __call__(self, batch: ReadingBatch) -> Iterable[tuple[str, int]]:
        """(text, points) chunks of at most CHUNK points, in the batch's order of chunks."""
        for part in self._parts(batch):
            yield "".join(self._slices(part)), len(part)

    def encoded(self, batch: ReadingBatch) -> Iterable[tuple[list[bytes], int]]:
        """The same text as UTF-8, in pieces of at most SLICE lines, to be sent as they are:
        joined, 5,000 lines were 0.75 MB held twice over (text and bytes) at every write."""
        for part in self._parts(batch):
            yield [piece.encode("utf-8") for piece in self._slices(part)], len(part)

    @staticmethod
    def _parts(batch: ReadingBatch) -> Iterable[ReadingBatch]:
        for start in range(0, len(batch), CHUNK):
            # take() indexes every column with its argument: a slice gives views, no copy
            yield (batch.take(slice(start, start + CHUNK))
                   if len(batch) > CHUNK else batch)

    def _slices(self, b: ReadingBatch) -> Iterable[str]:
        """The lines of one chunk, SLICE at a time (each slice one C-level join: another thread
        can take the GIL between two); its columns are made Python objects a slice at a time."""
        pre = self.prefix[b.sensor]
        ms = to_ms(b.ts)
        finite = np.isfinite(b.value)
        battery = np.isfinite(b.battery)
        if finite.all() and not battery.any():  # the common case: one shape, no masks
            yield from _formatted(self._SHAPES[0][2].format,
                                  [pre, b.value, b.quality, ms])
            return
        for has_value, has_battery, shape in self._SHAPES:
            m = (finite if has_value else ~finite) & (battery if has_battery else ~battery)
            if not m.any():
                continue
            cols: list[np.ndarray] = [pre[m]]
            if has_value:
                cols.append(b.value[m])
            cols.append(b.quality[m])
            if has_battery:
                cols.append(b.battery[m])
            cols.append(ms[m])
            yield from _formatted(shape.format, cols)


def _formatted(fmt: Any, cols: list[np.ndarray]) -> Iterable[str]:
    """``fmt`` over the columns, SLICE rows to a string."""
    for i in range(0, len(cols[0]), SLICE):
        yield "".join(map(fmt, *[c[i:i + SLICE].tolist() for c in cols]))


def rfc3339_to_ms(text: str) -> int:
    return round(datetime.fromisoformat(text).timestamp() * 1000.0)


#: an `alarm_event` point's tags, in InfluxDB's preferred (sorted) order, and where each comes
#: from in the event (None: the hazard, which the event does not carry)
_EVENT_TAGS = (("building", "building"), ("event", "event"), ("floor", "floor"),
               ("hazard", None), ("park", "park"), ("rule", "rule"), ("sensor", "sensor_id"),
               ("sensor_kind", "sensor_kind"), ("severity", "severity"), ("zone", "zone"))
_BOOL = {True: "true", False: "false"}
#: (changed_at text, its ms), replaced whole: events come many to a millisecond
_last_changed: tuple[str | None, int] = (None, 0)


def _number(value: Any) -> str | None:
    """A float field from a JSON number (None for anything else, and NaN or ±inf)."""
    if isinstance(value, int | float):
        value = float(value)
        return repr(value) if math.isfinite(value) else None
    return None


def event_line(event: Mapping[str, Any], hazard: str) -> str:
    """One alarm event (the contract JSON) as an `alarm_event` point at its `changed_at`.

    The same text as :func:`line` over :func:`prefix` with these tags and fields (a test holds
    them to it), written out field by field: a storm writes one of these per alarm change on
    the thread that competes with the alarm path for the interpreter."""
    get = event.get
    tags = [ALARM_EVENT.name]
    for key, src in _EVENT_TAGS:
        v = hazard if src is None else get(src)
        if v is not None and v != "":
            tags.append(f"{key}={escape_key(v if v.__class__ is str else str(v))}")
    fields = [f"alarm_id={quote(event['alarm_id'])}", f"seq={int(event['seq'])}i",
              f"active={_BOOL[bool(get('active'))]}",
              f"acknowledged={_BOOL[bool(get('acknowledged'))]}"]
    if (value := _number(get("value"))) is not None:
        fields.append(f"value={value}")
    if (threshold := _number(get("threshold"))) is not None:
        fields.append(f"threshold={threshold}")
    fields.append(f"escalation_level={int(get('escalation_level') or 0)}i")
    fields.append(f"drill={_BOOL[bool(get('drill'))]}")
    if tenants := ",".join(get("tenants") or []):
        fields.append(f"tenants={quote(tenants)}")
    if (acked_by := field_value(get("acked_by"))) is not None:
        fields.append(f"acked_by={acked_by}")
    if (message := field_value(get("message") or "")) is not None:
        fields.append(f"message={message}")
    global _last_changed
    changed = event["changed_at"]
    last = _last_changed
    if last[0] != changed:
        last = _last_changed = (changed, rfc3339_to_ms(changed))
    return f"{','.join(tags)} {','.join(fields)} {last[1]}\n"
