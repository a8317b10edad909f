"""`parkwatch ack`, `parkwatch reset` and `parkwatch silence`: one alarm acknowledged, reset or
silenced through the running daemon's local API, and what happened in an operator's words."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from parkwatch.cli.alarm_list import place
from parkwatch.cli.api_endpoint import Endpoint
from parkwatch.cli.api_request import http_failure, request
from parkwatch.cli.exits import EXIT_OK, Failure
from parkwatch.commandsig import load_private_key, sign


def _what(a: dict[str, Any]) -> str:
    sensor = a.get("sensor_id") or place(a)
    return f"{a.get('severity', '?')} {a.get('rule', '?')} alarm of {sensor}"


def _signed(ep: Endpoint, key_file: Path, verb: str, alarm_id: str, by: str,
            note: str | None) -> dict[str, Any]:
    """The command signed with the operator's key, for the park the alarm belongs to."""
    try:
        key = load_private_key(key_file)
    except ValueError as exc:
        raise Failure(str(exc)) from None
    status, answer = request(ep, "GET", f"/api/alarms/{quote(alarm_id, safe='')}")
    if status == 404:
        raise Failure(f"refused: there is no alarm {alarm_id} (see parkwatch alarms --all)")
    if status != 200 or not isinstance(answer, dict):
        raise http_failure(ep, status, answer)
    park = str((answer.get("alarm") or {}).get("park") or "")
    return sign(key, verb, park, alarm_id, by, note)


def command(ep: Endpoint, verb: str, alarm_id: str, by: str, note: str | None,
            key_file: Path | None = None) -> int:
    """`ack`, `reset` or `silence` one alarm (signed with `key_file` when given); prints what
    happened; the exit code."""
    by = by.strip()
    if not by:
        raise Failure("--by must name you (an operator id from alarms.operators)")
    body: dict[str, Any] = {"by": by}
    if note is not None:
        body["note"] = note
    if key_file is not None:
        body = _signed(ep, key_file, verb, alarm_id, by, note)
    status, answer = request(ep, "POST", f"/api/alarms/{quote(alarm_id, safe='')}/{verb}", body)
    result = answer.get("result") if isinstance(answer, dict) else None
    alarm = (answer.get("alarm") if isinstance(answer, dict) else None) or {}
    if status == 200 and verb == "silence":
        print(f"silenced the sounders of building {alarm.get('building') or '?'} for "
              f"{alarm_id} and the other alarms sounding there, as {by}; strobes stay on and "
              "the alarms stay active (a new alarm sounds again)" if result == "done" else
              f"nothing sounds for {alarm_id} (no sounder, or silenced already): nothing to do")
        return EXIT_OK
    if status == 200 and result == "done":
        if verb == "ack":
            print(f"acknowledged {alarm_id} ({_what(alarm)}) as {by}"
                  + ("; it had cleared, so it is closed" if alarm.get("event") == "closed"
                     else ""))
        else:
            print(f"reset {alarm_id} ({_what(alarm)}) as {by}: cleared"
                  + (" and closed (it was acknowledged)" if alarm.get("event") == "closed"
                     else "; it stays open until it is acknowledged"))
        return EXIT_OK
    if status == 200 and result == "already":
        if verb == "ack":
            print(f"{alarm_id} was already acknowledged by {alarm.get('acked_by') or '?'} at "
                  f"{alarm.get('acked_at') or '?'}: nothing to do")
        else:
            print(f"{alarm_id} is not active any more (cleared): nothing to reset")
        return EXIT_OK
    reason = answer.get("reason") if isinstance(answer, dict) else None
    if status == 403 and reason is not None:
        hint = (" (sign it: --key YOUR_KEY_FILE)" if reason == "unsigned" else "")
        raise Failure(f"refused ({reason}): {answer.get('error')}{hint}")
    if status == 403:
        raise Failure(f"refused: {by!r} is not a configured operator (alarms.operators)")
    if status == 404:
        if alarm.get("event") == "closed":  # acknowledged and cleared already
            print(f"{alarm_id} is closed already (acknowledged by "
                  f"{alarm.get('acked_by') or '?'}): nothing to do")
            return EXIT_OK
        raise Failure(f"refused: there is no alarm {alarm_id} (see parkwatch alarms --all)")
    if status == 409:
        raise Failure(f"refused: {alarm_id} is a {_what(alarm)}; it clears when its condition "
                      "does — only fire alarms are reset")
    if status == 400:
        error = answer.get("error") if isinstance(answer, dict) else None
        raise Failure(f"refused: bad request: {error or 'no reason given'}")
    raise http_failure(ep, status, answer)
