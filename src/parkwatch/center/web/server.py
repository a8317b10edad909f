"""The console's HTTP server: uvicorn on a thread of the center's process.

The socket is bound in :meth:`WebServer.start`, so a port in use fails the start at once (and
port 0 gives a free port, known before any request); :meth:`WebServer.stop` ends the open
live streams, then uvicorn, and waits for its thread.
"""

from __future__ import annotations

import logging
import socket
import threading

import uvicorn

from parkwatch.center.web.app import Console

log = logging.getLogger("parkwatch.center")


class WebServer:
    def __init__(self, console: Console, host: str, port: int,
                 trusted_proxies: list[str] | None = None) -> None:
        self.console = console
        self.host = host
        self.port = port
        # behind a trusted reverse proxy the client is the one its X-Forwarded-For names
        # (uvicorn's ProxyHeadersMiddleware; any other peer's header is ignored)
        config = uvicorn.Config(console.app, log_level="warning", access_log=False,
                                lifespan="off", timeout_graceful_shutdown=2,
                                proxy_headers=bool(trusted_proxies),
                                forwarded_allow_ips=list(trusted_proxies or []),
                                server_header=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="parkwatch-center-web",
                                        daemon=True)
        self._sock: socket.socket | None = None

    def start(self) -> None:
        """Bind and serve (raises OSError when the address cannot be had)."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self.port = sock.getsockname()[1]
        self._thread.start()
        log.info("center: console at %s", self.url)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def _run(self) -> None:
        assert self._sock is not None
        try:
            self._server.run(sockets=[self._sock])
        except Exception:
            log.exception("center: the console's HTTP server failed")

    @property
    def started(self) -> bool:
        return bool(self._server.started)

    def stop(self, timeout: float = 5.0) -> None:
        self.console.hub.close()
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._sock is not None:
            self._sock.close()
