"""What the board shows, from the store: the open alarms (most severe, then oldest first,
fires marked) and each gateway online / stale / offline."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from parkwatch.center.store import CenterStore

FIRE_KINDS = frozenset({"fire_button"})


def is_fire(alarm: dict[str, Any]) -> bool:
    return alarm.get("sensor_kind") in FIRE_KINDS or alarm.get("rule") == "button_latch"


def where(alarm: dict[str, Any]) -> str:
    parts = [alarm.get(k) for k in ("building", "floor", "zone", "sensor_id")]
    return " · ".join(str(p) for p in parts if p)


def gateway_state(status: dict[str, Any] | None, received_at: float, now: float,
                  stale_after_s: float) -> str:
    """``online`` (a fresh online status), ``stale`` (online but too old: the gateway or its
    link may be gone without its last will reaching us) or ``offline`` (its last will, an
    emptied status, or any other state)."""
    if not status or status.get("state") != "online":
        return "offline"
    return "stale" if now - received_at > stale_after_s else "online"


def local_time(value: Any) -> str:
    """An RFC 3339 time or epoch seconds as local ``MM-DD HH:MM:SS`` (empty when absent)."""
    if value is None or value == "":
        return ""
    try:
        if isinstance(value, int | float):
            at = datetime.fromtimestamp(float(value)).astimezone()
        else:
            at = datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone()
    except (ValueError, OverflowError, OSError):
        return str(value)
    return at.strftime("%Y-%m-%d %H:%M:%S")


def board(store: CenterStore, now: float, stale_after_s: float) -> dict[str, Any]:
    """The board's data: ``alarms`` (each with ``fire`` and ``where``), ``gateways`` (each
    with ``state``) and ``fires``: the ids of the open fire alarms (the page sounds a new
    one)."""
    alarms = []
    for a in store.open_alarms():
        alarms.append({**a, "fire": is_fire(a), "where": where(a)})
    gateways = [{**g, "state": gateway_state(g["status"], g["received_at"], now, stale_after_s),
                 "gateway": (g["status"] or {}).get("gateway") or g["park"]}
                for g in store.gateways()]
    return {"alarms": alarms, "gateways": gateways,
            "fires": [a["alarm_id"] for a in alarms if a["fire"] and a.get("active")]}
