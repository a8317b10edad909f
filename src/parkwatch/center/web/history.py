"""The history page's filter (from the query string) and its CSV export.

The times a browser's ``datetime-local`` and ``date`` inputs give (``2026-12-01T08:30``,
``2026-12-01``) carry no zone: they are read in the center host's local time zone (its ``TZ``),
the zone the console shows every time in, so what an operator types matches what the pages
show.  A bound that does not parse, or ``until`` not after ``since``, is an error the page
shows (in the session's language); nothing is queried then.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from parkwatch.center.hazards import HAZARDS, hazard_of
from parkwatch.center.rows import SEVERITY_ORDER
from parkwatch.center.web.i18n import text

DEFAULT_LIMIT = 500
MAX_LIMIT = 10_000
#: the export's columns, in order (stable names: scripts read them)
CSV_COLUMNS = ("alarm_id", "park", "building", "floor", "zone", "sensor_id", "sensor_kind",
               "hazard", "tenants", "rule", "severity", "state", "raised_at", "acknowledged_at",
               "acked_by", "cleared_at", "drill", "message")


@dataclass
class HistoryFilter:
    """What the form asked for: ``form`` echoes it back into the inputs, ``query`` holds the
    store's keyword arguments, ``errors`` the messages of what did not parse."""

    form: dict[str, str] = field(default_factory=dict)
    query: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    limit: int = DEFAULT_LIMIT


def parse_time(value: str) -> datetime:
    """A browser's local date or date-time as an aware datetime in the host's zone;
    ValueError when it does not parse."""
    at = datetime.fromisoformat(value.strip())
    return at if at.tzinfo is not None else at.astimezone()


def parse_filter(params: dict[str, str], lang: str) -> HistoryFilter:
    """The filter of a query string: empty fields filter nothing."""
    keys = ("park", "building", "tenant", "hazard", "severity", "since", "until", "drill",
            "limit")
    f = HistoryFilter(form={k: (params.get(k) or "").strip() for k in keys})
    for key in ("park", "building", "tenant"):
        if f.form[key]:
            f.query[key] = f.form[key]
    if f.form["hazard"]:
        if f.form["hazard"] in HAZARDS:
            f.query["hazard"] = f.form["hazard"]
        else:
            f.errors.append(f"{text(lang, 'bad_kind')}: {f.form['hazard']}")
    if f.form["severity"]:
        if f.form["severity"] in SEVERITY_ORDER:
            f.query["severity"] = f.form["severity"]
        else:
            f.errors.append(f"{text(lang, 'bad_severity')}: {f.form['severity']}")
    if f.form["drill"] in ("drill", "real"):
        f.query["drill"] = f.form["drill"] == "drill"
    for key in ("since", "until"):
        if f.form[key]:
            try:
                f.query[key] = parse_time(f.form[key])
            except ValueError:
                f.errors.append(f"{text(lang, 'bad_time_' + key)}: {f.form[key]}")
    since, until = f.query.get("since"), f.query.get("until")
    if since is not None and until is not None and until <= since:
        f.errors.append(text(lang, "until_before_since"))
    if f.form["limit"]:
        try:
            f.limit = int(f.form["limit"])
            if not 1 <= f.limit <= MAX_LIMIT:
                raise ValueError(f.form["limit"])
        except ValueError:
            f.errors.append(f"{text(lang, 'bad_limit')} (1-{MAX_LIMIT}): {f.form['limit']}")
            f.limit = DEFAULT_LIMIT
    return f


def local(epoch: float | None) -> str:
    """Seconds since 1970 as ``YYYY-MM-DD HH:MM:SS`` in the host's zone (empty: none)."""
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _epoch(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def row(alarm: dict[str, Any], times: dict[str, float]) -> dict[str, Any]:
    """One alarm's export and table row: its latest event, with the first acknowledged and
    cleared times from its stored events (the latest event's own fields when those events
    were not stored)."""
    acked = times.get("acknowledged") or _epoch(alarm.get("acked_at"))
    return {
        **{k: alarm.get(k) or "" for k in ("alarm_id", "park", "building", "floor", "zone",
                                           "sensor_id", "sensor_kind", "rule", "severity",
                                           "acked_by", "message")},
        "hazard": hazard_of(alarm.get("rule"), alarm.get("sensor_kind")),
        "tenants": " ".join(alarm.get("tenants") or ()),
        "state": alarm.get("event") or "",
        "raised_at": local(times.get("raised") or _epoch(alarm.get("raised_at"))),
        "acknowledged_at": local(acked),
        "cleared_at": local(times.get("cleared")),
        "drill": "1" if alarm.get("drill") else "0",
    }


def csv_bytes(rows: list[dict[str, Any]]) -> bytes:
    """UTF-8 with a byte-order mark (Excel then reads the Chinese right), CRLF lines."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore",
                            lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    return b"\xef\xbb\xbf" + out.getvalue().encode("utf-8")
