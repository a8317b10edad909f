"""`parkwatch alarms`: the running daemon's alarms as a table, most severe and oldest first,
with a summary line."""

from __future__ import annotations

import json
import time
import unicodedata
from typing import Any

from parkwatch.cli.ages import format_age, parse_time
from parkwatch.cli.api_endpoint import Endpoint
from parkwatch.cli.api_request import http_failure, request
from parkwatch.cli.exits import EXIT_OK

_SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}


def place(a: dict[str, Any]) -> str:
    """Where an alarm is: building/floor/zone as far as it has them, '-' when none."""
    return "/".join(p for p in (a.get("building"), a.get("floor"), a.get("zone")) if p) or "-"


def _state(a: dict[str, Any]) -> str:
    if a.get("event") == "closed":
        return "closed"
    state = "active" if a.get("active") else "cleared"
    if a.get("acknowledged"):
        return f"{state}, acked by {a.get('acked_by') or '?'}"
    return f"{state}, unacked"


def _width(text: str) -> int:
    """Columns on a terminal: CJK characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in text)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _width(text))


def sort_alarms(alarms: list[dict[str, Any]], now: float) -> list[dict[str, Any]]:
    """Open before closed, then by severity (critical first), then the oldest first."""
    def key(a: dict[str, Any]) -> tuple[int, int, float]:
        raised = parse_time(a.get("raised_at"))
        return (a.get("event") == "closed", _SEVERITY_RANK.get(a.get("severity", ""), 9),
                raised if raised is not None else now)
    return sorted(alarms, key=key)


def format_table(alarms: list[dict[str, Any]], now: float) -> str:
    head = ("SEVERITY", "AGE", "PLACE", "RULE", "SENSOR", "STATE", "ESC", "DRILL", "ALARM ID")
    rows = [head]
    for a in sort_alarms(alarms, now):
        raised = parse_time(a.get("raised_at"))
        rows.append((str(a.get("severity", "?")),
                     format_age(None if raised is None else now - raised),
                     place(a), str(a.get("rule", "?")), a.get("sensor_id") or "(floor)",
                     _state(a), str(a.get("escalation_level", 0)),
                     "drill" if a.get("drill") else "", str(a.get("alarm_id", "?"))))
    widths = [max(_width(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(_pad(c, w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


def _summary(alarms: list[dict[str, Any]], include_closed: bool) -> str:
    open_ = [a for a in alarms if a.get("event") != "closed"]
    by_sev = [f"{n} {s}" for s in _SEVERITY_RANK
              if (n := sum(a.get("severity") == s for a in open_))]
    unacked = sum(not a.get("acknowledged") for a in open_)
    text = f"{len(open_)} open alarm(s)"
    if open_:
        text += f" ({', '.join(by_sev)}), {unacked} unacknowledged"
    if include_closed:
        text += f"; {len(alarms) - len(open_)} closed"
    return text


def list_alarms(ep: Endpoint, include_closed: bool, as_json: bool) -> int:
    """`parkwatch alarms`: print the table (or the API's JSON); the exit code."""
    status, body = request(ep, "GET", "/api/alarms" + ("?all=1" if include_closed else ""))
    if status != 200:
        raise http_failure(ep, status, body)
    if as_json:
        print(json.dumps(body, ensure_ascii=False, indent=2))
        return EXIT_OK
    alarms = body.get("alarms", []) if isinstance(body, dict) else []
    if not alarms:
        print("no alarms" if include_closed else "no open alarms")
        return EXIT_OK
    print(format_table(alarms, time.time()))
    print(_summary(alarms, include_closed))
    return EXIT_OK
