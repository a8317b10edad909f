"""The console's routes (Starlette): login and logout, the language switch, the live board
and its /events stream, a park's view, an alarm's page, acknowledging; /healthz and /metrics.

Every page but /login, /healthz, /metrics and the static assets needs a login.  Every POST
needs the session's CSRF token (:mod:`.session`); acknowledging and marking a false alarm
need the operator role.
The store is blocking: its calls run in the worker threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from parkwatch.center.acksigning import AckSigner
from parkwatch.center.config import CenterConfig
from parkwatch.center.ingest import Ingest
from parkwatch.center.mutedesk import MuteDesk
from parkwatch.center.store import CenterStore
from parkwatch.center.tickets import Actor
from parkwatch.center.users import check_password
from parkwatch.center.web import board as B
from parkwatch.center.web.health import CenterCollector, healthz, metrics_registry, metrics_text
from parkwatch.center.web.i18n import LANGUAGES, other, text
from parkwatch.center.web.live import Hub
from parkwatch.center.web.mutepages import MutePages
from parkwatch.center.web.parkview import park_view
from parkwatch.center.web.reports import Reports
from parkwatch.center.web.session import COOKIE, Session, Signer, csrf_ok
from parkwatch.center.web.throttle import LoginThrottle
from parkwatch.center.web.ticketpages import TicketPages

log = logging.getLogger("parkwatch.center")
HERE = Path(__file__).resolve().parent
#: shortest time between two board updates to one browser (changes in between merge)
MIN_PUSH_INTERVAL_S = 0.1
#: the roles that read the alarms' pages (every park's, every tenant's alarms); the others
#: (inspector, landlord, tenant officer) work on hazard tickets in their scope
ALARM_READERS = ("operator", "viewer")
KEEPALIVE_S = 15.0


class Console:
    def __init__(self, cfg: CenterConfig, store: CenterStore, ingest: Ingest, hub: Hub,
                 signer: Signer, health: Callable[[], dict[str, Any]],
                 escalated: Callable[[], int] = lambda: 0) -> None:
        self.cfg = cfg
        self.store = store
        self.ingest = ingest
        self.hub = hub
        self.signer = signer
        self.throttle = LoginThrottle()
        self.ack_signer = AckSigner(cfg.commands.signing_keys_dir)
        self.health = health
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.templates.env.filters["when"] = B.local_time
        self.registry = metrics_registry(CenterCollector(
            ingest, store, lambda: hub.listeners, lambda: self.throttle.failures, escalated))
        self.app = Starlette(routes=[
            Route("/", self.board_page),
            Route("/login", self.login_page, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/language", self.language, methods=["POST"]),
            Route("/events", self.events),
            Route("/alarms/{alarm_id}", self.alarm_page),
            Route("/parks/{park}", self.park_page),
            Route("/alarms/{alarm_id}/ack", self.ack, methods=["POST"]),
            Route("/alarms/{alarm_id}/false-alarm", self.mark_false, methods=["POST"]),
            Route("/healthz", self.healthz),
            Route("/metrics", self.metrics),
            *Reports(self).routes(),
            *TicketPages(self).routes(),
            *MutePages(self, MuteDesk(cfg.topic_prefix, store, ingest.commands,
                                      self.ack_signer)).routes(),
            Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
        ])

    # --- sessions ---------------------------------------------------------------------------

    def _session(self, request: Request) -> tuple[Session, bool]:
        """The request's session, and whether it is new (its cookie must be set)."""
        s = self.signer.loads(request.cookies.get(COOKIE))
        return (s, False) if s is not None else (self.signer.new(), True)

    def _with_cookie(self, response: Response, s: Session) -> Response:
        response.set_cookie(COOKIE, self.signer.dumps(s), max_age=int(self.signer.max_age_s),
                            httponly=True, samesite="lax", path="/")
        return response

    async def _user(self, s: Session) -> dict[str, Any] | None:
        """The logged-in user, ``{"name", "role"}``: the session is in the database and not
        older than a login lasts."""
        if s.sid is None:
            return None
        return await run_in_threadpool(self.store.session_user, s.sid,
                                       time.time() - self.signer.max_age_s)

    def _page(self, request: Request, template: str, s: Session, user: dict[str, Any] | None,
              status: int = 200, **ctx: Any) -> Response:
        def t(key: str) -> str:
            return text(s.lang, key)
        return self.templates.TemplateResponse(
            request, template, {"t": t, "lang": s.lang, "other_lang": other(s.lang),
                            "csrf": s.csrf, "user": user, **ctx}, status_code=status)

    async def _form(self, request: Request) -> dict[str, str]:
        """An application/x-www-form-urlencoded body (the console's forms send no files)."""
        body = (await request.body()).decode("utf-8", "replace")
        return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}

    def _refuse_csrf(self, request: Request, s: Session, user: dict[str, Any] | None) -> Response:
        log.warning("console: a %s %s without a valid CSRF token refused", request.method,
                    request.url.path)
        return self._page(request, "message.html", s, user, status=403,
                          message=text(s.lang, "csrf_failed"))

    # --- login ------------------------------------------------------------------------------

    async def login_page(self, request: Request) -> Response:
        s, new = self._session(request)
        r = self._page(request, "login.html", s, None)
        return self._with_cookie(r, s) if new else r

    async def login(self, request: Request) -> Response:
        s, new = self._session(request)
        form = await self._form(request)
        if new or not csrf_ok(s, form.get("csrf")):
            return self._with_cookie(self._refuse_csrf(request, s, None), s)
        name, password = form.get("user", "").strip(), form.get("password", "")
        address = request.client.host if request.client else "?"
        wait = self.throttle.wait_s(name, address)
        if wait > 0:  # the password is not even checked
            return self._page(request, "login.html", s, None, status=429, name=name,
                              error=text(s.lang, "login_throttled").format(
                                  minutes=max(1, math.ceil(wait / 60))))
        user = await run_in_threadpool(check_password, self.store, name, password)
        if user is None:
            self.throttle.failed(name, address)
            log.warning("console: failed login for %r from %s", name[:64], address)
            return self._page(request, "login.html", s, None, status=401,
                              error=text(s.lang, "login_failed"), name=name)
        self.throttle.succeeded(name, address)
        fresh = self.signer.new(s.lang)  # a new session (and token) at login
        fresh.sid = secrets.token_urlsafe(32)
        now = time.time()
        await run_in_threadpool(self.store.open_session, fresh.sid, user["name"], now,
                                now - self.signer.max_age_s)
        log.info("console: %s logged in (%s) from %s", user["name"], user["role"], address)
        return self._with_cookie(RedirectResponse("/", status_code=303), fresh)

    async def logout(self, request: Request) -> Response:
        s, _ = self._session(request)
        form = await self._form(request)
        if not csrf_ok(s, form.get("csrf")):
            return self._refuse_csrf(request, s, await self._user(s))
        if s.sid is not None:  # ended in the database: a copy of the cookie is worth nothing
            await run_in_threadpool(self.store.end_session, s.sid)
        return self._with_cookie(RedirectResponse("/login", status_code=303),
                                 self.signer.new(s.lang))

    async def language(self, request: Request) -> Response:
        s, _ = self._session(request)
        form = await self._form(request)
        if not csrf_ok(s, form.get("csrf")):
            return self._refuse_csrf(request, s, await self._user(s))
        if form.get("lang") in LANGUAGES:
            s.lang = form["lang"]
        back = form.get("next", "/")
        if not back.startswith("/") or back.startswith("//"):
            back = "/"
        return self._with_cookie(RedirectResponse(back, status_code=303), s)

    # --- pages ------------------------------------------------------------------------------

    async def _board(self) -> dict[str, Any]:
        return await run_in_threadpool(B.board, self.store, time.time(),
                                       self.cfg.http.stale_after_s)

    async def _reader(self, request: Request) -> tuple[Session, dict[str, Any]] | Response:
        """The session and user of a request for the alarms' pages (the board, a park, an
        alarm, history, statistics), which show every park's and every tenant's alarms: an
        operator or a viewer; anyone else logged in is sent to their hazard tickets."""
        s, _ = self._session(request)
        user = await self._user(s)
        if user is None:
            return RedirectResponse("/login", status_code=303)
        if user["role"] not in ALARM_READERS:
            return RedirectResponse("/tickets", status_code=303)
        return s, user

    async def board_page(self, request: Request) -> Response:
        got = await self._reader(request)
        if isinstance(got, Response):
            return got
        s, user = got
        return self._page(request, "board.html", s, user, board=await self._board())

    async def alarm_page(self, request: Request) -> Response:
        got = await self._reader(request)
        if isinstance(got, Response):
            return got
        s, user = got
        alarm_id = request.path_params["alarm_id"]
        alarm = await run_in_threadpool(self.store.alarm, alarm_id)
        if alarm is None:
            return self._page(request, "message.html", s, user, status=404,
                              message=text(s.lang, "not_found"))
        commands = await run_in_threadpool(self.store.commands, alarm_id)
        mark = await run_in_threadpool(self.store.alarm_mark, alarm_id)
        tickets = await run_in_threadpool(lambda: self.store.tickets(Actor.of(user),
                                                                     alarm_id=alarm_id))
        latest = alarm["event"]
        waiting = any(c["command"] == "ack" for c in commands) \
            and not latest.get("acknowledged")
        return self._page(request, "alarm.html", s, user, alarm=alarm, latest=latest,
                          fire=B.is_fire(latest), where=B.where(latest), commands=commands,
                          waiting=waiting, sent=request.query_params.get("sent") == "1",
                          mark=mark, tickets=tickets)

    async def park_page(self, request: Request) -> Response:
        got = await self._reader(request)
        if isinstance(got, Response):
            return got
        s, user = got
        view = await run_in_threadpool(park_view, self.store, request.path_params["park"],
                                       time.time(), self.cfg.http.stale_after_s)
        if not view["buildings"] and view["gateway"] is None:
            return self._page(request, "message.html", s, user, status=404,
                              message=text(s.lang, "no_park"))
        return self._page(request, "park.html", s, user, view=view)

    # --- acknowledging ----------------------------------------------------------------------

    async def _operator_command(self, request: Request, forbidden: str
                                ) -> Response | tuple[Session, dict[str, Any], dict[str, str],
                                                      dict[str, Any]]:
        """What every operator command on an alarm checks first, in order: a login, the CSRF
        token, the operator role (`forbidden`: the message for another role), the alarm.
        The refusal as a response, or (session, user, form, alarm)."""
        s, _ = self._session(request)
        user = await self._user(s)
        if user is None:
            return RedirectResponse("/login", status_code=303)
        form = await self._form(request)
        token = form.get("csrf") or request.headers.get("x-csrf-token")
        if not csrf_ok(s, token):
            return self._refuse_csrf(request, s, user)
        if user["role"] != "operator":
            return self._page(request, "message.html", s, user, status=403,
                              message=text(s.lang, forbidden))
        alarm = await run_in_threadpool(self.store.alarm, request.path_params["alarm_id"])
        if alarm is None:
            return self._page(request, "message.html", s, user, status=404,
                              message=text(s.lang, "not_found"))
        return s, user, form, alarm

    async def ack(self, request: Request) -> Response:
        checked = await self._operator_command(request, "forbidden_role")
        if isinstance(checked, Response):
            return checked
        s, user, form, alarm = checked
        alarm_id = request.path_params["alarm_id"]
        if not self.ingest.commands.connected.is_set():
            return self._page(request, "message.html", s, user, status=503,
                              message=text(s.lang, "broker_down"))
        park, note = alarm["park"], form.get("note", "").strip()[:500] or None
        try:
            payload, signed = self.ack_signer.payload(park, alarm_id, user["name"], note)
        except ValueError as exc:  # a key file that is there but unusable: nothing is sent
            log.error("console: %s's acknowledgement of %s not sent: their signing key "
                      "cannot be used (%s)", user["name"], alarm_id, exc)
            return self._page(request, "message.html", s, user, status=503,
                              message=text(s.lang, "signing_failed"))
        await run_in_threadpool(self.store.record_command, uuid.uuid4().hex, park, alarm_id,
                                "ack", user["name"], note, time.time())
        self.ingest.commands.publish(f"{self.cfg.topic_prefix}/{park}/commands/ack", payload,
                                     qos=1)
        log.info("console: %s acknowledged %s of park %s (%s command sent)", user["name"],
                 alarm_id, park, "signed" if signed else "plain")
        return RedirectResponse(f"/alarms/{alarm_id}?sent=1", status_code=303)

    # --- marking a false alarm ---------------------------------------------------------------

    async def mark_false(self, request: Request) -> Response:
        """An operator marks the alarm as a false alarm (``false_alarm=1``) or takes the mark
        back (``false_alarm=0``).  Only the center's database changes (the gateway's contract
        has no such command), recorded with its author like an ack."""
        checked = await self._operator_command(request, "forbidden_role_mark")
        if isinstance(checked, Response):
            return checked
        _s, user, form, alarm = checked
        alarm_id = request.path_params["alarm_id"]
        false_alarm = form.get("false_alarm", "1") != "0"
        note = form.get("note", "").strip()[:500] or None
        await run_in_threadpool(self.store.mark_alarm, uuid.uuid4().hex, alarm["park"],
                                alarm_id, false_alarm, user["name"], note, time.time())
        log.info("console: %s %s %s of park %s", user["name"],
                 "marked as a false alarm" if false_alarm else "unmarked as a false alarm",
                 alarm_id, alarm["park"])
        return RedirectResponse(f"/alarms/{alarm_id}", status_code=303)

    # --- the live stream --------------------------------------------------------------------

    async def events(self, request: Request) -> Response:
        s, _ = self._session(request)
        user = await self._user(s)
        if user is None:
            return Response(status_code=401)
        if user["role"] not in ALARM_READERS:
            return Response(status_code=403)
        return StreamingResponse(self._stream(request, s), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store",
                                          "X-Accel-Buffering": "no"})

    def _fragment(self, s: Session, board: dict[str, Any]) -> str:
        def t(key: str) -> str:
            return text(s.lang, key)
        tpl = self.templates.get_template("board_body.html")
        html = tpl.render(t=t, board=board, lang=s.lang)
        seqs = {a["alarm_id"]: a["seq"] for a in board["alarms"]}
        return json.dumps({"html": html, "fires": board["fires"], "seqs": seqs},
                          ensure_ascii=False)

    async def _stream(self, _request: Request, s: Session) -> AsyncIterator[str]:
        wake = asyncio.Event()
        token = self.hub.add(asyncio.get_running_loop(), wake)
        try:
            yield "retry: 2000\n\n"
            yield f"data: {self._fragment(s, await self._board())}\n\n"
            while not self.hub.closed:
                try:
                    await asyncio.wait_for(wake.wait(), KEEPALIVE_S)
                except TimeoutError:
                    yield ": keepalive\n\n"
                    continue
                wake.clear()
                if self.hub.closed:
                    break
                yield f"data: {self._fragment(s, await self._board())}\n\n"
                await asyncio.sleep(MIN_PUSH_INTERVAL_S)
        finally:
            self.hub.remove(token)

    # --- monitoring -------------------------------------------------------------------------

    async def healthz(self, _request: Request) -> Response:
        status, body = healthz(await run_in_threadpool(self.health))
        return JSONResponse(body, status_code=status)

    async def metrics(self, _request: Request) -> Response:
        body = await run_in_threadpool(metrics_text, self.registry)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")
