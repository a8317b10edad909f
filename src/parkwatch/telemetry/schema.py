"""The telemetry schema: every measurement the sink writes, with its tags and fields.

Defined once, here.  The serialisers write exactly these names, `docs/telemetry.md` is checked
against this table, and a test reads every Grafana query and checks each measurement, field and
tag it names against it.  Timestamps are milliseconds (UTC); a tag without a value (a water
gauge outside any building, a sensor without tenants) is left out of the point.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

FieldType = Literal["float", "integer", "boolean", "string"]


@dataclass(frozen=True)
class Measurement:
    name: str
    doc: str
    tags: dict[str, str]  # tag key → what it holds
    fields: dict[str, tuple[FieldType, str]]  # field key → (type, what it holds)
    when: str = ""  # when points are written
    optional_fields: frozenset[str] = field(default_factory=frozenset)


#: tags every sensor's points carry (readings and limits)
SENSOR_TAGS: dict[str, str] = {
    "park": "park id",
    "building": "building id (absent for gauges outside buildings)",
    "floor": "floor id",
    "zone": "zone id",
    "tenant": "the tenant ids the sensor's alarms concern, comma-separated (fire buttons: "
              "every tenant of the building)",
    "sensor": "sensor id",
}

READING_FIELDS: dict[str, tuple[FieldType, str]] = {
    "value": ("float", "the reading in the sensor's unit (kg, cm; buttons 1 pressed, 0 "
              "normal); absent when the reading carries no value (comm fault, heartbeat)"),
    "quality": ("integer", "0 good, 1 unstable, 2 overload, 3 heartbeat, 4 test, 5 comm "
                "fail, 6 bad"),
    "battery": ("float", "battery percent, when the device reports it"),
}


def _reading(kind: str, what: str) -> Measurement:
    return Measurement(kind, f"one point per {what} reading", SENSOR_TAGS, READING_FIELDS,
                       when="every reading (telemetry.readings)",
                       optional_fields=frozenset({"value", "battery"}))


LOAD_CELL = _reading("load_cell", "load-cell")
WATER_LEVEL = _reading("water_level", "water-level")
FIRE_BUTTON = _reading("fire_button", "fire-button")

FLOOR_LOAD = Measurement(
    "floor_load",
    "the live load of each floor (and zone with an area) as the floor-load rule sums it",
    {"park": "park id", "building": "building id", "floor": "floor id",
     "zone": "zone id (absent for a whole floor)", "group": "the alarm source id, e.g. A/2F"},
    {"load_kn": ("float", "sum of the floor's load cells in kN; absent while a cell is unheard"),
     "capacity_kn": ("float", "rated live load × area, kN"),
     "load_pct": ("float", "load as % of the rated capacity; absent while a cell is unheard"),
     "warning_pct": ("float", "the warning line, % of capacity"),
     "critical_pct": ("float", "the critical line, % of capacity"),
     "cells": ("integer", "load cells on the floor"),
     "cells_heard": ("integer", "cells with a good reading")},
    when="every telemetry.aggregates_interval_s",
    optional_fields=frozenset({"load_kn", "load_pct"}),
)

SENSOR_LIMITS = Measurement(
    "sensor_limits",
    "each measuring sensor's effective limits, for the warning/critical (警戒/保证) lines",
    {**SENSOR_TAGS, "kind": "sensor kind: load_cell or water_level"},
    {"high_warning": ("float", "warning at or above"),
     "high_critical": ("float", "critical at or above (water: the guarantee level)"),
     "low_warning": ("float", "warning at or below"),
     "low_critical": ("float", "critical at or below")},
    when="every telemetry.aggregates_interval_s, for sensors with at least one limit",
    optional_fields=frozenset({"high_warning", "high_critical", "low_warning",
                               "low_critical"}),
)

ALARM_EVENT = Measurement(
    "alarm_event",
    "every alarm change, as published to the command center (docs/contract.md)",
    {"park": "park id", "building": "building id", "floor": "floor id", "zone": "zone id",
     "sensor": "sensor id (absent for floor and zone alarms)",
     "sensor_kind": "load_cell, water_level or fire_button (absent for floors and zones)",
     "hazard": "fire, overload, water or fault", "rule": "the rule that raised the alarm",
     "severity": "info, warning or critical", "event": "raised, escalated, acknowledged, ..."},
    {"alarm_id": ("string", "stable for the alarm's life"),
     "seq": ("integer", "increases with each change of the alarm"),
     "active": ("boolean", "the condition still holds"),
     "acknowledged": ("boolean", "an operator acknowledged it"),
     "value": ("float", "the value that caused the change"),
     "threshold": ("float", "the limit it crossed"),
     "escalation_level": ("integer", "escalation steps taken"),
     "drill": ("boolean", "raised during a declared drill"),
     "tenants": ("string", "tenant ids concerned, comma-separated"),
     "acked_by": ("string", "who acknowledged it"),
     "message": ("string", "the human-readable message")},
    when="every alarm change, after it is committed",
    optional_fields=frozenset({"value", "threshold", "acked_by", "tenants"}),
)

GATEWAY = Measurement(
    "gateway",
    "the gateway's own counters, for trends next to Prometheus",
    {"park": "park id", "gateway": "gateway id"},
    {"readings_accepted": ("integer", "readings accepted since start"),
     "readings_rejected": ("integer", "inputs rejected since start"),
     "alarm_changes": ("integer", "alarm changes committed since start"),
     "open_alarms": ("integer", "alarms not yet closed"),
     "active_alarms": ("integer", "alarms whose condition holds"),
     "outbox_pending": ("integer", "deliveries waiting, all targets"),
     "spool_bytes": ("integer", "bytes in the telemetry spool"),
     "spool_dropped_points": ("integer", "points dropped from a full spool since start"),
     "pipeline_errors": ("integer", "batches the pipeline failed on")},
    when="every telemetry.aggregates_interval_s",
)

MEASUREMENTS: dict[str, Measurement] = {m.name: m for m in (
    LOAD_CELL, WATER_LEVEL, FIRE_BUTTON, FLOOR_LOAD, SENSOR_LIMITS, ALARM_EVENT, GATEWAY)}

#: the sensor kind → its readings' measurement
READING_MEASUREMENT: dict[str, Measurement] = {
    "load_cell": LOAD_CELL, "water_level": WATER_LEVEL, "fire_button": FIRE_BUTTON}


def markdown() -> str:
    """The schema as the Markdown tables of docs/telemetry.md (kept true by a test)."""
    out: list[str] = []
    for m in MEASUREMENTS.values():
        out += [f"### `{m.name}`", "", f"{m.doc[0].upper()}{m.doc[1:]}; written {m.when}.", "",
                "| | key | type | holds |", "|---|---|---|---|"]
        out += [f"| tag | `{k}` | string | {v} |" for k, v in m.tags.items()]
        for k, (t, v) in m.fields.items():
            opt = " (optional)" if k in m.optional_fields else ""
            out.append(f"| field | `{k}` | {t}{opt} | {v} |")
        out.append("")
    return "\n".join(out)
