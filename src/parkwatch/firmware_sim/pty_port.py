"""A simulated serial port: a pseudo-terminal whose device end appears at the configured path.

The simulator keeps the master end; the daemon opens the path from the park config (a symlink
to /dev/pts/N) exactly as it would open /dev/ttyUSB0.  `cut()` closes the master and removes
the link, as pulling the USB adapter would; `restore()` brings a new pty back at the same path.
A pty ignores the baud rate, so whoever writes here must pace bytes itself (see `LineClock`).
"""

from __future__ import annotations

import contextlib
import os
import select
import termios
import time
import tty
from pathlib import Path
from typing import Protocol


class PtyPort:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.master: int | None = None
        self.device: str | None = None

    def open(self) -> PtyPort:
        if self.path.exists() and not self.path.is_symlink():
            raise FileExistsError(f"{self.path} exists and is not a simulator link; refusing "
                                  "to replace a real device")
        master, slave = os.openpty()
        tty.setraw(master)
        attrs = termios.tcgetattr(slave)
        tty.setraw(slave)
        attrs = termios.tcgetattr(slave)
        attrs[3] &= ~termios.ECHO  # lflag: no echo back to the daemon
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        self.device = os.ttyname(slave)
        os.close(slave)  # the daemon opens it by path; the master keeps the pty alive
        self.master = master
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(self.device)
        tmp.replace(self.path)  # atomic: the daemon never sees a missing or half-made link
        return self

    @property
    def is_open(self) -> bool:
        return self.master is not None

    def cut(self) -> None:
        """Pull the cable: the daemon's reads fail, the path disappears."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        if self.master is not None:
            with contextlib.suppress(OSError):
                os.close(self.master)
            self.master = None

    def restore(self) -> None:
        if self.master is None:
            self.open()

    close = cut

    def read(self, timeout: float) -> bytes:
        """Whatever the daemon wrote, waiting at most ``timeout``; b'' if nothing."""
        if self.master is None:
            time.sleep(timeout)
            return b""
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return b""
        try:
            return os.read(self.master, 4096)
        except OSError:  # the daemon closed its end; nothing to read until it reopens
            time.sleep(min(timeout, 0.01))
            return b""

    def write(self, data: bytes) -> None:
        if self.master is not None:
            # nobody has the port open: bytes on a dead line are lost, as on a real one
            with contextlib.suppress(OSError):
                os.write(self.master, data)


class Writer(Protocol):
    """Where a line's bytes go: a pty, or something that watches the line while it writes."""

    def write(self, data: bytes) -> None: ...


class LineClock:
    """Paces bytes as a serial line at ``baudrate`` would deliver them."""

    def __init__(self, baudrate: int, bits_per_char: int = 10) -> None:
        self.char_time = bits_per_char / baudrate

    def send(self, port: Writer, data: bytes, start: float | None = None) -> float:
        """Write ``data`` so byte i is complete at start + (i+1) char times; returns end time.

        Bytes due within the same half millisecond go out together (sleep granularity).
        """
        t0 = time.monotonic() if start is None else start
        i = 0
        n = len(data)
        while i < n:
            due = t0 + (i + 1) * self.char_time
            j = i + 1
            while j < n and t0 + (j + 1) * self.char_time <= due + 0.0005:
                j += 1
            delay = t0 + j * self.char_time - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            port.write(data[i:j])
            i = j
        return t0 + n * self.char_time
