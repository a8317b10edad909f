"""systemd's notification protocol (sd_notify(3)): datagrams of ``KEY=value`` lines sent to the
Unix socket named by ``$NOTIFY_SOCKET``.

It is a few lines over a datagram socket, so it is written here rather than taken as a
dependency.  Outside systemd (no ``$NOTIFY_SOCKET``) every call is a no-op.  A failed send is
logged once and never raised: telling systemd how we are must not take the service down.
The daemon and the command center both use it.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger("parkwatch.systemd")


class Notifier:
    def __init__(self, address: str | None) -> None:
        self.address = address
        self.sent = 0
        self._sock: socket.socket | None = None
        self._failing = False

    @classmethod
    def from_environment(cls, env: Mapping[str, str] = os.environ) -> Notifier:
        return cls(env.get("NOTIFY_SOCKET") or None)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *lines: str) -> bool:
        """Send ``KEY=value`` lines in one datagram; True when systemd got it."""
        if self.address is None:
            return False
        # an address starting with "@" is in the abstract namespace
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(lines).encode("utf-8"), target)
        except OSError as exc:
            if not self._failing:
                log.error("systemd: cannot notify %s: %s", self.address, exc)
                self._failing = True
            return False
        if self._failing:
            log.info("systemd: notifications reach %s again", self.address)
            self._failing = False
        self.sent += 1
        return True

    def ready(self, status: str) -> bool:
        return self.notify("READY=1", f"STATUS={status}")

    def status(self, status: str) -> bool:
        return self.notify(f"STATUS={status}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def reloading(self) -> bool:
        return self.notify("RELOADING=1", "STATUS=reloading the config")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1", "STATUS=stopping")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_timeout(env: Mapping[str, str] = os.environ) -> float | None:
    """The watchdog timeout systemd set for this process (``WatchdogSec=``), in seconds, or
    None when there is none (or it is meant for another process)."""
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec:
        return None
    if pid and pid != str(os.getpid()):
        return None
    try:
        seconds = int(usec) / 1e6
    except ValueError:
        log.error("systemd: WATCHDOG_USEC=%r is not a number of microseconds; no watchdog", usec)
        return None
    return seconds if seconds > 0 else None
