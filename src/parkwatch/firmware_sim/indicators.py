"""Simulated weighing indicators in continuous-output mode, over a real pseudo-terminal.

A :class:`SimIndicator` streams the frames of one format (XK3190-A9 or A&D-style lines) at a
fixed period, each frame paced byte by byte at the configured baud rate (a pty would otherwise
deliver it instantly), and takes faults on command: junk on the line, a corrupted frame, the
cable pulled and plugged back, the indicator falling silent.  The daemon opens ``path`` as it
would open /dev/ttyUSB0.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import select
import threading
import time
from pathlib import Path

from parkwatch.drivers.serial_indicator.formats import FORMATS
from parkwatch.firmware_sim.pty_port import LineClock, PtyPort


class SimIndicator:
    """One indicator on one simulated serial line; weights are in kg (the indicator's unit)."""

    def __init__(self, path: str | Path, baudrate: int = 9600, fmt: str = "xk3190_a9",
                 bits_per_char: int = 10, period_s: float = 0.1, decimals: int = 1,
                 seed: int | None = None) -> None:
        self.format = FORMATS[fmt]
        self.port = PtyPort(path)
        self.clock = LineClock(baudrate, bits_per_char)
        self.period_s = period_s
        self.decimals = decimals
        self.unit: str | None = "kg" if self.format.carries_unit else None
        self.rng = random.Random(seed)
        self.sent = 0  # frames written while someone listened
        self._weight = 0.0
        self._status = "ST"
        self._net = False
        self._garbage = b""
        self._corrupt_next = 0
        self._paused = False
        self._lock = threading.Lock()  # the port's master fd: sender vs cut()/restore()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- control ----------------------------------------------------------------------------
    def start(self) -> SimIndicator:
        with self._lock:
            self.port.open()
            self._nonblocking()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"sim-{self.format.name}",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None
        with self._lock:
            self.port.cut()

    def set_weight(self, kg: float, status: str = "ST", net: bool = False) -> None:
        """What the indicator displays from now on; ValueError if the format cannot say it."""
        self.format.encode(kg, self.decimals, status, net, self.unit)  # refuse early
        with self._lock:
            self._weight, self._status, self._net = kg, status, net

    def inject_garbage(self, n_bytes: int = 16, data: bytes | None = None) -> None:
        """Junk on the line before the next frame: ``data``, or ``n_bytes`` random bytes."""
        junk = data if data is not None else self.rng.randbytes(n_bytes)
        with self._lock:
            self._garbage += junk

    def inject_bad_checksum(self, frames: int = 1) -> None:
        """Damage the next frame(s) detectably (for lines without a checksum: a bad digit)."""
        with self._lock:
            self._corrupt_next += frames

    def pause(self) -> None:
        """Stop sending but keep the line (indicator switched off, or in its setup menu)."""
        self._paused = True

    def resume(self) -> None:
        self._paused = False

    def cut(self) -> None:
        """Pull the cable: the device path disappears and the daemon's reads fail."""
        with self._lock:
            self.port.cut()

    def restore(self) -> None:
        """Plug it back: a new pty at the same path."""
        with self._lock:
            self.port.restore()
            self._nonblocking()

    # --- sender thread ----------------------------------------------------------------------
    def _run(self) -> None:
        next_at = 0.0
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            next_at = time.monotonic() + self.period_s
            with self._lock:
                frame = self.format.encode(self._weight, self.decimals, self._status,
                                           self._net, self.unit)
                if self._corrupt_next:
                    self._corrupt_next -= 1
                    frame = self.format.corrupt(frame)
                data, self._garbage = self._garbage + frame, b""
                if not self._paused and self._listened():
                    self.clock.send(self.port, data)
                    self.sent += 1

    def _listened(self) -> bool:
        """Whether the device end is open: bytes on a line nobody listens to are lost."""
        if self.port.master is None:
            return False
        p = select.poll()
        p.register(self.port.master, select.POLLOUT)
        events = p.poll(0)
        return bool(events) and not events[0][1] & select.POLLHUP

    def _nonblocking(self) -> None:
        """A full pty (daemon not reading) must drop bytes, not block the sender."""
        if self.port.master is not None:
            with contextlib.suppress(OSError):
                fl = fcntl.fcntl(self.port.master, fcntl.F_GETFL)
                fcntl.fcntl(self.port.master, fcntl.F_SETFL, fl | os.O_NONBLOCK)
