"""The console's hazard-ticket pages: the list a user may see (``/tickets``), the report form
(``/tickets/new``), one ticket with the steps its reader may take now (``/tickets/{id}``),
its photos, the ledger and its CSV and Excel exports, and opening a ticket from an alarm.

Every logged-in role has these pages, each seeing its own scope (:mod:`parkwatch.center.tickets`).
Every POST needs the session's CSRF token; a refused step re-shows the page with why, and
nothing of it is saved.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from parkwatch.center import ledger as L
from parkwatch.center import tickets as K
from parkwatch.center.config import CenterConfig
from parkwatch.center.hazards import hazard_of
from parkwatch.center.photos import MAX_BYTES, MAX_PER_STEP, Photo, PhotoError, photo
from parkwatch.center.store import CenterStore
from parkwatch.center.web.i18n import text
from parkwatch.center.web.session import Session, csrf_ok

#: the largest request a form may send: its photos and some room for the fields
MAX_REQUEST = MAX_PER_STEP * MAX_BYTES + 1024 * 1024
#: a refusal's key → its HTTP status
_STATUS = {"ticket_not_found": 404, "ticket_forbidden": 403, "ticket_own_work": 403,
           "ticket_changed": 409, "ticket_wrong_state": 409}


class Console(Protocol):
    """What the ticket pages use of the console (a protocol, not an import: see .reports)."""

    cfg: CenterConfig
    store: CenterStore

    def _session(self, request: Request) -> tuple[Session, bool]: ...

    async def _user(self, s: Session) -> dict[str, Any] | None: ...

    def _page(self, request: Request, template: str, s: Session, user: dict[str, Any] | None,
              status: int = 200, **ctx: Any) -> Response: ...

    def _refuse_csrf(self, request: Request, s: Session,
                     user: dict[str, Any] | None) -> Response: ...


def parse_deadline(value: str) -> float | None:
    """A deadline typed in a form (``2026-12-31T18:00`` from a datetime-local input, or
    ``2026-12-31 18:00``, ``2026-12-31``: the end of that day), local time; None for blank;
    ValueError when it does not parse."""
    value = value.strip()
    if not value:
        return None
    if len(value) == 10:
        value += "T23:59"
    return datetime.fromisoformat(value.replace(" ", "T")).astimezone().timestamp()


class TicketPages:
    def __init__(self, console: Console) -> None:
        self.c = console

    def routes(self) -> list[Route]:
        return [Route("/tickets", self.list_page),
                Route("/tickets", self.report, methods=["POST"]),
                Route("/tickets/new", self.new_page),
                Route("/tickets/ledger", self.ledger_page),
                Route("/tickets/ledger.csv", self.ledger_csv),
                Route("/tickets/ledger.xlsx", self.ledger_xlsx),
                Route("/tickets/photos/{photo_id}", self.photo),
                Route("/tickets/{ticket_id}", self.ticket_page),
                Route("/tickets/{ticket_id}/{action}", self.act, methods=["POST"]),
                Route("/alarms/{alarm_id}/ticket", self.from_alarm, methods=["POST"])]

    # --- reading ----------------------------------------------------------------------------

    async def _who(self, request: Request) -> tuple[Session, dict[str, Any]] | Response:
        s, _ = self.c._session(request)
        user = await self.c._user(s)
        if user is None:
            return RedirectResponse("/login", status_code=303)
        return s, user

    def _filters(self, request: Request) -> dict[str, Any]:
        q = request.query_params
        state = q.get("state") or "open"
        return {"park": q.get("park") or None, "tenant": q.get("tenant") or None,
                "state": state if state in K.STATES else None, "open_only": state == "open"}

    async def list_page(self, request: Request) -> Response:
        got = await self._who(request)
        if isinstance(got, Response):
            return got
        s, user = got
        actor = K.Actor.of(user)
        f = self._filters(request)
        found = await run_in_threadpool(lambda: self.c.store.tickets(actor, **f))
        now = time.time()
        return self.c._page(request, "tickets.html", s, user, tickets=found, now=now,
                            f=f, state=request.query_params.get("state") or "open",
                            may_report=actor.role in ("operator", "inspector"),
                            late=L.late, query=request.url.query)

    async def ticket_page(self, request: Request, error: str | None = None,
                          status: int = 200, typed: dict[str, Any] | None = None) -> Response:
        """A ticket and its steps; after a refused step, `typed` (its action, note, tenant
        and deadline) fills that step's form again, so nothing typed on a phone is lost."""
        got = await self._who(request)
        if isinstance(got, Response):
            return got
        s, user = got
        actor = K.Actor.of(user)
        t = await run_in_threadpool(self.c.store.ticket, request.path_params["ticket_id"],
                                    actor)
        if t is None:
            return self.c._page(request, "message.html", s, user, status=404,
                                message=text(s.lang, "ticket_not_found"))
        actions = [a for a in K.ACTIONS if K.refusal(actor, a, t) is None]
        notices = await run_in_threadpool(self.c.store.notices, t["ticket_id"])
        return self.c._page(request, "ticket.html", s, user, status=status, tk=t,
                            actions=actions, error=error, now=time.time(),
                            late=L.late(t, time.time()), notices=notices, typed=typed or {})

    async def photo(self, request: Request) -> Response:
        got = await self._who(request)
        if isinstance(got, Response):
            return got
        _s, user = got
        found = await run_in_threadpool(self.c.store.photo, request.path_params["photo_id"],
                                        K.Actor.of(user))
        if found is None:
            return Response(status_code=404)
        name, content_type, data = found
        return Response(data, media_type=content_type, headers={
            "X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=3600",
            "Content-Disposition": f"inline; filename*=UTF-8''{quote(name)}"})

    async def _ledger(self, request: Request) -> tuple[Session, dict[str, Any],
                                                       list[dict[str, Any]]] | Response:
        got = await self._who(request)
        if isinstance(got, Response):
            return got
        s, user = got
        q = request.query_params
        found = await run_in_threadpool(lambda: self.c.store.tickets(
            K.Actor.of(user), park=q.get("park") or None, tenant=q.get("tenant") or None,
            limit=100_000))
        return s, user, found

    async def ledger_page(self, request: Request) -> Response:
        got = await self._ledger(request)
        if isinstance(got, Response):
            return got
        s, user, found = got
        return self.c._page(request, "ledger.html", s, user,
                            records=L.records(found, time.time(), s.lang),
                            columns=L.RECORD_COLUMNS, query=request.url.query)

    async def ledger_csv(self, request: Request) -> Response:
        got = await self._ledger(request)
        if isinstance(got, Response):
            return got
        s, _user, found = got
        body = L.csv_bytes(L.rows(found, time.time(), s.lang), s.lang)
        return self._download(body, "csv", "text/csv; charset=utf-8")

    async def ledger_xlsx(self, request: Request) -> Response:
        got = await self._ledger(request)
        if isinstance(got, Response):
            return got
        s, _user, found = got
        now = time.time()
        body = await run_in_threadpool(L.xlsx_bytes, L.rows(found, now, s.lang),
                                       L.records(found, now, s.lang), s.lang)
        return self._download(body, "xlsx", "application/vnd.openxmlformats-officedocument."
                                            "spreadsheetml.sheet")

    @staticmethod
    def _download(body: bytes, ext: str, media_type: str) -> Response:
        name = f"parkwatch-hazards-{datetime.now().astimezone():%Y-%m-%d}.{ext}"
        return Response(body, media_type=media_type, headers={
            "Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})

    async def new_page(self, request: Request) -> Response:
        got = await self._who(request)
        if isinstance(got, Response):
            return got
        s, user = got
        return self._new_form(request, s, user, {"park": user.get("park") or ""}, None, 200)

    def _new_form(self, request: Request, s: Session, user: dict[str, Any],
                  form: dict[str, Any], error: str | None, status: int) -> Response:
        if user["role"] not in ("operator", "inspector"):
            return self.c._page(request, "message.html", s, user, status=403,
                                message=text(s.lang, "ticket_forbidden"))
        return self.c._page(request, "ticket_new.html", s, user, status=status, form=form,
                            error=error, categories=K.CATEGORIES, levels=K.LEVELS,
                            fixed_park=user.get("park"))

    # --- writing ----------------------------------------------------------------------------

    async def _posted(self, request: Request) -> tuple[Session, dict[str, Any], FormData] \
            | Response:
        """A POST's session, user and form, once its size and CSRF token are checked."""
        got = await self._who(request)
        if isinstance(got, Response):
            return got
        s, user = got
        size = request.headers.get("content-length", "")
        if not size.isdigit() or int(size) > MAX_REQUEST:  # a browser always says its size
            return self.c._page(request, "message.html", s, user,
                                status=413 if size.isdigit() else 411,
                                message=text(s.lang, "ticket_request_too_large"))
        try:
            form = await request.form(max_files=MAX_PER_STEP + 1, max_fields=50)
        except HTTPException:  # more photos (or fields) than a step takes: Starlette's limit
            return self.c._page(request, "message.html", s, user, status=400,
                                message=text(s.lang, "photo_too_many"))
        token = form.get("csrf")
        if not csrf_ok(s, token if isinstance(token, str) else None):
            return self.c._refuse_csrf(request, s, user)
        return s, user, form

    @staticmethod
    async def _photos(form: FormData) -> list[Photo]:
        """The form's photos (a file input left empty sends one nameless empty part)."""
        out = []
        for part in form.getlist("photos"):
            if not isinstance(part, UploadFile) or (not part.filename and not part.size):
                continue
            data = await part.read(MAX_BYTES + 1)
            out.append(photo(part.filename or "photo", data))
        return out

    async def report(self, request: Request) -> Response:
        got = await self._posted(request)
        if isinstance(got, Response):
            return got
        s, user, form = got
        fields = {k: v.strip() if isinstance(v, str) else None for k, v in form.items()
                  if k in ("park", "building", "floor", "zone", "tenant", "category", "level",
                           "description", "note")}
        fields = {k: (v or None) if k not in ("description",) else v
                  for k, v in fields.items()}
        if user.get("park"):
            fields["park"] = user["park"]  # an inspector reports in their own park only
        fields["source"] = "inspection"
        try:
            photos = await self._photos(form)
            ticket_id = await run_in_threadpool(
                self.c.store.open_ticket, fields, K.Actor.of(user), time.time(),
                self.c.cfg.tickets.deadline_hours, photos)
        except (K.TicketError, PhotoError) as exc:
            return self._new_form(request, s, user, fields, text(s.lang, exc.key), 400)
        return RedirectResponse(f"/tickets/{ticket_id}", status_code=303)

    async def act(self, request: Request) -> Response:
        got = await self._posted(request)
        if isinstance(got, Response):
            return got
        s, user, form = got
        ticket_id, action = request.path_params["ticket_id"], request.path_params["action"]
        note, tenant, deadline = (form.get(k) for k in ("note", "tenant", "deadline"))
        typed = {"action": action, **{k: v for k, v in (("note", note), ("tenant", tenant),
                                                          ("deadline", deadline))
                                      if isinstance(v, str)}}
        try:
            when = parse_deadline(deadline) if isinstance(deadline, str) else None
        except ValueError:
            return await self.ticket_page(request, text(s.lang, "ticket_bad_deadline"), 400,
                                          typed)
        try:
            photos = await self._photos(form)
            await run_in_threadpool(lambda: self.c.store.act(
                ticket_id, action, K.Actor.of(user), time.time(),
                note=note if isinstance(note, str) else None, photos=photos,
                tenant=tenant if isinstance(tenant, str) and action == "assign" else None,
                deadline_at=when))
        except (K.TicketError, PhotoError) as exc:
            said = getattr(exc, "detail", None) or (  # the limit, or the photo's name
                getattr(exc, "name", None) if exc.key != "photo_too_many" else None)
            return await self.ticket_page(
                request, text(s.lang, exc.key) + (f" ({said})" if said else ""),
                _STATUS.get(exc.key, 400), typed)
        return RedirectResponse(f"/tickets/{ticket_id}", status_code=303)

    async def from_alarm(self, request: Request) -> Response:
        """One click on an alarm's page: a ticket carrying the alarm's place, tenant and
        facts; a second click finds the open one instead of making another."""
        got = await self._posted(request)
        if isinstance(got, Response):
            return got
        s, user = got[0], got[1]
        actor = K.Actor.of(user)
        alarm_id = request.path_params["alarm_id"]
        alarm = await run_in_threadpool(self.c.store.alarm, alarm_id)
        if alarm is None or not K.may_report(actor, alarm["park"]):
            key = "not_found" if alarm is None else "ticket_forbidden"
            return self.c._page(request, "message.html", s, user,
                                status=404 if alarm is None else 403, message=text(s.lang, key))
        open_ = await run_in_threadpool(lambda: self.c.store.tickets(
            actor, alarm_id=alarm_id, open_only=True))
        if open_:
            return RedirectResponse(f"/tickets/{open_[0]['ticket_id']}", status_code=303)
        fields = K.from_alarm(alarm, hazard_of(alarm.get("rule"), alarm.get("sensor_kind")))
        ticket_id = await run_in_threadpool(self.c.store.open_ticket, fields, actor,
                                            time.time(), self.c.cfg.tickets.deadline_hours)
        return RedirectResponse(f"/tickets/{ticket_id}", status_code=303)
