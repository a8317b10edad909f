"""The local HTTP API: open alarms, an alarm's history and deliveries, suppressions, and the
operator commands (acknowledge, reset); the daemon adds its read-only views and the routes of
paths with parameters (a drill's report: :mod:`parkwatch.daemon.drillroutes`).

Every ``/api/`` request needs ``Authorization: Bearer <token>`` (``api.secret_file`` or
``api.secret_env``); a request without it is refused with 401, logged and counted, and its
connection closed at once.  Reads come straight from the alarm store; commands are run on the
pipeline thread, like every change.  The connections themselves (their bounds and timeouts)
are :mod:`parkwatch.daemon.httpserver`'s.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from parkwatch.alarms.service import Outcome
from parkwatch.alarms.views import StoreReader
from parkwatch.commandsig import CommandError
from parkwatch.daemon.httpserver import HttpServer, Limits, Request, Response, json_response
from parkwatch.rejections import Rejections

log = logging.getLogger("parkwatch.api")

#: a GET path under /api/ with parameters (e.g. /api/drills/{id}/report): its answer, or None
#: when the path is not the route's
Route = Callable[[str], Response | None]
#: (command, alarm_id, body, via) -> outcome, run on the pipeline thread; raises CommandError
#: when the body is refused (unsigned where a signature is required, forged, stale, ...)
Command = Callable[[str, str, dict[str, Any], str], Outcome]

_STATUS = {Outcome.DONE: HTTPStatus.OK, Outcome.ALREADY: HTTPStatus.OK,
           Outcome.UNKNOWN: HTTPStatus.NOT_FOUND, Outcome.NOT_OPERATOR: HTTPStatus.FORBIDDEN,
           Outcome.NOT_RESETTABLE: HTTPStatus.CONFLICT}
_ALARM = re.compile(r"^/api/alarms/([0-9A-Za-z]{1,64})(?:/(ack|reset|silence))?$")
MAX_BODY = 16_384
PIPELINE_BUSY = "the alarm pipeline does not answer the requests already waiting for it"
TOKEN_FILE = "api.token"


def state_token(state_dir: Path, create: bool = False) -> str:
    """The API token kept in the state directory (created, mode 0600, when asked and absent)."""
    path = state_dir / TOKEN_FILE
    if create and not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
        log.info("created API token %s (readable by this user only)", path)
    return path.read_text(encoding="utf-8").strip()


class ApiServer:
    """The API's routes (an :class:`~parkwatch.daemon.httpserver.App`) and its server."""

    def __init__(self, listen: str, port: int, token: str, store: StoreReader,
                 command: Command, status: Callable[[], dict[str, Any]],
                 views: dict[str, Callable[[], Any]] | None = None,
                 extra: dict[str, Callable[[], tuple[int, str, bytes]]] | None = None,
                 limits: Limits | None = None, routes: Sequence[Route] = ()) -> None:
        self.token = token.encode("utf-8")
        self.store = store
        self.command = command
        self.status = status
        self.views = views or {}  # more GET /api/ paths (token required)
        self.extra = extra or {}  # paths outside /api/ (no token), e.g. /metrics
        self.routes = tuple(routes)  # GET /api/ paths with parameters (token required)
        self.refused = Rejections(log, "HTTP API request")
        limits = Limits(max_body=MAX_BODY) if limits is None else limits
        # requests that wait on the pipeline thread (status, commands) may hold all workers but
        # one, which stays free for /healthz, /metrics and the store's reads when it hangs
        self._pipeline_slots = max(1, limits.workers - 1)
        self._lock = threading.Lock()
        self.pipeline_waiting = 0  # requests now waiting on the pipeline thread
        self.server = HttpServer(listen, port, self, limits, self.refused)
        self.server_address = self.server.server_address
        self.port = self.server.port

    @property
    def dropped(self) -> Rejections:
        """Connections closed for a client's fault: timeouts, disconnects, evictions."""
        return self.server.dropped

    def start(self) -> None:
        self.server.start()
        log.info("HTTP API on http://%s:%d/api/", self.server_address[0], self.port)

    def stop(self) -> None:
        self.server.stop()
        self.store.close()

    def flush(self) -> None:
        """The summaries of refused requests and dropped connections (called periodically)."""
        self.refused.flush()
        self.dropped.flush()

    def authorised(self, header: str | None) -> bool:
        if not header or not header.startswith("Bearer "):
            return False
        return hmac.compare_digest(header[7:].strip().encode("utf-8"), self.token)

    @contextmanager
    def _pipeline_slot(self) -> Iterator[bool]:
        """Whether a request may wait on the pipeline thread now (all workers but one may)."""
        with self._lock:
            free = self.pipeline_waiting < self._pipeline_slots
            self.pipeline_waiting += free
        try:
            yield free
        finally:
            with self._lock:
                self.pipeline_waiting -= free

    # --- the routes --------------------------------------------------------------------------

    def admit(self, head: Request) -> Response | bool:
        """On the server's loop: unsupported methods, unknown paths and requests without the
        token are answered before any body is read, and their connection closed."""
        path = head.path
        if head.method not in ("GET", "POST"):
            return json_response(501, {"error": f"unsupported method {head.method}"})
        if path in self.extra:
            return False
        if not path.startswith("/api/"):
            return json_response(404, {"error": f"no such path {path}"})
        if not self.authorised(head.headers.get("authorization")):
            self.refused.reject("unauthorised", f"{head.method} {path} from "
                                f"{head.peer.rpartition(':')[0]} without a valid token")
            return json_response(401, {"error": "missing or wrong bearer token"})
        if head.method == "POST" and ((m := _ALARM.match(path)) is None or m.group(2) is None):
            return json_response(404, {"error": f"no such path {path}"})
        return True

    def handle(self, request: Request) -> Response:
        """On a worker thread: a read from the store (on the reader's small pool of
        connections, shared by the workers), or a command on the pipeline thread."""
        return self._route(request)

    def _route(self, request: Request) -> Response:
        path = request.path
        if path in self.extra:
            status, ctype, body = self.extra[path]()
            return Response(status, body, ctype)
        if request.method == "POST":
            return self._command(request)
        if path == "/api/alarms":
            include_closed = parse_qs(request.query).get("all", ["0"])[0] in ("1", "true", "yes")
            return json_response(200, {"alarms": self.store.alarms(include_closed)})
        if path == "/api/suppressions":
            return json_response(200, {"suppressions": self.store.suppressions()})
        if path == "/api/status":
            with self._pipeline_slot() as slot:
                if not slot:
                    return json_response(503, {"error": PIPELINE_BUSY})
                try:
                    return json_response(200, self.status())
                except TimeoutError:
                    return json_response(503, {"error": "the alarm pipeline does not answer"})
        if path in self.views:
            return json_response(200, self.views[path]())
        for route in self.routes:
            if (answer := route(path)) is not None:
                return answer
        if (m := _ALARM.match(path)) and m.group(2) is None:
            found = self.store.alarm(m.group(1))
            if found is None:
                return json_response(404, {"error": f"no alarm {m.group(1)}"})
            return json_response(200, found)
        return json_response(404, {"error": f"no such path {path}"})

    def _command(self, request: Request) -> Response:
        m = _ALARM.match(request.path)
        assert m is not None and m.group(2) is not None  # admitted
        try:
            body = json.loads(request.body or b"{}")
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
        except (ValueError, RecursionError) as exc:
            self.refused.reject("bad_request", f"{request.path}: {exc}")
            return json_response(400, {"error": str(exc)})
        with self._pipeline_slot() as slot:
            if not slot:
                return json_response(503, {"error": PIPELINE_BUSY + "; nothing was done"})
            try:
                outcome = self.command(m.group(2), m.group(1), body, "http")
            except CommandError as exc:  # others are counted with the operator commands
                if exc.reason == "bad_command":
                    self.refused.reject("bad_request", f"{request.path}: {exc}")
                    return json_response(400, {"error": str(exc)})
                return json_response(403, {"error": str(exc), "reason": exc.reason})
            except TimeoutError:
                return json_response(503, {"error": "the alarm pipeline does not answer; the "
                                           "command may still be applied: check the alarm"})
        found = self.store.alarm(m.group(1))
        return json_response(_STATUS[outcome], {
            "result": outcome.value,
            "alarm": found["alarm"] if found else None,
        })
