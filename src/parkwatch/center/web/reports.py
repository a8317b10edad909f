"""The console's report pages: the alarm history with its filter (``/history``), its CSV
export (``/history.csv``, the same filter) and the statistics (``/stats``).  Any logged-in
user may read them; they only read the store."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from parkwatch.center.hazards import HAZARDS
from parkwatch.center.rows import SEVERITY_ORDER
from parkwatch.center.web import history as H
from parkwatch.center.web import stats as S
from parkwatch.center.web.i18n import text

if TYPE_CHECKING:
    from parkwatch.center.store import CenterStore
    from parkwatch.center.web.session import Session


class Console(Protocol):
    """What the reports use of the console (:class:`parkwatch.center.web.app.Console`, which
    builds them: a protocol, not an import, so the two modules do not import each other)."""

    store: CenterStore

    def _session(self, request: Request) -> tuple[Session, bool]: ...

    async def _user(self, s: Session) -> dict[str, Any] | None: ...

    async def _reader(self, request: Request) -> tuple[Session, dict[str, Any]] | Response: ...

    def _page(self, request: Request, template: str, s: Session, user: dict[str, Any] | None,
              status: int = 200, **ctx: Any) -> Response: ...

STATS_DEFAULT_DAYS = 30


class Reports:
    def __init__(self, console: Console) -> None:
        self.c = console

    def routes(self) -> list[Route]:
        return [Route("/history", self.history_page), Route("/history.csv", self.history_csv),
                Route("/stats", self.stats_page)]

    def _rows(self, f: H.HistoryFilter) -> tuple[list[dict[str, Any]], bool]:
        """The filtered alarms as table rows, newest first, and whether there were more."""
        alarms = self.c.store.history(**f.query, limit=f.limit + 1)
        cut = len(alarms) > f.limit
        alarms = alarms[:f.limit]
        times = self.c.store.event_times([a["alarm_id"] for a in alarms])
        return [H.row(a, times.get(a["alarm_id"], {})) for a in alarms], cut

    async def history_page(self, request: Request) -> Response:
        got = await self.c._reader(request)
        if isinstance(got, Response):
            return got
        s, user = got
        f = H.parse_filter(dict(request.query_params), s.lang)
        rows, cut = ([], False) if f.errors else await run_in_threadpool(self._rows, f)
        return self.c._page(request, "history.html", s, user, status=400 if f.errors else 200,
                            f=f, rows=rows, cut=cut, hazards=HAZARDS, severities=SEVERITY_ORDER,
                            query=request.url.query)

    async def history_csv(self, request: Request) -> Response:
        got = await self.c._reader(request)
        if isinstance(got, Response):
            return got
        s, user = got
        f = H.parse_filter(dict(request.query_params), s.lang)
        if f.errors:
            return self.c._page(request, "message.html", s, user, status=400,
                                message="; ".join(f.errors))
        if not f.form["limit"]:
            f.limit = H.MAX_LIMIT
        rows, _ = await run_in_threadpool(self._rows, f)
        name = f"parkwatch-history-{datetime.now().astimezone():%Y-%m-%d}.csv"
        return Response(H.csv_bytes(rows), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"',
                                 "Cache-Control": "no-store"})

    async def stats_page(self, request: Request) -> Response:
        got = await self.c._reader(request)
        if isinstance(got, Response):
            return got
        s, user = got
        form = {k: (request.query_params.get(k) or "").strip() for k in ("since", "until")}
        bounds: dict[str, datetime | None] = {"since": None, "until": None}
        errors = []
        for key, value in form.items():
            if value:
                try:
                    bounds[key] = H.parse_time(value)
                except ValueError:
                    errors.append(f"{text(s.lang, 'bad_time_' + key)}: {value}")
        if bounds["since"] is None and not form["since"]:
            start = datetime.fromtimestamp(time.time()).astimezone() \
                - timedelta(days=STATS_DEFAULT_DAYS)
            bounds["since"] = start
            form["since"] = start.strftime("%Y-%m-%dT%H:%M")
        since, until = bounds["since"], bounds["until"]
        if since is not None and until is not None and until <= since:
            errors.append(text(s.lang, "until_before_since"))
        figures = None if errors else await run_in_threadpool(
            S.compute, self.c.store, since, until)
        return self.c._page(request, "stats.html", s, user, status=400 if errors else 200,
                            form=form, errors=errors, stats=figures, hazards=HAZARDS,
                            duration=S.duration, share=S.share)
