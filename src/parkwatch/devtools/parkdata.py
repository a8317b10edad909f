"""Cutting a park config's YAML data down to some of its drivers, for benches and tests that
run the example park without its serial ports: what the dropped drivers carried (sensors,
outputs) goes with them, and so do the linkage rules left without their outputs or sensors,
so the config still validates."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def keep_drivers(data: dict[str, Any], keep: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """`data` (a park config's YAML data, changed in place and returned) with only the drivers
    `keep` accepts, and the sensors, outputs and linkage rules that still make sense."""
    data["drivers"] = [d for d in data["drivers"] if keep(d)]
    ids = {d["id"] for d in data["drivers"]}
    data["sensors"] = [s for s in data.get("sensors", []) if s["driver"] in ids]
    data["outputs"] = [o for o in data.get("outputs", []) if o["driver"] in ids]
    linkage = data.get("linkage")
    if linkage and linkage.get("rules"):
        outputs = {o["id"] for o in data["outputs"]}
        sensors = {s["id"] for s in data["sensors"]}
        rules = []
        for r in linkage["rules"]:
            named = r.get("sensors", [])
            left = [s for s in named if s in sensors]
            if set(r["outputs"]) <= outputs and (left or not named):
                rules.append({**r, "sensors": left})
        linkage["rules"] = rules
    return data


def mqtt_only(data: dict[str, Any]) -> dict[str, Any]:
    """`data` with its MQTT drivers only (no serial port to open)."""
    return keep_drivers(data, lambda d: d["type"] == "mqtt")
