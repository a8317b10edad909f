"""`parkwatch status`: the running daemon's health (``/healthz``) and, when the token allows,
its details (``/api/status``) in a few lines; the exit code says healthy or not."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from parkwatch.cli.ages import format_age, parse_time
from parkwatch.cli.api_endpoint import Endpoint
from parkwatch.cli.api_request import http_failure, request
from parkwatch.cli.exits import EXIT_FAILURE, EXIT_OK


def _count_words(counts: Any, names: tuple[str, ...]) -> str:
    if not isinstance(counts, dict):
        return ""
    return ", ".join(f"{counts.get(n, 0)} {n.replace('_', ' ')}" for n in names
                     if isinstance(counts.get(n, 0), int))


def _drivers_line(health: dict[str, Any], status: dict[str, Any] | None) -> str:
    found = health.get("drivers")
    connected: dict[str, Any] = found if isinstance(found, dict) else {}
    found = (status or {}).get("drivers")
    details: dict[str, Any] = found if isinstance(found, dict) else {}
    parts = []
    for name in sorted(set(connected) | set(details)):
        found = details.get(name)
        d: dict[str, Any] = found if isinstance(found, dict) else {}
        up = connected.get(name, d.get("connected"))
        text = f"{name} {'connected' if up else 'NOT CONNECTED'}"
        extra = [str(d["type"])] if d.get("type") else []
        if isinstance(d.get("accepted"), int):
            extra.append(f"{d['accepted']} accepted")
        rejected = d.get("rejected")
        # summed on its own: as the right operand of `and` it would take `bool` as its context
        counted = (sum(v for v in rejected.values() if isinstance(v, int))
                   if isinstance(rejected, dict) else 0)
        if isinstance(rejected, dict) and counted:
            extra.append(f"{sum(rejected.values())} rejected")
        parts.append(text + (f" ({', '.join(extra)})" if extra else ""))
    return ", ".join(parts) or "none"


def _targets_line(status: dict[str, Any]) -> str:
    targets = status.get("targets")
    if not isinstance(targets, dict) or not targets:
        return "none"
    parts = []
    for name, t in sorted(targets.items()):
        if not isinstance(t, dict):
            continue
        text = f"{name} {t.get('delivered', 0)} delivered, {t.get('pending', 0)} pending"
        if t.get("pending"):
            text += f" (oldest {format_age(t.get('oldest_pending_s'))})"
        if t.get("expired"):
            text += f", {t['expired']} expired"
        if t.get("failing"):
            text += ", FAILING"
        parts.append(text)
    return "; ".join(parts)


def _pipeline_line(health: dict[str, Any]) -> str | None:
    p = health.get("pipeline")
    if not isinstance(p, dict):
        return None
    if not p.get("running"):
        return "NOT RUNNING"
    busy = p.get("busy_s")
    return ("idle" if busy is None else f"busy for {busy:.1f} s") + \
        f", queue {p.get('queue', '?')}"


def format_status(ep: Endpoint, health: dict[str, Any], status: dict[str, Any] | None,
                  now: float) -> str:
    """The readable summary of /healthz and (when it could be read) /api/status."""
    ok = health.get("status") == "ok"
    lines = [f"parkwatch daemon at {ep.url}: {'ok' if ok else 'UNHEALTHY'}"]
    lines += [f"  reason: {r}" for r in health.get("reasons") or []]
    lines += [f"  warning: {w}" for w in health.get("warnings") or []]
    if status is not None:
        started = parse_time(status.get("started_at"))
        lines.append(f"gateway {status.get('gateway', '?')}, park {status.get('park', '?')}, "
                     f"parkwatch {status.get('version', '?')}, up "
                     f"{format_age(None if started is None else now - started)}, "
                     f"{status.get('sensors', '?')} sensors")
    lines.append(f"drivers: {_drivers_line(health, status)}")
    uplink = health.get("uplink")
    if isinstance(uplink, dict):
        lines.append(f"uplink: broker '{uplink.get('broker', '?')}' "
                     f"{'connected' if uplink.get('connected') else 'DISCONNECTED'}")
    if status is not None:
        counts = _count_words(status.get("alarms"), ("active_unacknowledged",
                                                     "active_acknowledged",
                                                     "cleared_unacknowledged"))
        lines.append(f"alarms: {status.get('open_alarms', '?')} open"
                     + (f" ({counts})" if counts else ""))
        lines.append(f"deliveries: {_targets_line(status)}")
    pipeline = _pipeline_line(health)
    if pipeline is not None:
        lines.append(f"pipeline: {pipeline}")
    if status is not None:
        found = status.get("readings")
        r: dict[str, Any] = found if isinstance(found, dict) else {}
        lines.append(f"readings: {r.get('accepted', '?')} accepted, {r.get('rejected', '?')} "
                     f"rejected, {r.get('pipeline_errors', 0)} pipeline errors; "
                     f"{status.get('refused_commands', 0)} refused commands")
        cfg = status.get("config")
        last = cfg.get("last_reload") if isinstance(cfg, dict) else None
        if isinstance(last, dict) and not last.get("ok"):
            lines.append(f"config: the last reload failed ({last.get('error') or '?'}); "
                         "running on the previous config")
    return "\n".join(lines)


def show_status(ep: Endpoint, as_json: bool) -> int:
    """`parkwatch status`: 0 healthy, 1 unhealthy (Failure when unreachable)."""
    code, health = request(ep, "GET", "/healthz", auth=False)
    if code not in (200, 503) or not isinstance(health, dict) or "status" not in health:
        raise http_failure(ep, code, health)
    status: dict[str, Any] | None = None
    missing: str | None = None
    if not ep.token:
        missing = ep.token_source
    else:
        code, body = request(ep, "GET", "/api/status")
        if code == 200 and isinstance(body, dict):
            status = body
        else:
            missing = http_failure(ep, code, body).message
    if as_json:
        print(json.dumps({"health": health, "status": status}, ensure_ascii=False, indent=2))
    else:
        print(format_status(ep, health, status, time.time()))
    if missing is not None:
        print(f"parkwatch status: details (alarms, deliveries) unavailable: {missing}",
              file=sys.stderr)
    return EXIT_OK if health.get("status") == "ok" else EXIT_FAILURE
