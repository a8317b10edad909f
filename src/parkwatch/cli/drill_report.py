"""`parkwatch drill-report DRILL_ID`: a declared drill's report from the running daemon's local
API, written as the one-page printable HTML (or printed as the API's JSON).

The page is rendered here from the JSON the daemon serves, by the renderer that serves
``/api/drills/{id}/report.html``: one call, the same page.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import quote

from parkwatch.alarms.drillhtml import render_html
from parkwatch.cli.api_endpoint import Endpoint
from parkwatch.cli.api_request import http_failure, request
from parkwatch.cli.exits import EXIT_OK, Failure


def default_out(drill_id: str) -> Path:
    """Where the page goes without --out: drill-report-{id}.html in the current directory."""
    return Path(f"drill-report-{drill_id}.html")


def drill_report(ep: Endpoint, drill_id: str, out: str | None, as_json: bool) -> int:
    """Fetch the report; write the page to `out` ('-': standard output) or print the JSON."""
    status, body = request(ep, "GET", f"/api/drills/{quote(drill_id, safe='')}/report")
    if status == 404 and isinstance(body, dict) and "error" in body:
        raise Failure(str(body["error"]))
    if status != 200 or not isinstance(body, dict):
        raise http_failure(ep, status, body)
    if as_json:
        print(json.dumps(body, ensure_ascii=False, indent=2))
        return EXIT_OK
    page = render_html(body)
    if out == "-":
        print(page, end="")
        return EXIT_OK
    path = Path(out) if out else default_out(drill_id)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(page, encoding="utf-8")
        tmp.replace(path)  # never half a report where the last one was
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise Failure(f"cannot write {path}: {exc.strerror or exc}") from None
    alarms = body.get("alarms") or []
    print(f"drill {drill_id}: {len(alarms)} alarm(s), report written to {path}")
    return EXIT_OK
