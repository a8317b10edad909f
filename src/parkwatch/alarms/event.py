"""Alarm events in the command-center contract (schema parkwatch.alarm/1, DESIGN §3.1)."""

from __future__ import annotations

import json
import math
from importlib import resources
from typing import Any

from parkwatch.alarms.lifecycle import Change
from parkwatch.alarms.messages import MessageFormatter
from parkwatch.park import ParkModel
from parkwatch.timefmt import rfc3339_ms

SCHEMA_ID = "parkwatch.alarm/1"


def load_schema() -> dict[str, Any]:
    """The JSON Schema every published alarm event conforms to."""
    text = resources.files("parkwatch.alarms").joinpath("alarm-event.schema.json").read_text(
        encoding="utf-8")
    return json.loads(text)


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

    def build(self, change: Change) -> dict[str, Any]:
        a = change.alarm
        info = self.park.sensors[a.sensor]
        s = info.config
        # a comm fault's limit is a time, not a measurement
        unit = "s" if a.rule == "comm_fault" else s.display_unit
        words = self.messages.word
        message = self.messages.render(a.rule, change.event, {
            "park": self.park.cfg.park.name, "place": info.place,
            "building": info.building_name, "floor": info.floor_name, "zone": info.zone_name,
            "sensor": s.name or s.id, "sensor_id": s.id, "kind": words(s.kind),
            "rule": words(a.rule), "severity": words(a.severity.label),
            "event": words(change.event), "value": _fmt(a.value, unit),
            "threshold": _fmt(a.threshold, unit), "tenants": "、".join(info.tenant_names),
            "by": a.acked_by or "",
        })
        return {
            "schema": SCHEMA_ID,
            "alarm_id": a.alarm_id,
            "seq": a.seq,
            "event": change.event,
            "park": self.park.cfg.park.id,
            "building": s.building,
            "floor": s.floor,
            "zone": s.zone,
            "tenants": list(info.tenants),
            "sensor_id": s.id,
            "sensor_kind": s.kind,
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


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
