"""A local webhook receiver for tests: records every POST and checks its HMAC-SHA256 signature.

Only the standard library.  It listens on a free loopback port in a background thread and can
be told to misbehave: answer an error status for the next N requests or for a time span, answer
slowly, redirect, or answer something that is not HTTP::

    with WebhookReceiver(secret="a-long-test-secret") as hook:
        ...  # point a webhook target at hook.url
        hook.fail_next(3)            # 500, 500, 500, then 200 again
        hook.delay_s = 0.2           # every answer takes 0.2 s
        hook.wait_for(lambda reqs: len(reqs) >= 4)

Every request is recorded when it has been read, before the answer: a sender that dies while
the receiver is still answering has nevertheless delivered it (at-least-once, as a real
receiver sees it).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SIGNATURE_HEADER = "X-Parkwatch-Signature"


def signature(secret: str, body: bytes) -> str:
    """The header value a sender with `secret` puts on `body`: ``sha256=<hex HMAC-SHA256>``."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """Whether `header` is a valid signature of `body` (constant-time comparison)."""
    if not header or not header.startswith("sha256="):
        return False
    return hmac.compare_digest(signature(secret, body).encode("ascii"),
                               header.strip().encode("ascii", "replace"))


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (for a target that refuses connections)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True, slots=True)
class Received:
    """One POST as the receiver saw it."""

    method: str  # POST, or GET when a sender followed a redirect
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any  # the parsed body, None when it is not JSON
    signed: bool  # a signature header was present
    signature_ok: bool | None  # None when the receiver has no secret to check with
    status: int  # what the receiver answered (or meant to, if the sender had gone)
    at: float  # time.monotonic() when the body had been read

    @property
    def delivery(self) -> str | None:
        """The `X-Parkwatch-Delivery` header: ``alarm_id/seq``."""
        return self.headers.get("x-parkwatch-delivery")

    @property
    def key(self) -> tuple[str, int] | None:
        """(alarm_id, seq) of the event in the body."""
        if isinstance(self.json, dict) and "alarm_id" in self.json and "seq" in self.json:
            return self.json["alarm_id"], self.json["seq"]
        return None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins the handler threads: nothing is left running
    block_on_close = True
    allow_reuse_address = True


class WebhookReceiver:
    """Records POSTs on http://127.0.0.1:<free port>/hook; see the module doc."""

    def __init__(self, secret: str | None = None, host: str = "127.0.0.1",
                 path: str = "/hook") -> None:
        self.secret = secret
        self.requests: list[Received] = []
        self.bad_signatures = 0  # a signature header that does not verify
        self.missing_signatures = 0  # no signature header at all
        self.delay_s = 0.0  # answer this much later (slow receiver)
        self.status_ok = 200
        self.redirect_to: str | None = None  # answer POSTs with 302 and this Location
        self._broken_count = 0
        self._fail_count = 0
        self._fail_status = 500
        self._fail_until = 0.0
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # one request per connection

            def do_POST(self) -> None:
                receiver._handle(self)

            def do_GET(self) -> None:
                receiver._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = _Server((host, 0), Handler)
        self.host = host
        self.port = int(self._server.server_address[1])
        self.url = f"http://{host}:{self.port}{path}"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name=f"webhook-receiver-{self.port}", daemon=True)
        self._started = False

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> WebhookReceiver:
        self._thread.start()
        self._started = True
        return self

    def stop(self) -> None:
        """Stop serving, cut short any slow answer, and join every thread."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        if self._started:
            self._server.shutdown()
            self._thread.join(5)
        self._server.server_close()  # joins the handler threads

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # --- behaviour --------------------------------------------------------------------------

    def fail_next(self, n: int, status: int = 500) -> None:
        """Answer `status` to the next `n` requests."""
        with self._cond:
            self._fail_count, self._fail_status = n, status

    def fail_for(self, seconds: float, status: int = 500) -> None:
        """Answer `status` to every request for the next `seconds` (math.inf: until told)."""
        with self._cond:
            self._fail_until, self._fail_status = time.monotonic() + seconds, status

    def broken_next(self, n: int) -> None:
        """Answer the next `n` requests with a line that is not an HTTP status line."""
        with self._cond:
            self._broken_count = n

    def heal(self) -> None:
        """Answer 2xx again, at once."""
        with self._cond:
            self._fail_count, self._fail_until, self._broken_count = 0, 0.0, 0
            self.redirect_to = None

    # --- what came ------------------------------------------------------------------------

    def snapshot(self) -> list[Received]:
        with self._cond:
            return list(self.requests)

    def posts(self) -> list[Received]:
        return [r for r in self.snapshot() if r.method == "POST"]

    def delivered(self) -> list[Received]:
        """The POSTs answered with 2xx."""
        return [r for r in self.posts() if r.ok]

    def events(self) -> list[dict[str, Any]]:
        """The JSON bodies of the POSTs answered with 2xx."""
        return [r.json for r in self.delivered()]

    def wait_for(self, pred: Callable[[list[Received]], bool],
                 timeout: float = 5.0) -> list[Received]:
        """Wait until `pred(all requests so far)` holds; AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                reqs = list(self.requests)
                if pred(reqs):
                    return reqs
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"webhook receiver: timed out after {timeout:g} s; "
                        f"{len(reqs)} request(s): "
                        f"{[(r.status, r.delivery) for r in reqs][-10:]}")
                self._cond.wait(min(remaining, 0.1))

    # --- the handler ----------------------------------------------------------------------

    def _answer(self, method: str) -> int:
        """The status to answer; 0 for a broken (non-HTTP) answer."""
        with self._cond:
            if method != "POST":
                return self.status_ok
            if self._broken_count > 0:
                self._broken_count -= 1
                return 0
            if self.redirect_to is not None:
                return 302
            if self._fail_count > 0:
                self._fail_count -= 1
                return self._fail_status
            if time.monotonic() < self._fail_until:
                return self._fail_status
            return self.status_ok

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        at = time.monotonic()
        headers = {k.lower(): v for k, v in h.headers.items()}
        header = headers.get(SIGNATURE_HEADER.lower())
        ok = None if self.secret is None else verify(self.secret, body, header)
        try:
            parsed: Any = json.loads(body)
        except ValueError:
            parsed = None
        method = h.command
        status = self._answer(method)
        with self._cond:
            if method != "POST":
                pass  # only the POSTs carry (and are counted for) signatures
            elif header is None:
                self.missing_signatures += 1
            elif ok is False:
                self.bad_signatures += 1
            self.requests.append(Received(method, h.path, headers, body, parsed,
                                          header is not None, ok, status, at))
            self._cond.notify_all()
        if self.delay_s > 0:
            self._stopping.wait(self.delay_s)
        answer = json.dumps({"status": status}).encode()
        try:
            if status == 0:
                h.wfile.write(b"this is not HTTP\r\n\r\n")
                return
            h.send_response(status)
            if status == 302:
                h.send_header("Location", self.redirect_to or "/")
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(answer)))
            h.end_headers()
            h.wfile.write(answer)
        except OSError:
            pass  # the sender went away (killed, timed out): it was recorded all the same
