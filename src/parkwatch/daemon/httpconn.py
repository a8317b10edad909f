"""One connection of the local API's HTTP server (:mod:`parkwatch.daemon.httpserver`): its
h11 parser, its phase and the one deadline of that phase, and what the server and the app
exchange about a request (:class:`Request`, :class:`Response`, the :class:`Limits`).

All of it runs on the server's event-loop thread, except :class:`Request` and
:class:`Response`, which a worker thread reads and makes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import json
import logging
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

import h11

from parkwatch.rejections import Rejections

log = logging.getLogger("parkwatch.api")


@dataclass(frozen=True)
class Limits:
    """How much one client may hold of the server (the ``api:`` config's keys, same names)."""

    max_connections: int = 256
    workers: int = 4
    header_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    idle_timeout_s: float = 30.0
    max_head: int = 16_384
    max_body: int = 16_384


@dataclass(frozen=True)
class Request:
    """A request: its head (``body`` empty while it is being admitted), then the whole."""

    method: str
    target: str
    headers: dict[str, str]  # names in lower case; a repeated header keeps its last value
    peer: str
    body: bytes = b""

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> str:
        return urlsplit(self.target).query


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    close: bool = False  # close the connection once it is sent


def json_response(status: int, body: Any, close: bool = False) -> Response:
    return Response(status, json.dumps(body, ensure_ascii=False, indent=1).encode("utf-8"),
                    close=close)


class App(Protocol):
    """What the server serves."""

    def admit(self, head: Request) -> Response | bool:
        """On the loop thread, as soon as a request's head is in (so cheap, no I/O): a
        Response answers at once and closes (its body is never read); True lets an authorised
        request go on, False one that needs no authorisation."""

    def handle(self, request: Request) -> Response:
        """On a worker thread: the answer to a whole admitted request."""


class Host(Protocol):
    """What a connection needs of its server (``httpserver.HttpServer``)."""

    loop: asyncio.AbstractEventLoop
    limits: Limits
    app: App
    refused: Rejections
    dropped: Rejections

    def opened(self, conn: Connection) -> None: ...

    def forget(self, conn: Connection) -> None: ...

    def submit(self, conn: Connection, request: Request) -> None: ...


class Connection(asyncio.Protocol):
    """One client connection: its parser, its phase and the one deadline of that phase.

    Phases: ``head`` (the request head is due: header timeout), ``body`` (body timeout),
    ``handler`` (a worker has the request; reading is paused), ``idle`` (kept alive between
    requests: idle timeout), ``closing`` (closed by us, or being closed once the answer is
    written)."""

    def __init__(self, server: Host) -> None:
        self.server = server
        self.limits = server.limits
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=server.limits.max_head)
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.authorised = False
        self.phase = "head"
        self.partial = False  # bytes of the current request have arrived
        self.method = ""
        self.head: Request | None = None
        self.body: list[bytes] = []
        self.size = 0
        self.timer: asyncio.TimerHandle | None = None

    # --- asyncio's callbacks -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self._arm(self.limits.header_timeout_s)
        self.server.opened(self)

    def data_received(self, data: bytes) -> None:
        if self.phase == "closing":
            return
        if self.phase == "idle":
            self.phase = "head"
            self._arm(self.limits.header_timeout_s)
        self.partial = True
        self.h11.receive_data(data)
        self._process()

    def eof_received(self) -> bool:
        if self.phase == "handler":
            return True  # a client that only shut down its sending side still gets its answer
        if self.phase == "body" or (self.phase == "head" and self.partial):
            self.server.dropped.reject("disconnected", f"{self.peer} closed the connection in "
                                       f"the middle of a request ({self.phase})")
        self._finish()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and self.phase != "closing":
            reason = errno.errorcode.get(getattr(exc, "errno", 0) or 0, type(exc).__name__)
            self.server.dropped.reject(reason, f"{self.peer}: {exc} ({self.phase})")
        self._finish()
        # Python 3.11's socket transport refers to itself (its _read_ready_cb is one of its
        # bound methods), so a closed connection's memory waited for a full garbage collection;
        # 3.12 breaks that cycle on close (CPython gh-100348), and so does this
        if self.transport is not None and hasattr(self.transport, "_read_ready_cb"):
            self.transport._read_ready_cb = None
        self.transport = None

    # --- the request -----------------------------------------------------------------------

    def _process(self) -> None:
        while self.phase in ("head", "body", "idle"):
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as exc:
                # what h11 found, without the client's bytes it quotes (a token, say)
                self._refuse(exc.error_status_hint,
                             "head_too_large" if exc.error_status_hint == 431 else "malformed",
                             str(exc).split(":")[0])
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                self._on_head(event)
            elif isinstance(event, h11.Data):
                self._on_data(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self._dispatch()
            elif isinstance(event, h11.ConnectionClosed):
                self._close()

    def _on_head(self, event: h11.Request) -> None:
        self.method = event.method.decode("ascii", "replace")
        size = len(event.method) + len(event.target) + sum(len(k) + len(v) + 4
                                                           for k, v in event.headers)
        if size > self.limits.max_head:  # one that came whole (h11 bounds one still coming)
            self._refuse(431, "head_too_large", f"a request head of {size} bytes")
            return
        head = Request(self.method, event.target.decode("latin-1"),
                       {k.decode("latin-1"): v.decode("latin-1") for k, v in event.headers},
                       self.peer)
        verdict = self.server.app.admit(head)
        if isinstance(verdict, Response):
            self._send(dataclasses.replace(verdict, close=True))
            return
        self.authorised = self.authorised or verdict
        length = head.headers.get("content-length")
        if length is not None and int(length) > self.limits.max_body:
            self._refuse(413, "too_large", f"{self.method} {head.path}: Content-Length "
                         f"{length} over {self.limits.max_body}")
            return
        self.head, self.body, self.size = head, [], 0
        if self.h11.they_are_waiting_for_100_continue:
            self._write(self.h11.send(h11.InformationalResponse(status_code=100, headers=[])))
        self.phase = "body"
        self._arm(self.limits.body_timeout_s)

    def _on_data(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limits.max_body:  # a chunked body, whose length came unannounced
            path = self.head.path if self.head else ""
            self._refuse(413, "too_large", f"{self.method} {path}: body over "
                         f"{self.limits.max_body}")
            return
        self.body.append(data)

    def _dispatch(self) -> None:
        assert self.head is not None and self.transport is not None
        request = dataclasses.replace(self.head, body=b"".join(self.body))
        self.head, self.body = None, []
        self.phase = "handler"
        self._disarm()
        self.transport.pause_reading()
        try:
            self.server.submit(self, request)
        except RuntimeError:  # the server is stopping
            self.abort()

    def _refuse(self, status: int, reason: str, detail: str) -> None:
        """A request the server itself refuses (400, 413, 431): counted, answered, closed."""
        self.server.refused.reject(reason, f"from {self.peer}: {detail}")
        self._send(json_response(status, {"error": f"{HTTPStatus(status).phrase}: {detail}"},
                                 close=True))

    # --- the answer ------------------------------------------------------------------------

    def respond(self, response: Response) -> None:
        """A worker's answer (on the loop thread); dropped when the client went away."""
        if self.phase == "handler" and self.transport is not None:
            if self.transport.is_closing():
                self._finish()
            else:
                self.transport.resume_reading()
                self._send(response)

    def _send(self, response: Response) -> None:
        ctype = response.content_type
        headers = [("Content-Type", ctype if "charset=" in ctype else f"{ctype}; charset=utf-8"),
                   ("Content-Length", str(len(response.body))), ("Server", "parkwatch")]
        if response.close:
            headers.append(("Connection", "close"))
        try:
            phrase = HTTPStatus(response.status).phrase.encode("ascii")
        except ValueError:
            phrase = b""
        try:
            data = self.h11.send(h11.Response(status_code=response.status, headers=headers,
                                              reason=phrase)) or b""
            if self.method != "HEAD":
                data += self.h11.send(h11.Data(data=response.body)) or b""
            data += self.h11.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError as exc:  # no answer fits the connection's state
            log.debug("HTTP API: cannot answer %s: %s", self.peer, exc)
            self.abort()
            return
        self._write(data)
        if self.h11.our_state is not h11.DONE or self.h11.their_state is not h11.DONE:
            self._close()  # asked to close, or the client's request was not read to its end
            return
        self.h11.start_next_cycle()
        self.partial = bool(self.h11.trailing_data[0])
        self.phase = "head" if self.partial else "idle"
        self._arm(self.limits.header_timeout_s if self.partial else self.limits.idle_timeout_s)
        self._process()

    def _write(self, data: bytes | None) -> None:
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    # --- the end ---------------------------------------------------------------------------

    def _close(self) -> None:
        """Closed once what was written is sent (aborted if the client does not read it)."""
        self.phase = "closing"
        self._arm(self.limits.idle_timeout_s)
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Closed now, whatever is unsent (an eviction, a timeout, the server stopping)."""
        self.phase = "closing"
        self._finish()
        if self.transport is not None:
            self.transport.abort()

    def _finish(self) -> None:
        self._disarm()
        self.server.forget(self)

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self.timer = self.server.loop.call_later(seconds, self._timeout)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _timeout(self) -> None:
        self.timer = None
        phase = self.phase
        if phase == "head":
            what = "sent part of a request head" if self.partial else "sent no request"
            self.server.dropped.reject("header_timeout", f"{self.peer} {what} within "
                                       f"{self.limits.header_timeout_s:g} s")
        elif phase == "body":
            self.server.dropped.reject("body_timeout", f"{self.peer} sent {self.size} bytes of "
                                       f"a body within {self.limits.body_timeout_s:g} s")
        else:  # idle between requests, or a closing client that does not read: no error
            log.debug("HTTP API: closing %s connection from %s", phase, self.peer)
        self.abort()

