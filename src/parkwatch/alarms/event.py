"""Alarm events in the command-center contract (schema parkwatch.alarm/1, DESIGN §3.1)."""

from __future__ import annotations

import json
import math
from importlib import resources
from typing import Any

import orjson

from parkwatch.alarms.lifecycle import Change
from parkwatch.alarms.messages import MessageFormatter
from parkwatch.alarms.timestamps import rfc3339_ms
from parkwatch.park import GatewayInfo, GroupInfo, OutputInfo, ParkModel, SensorInfo
from parkwatch.rules.registry import RULE_UNITS

SCHEMA_ID = "parkwatch.alarm/1"


def load_schema() -> dict[str, Any]:
    """The JSON Schema every published alarm event conforms to."""
    text = resources.files("parkwatch.alarms").joinpath("alarm-event.schema.json").read_text(
        encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def alarm_unit(park: ParkModel, source: int, rule: str) -> str:
    """The unit of an alarm's value and limit, as its rule kind declares it: the sensor's
    ("{}"), or what the rule measures; a floor or a zone has no unit of its own."""
    own = park.sensors[source].config.display_unit if source < len(park.sensors) else ""
    return RULE_UNITS[rule].format(own)


def _num(x: float | None) -> float | None:
    return None if x is None or math.isnan(x) else x


def _fmt(x: float | None, unit: str) -> str:
    if x is None or math.isnan(x):
        return "—"
    return f"{x:g} {unit}".strip()


class EventBuilder:
    """Each alarm change as its contract event, message included.

    Where an alarm comes from is read from the park's tables for each change rather than
    remembered per sensor: a storm over a large park would otherwise keep a description of
    every sensor it touched, for as long as the daemon runs, to save a few attribute reads."""

    def __init__(self, park: ParkModel) -> None:
        self.park = park
        cfg = park.cfg
        self.gateway = cfg.gateway.id
        self.park_id = cfg.park.id
        self.park_name = cfg.park.name
        self.messages = MessageFormatter(cfg.alarms.language, cfg.alarms.messages)
        self._sensors = len(park.sensors)
        self._outputs_from = park.size
        self._gateway_at = park.gateway.index
        #: rule -> the unit of its value, for the gateway's own rules
        self.units = RULE_UNITS
        #: (sensor unit or None for a floor/zone, rule) -> the alarm's unit; a few per park
        self._units: dict[tuple[str | None, str], str] = {}
        #: tenants' names -> as a message lists them; one per combination of tenants
        self._tenant_text: dict[tuple[str, ...], str] = {}

    def _unit(self, display_unit: str | None, source: int, rule: str) -> str:
        key = (display_unit, rule)
        unit = self._units.get(key)
        if unit is None:
            unit = self._units[key] = alarm_unit(self.park, source, rule)
        return unit

    def build(self, change: Change) -> dict[str, Any]:
        a = change.alarm
        words = self.messages.words
        info: SensorInfo | GroupInfo | OutputInfo | GatewayInfo
        sensor_id: str | None
        kind: str | None
        building: str | None
        if a.sensor >= self._gateway_at:  # the gateway itself (its clock)
            info = self.park.gateway
            building = floor = zone = sensor_id = None
            kind, name, unit = "gateway", self.gateway, self.units.get(a.rule, "")
        elif a.sensor >= self._outputs_from:  # an output: its supervision
            info = self.park.outputs[a.sensor - self._outputs_from]
            o = info.config
            building, floor, zone, kind = o.building, o.floor, o.zone, o.kind
            sensor_id, name, unit = None, f"{words.get(o.kind, o.kind)} {o.name or o.id}", ""
        elif a.sensor < self._sensors:
            info = self.park.sensors[a.sensor]
            s = info.config
            building, floor, zone, kind = s.building, s.floor, s.zone, s.kind
            sensor_id, name = s.id, s.name or s.id
            unit = self._unit(s.display_unit, a.sensor, a.rule)
        else:  # a floor or zone: its load, its load cells' data
            info = self.park.groups[a.sensor - self._sensors]
            building, floor, zone, kind = info.building, info.floor, info.zone, info.kind
            sensor_id, name = None, info.place
            unit = self._unit(None, a.sensor, a.rule)
        names = info.tenant_names
        tenant_text = self._tenant_text.get(names)
        if tenant_text is None:
            tenant_text = self._tenant_text[names] = "、".join(names)
        severity = a.severity.label
        message = self.messages.render(a.rule, change.event, {
            "park": self.park_name, "place": info.place, "building": info.building_name,
            "floor": info.floor_name, "zone": info.zone_name, "sensor": name,
            "sensor_id": sensor_id or name, "kind": words.get(kind, kind),
            "rule": words.get(a.rule, a.rule), "tenants": tenant_text,
            "severity": words.get(severity, severity),
            "event": words.get(change.event, change.event),
            "value": _fmt(a.value, unit), "threshold": _fmt(a.threshold, unit),
            "by": a.acked_by or ""}, auto_closed=a.auto_closed and change.event == "closed")
        return {
            "schema": SCHEMA_ID,
            "alarm_id": a.alarm_id,
            "seq": a.seq,
            "event": change.event,
            "park": self.park_id,
            "building": building,
            "floor": floor,
            "zone": zone,
            "tenants": list(info.tenants),
            "sensor_id": sensor_id,
            "sensor_kind": kind if sensor_id is not None else None,
            "rule": a.rule,
            "severity": severity,
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
    ``1e16`` for ``1e+16``, tests/test_event_encode.py) for much less CPU, which every alarm
    change pays."""
    try:
        return orjson.dumps(event, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError:  # orjson.JSONEncodeError
        return _encode(event).encode("utf-8")
