"""A TCP listener for the simulator's network devices, which can go away and come back.

`cut()` closes the listening socket and every open connection, as a serial server or DTU does
when it loses power or its 4G link: the gateway's connection is reset and its reconnects are
refused.  `restore()` listens again on the same port.  Each connection is served by
``serve(conn)`` on a thread of its own; subclasses say what serving is.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading

log = logging.getLogger("parkwatch.firmware_sim.tcp")


class TcpListener:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, name: str = "tcp") -> None:
        self.host, self.port, self.name = host, port, name
        self._sock: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        #: connections accepted so far (a test waits for the gateway's reconnect)
        self.accepted = 0

    def start(self) -> TcpListener:
        """Listen (on a free port when `port` is 0: :attr:`port` then says which)."""
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(4)
        self.port = int(sock.getsockname()[1])
        self._sock = sock
        threading.Thread(target=self._accept, args=(sock,), name=f"sim-{self.name}",
                         daemon=True).start()
        log.info("simulated %s listening on %s:%d", self.name, self.host, self.port)
        return self

    def stop(self) -> None:
        self.cut()

    def cut(self) -> None:
        """Stop listening and close every connection (the device is gone)."""
        with self._lock:
            sock, self._sock = self._sock, None
            conns, self._conns = self._conns, set()
        for s in [*([sock] if sock else []), *conns]:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()

    def restore(self) -> None:
        """Listen again on the same port."""
        if self._sock is None:
            self.start()

    @property
    def listening(self) -> bool:
        return self._sock is not None

    def _accept(self, sock: socket.socket) -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return  # cut
            with self._lock:
                if self._sock is not sock:
                    conn.close()
                    return
                self._conns.add(conn)
                self.accepted += 1
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._serve, args=(conn,), name=f"sim-{self.name}-conn",
                             daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self.serve(conn)
        except OSError:
            pass  # the peer or cut() closed it
        except Exception:  # a simulator bug must be loud
            log.exception("simulated %s: connection failed", self.name)
        finally:
            with self._lock:
                self._conns.discard(conn)
            with contextlib.suppress(OSError):
                conn.close()

    def serve(self, conn: socket.socket) -> None:
        raise NotImplementedError
