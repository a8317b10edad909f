"""Who waits for the board to change: each open /events stream registers here, and the ingest
calls :meth:`Hub.notify` after every committed batch.

Notifying never blocks the ingest and holds nothing per event: it only sets each listener's
flag on the listener's own event loop.  Changes that come while a browser is still busy (or
slow to read) merge into one: the stream then sends the board as it is now, so a slow browser
costs the ingest nothing and misses nothing but intermediate states.
"""

from __future__ import annotations

import asyncio
import itertools
import threading


class Hub:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Event]] = {}
        self._ids = itertools.count(1)
        self.closed = False
        self.notified = 0

    def add(self, loop: asyncio.AbstractEventLoop, wake: asyncio.Event) -> int:
        with self._lock:
            token = next(self._ids)
            self._listeners[token] = (loop, wake)
            return token

    def remove(self, token: int) -> None:
        with self._lock:
            self._listeners.pop(token, None)

    @property
    def listeners(self) -> int:
        with self._lock:
            return len(self._listeners)

    def notify(self) -> None:
        """The board changed (called from the ingest thread; returns at once)."""
        self.notified += 1
        with self._lock:
            waiting = list(self._listeners.values())
        for loop, wake in waiting:
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:  # that loop is closed: its stream is gone
                continue

    def close(self) -> None:
        """Wake every stream so that it ends (the center stops)."""
        self.closed = True
        self.notify()
