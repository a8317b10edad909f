"""The drill report on the local API: ``GET /api/drills/{drill_id}/report`` (JSON) and
``GET /api/drills/{drill_id}/report.html`` (the printable page), token required as every
``/api/`` path.

The report is built from the store (its own read, on the API's reader) and the config in
force (a reload's new names and tenants apply), at each request: a drill report is asked for
a few times a drill, so nothing is kept.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from urllib.parse import unquote

from parkwatch.alarms.drillhtml import render_html
from parkwatch.alarms.drillreport import build_report
from parkwatch.alarms.views import StoreReader
from parkwatch.config.model import ParkConfig
from parkwatch.daemon.httpconn import Response, json_response

_PATH = re.compile(r"^/api/drills/([^/]{1,256})/report(\.html)?$")


class DrillReports:
    """A route of the API (:class:`~parkwatch.daemon.httpapi.ApiServer`'s ``routes``): the
    answer to a drill report's path, None for any other path."""

    def __init__(self, cfg: Callable[[], ParkConfig], store: StoreReader) -> None:
        self.cfg = cfg
        self.store = store

    def __call__(self, path: str) -> Response | None:
        m = _PATH.match(path)
        if m is None:
            return None
        drill_id = unquote(m.group(1))
        cfg = self.cfg()
        report = build_report(drill_id, cfg, self.store.drill_alarms(drill_id), time.time())
        if report is None:
            known = ", ".join(d.id for d in cfg.alarms.drills) or "none"
            return json_response(404, {"error": f"no drill '{drill_id}': it is not declared in "
                                       f"alarms.drills (declared: {known}) and no alarm in the "
                                       "store belongs to it"})
        if m.group(2):
            return Response(200, render_html(report).encode("utf-8"),
                            "text/html; charset=utf-8")
        return json_response(200, report)
