"""A park's view, from what the store has seen: buildings → floors → zones, each place with its
tenants, its sensors (each with its latest alarm state) and its open alarms.

The contract carries no park layout (events name their building, floor, zone, tenants and
sensor; the gateway status only counts sensors), so the view holds the places and sensors that
have had alarms, never the whole park.
"""

from __future__ import annotations

import re
from typing import Any

from parkwatch.center.store import CenterStore
from parkwatch.center.web.board import gateway_state, is_fire, where

Place = tuple[str | None, str | None, str | None]


def natural(value: str | None) -> tuple[int, list[tuple[int, int | str]]]:
    """A sort key that puts ``B2`` before ``B10`` and an absent place (None) last."""
    if value is None:
        return (1, [])
    parts = re.split(r"(\d+)", value)
    return (0, [(0, int(p)) if p.isdigit() else (1, p.casefold()) for p in parts if p])


def _place(alarm: dict[str, Any]) -> Place:
    return (alarm.get("building"), alarm.get("floor"), alarm.get("zone"))


def _sensor(latest: dict[str, Any]) -> dict[str, Any]:
    return {"sensor_id": latest["sensor_id"], "sensor_kind": latest.get("sensor_kind"),
            "alarm": {**latest, "fire": is_fire(latest)}}


def park_view(store: CenterStore, park: str, now: float,
              stale_after_s: float) -> dict[str, Any]:
    """``buildings`` (each ``floors``, each ``zones``: a place with ``tenants``, ``sensors``
    and ``open``), the park's ``gateway`` (or None), ``open_count`` and ``fires``."""
    seen = store.park_places(park)
    opened = store.open_alarms(park)
    places: dict[Place, dict[str, Any]] = {}

    def place(key: Place) -> dict[str, Any]:
        if key not in places:
            places[key] = {"zone": key[2], "tenants": set(), "sensors": [], "open": []}
        return places[key]

    for latest in seen["sensors"]:
        p = place(_place(latest))
        if latest.get("sensor_id"):
            p["sensors"].append(_sensor(latest))
    for building, floor, zone, tenant in seen["tenants"]:
        place((building, floor, zone))["tenants"].add(tenant)
    for a in opened:  # most severe, then oldest first: the store's order
        place(_place(a))["open"].append({**a, "fire": is_fire(a), "where": where(a)})

    buildings: dict[str | None, dict[str | None, list[dict[str, Any]]]] = {}
    for (building, floor, _zone), p in places.items():
        p["tenants"] = sorted(p["tenants"], key=natural)
        p["sensors"].sort(key=lambda s: natural(s["sensor_id"]))
        p["fire"] = any(a["fire"] and a.get("active") for a in p["open"])
        buildings.setdefault(building, {}).setdefault(floor, []).append(p)
    tree = [{"building": b, "floors": [
                {"floor": f, "zones": sorted(zones, key=lambda z: natural(z["zone"]))}
                for f, zones in sorted(floors.items(), key=lambda kv: natural(kv[0]))]}
            for b, floors in sorted(buildings.items(), key=lambda kv: natural(kv[0]))]
    gateway = next((g for g in store.gateways() if g["park"] == park), None)
    if gateway is not None:
        status = gateway["status"] or {}
        gateway = {**gateway, "gateway": status.get("gateway") or park,
                   "sensors": status.get("sensors"),
                   "state": gateway_state(gateway["status"], gateway["received_at"], now,
                                          stale_after_s)}
    return {"park": park, "buildings": tree, "gateway": gateway, "open_count": len(opened),
            "fires": [a["alarm_id"] for a in opened if is_fire(a) and a.get("active")]}
