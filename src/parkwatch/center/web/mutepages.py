"""The console's mutes page (``/mutes``): each gateway's mutes in force, as it says, every mute
and unmute command sent with the gateway's reply, and the form an operator sets a mute with
(a silence or a maintenance window for a scope and span, docs/contract.md "Mutes").

Operators and viewers read it; only an operator sends; every POST needs the CSRF token.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Protocol

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from parkwatch.center.config import CenterConfig
from parkwatch.center.mutedesk import MuteDesk, MuteError, mute_spec, new_mute_id
from parkwatch.center.store import CenterStore
from parkwatch.center.web.i18n import text
from parkwatch.center.web.session import Session, csrf_ok

log = logging.getLogger("parkwatch.center")

KINDS = ("fire", "overload", "water", "fault")
#: the form's fields that are lists of ids (comma or space separated)
LISTS = ("buildings", "floors", "zones", "tenants", "sensors", "subscribers")


class Console(Protocol):
    cfg: CenterConfig
    store: CenterStore

    async def _reader(self, request: Request) -> tuple[Session, dict[str, Any]] | Response: ...

    async def _form(self, request: Request) -> dict[str, str]: ...

    def _page(self, request: Request, template: str, s: Session, user: dict[str, Any] | None,
              status: int = 200, **ctx: Any) -> Response: ...

    def _refuse_csrf(self, request: Request, s: Session,
                     user: dict[str, Any] | None) -> Response: ...


def _local(value: str) -> datetime:
    """A datetime-local input's value (``2026-12-05T09:00``) as an aware local time."""
    return datetime.fromisoformat(value.strip()).astimezone()


def _ids(value: str) -> list[str]:
    return [x for x in value.replace("，", ",").replace(",", " ").split() if x]


class MutePages:
    def __init__(self, console: Console, desk: MuteDesk) -> None:
        self.c = console
        self.desk = desk

    def routes(self) -> list[Route]:
        return [Route("/mutes", self.page), Route("/mutes", self.create, methods=["POST"]),
                Route("/mutes/end", self.end, methods=["POST"])]

    async def page(self, request: Request, error: str | None = None, status: int = 200,
                   form: dict[str, str] | None = None) -> Response:
        got = await self.c._reader(request)
        if isinstance(got, Response):
            return got
        s, user = got
        commands = await run_in_threadpool(self.c.store.mute_commands)
        in_force = await run_in_threadpool(self.c.store.gateway_mutes)
        return self.c._page(request, "mutes.html", s, user, status=status, error=error,
                            commands=commands, in_force=in_force, kinds=KINDS,
                            form=form or {})

    async def _operator(self, request: Request) -> tuple[Session, dict[str, Any],
                                                         dict[str, str]] | Response:
        got = await self.c._reader(request)
        if isinstance(got, Response):
            return got
        s, user = got
        form = await self.c._form(request)
        if not csrf_ok(s, form.get("csrf")):
            return self.c._refuse_csrf(request, s, user)
        if user["role"] != "operator":
            return self.c._page(request, "message.html", s, user, status=403,
                                message=text(s.lang, "mute_forbidden"))
        if not self.desk.link.connected.is_set():
            return self.c._page(request, "message.html", s, user, status=503,
                                message=text(s.lang, "broker_down"))
        return s, user, form

    async def create(self, request: Request) -> Response:
        got = await self._operator(request)
        if isinstance(got, Response):
            return got
        s, user, form = got
        park = form.get("park", "").strip()
        try:
            if not park:
                raise MuteError("mute_invalid", "park")
            try:
                start, end = _local(form.get("start", "")), _local(form.get("end", ""))
            except ValueError:
                raise MuteError("mute_bad_time") from None
            scope = {k: _ids(form.get(k, "")) for k in LISTS if k != "subscribers"}
            scope["kinds"] = [k for k in KINDS if form.get(f"kind_{k}")]
            spec = mute_spec(new_mute_id(start.timestamp()), start, end, scope,
                             _ids(form.get("subscribers", "")), bool(form.get("include_fire")),
                             form.get("reason", "").strip())
            if not await run_in_threadpool(self.desk.known, park):
                raise MuteError("mute_unknown_park", park)
        except MuteError as exc:
            message = text(s.lang, exc.key) + (f" ({exc.detail})" if exc.detail else "")
            return await self.page(request, message, 400, form)
        note = form.get("note", "").strip()[:500] or None
        try:
            await run_in_threadpool(self.desk.send, park, "mute", spec, user["name"], note)
        except ValueError as exc:
            log.error("console: %s's mute not sent: their signing key cannot be used (%s)",
                      user["name"], exc)
            return self.c._page(request, "message.html", s, user, status=503,
                                message=text(s.lang, "signing_failed"))
        return RedirectResponse("/mutes", status_code=303)

    async def end(self, request: Request) -> Response:
        got = await self._operator(request)
        if isinstance(got, Response):
            return got
        s, user, form = got
        park, mute_id = form.get("park", "").strip(), form.get("mute_id", "").strip()
        if not park or not mute_id:
            return await self.page(request, text(s.lang, "mute_invalid"), 400)
        if not await run_in_threadpool(self.desk.known, park):
            return await self.page(request, f"{text(s.lang, 'mute_unknown_park')} ({park})", 400)
        try:
            await run_in_threadpool(self.desk.send, park, "unmute", {"id": mute_id},
                                    user["name"], None)
        except ValueError:
            return self.c._page(request, "message.html", s, user, status=503,
                                message=text(s.lang, "signing_failed"))
        return RedirectResponse("/mutes", status_code=303)
