"""Alarm events in the command-center contract (schema parkwatch.alarm/1, DESIGN §3.1)."""

from __future__ import annotations

import json
import math
from importlib import resources
from typing import Any, NamedTuple

import orjson

from parkwatch.alarms.lifecycle import Alarm, Change
from parkwatch.alarms.messages import MessageFormatter
from parkwatch.park import ParkModel
from parkwatch.timefmt import rfc3339_ms

SCHEMA_ID = "parkwatch.alarm/1"


def load_schema() -> dict[str, Any]:
    """The JSON Schema every published alarm event conforms to."""
    text = resources.files("parkwatch.alarms").joinpath("alarm-event.schema.json").read_text(
        encoding="utf-8")
    return json.loads(text)


#: the unit of an alarm's value and limit by rule, from the sensor's unit; others use it as is
_UNITS = {"comm_fault": "s", "no_data": "s", "rate_of_rise": "{}/min", "flapping": "%"}


def alarm_unit(park: ParkModel, source: int, rule: str) -> str:
    """The unit of an alarm's value and limit: the sensor's, or what the rule measures."""
    if source >= len(park.sensors):  # a floor or zone
        return "kN" if rule == "floor_load" else ""
    return _UNITS.get(rule, "{}").format(park.sensors[source].config.display_unit)


class _Source(NamedTuple):
    building: str | None
    floor: str | None
    zone: str | None
    tenants: tuple[str, ...]
    tenant_names: tuple[str, ...]
    sensor_id: str | None
    sensor_kind: str | None
    place: str
    building_name: str
    floor_name: str
    zone_name: str
    name: str  # display name of the sensor, or the place of a group
    kind: str  # sensor kind, or "floor" / "zone"
    unit: str


def _num(x: float | None) -> float | None:
    return None if x is None or math.isnan(x) else x


def _fmt(x: float | None, unit: str) -> str:
    if x is None or math.isnan(x):
        return "—"
    return f"{x:g} {unit}".strip()


class EventBuilder:
    def __init__(self, park: ParkModel) -> None:
        self.park = park
        cfg = park.cfg
        self.gateway = cfg.gateway.id
        self.messages = MessageFormatter(cfg.alarms.language, cfg.alarms.messages)
        #: (sensor, rule) -> where it is, and the message's words that follow from that
        self._sources: dict[tuple[int, str], tuple[_Source, dict[str, str]]] = {}

    def _source(self, a: Alarm) -> tuple[_Source, dict[str, str]]:
        """Where an alarm comes from (a sensor, or a floor/zone for its load), and the
        message's fields that say so; worked out once per sensor and rule (the park does not
        change under a builder: a reload builds a new one)."""
        key = (a.sensor, a.rule)
        found = self._sources.get(key)
        if found is None:
            src = self._describe(a)
            words = self.messages.word
            found = self._sources[key] = (src, {
                "park": self.park.cfg.park.name, "place": src.place,
                "building": src.building_name, "floor": src.floor_name,
                "zone": src.zone_name, "sensor": src.name,
                "sensor_id": src.sensor_id or src.name, "kind": words(src.kind),
                "rule": words(a.rule), "tenants": "、".join(src.tenant_names)})
        return found

    def _describe(self, a: Alarm) -> _Source:
        n = len(self.park.sensors)
        if a.sensor >= n:
            g = self.park.groups[a.sensor - n]
            return _Source(g.building, g.floor, g.zone, g.tenants, g.tenant_names, None, None,
                           g.place, g.building_name, g.floor_name, g.zone_name, g.place, g.kind,
                           alarm_unit(self.park, a.sensor, a.rule))
        info = self.park.sensors[a.sensor]
        s = info.config
        return _Source(s.building, s.floor, s.zone, info.tenants, info.tenant_names, s.id, s.kind,
                       info.place, info.building_name, info.floor_name, info.zone_name,
                       s.name or s.id, s.kind, alarm_unit(self.park, a.sensor, a.rule))

    def build(self, change: Change) -> dict[str, Any]:
        a = change.alarm
        src, place = self._source(a)
        unit = src.unit
        words = self.messages.words
        fields = place.copy()
        fields["severity"] = words.get(a.severity.label, a.severity.label)
        fields["event"] = words.get(change.event, change.event)
        fields["value"] = _fmt(a.value, unit)
        fields["threshold"] = _fmt(a.threshold, unit)
        fields["by"] = a.acked_by or ""
        message = self.messages.render(a.rule, change.event, fields,
                                       auto_closed=a.auto_closed and change.event == "closed")
        return {
            "schema": SCHEMA_ID,
            "alarm_id": a.alarm_id,
            "seq": a.seq,
            "event": change.event,
            "park": self.park.cfg.park.id,
            "building": src.building,
            "floor": src.floor,
            "zone": src.zone,
            "tenants": list(src.tenants),
            "sensor_id": src.sensor_id,
            "sensor_kind": src.sensor_kind,
            "rule": a.rule,
            "severity": a.severity.label,
            "active": a.active,
            "acknowledged": a.acknowledged,
            "value": _num(a.value),
            "threshold": _num(a.threshold),
            "unit": unit or None,
            "observed_at": rfc3339_ms(a.observed_at),
            "raised_at": rfc3339_ms(a.raised_at),
            "changed_at": rfc3339_ms(a.changed_at),
            "acked_by": a.acked_by,
            "acked_at": rfc3339_ms(a.acked_at) if a.acked_at is not None else None,
            "escalation_level": a.escalation_level,
            "drill": a.drill,
            "message": message,
            "gateway": self.gateway,
        }


#: the standard library's encoder, for what orjson refuses (an integer beyond 64 bits)
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def encode(event: dict[str, Any]) -> bytes:
    """The event's JSON as the contract carries it: UTF-8, nothing escaped to ASCII, compact.
    orjson writes the same bytes as the standard encoder (floats at most spelled otherwise,
    ``1e16`` for ``1e+16``) at a tenth of its time; every alarm change pays for it."""
    try:
        return orjson.dumps(event, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError:  # orjson.JSONEncodeError
        return _encode(event).encode("utf-8")
