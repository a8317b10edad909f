"""`parkwatch alarms`, `parkwatch ack`, `parkwatch reset` and `parkwatch status`: the running
daemon's local HTTP API from a shell on the gateway.

The API's address comes from the config's ``api:`` section, its bearer token from
``api.secret_file``/``api.secret_env`` or else from ``{state_dir}/api.token``, which the daemon
creates on its first start.  Exit codes: 0 done (or nothing to do; for `status`: healthy), 1
refused, unhealthy or the daemon cannot be reached, 2 the config cannot be used.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from http.client import HTTPException
from pathlib import Path
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import quote
from urllib.request import Request, urlopen

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2

DEFAULT_CONFIG = "/etc/parkwatch/park.yaml"
#: the one problem a config that is not there has (parkwatch.config.yamlsource)
_NOT_FOUND = "file not found"


def missing_config_hint(path: str, exc: Exception, explicit: bool,
                        more: str = "") -> str | None:
    """What to do when the park config is not there: the line that replaces "N problem(s)"
    (None when the config was found and has problems of its own)."""
    problems = getattr(exc, "problems", [])
    if len(problems) != 1 or problems[0].message != _NOT_FOUND:
        return None
    if explicit:
        return f"{path}: no such file; check the path"
    return (f"no park config at the default {path}: give one with --config FILE{more}")


TIMEOUT_S = 10.0  # the daemon answers a command within 5 s or gives up
_SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}


class Failure(Exception):
    """A message for the operator and the exit code that goes with it."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class Endpoint:
    url: str                # http://host:port, no trailing slash
    token: str
    token_source: str       # where the token came from, for the 401 message


# --- where the API is and its token ------------------------------------------------------


def _host_for_url(listen: str) -> str:
    """The address to connect to for a listen address (a wildcard means this host)."""
    if listen in ("", "0.0.0.0"):
        return "127.0.0.1"
    if listen == "::":
        return "[::1]"
    return f"[{listen}]" if ":" in listen else listen


def _read_token_file(path: Path, hint: str) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise Failure(f"no API token at {path}: {hint}") from None
    except PermissionError:
        raise Failure(f"cannot read the API token {path}: permission denied (run this as the "
                      "daemon's user or as root)") from None
    except OSError as exc:
        raise Failure(f"cannot read the API token {path}: {exc.strerror}") from None
    if not token:
        raise Failure(f"the API token file {path} is empty")
    return token


def endpoint(config: str, state_dir: str | None = None, url: str | None = None,
             token_file: str | None = None, token_required: bool = True) -> Endpoint:
    """The API's URL and token from the config (and the overrides); raises Failure.

    With ``token_required=False`` a token that cannot be read is no failure: the endpoint
    comes with an empty token and the reason as its ``token_source`` (for ``parkwatch
    status``, whose health check needs no token)."""
    token: str | None = None
    source = ""
    if token_file is not None:
        try:
            token, source = _read_token_file(Path(token_file), "no such file"), token_file
        except Failure as exc:
            if token_required:
                raise
            token, source = "", exc.message
    if url is not None and token is not None:
        return Endpoint(url.rstrip("/"), token, source)

    from parkwatch.config import ConfigError
    from parkwatch.schema import load_config

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        lines = [str(p) for p in exc.problems]
        lines.append(missing_config_hint(config, exc, explicit=config != DEFAULT_CONFIG)
                     or f"{config}: {len(exc.problems)} problem(s); not valid")
        raise Failure("\n".join(lines), EXIT_CONFIG) from None
    api = cfg.api
    if api is None:
        raise Failure(f"{config}: the local API is off: add `api:` to the config (and restart "
                      "the daemon)", EXIT_CONFIG)
    if url is None:
        if api.port == 0:
            raise Failure(f"{config}: api.port is 0 (the daemon picks a free port): set a fixed "
                          "port, or give --url", EXIT_CONFIG)
        url = f"http://{_host_for_url(api.listen)}:{api.port}"
    if token is None:
        try:
            token = api.secret()
        except OSError as exc:
            raise Failure(f"{config}: api.secret_file: cannot read {api.secret_file}: "
                          f"{exc.strerror}", EXIT_CONFIG) from None
        except KeyError:
            raise Failure(f"{config}: api.secret_env: environment variable {api.secret_env} "
                          "is not set", EXIT_CONFIG) from None
        if token is not None:
            source = f"api.secret_{'file' if api.secret_file is not None else 'env'}"
        else:
            from parkwatch.daemon.httpapi import TOKEN_FILE

            state = Path(state_dir) if state_dir else cfg.gateway.state_dir
            path = state / TOKEN_FILE
            try:
                token = _read_token_file(path, "the daemon creates it on its first start; has "
                                         "it run with this state directory (gateway.state_dir "
                                         "or --state-dir)?")
                source = str(path)
            except Failure as exc:
                if token_required:
                    raise
                token, source = "", exc.message
    return Endpoint(url.rstrip("/"), token, source)


# --- one request --------------------------------------------------------------------------


def request(ep: Endpoint, method: str, path: str, body: dict[str, Any] | None = None,
            auth: bool = True) -> tuple[int, Any]:
    """(status, JSON body) of one API call; raises Failure when there is no HTTP answer.
    ``auth=False`` sends no token (``/healthz`` needs none)."""
    data = None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
    req = Request(ep.url + path, data=data, method=method, headers={
        "Accept": "application/json",
        **({"Authorization": f"Bearer {ep.token}"} if auth else {}),
        **({"Content-Type": "application/json"} if data is not None else {})})
    try:
        with urlopen(req, timeout=TIMEOUT_S) as resp:
            status, raw = resp.status, resp.read()
    except HTTPError as exc:
        status, raw = exc.code, exc.read()
        exc.close()
    except URLError as exc:
        reason = exc.reason
        if isinstance(reason, ConnectionRefusedError):
            why = "connection refused — is the daemon running?"
        elif isinstance(reason, TimeoutError):
            why = f"no answer within {TIMEOUT_S:.0f} s"
        else:
            why = getattr(reason, "strerror", None) or str(reason)
        raise Failure(f"cannot reach the parkwatch API at {ep.url}: {why}") from None
    except TimeoutError:
        raise Failure(f"the parkwatch API at {ep.url} did not answer within "
                      f"{TIMEOUT_S:.0f} s") from None
    except (HTTPException, OSError) as exc:
        raise Failure(f"cannot reach the parkwatch API at {ep.url}: {exc}") from None
    try:
        return status, json.loads(raw) if raw else {}
    except ValueError:
        text = raw[:200].decode("utf-8", "replace")
        raise Failure(f"the parkwatch API at {ep.url} answered {status} with something that "
                      f"is not JSON: {text!r} (is that port the parkwatch daemon?)") from None


def _http_failure(ep: Endpoint, status: int, body: Any) -> Failure:
    """The plain message for a failed call that no command-specific rule explains."""
    error = body.get("error") if isinstance(body, dict) else None
    if status == 401:
        return Failure(f"refused: the daemon did not accept the API token from {ep.token_source}"
                       " (was the token changed after the daemon started? restart it, or check "
                       "--config / --state-dir)")
    return Failure(f"the parkwatch API answered {status}" + (f": {error}" if error else ""))


# --- parkwatch alarms ---------------------------------------------------------------------


def _parse_time(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def format_age(seconds: float | None) -> str:
    """12 -> '12s', 312 -> '5m12s', 7500 -> '2h05m', 190000 -> '2d04h'."""
    if seconds is None:
        return "?"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86_400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86_400}d{s % 86_400 // 3600:02d}h"


def _place(a: dict[str, Any]) -> str:
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
        raised = _parse_time(a.get("raised_at"))
        return (a.get("event") == "closed", _SEVERITY_RANK.get(a.get("severity", ""), 9),
                raised if raised is not None else now)
    return sorted(alarms, key=key)


def format_table(alarms: list[dict[str, Any]], now: float) -> str:
    head = ("SEVERITY", "AGE", "PLACE", "RULE", "SENSOR", "STATE", "ESC", "DRILL", "ALARM ID")
    rows = [head]
    for a in sort_alarms(alarms, now):
        raised = _parse_time(a.get("raised_at"))
        rows.append((str(a.get("severity", "?")),
                     format_age(None if raised is None else now - raised),
                     _place(a), str(a.get("rule", "?")), a.get("sensor_id") or "(floor)",
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
    status, body = request(ep, "GET", "/api/alarms" + ("?all=1" if include_closed else ""))
    if status != 200:
        raise _http_failure(ep, status, body)
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


# --- parkwatch ack / reset ----------------------------------------------------------------


def _what(a: dict[str, Any]) -> str:
    sensor = a.get("sensor_id") or _place(a)
    return f"{a.get('severity', '?')} {a.get('rule', '?')} alarm of {sensor}"


def command(ep: Endpoint, verb: str, alarm_id: str, by: str, note: str | None) -> int:
    """`ack` or `reset` one alarm; prints what happened; the exit code."""
    by = by.strip()
    if not by:
        raise Failure("--by must name you (an operator id from alarms.operators)")
    body: dict[str, Any] = {"by": by}
    if note is not None:
        body["note"] = note
    status, answer = request(ep, "POST", f"/api/alarms/{quote(alarm_id, safe='')}/{verb}", body)
    result = answer.get("result") if isinstance(answer, dict) else None
    alarm = (answer.get("alarm") if isinstance(answer, dict) else None) or {}
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
    raise _http_failure(ep, status, answer)


# --- parkwatch status ---------------------------------------------------------------------


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
        started = _parse_time(status.get("started_at"))
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
        raise _http_failure(ep, code, health)
    status: dict[str, Any] | None = None
    missing: str | None = None
    if not ep.token:
        missing = ep.token_source
    else:
        code, body = request(ep, "GET", "/api/status")
        if code == 200 and isinstance(body, dict):
            status = body
        else:
            missing = _http_failure(ep, code, body).message
    if as_json:
        print(json.dumps({"health": health, "status": status}, ensure_ascii=False, indent=2))
    else:
        print(format_status(ep, health, status, time.time()))
    if missing is not None:
        print(f"parkwatch status: details (alarms, deliveries) unavailable: {missing}",
              file=sys.stderr)
    return EXIT_OK if health.get("status") == "ok" else EXIT_FAILURE


# --- argparse glue ------------------------------------------------------------------------


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", default=DEFAULT_CONFIG,
                   help=f"park config YAML (default {DEFAULT_CONFIG})")
    p.add_argument("--state-dir", help="override gateway.state_dir (where api.token is)")
    p.add_argument("--url", help="the API's base URL, e.g. http://127.0.0.1:9466 (default: "
                   "from api.listen and api.port)")
    p.add_argument("--token-file", help="read the bearer token from this file (default: "
                   "api.secret_file/secret_env, else STATE_DIR/api.token)")


def run(args: argparse.Namespace, argv_command: str) -> int:
    try:
        ep = endpoint(args.config, args.state_dir, args.url, args.token_file,
                      token_required=argv_command != "status")
        if argv_command == "status":
            return show_status(ep, args.json)
        if argv_command == "alarms":
            return list_alarms(ep, args.all, args.json)
        return command(ep, argv_command, args.alarm_id, args.by, args.note)
    except Failure as exc:
        print(exc.message if exc.code == EXIT_CONFIG else f"parkwatch {argv_command}: "
              f"{exc.message}", file=sys.stderr)
        return exc.code

