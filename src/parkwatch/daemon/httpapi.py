"""The local HTTP API: open alarms, an alarm's history and deliveries, suppressions, and the
operator commands (acknowledge, reset).

Every ``/api/`` request needs ``Authorization: Bearer <token>`` (``api.secret_file`` or
``api.secret_env``); a request without it is refused with 401, logged and counted.  Reads come
straight from the alarm store; commands are run on the pipeline thread, like every change.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import re
import secrets
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from parkwatch.alarms.service import Outcome
from parkwatch.alarms.views import StoreReader
from parkwatch.commandsig import CommandError
from parkwatch.rejections import Rejections

log = logging.getLogger("parkwatch.api")

#: (command, alarm_id, body, via) -> outcome, run on the pipeline thread; raises CommandError
#: when the body is refused (unsigned where a signature is required, forged, stale, ...)
Command = Callable[[str, str, dict[str, Any], str], Outcome]

_STATUS = {Outcome.DONE: HTTPStatus.OK, Outcome.ALREADY: HTTPStatus.OK,
           Outcome.UNKNOWN: HTTPStatus.NOT_FOUND, Outcome.NOT_OPERATOR: HTTPStatus.FORBIDDEN,
           Outcome.NOT_RESETTABLE: HTTPStatus.CONFLICT}
_ALARM = re.compile(r"^/api/alarms/([0-9A-Za-z]{1,64})(?:/(ack|reset))?$")
MAX_BODY = 16_384
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
    def __init__(self, listen: str, port: int, token: str, store: StoreReader,
                 command: Command, status: Callable[[], dict[str, Any]],
                 views: dict[str, Callable[[], Any]] | None = None,
                 extra: dict[str, Callable[[], tuple[int, str, bytes]]] | None = None) -> None:
        self.token = token.encode("utf-8")
        self.store = store
        self.command = command
        self.status = status
        self.views = views or {}  # more GET /api/ paths (token required)
        self.extra = extra or {}  # paths outside /api/ (no token), e.g. /metrics
        self.refused = Rejections(log, "HTTP API request")
        self.httpd = ThreadingHTTPServer((listen, port), self._handler())
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="parkwatch-api",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()
        log.info("HTTP API on http://%s:%d/api/", self.httpd.server_address[0], self.port)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(2.0)
        self.store.close()

    def authorised(self, header: str | None) -> bool:
        if not header or not header.startswith("Bearer "):
            return False
        return hmac.compare_digest(header[7:].strip().encode("utf-8"), self.token)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "parkwatch"
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("%s " + format, self.client_address[0], *args)

            def _reply(self, status: int, body: Any, content_type: str = "application/json",
                       close: bool = False) -> None:
                data = body if isinstance(body, bytes) else json.dumps(
                    body, ensure_ascii=False, indent=1).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", f"{content_type}; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                if close:  # answered before reading the body: the connection cannot go on
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                self.wfile.write(data)

            def _gate(self) -> str | None:
                """The path when the request may go on, None when it was answered."""
                path = urlsplit(self.path).path
                if path in api.extra:
                    status, ctype, body = api.extra[path]()
                    self._reply(status, body, ctype)
                    return None
                if not path.startswith("/api/"):
                    self._reply(404, {"error": f"no such path {path}"}, close=True)
                    return None
                if not api.authorised(self.headers.get("Authorization")):
                    api.refused.reject("unauthorised", f"{self.command} {path} from "
                                       f"{self.client_address[0]} without a valid token")
                    self._reply(401, {"error": "missing or wrong bearer token"}, close=True)
                    return None
                return path

            def do_GET(self) -> None:
                path = self._gate()
                if path is None:
                    return
                query = parse_qs(urlsplit(self.path).query)
                if path == "/api/alarms":
                    include_closed = query.get("all", ["0"])[0] in ("1", "true", "yes")
                    self._reply(200, {"alarms": api.store.alarms(include_closed)})
                elif path == "/api/suppressions":
                    self._reply(200, {"suppressions": api.store.suppressions()})
                elif path == "/api/status":
                    try:
                        self._reply(200, api.status())
                    except TimeoutError:
                        self._reply(503, {"error": "the alarm pipeline does not answer"})
                elif path in api.views:
                    self._reply(200, api.views[path]())
                elif (m := _ALARM.match(path)) and m.group(2) is None:
                    found = api.store.alarm(m.group(1))
                    if found is None:
                        self._reply(404, {"error": f"no alarm {m.group(1)}"})
                    else:
                        self._reply(200, found)
                else:
                    self._reply(404, {"error": f"no such path {path}"})

            def do_POST(self) -> None:
                path = self._gate()
                if path is None:
                    return
                m = _ALARM.match(path)
                if m is None or m.group(2) is None:
                    self._reply(404, {"error": f"no such path {path}"}, close=True)
                    return
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                    if not 0 <= length <= MAX_BODY:
                        self.close_connection = True
                        raise ValueError(f"Content-Length must be 0 to {MAX_BODY}")
                    body = json.loads(self.rfile.read(length) or b"{}")
                    if not isinstance(body, dict):
                        raise ValueError("the body must be a JSON object")
                except (ValueError, RecursionError) as exc:
                    api.refused.reject("bad_request", f"{path}: {exc}")
                    self._reply(400, {"error": str(exc)}, close=self.close_connection)
                    return
                try:
                    outcome = api.command(m.group(2), m.group(1), body, "http")
                except CommandError as exc:  # others are counted with the operator commands
                    status = 400 if exc.reason == "bad_command" else 403
                    if status == 400:
                        api.refused.reject("bad_request", f"{path}: {exc}")
                    self._reply(status, {"error": str(exc), "reason": exc.reason})
                    return
                except TimeoutError:
                    self._reply(503, {"error": "the alarm pipeline does not answer; the "
                                      "command may still be applied: check the alarm"})
                    return
                found = api.store.alarm(m.group(1))
                self._reply(_STATUS[outcome], {
                    "result": outcome.value,
                    "alarm": found["alarm"] if found else None,
                })

        return Handler
