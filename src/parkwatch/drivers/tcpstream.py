"""A TCP connection as the Modbus drivers use it: settings shared by the drivers that reach
their devices over TCP (serial servers, 4G DTUs, Modbus TCP devices), and the byte stream.

The stream reads like a serial port with a timeout (``read(n)`` returns at most `n` bytes,
fewer when the timeout passes first), so the bus scheduler's request/answer logic runs over it
unchanged.  A connection the far end closes or resets raises :class:`ConnectionError`: the
scheduler closes it and reconnects with backoff, as it reopens a vanished serial port.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
import threading
import time
from concurrent.futures import Future, wait
from typing import Any

from pydantic import Field, field_validator

from parkwatch.config.base import Strict
from parkwatch.tcpalive import DEAD_AFTER_S, detect_dead_links

#: a DNS name (RFC 1123 labels) or an IPv4 / IPv6 address
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)"
                       r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")


class LinkPending(OSError):
    """Raised by a link's ``open()`` while its connection is still being made: no failure
    yet, the bus loop asks again shortly (and reports its sensors comm_fail meanwhile)."""


class TcpEndpoint(Strict):
    """Where a TCP driver connects, and how patiently: the defaults suit a 4G DTU, whose
    round trips take hundreds of milliseconds and now and then a few seconds."""

    host: str = Field(description="IP address or DNS name of the serial server, DTU or "
                      "Modbus TCP device")
    port: int = Field(ge=1, le=65_535, description="its TCP port")
    connect_timeout_s: float = Field(10.0, gt=0, le=120, description="how long a connection "
                                     "attempt may take (4G links: 10 s or more)")
    reconnect_max_s: float = Field(30.0, gt=0, le=3600, description="longest wait between "
                                   "attempts to reconnect (backoff from 0.5 s, doubling)")

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        if "://" in v or "/" in v:
            raise ValueError(f"'{v}' is not a host: give only the address or name, e.g. "
                             "192.168.1.200 (no scheme, no path)")
        with contextlib.suppress(ValueError):
            ipaddress.ip_address(v)
            return v
        if ":" in v:
            raise ValueError(f"'{v}' is not a host: put the TCP port under `port`")
        if not _HOSTNAME.match(v) or v.replace(".", "").isdigit():
            raise ValueError(f"'{v}' is not a valid IP address or host name")
        return v

    @property
    def endpoint(self) -> str:
        """host:port, as logs and health name the connection."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class TcpStream:
    """One TCP connection read with a per-read timeout, like a serial port."""

    def __init__(self, host: str, port: int, timeout_s: float,
                 connect_timeout_s: float) -> None:
        self.host, self.port = host, port
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.sock: socket.socket | None = None
        self._attempt: Future[socket.socket] | None = None

    def open(self) -> None:
        """Connect: OSError when it cannot, :class:`LinkPending` while the attempt is still
        under way.  The attempt runs on a thread of its own, so that a connect that takes
        seconds (a 4G link; an unreachable host drops the SYN and waits out
        `connect_timeout_s`) never holds up the bus loop's comm_fail reports."""
        if self._attempt is None:
            self._attempt = Future()
            threading.Thread(target=self._connect, args=(self._attempt,), daemon=True,
                             name=f"parkwatch-connect-{self.host}:{self.port}").start()
        attempt = self._attempt
        # (not result(timeout=...): a connect that timed out raises TimeoutError too)
        if not wait([attempt], timeout=_PENDING_WAIT_S).done:
            raise LinkPending(f"connecting to {self.host}:{self.port}")
        self._attempt = None
        self.sock = attempt.result()  # or the connect's OSError

    def _connect(self, attempt: Future[socket.socket]) -> None:
        try:
            sock = socket.create_connection((self.host, self.port), self.connect_timeout_s)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # small frames at once
            detect_dead_links(sock, max(DEAD_AFTER_S, 4 * self.timeout_s))
        except OSError as exc:
            attempt.set_exception(exc)
            return
        attempt.set_result(sock)

    def close(self) -> None:
        if self._attempt is not None:  # a connect still under way: its socket is not wanted
            self._attempt.add_done_callback(_close_result)
            self._attempt = None
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None

    def write(self, data: bytes) -> None:
        sock = self._sock()
        sock.settimeout(self.timeout_s)
        sock.sendall(data)

    def read(self, n: int) -> bytes:
        """Up to `n` bytes, waiting at most the timeout for all of them."""
        sock = self._sock()
        data = b""
        deadline = time.monotonic() + self.timeout_s
        while len(data) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
            try:
                chunk = sock.recv(n - len(data))
            except TimeoutError:
                break
            if not chunk:
                raise ConnectionError("connection closed by the far end")
            data += chunk
        return data

    def discard(self) -> None:
        """Drop what has arrived unasked (a late answer to an earlier request)."""
        sock = self._sock()
        sock.setblocking(False)
        try:
            while True:
                try:
                    chunk = sock.recv(4096)
                except BlockingIOError:
                    return
                if not chunk:
                    raise ConnectionError("connection closed by the far end")
        finally:
            sock.setblocking(True)

    def _sock(self) -> socket.socket:
        if self.sock is None:
            raise ConnectionError("not connected")
        return self.sock


#: how long open() waits for a connect under way before it says it is still pending
_PENDING_WAIT_S = 0.05


def _close_result(attempt: Future[socket.socket]) -> None:
    if attempt.exception() is None:
        with contextlib.suppress(OSError):
            attempt.result().close()


def check_one_owner(park: Any, index: int) -> list[tuple[tuple[str | int, ...], str]]:
    """One driver per host and port: a serial server's port has one master, and a Modbus TCP
    device's connection one owner (its answers would go to whichever asked last)."""
    drv = park.drivers[index]
    for other in park.drivers[:index]:
        if isinstance(other, TcpEndpoint) and (other.host, other.port) == (drv.host, drv.port):
            return [(("drivers", index, "port"), f"{drv.endpoint} is already used by driver "
                     f"'{getattr(other, 'id', '?')}': one owner per connection")]
    return []
