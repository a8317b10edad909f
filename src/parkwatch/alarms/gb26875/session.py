"""The gateway's side of a GB/T 26875.3 TCP session: parkwatch as the user information
transmission device, the city's monitoring center as the server.

:meth:`Session.exchange` sends one frame (command 2, send data) and waits for the center's
answer with the same serial number: a confirm (3) returns, a deny (6), no answer within
`timeout_s` or a lost connection raises :class:`DeliveryError`, and the courier sends the
row again after its backoff (§6.5, 重发机制: the sender repeats an unconfirmed frame).  A new
frame gets the next serial number (§6.6: set by the sender, +1 for each new frame, from 0
on a new connection).

The connection is kept from the start (:meth:`Session.open`): a keeper thread connects, and
connects again after a loss with backoff, whether or not an alarm waits, so that the center
sees the device online.  On each new connection the device reports its running state (type 21,
正常监视状态), and again whenever nothing was sent for `heartbeat_s`: the device's heartbeat.
A reader thread takes the center's frames: answers for the waiting frame, and control
commands, which it answers itself: the time sync (type 90) is logged and confirmed, and sets
nothing (the gateway's clock is NTP's); any other control or request is denied.  The session
belongs to one thread (the courier's, given to :meth:`Session.open`, else the first that
sends): its keeper and reader end, and the connection is closed, once that thread has ended,
so a stopped daemon leaves nothing running.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple

from parkwatch.alarms.gb26875.codes import Command, DataType, DeviceBit, flags
from parkwatch.alarms.gb26875.frame import Frame, FrameError, decode, now_cst, split
from parkwatch.alarms.gb26875.objects import ClockSync, DeviceState, data_unit, parse_data_unit
from parkwatch.alarms.senders import DeliveryError
from parkwatch.tcpalive import DEAD_AFTER_S, detect_dead_links

log = logging.getLogger("parkwatch.gb26875")
#: how often the reader looks whether its owner still runs
_POLL_S = 0.2


@dataclass
class _Waiter:
    done: threading.Event = field(default_factory=threading.Event)
    answer: int | None = None  # the command byte of the center's answer
    lost: str = ""


class Posted(NamedTuple):
    """A frame sent and waiting for the center's answer."""

    serial: int
    waiter: _Waiter


class Session:
    """One TCP connection to a monitoring center, opened on demand and kept."""

    def __init__(self, host: str, port: int, source: int, destination: int, *,
                 user_version: int = 0, timeout_s: float = 5.0,
                 heartbeat_s: float | None = 60.0, connect_timeout_s: float = 5.0) -> None:
        self.host, self.port = host, port
        self.source, self.destination = source, destination
        self.user_version = user_version
        self.timeout_s = timeout_s
        self.heartbeat_s = heartbeat_s
        self.connect_timeout_s = connect_timeout_s
        self.where = f"GB/T 26875 center {host}:{port}"
        self._lock = threading.Lock()  # the socket's writes, the serials and the waiters
        self._connecting = threading.Lock()  # one connection at a time (keeper or courier)
        self._sock: socket.socket | None = None
        self._serial = 0
        self._waiters: dict[int, _Waiter] = {}
        self._owner: threading.Thread | None = None
        self._last_sent = 0.0
        self._down_logged = False
        #: (serial, type flag) of the last control commands answered, for tests and the log
        self.controls: deque[tuple[int, int]] = deque(maxlen=64)

    # --- the courier's side --------------------------------------------------------------

    def exchange(self, data: bytes) -> int:
        """Send `data` (an application data unit) and wait for the confirm; its serial."""
        return self.wait(self.post(data))

    def post(self, data: bytes, connect: bool = True) -> Posted:
        """Send `data` without waiting for the answer (:meth:`wait` does); on the connection
        there is, connecting first only if `connect`, else DeliveryError."""
        if self._owner is None and connect:  # a session never opened: the sender's thread
            self._owner = threading.current_thread()
        with self._lock:
            sock = self._sock
        if sock is None and connect:
            sock = self._connected()
        if sock is None:
            raise DeliveryError(f"{self.where}: not connected")
        waiter = _Waiter()
        failed: OSError | None = None
        with self._lock:
            if self._sock is not sock:  # lost meanwhile: its serials are not this one's
                raise DeliveryError(f"{self.where}: connection lost")
            serial = self._next_serial()
            self._waiters[serial] = waiter
            try:
                # a frame is some 70 bytes and the center confirms each: the socket's send
                # buffer never fills, so this never waits
                self._write(sock, self._frame(serial, Command.SEND, data))
            except OSError as exc:
                self._waiters.pop(serial, None)
                failed = exc
        if failed is not None:  # dropped outside the lock: _drop takes it
            self._drop(sock, f"send failed: {failed}")
            raise DeliveryError(f"{self.where}: send failed: {failed}")
        return Posted(serial, waiter)

    def wait(self, posted: Posted) -> int:
        """The center's confirm of a posted frame: its serial, or DeliveryError (a deny, no
        answer within `timeout_s`, a lost connection)."""
        serial, waiter = posted
        if not waiter.done.wait(self.timeout_s):
            with self._lock:
                self._waiters.pop(serial, None)
            raise DeliveryError(f"{self.where}: no confirm of frame {serial} within "
                                f"{self.timeout_s:g} s")
        if waiter.lost:
            raise DeliveryError(f"{self.where}: {waiter.lost}")
        if waiter.answer == Command.DENY:
            raise DeliveryError(f"{self.where}: frame {serial} denied (否认)")
        return serial

    def open(self, owner: threading.Thread, retry_s: float = 1.0, retry_max_s: float = 30.0
             ) -> None:
        """Keep the connection while `owner` runs: connect now and after every loss, waiting
        `retry_s` after a failed attempt, doubling up to `retry_max_s`."""
        self._owner = owner
        threading.Thread(target=self._keep, args=(owner, retry_s, retry_max_s), daemon=True,
                         name="parkwatch-gb26875-keeper").start()

    def _keep(self, owner: threading.Thread, retry_s: float, retry_max_s: float) -> None:
        delay, due = retry_s, 0.0
        while owner.is_alive():
            if self._sock is None and time.monotonic() >= due:
                try:
                    self._connected()
                    delay = retry_s
                except DeliveryError:
                    due, delay = time.monotonic() + delay, min(retry_max_s, delay * 2)
            time.sleep(_POLL_S)
        self.close()

    def close(self) -> None:
        with self._lock:
            sock = self._sock
        if sock is not None:
            self._drop(sock, "")

    # --- the connection ------------------------------------------------------------------

    def _connected(self) -> socket.socket:
        with self._connecting:
            with self._lock:
                if self._sock is not None:
                    return self._sock
            return self._connect()

    def _connect(self) -> socket.socket:
        try:
            sock = socket.create_connection((self.host, self.port), self.connect_timeout_s)
        except OSError as exc:
            if not self._down_logged:
                log.error("%s: cannot connect (%s); frames wait and are retried",
                          self.where, exc)
                self._down_logged = True
            raise DeliveryError(f"{self.where}: cannot connect: {exc}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # a center gone without a reset (a 4G link, a NAT) is noticed, and reconnected to, in
        # seconds: every frame would otherwise wait out its confirm on a dead connection
        detect_dead_links(sock, max(DEAD_AFTER_S, 4 * self.timeout_s))
        sock.settimeout(self.connect_timeout_s)
        if self._down_logged:
            log.warning("%s: connected again", self.where)
            self._down_logged = False
        else:
            log.info("%s: connected", self.where)
        with self._lock:
            self._sock, self._serial = sock, 0  # serials start at 0 on a new connection
            self._last_sent = time.monotonic()
        threading.Thread(target=self._read, args=(sock,), daemon=True,
                         name="parkwatch-gb26875-reader").start()
        if self.heartbeat_s is not None:  # online: the device's running state, at once
            self._send_state(sock)
        return sock

    def _drop(self, sock: socket.socket, why: str) -> None:
        with self._lock:
            if self._sock is not sock:
                return
            self._sock = None
            waiters, self._waiters = self._waiters, {}
        sock.close()
        for w in waiters.values():
            w.lost = why or "connection closed"
            w.done.set()
        if why and not self._down_logged:
            log.error("%s: connection lost (%s); reconnecting", self.where, why)
            self._down_logged = True

    def _next_serial(self) -> int:
        serial = self._serial
        self._serial = (self._serial + 1) & 0xFFFF
        return serial

    def _frame(self, serial: int, command: Command, data: bytes) -> bytes:
        return Frame(serial, now_cst(), self.source, self.destination, int(command), data,
                     self.user_version).encode()

    def _write(self, sock: socket.socket, raw: bytes) -> None:
        sock.sendall(raw)
        self._last_sent = time.monotonic()

    # --- the reader ----------------------------------------------------------------------

    def _read(self, sock: socket.socket) -> None:
        buffer = bytearray()
        while self._sock is sock:
            owner = self._owner
            if owner is not None and not owner.is_alive():
                self._drop(sock, "")
                return
            try:
                ready, _, _ = select.select([sock], [], [], _POLL_S)
                chunk = sock.recv(4096) if ready else None
            except (OSError, ValueError) as exc:
                self._drop(sock, f"read failed: {exc}")
                return
            if chunk == b"":
                self._drop(sock, "closed by the center")
                return
            if chunk:
                buffer += chunk
                while (raw := split(buffer)) is not None:
                    self._take(sock, raw)
            self._heartbeat(sock)

    def _take(self, sock: socket.socket, raw: bytes) -> None:
        try:
            frame = decode(raw)
        except FrameError as exc:
            log.warning("%s: malformed frame ignored (%s): %s", self.where, exc, raw.hex())
            return
        if frame.command in (Command.CONFIRM, Command.DENY):
            with self._lock:
                waiter = self._waiters.pop(frame.serial, None)
            if waiter is not None:
                waiter.answer = frame.command
                waiter.done.set()
            return
        self._answer_control(sock, frame)

    def _answer_control(self, sock: socket.socket, frame: Frame) -> None:
        """A command from the center: the time sync is logged and confirmed (it sets nothing);
        anything else is denied."""
        answer = Command.DENY
        kind = frame.data[0] if frame.data else -1
        try:
            if frame.command == Command.CONTROL and kind == DataType.SYNC_CLOCK:
                _, objs = parse_data_unit(frame.data)
                sync = objs[0]
                told = sync.at.isoformat() if isinstance(sync, ClockSync) else "?"
                log.info("%s: time sync to %s received and confirmed; the gateway's clock "
                         "is kept by NTP, not set by the center", self.where, told)
                answer = Command.CONFIRM
            else:
                log.warning("%s: command %d type %d not served; denied", self.where,
                            frame.command, kind)
        except (FrameError, IndexError) as exc:
            log.warning("%s: control command refused: %s", self.where, exc)
        self.controls.append((frame.serial, kind))
        with self._lock:
            if self._sock is sock:
                with contextlib.suppress(OSError):  # the reader sees a loss on its next read
                    self._write(sock, frame.answer(answer, now_cst()).encode())

    def _heartbeat(self, sock: socket.socket) -> None:
        if self.heartbeat_s is not None and time.monotonic() - self._last_sent >= self.heartbeat_s:
            self._send_state(sock)

    def _send_state(self, sock: socket.socket) -> None:
        """The device's running state (type 21): normal monitoring; its confirm is not
        waited for (the next one follows after `heartbeat_s` anyway)."""
        unit = data_unit([DeviceState(flags(DeviceBit.NORMAL), now_cst())])
        with self._lock:
            if self._sock is not sock:
                return
            serial = self._next_serial()
            try:
                self._write(sock, self._frame(serial, Command.SEND, unit))
            except OSError:
                return
