"""Single keys from the terminal, without Enter, and the terminal restored whatever happens.

The terminal is put in cbreak mode (termios/tty: no line buffering, no echo) rather than full
raw mode: output post-processing stays on, so rich's newlines still return the carriage, and
Ctrl-C still raises KeyboardInterrupt.  The previous settings come back on exit, on an
exception, and (through the app's signal handlers turning SIGTERM/SIGHUP into SystemExit) when
the console is killed.
"""

from __future__ import annotations

import contextlib
import os
import select
import termios
import tty
from types import TracebackType
from typing import IO, Any

#: escape sequences of the keys the board uses (normal and application cursor mode)
SEQUENCES = {
    "\x1b[A": "up", "\x1bOA": "up", "\x1b[B": "down", "\x1bOB": "down",
    "\x1b[5~": "pageup", "\x1b[6~": "pagedown",
    "\x1b[H": "home", "\x1bOH": "home", "\x1b[1~": "home",
    "\x1b[F": "end", "\x1bOF": "end", "\x1b[4~": "end",
}


def parse_keys(data: str) -> list[str]:
    """Key names in a chunk read from the terminal: 'up', 'down', 'pageup', 'pagedown',
    'home', 'end', or the character itself; unknown escape sequences are dropped."""
    keys: list[str] = []
    i = 0
    while i < len(data):
        if data[i] == "\x1b":
            for seq, name in SEQUENCES.items():
                if data.startswith(seq, i):
                    keys.append(name)
                    i += len(seq)
                    break
            else:
                # an unknown sequence: skip ESC and its CSI/SS3 body up to the final byte
                j = i + 1
                if j < len(data) and data[j] in "[O":
                    j += 1
                    while j < len(data) and not ("@" <= data[j] <= "~"):
                        j += 1
                    j += 1
                i = j
            continue
        keys.append(data[i])
        i += 1
    return keys


class KeyReader:
    """Reads keys from a terminal; with no terminal it only waits (the board is read-only)."""

    def __init__(self, stream: IO[str]) -> None:
        self.fd: int | None = None
        self._saved: list[Any] | None = None
        with contextlib.suppress(AttributeError, ValueError, OSError):
            if stream.isatty():
                self.fd = stream.fileno()

    @property
    def interactive(self) -> bool:
        return self.fd is not None

    def __enter__(self) -> KeyReader:
        if self.fd is not None:
            self._saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd, termios.TCSANOW)
        return self

    def __exit__(self, _t: type[BaseException] | None, _e: BaseException | None,
                 _tb: TracebackType | None) -> None:
        self.restore()

    def restore(self) -> None:
        """Put the terminal back as it was (idempotent)."""
        if self.fd is not None and self._saved is not None:
            with contextlib.suppress(termios.error, OSError):
                termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
            self._saved = None

    def wait(self, timeout: float, wake_fd: int | None = None) -> list[str]:
        """Keys typed within `timeout` seconds; returns early, maybe with none, when
        `wake_fd` becomes readable (the app's wake-up pipe; the caller drains it)."""
        fds = [fd for fd in (self.fd, wake_fd) if fd is not None]
        if not fds:
            return []
        try:
            ready, _, _ = select.select(fds, [], [], timeout)
        except InterruptedError:
            return []
        if self.fd is None or self.fd not in ready:
            return []
        try:
            data = os.read(self.fd, 1024)
        except OSError:
            return []
        if not data:  # the terminal went away
            return ["eof"]
        return parse_keys(data.decode("utf-8", "replace"))
