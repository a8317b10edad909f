"""A small HTTP/1.1 server that a flood of connections cannot tie up: the connection handling
behind the local API (:mod:`parkwatch.daemon.httpapi` holds the routes).

One asyncio event loop on one thread does all socket I/O; ``h11`` (python-hyper's I/O-free
HTTP/1.1 parser) parses; a fixed pool of ``workers`` threads runs the handlers, which read
SQLite and wait on the pipeline thread.  So the threads are ``1 + workers`` whatever the number
of connections, and an idle or half-sent connection costs a few kilobytes, not a thread.

Bounds, each with what happens when it is reached:

* ``max_connections``: a new connection is still accepted, and the oldest connection that has
  made no authorised request is closed to make room (at worst the new one itself), so a flood
  of idle or half-sent connections cannot lock out an operator.  The loop accepts at once, so
  the listen queue does not fill.
* ``header_timeout_s``: the time to send a complete request head, from the connection (or from
  the first byte of a request on a kept-alive one); ``body_timeout_s`` the same for the body;
  ``idle_timeout_s`` how long a kept-alive connection may wait between requests.
* ``max_head`` (431) and ``max_body`` (413, told from ``Content-Length`` before any of the
  body is read); a request h11 cannot parse gets 400.  Each of these answers closes.

Every client error (timeouts, disconnects, resets, refused requests) is counted and logged
through :class:`~parkwatch.rejections.Rejections`, rate-limited, with its reason: never a
traceback, and none of them stops the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from parkwatch.daemon.httpconn import App, Connection, Limits, Request, Response, json_response
from parkwatch.rejections import Rejections

__all__ = ["App", "HttpServer", "Limits", "Request", "Response", "json_response"]

log = logging.getLogger("parkwatch.api")


class HttpServer:
    """Listens at once (the port is known on return); ``start`` serves, ``stop`` closes
    every connection and joins every thread."""

    def __init__(self, listen: str, port: int, app: App, limits: Limits, refused: Rejections,
                 name: str = "parkwatch-api") -> None:
        self.app = app
        self.limits = limits
        self.refused = refused  # requests refused (400, 413, 431): the app's own refusals too
        self.dropped = Rejections(log, "HTTP API connection")  # timeouts, disconnects, evictions
        family = socket.AF_INET6 if ":" in listen else socket.AF_INET
        self.backlog = max(128, limits.max_connections)
        self.sock = socket.create_server((listen, port), family=family, backlog=self.backlog)
        self.server_address: tuple[str, int] = self.sock.getsockname()[:2]
        self.port = self.server_address[1]
        self.connections: dict[Connection, None] = {}  # oldest first
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(self._loop_error)
        self.pool = ThreadPoolExecutor(limits.workers, thread_name_prefix=f"{name}-worker")
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._ready = threading.Event()

    def start(self) -> None:
        # every worker started now, so the thread count is fixed from here on: each waits for
        # the others, which makes the pool start one thread per worker
        barrier = threading.Barrier(self.limits.workers)
        for done in [self.pool.submit(barrier.wait, 5.0) for _ in range(self.limits.workers)]:
            done.result()
        self._thread.start()
        self._ready.wait(5.0)

    def stop(self) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5.0)
        else:
            self.sock.close()
        self.pool.shutdown(wait=True, cancel_futures=True)
        if not self._thread.is_alive():
            self.loop.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(self.loop.create_server(
            lambda: Connection(self), sock=self.sock, backlog=self.backlog))
        self._ready.set()
        try:
            self.loop.run_forever()
        finally:
            server.close()  # what waits in the listen queue is refused by the kernel
            for conn in list(self.connections):
                conn.abort()
            # connections accepted but not yet handed to a protocol: closed by their tasks
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            for conn in list(self.connections):
                conn.abort()
            for _ in range(2):  # closed transports close their sockets on the next turns
                self.loop.run_until_complete(asyncio.sleep(0))

    # --- called by the connections, on the loop thread ---------------------------------

    def opened(self, conn: Connection) -> None:
        """A new connection; at ``max_connections``, the oldest one that made no authorised
        request is closed (the new one itself when every other did)."""
        self.connections[conn] = None
        if len(self.connections) > self.limits.max_connections:
            victim = next(c for c in self.connections if not c.authorised)
            self.dropped.reject("evicted", f"closed a connection from {victim.peer} that made "
                                f"no authorised request, to make room (max_connections "
                                f"{self.limits.max_connections})")
            victim.abort()

    def forget(self, conn: Connection) -> None:
        self.connections.pop(conn, None)

    def submit(self, conn: Connection, request: Request) -> None:
        """A whole request to the workers (raises RuntimeError once the server stops)."""
        self.pool.submit(self._work, conn, request)

    def _work(self, conn: Connection, request: Request) -> None:
        """On a worker thread: the app's answer, handed back to the loop."""
        try:
            response = self.app.handle(request)
        except Exception:  # a bug in a handler: its traceback, and the client gets 500
            log.exception("HTTP API: %s %s failed", request.method, request.path)
            response = json_response(500, {"error": "internal error; see the daemon's log"})
        with contextlib.suppress(RuntimeError):  # the server stopped meanwhile
            self.loop.call_soon_threadsafe(conn.respond, response)

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """What asyncio would log with a traceback: a socket error (e.g. accept() out of
        descriptors) is a counted, rate-limited line; anything else is a bug and keeps it."""
        exc = context.get("exception")
        if isinstance(exc, OSError):
            reason = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
            self.dropped.reject(reason, f"{context.get('message')}: {exc}")
        else:
            log.error("HTTP API: %s", context.get("message"), exc_info=exc)
