"""The daemon's clock: its periodic jobs and the one-shot escalation timer, on one thread.

Every job the daemon times only posts a call into the pipeline's inbox (the status, the rule
state checkpoint, the aggregates, the store purge, the next escalation step), so one thread
that sleeps until the next is due is all it takes. apscheduler did this before, with 2.8 MB of
imports (asyncio, multiprocessing, importlib.metadata, tzlocal) on a gateway whose memory
budget is 80 MB.

Periodic jobs keep a monotonic rhythm from the moment they are added: a wall-clock step (NTP)
neither bunches nor skips them, and a run that falls behind is made up by one run, not a burst.
A one-shot job is due at a wall-clock time (an escalation's due time is stored as one) and
runs however late it is; the thread looks at the wall clock at least once a second, so a clock
step moves it by no more than that.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

#: the longest the thread sleeps without looking at the wall clock again
WALL_CHECK_S = 1.0


class Timers:
    """Named periodic jobs (monotonic) and named one-shot jobs (wall clock) on one thread.

    A job that raises is logged and keeps its schedule: one failed status must not stop the
    next."""

    def __init__(self, name: str = "parkwatch-timers") -> None:
        self.name = name
        self._cond = threading.Condition()
        #: name → [interval s, next run (monotonic), job]
        self._every: dict[str, list[Any]] = {}
        #: name → (due (epoch s), job)
        self._at: dict[str, tuple[float, Callable[[], object]]] = {}
        self._thread: threading.Thread | None = None
        self._stopping = False

    # --- the schedule ------------------------------------------------------------------------

    def every(self, name: str, seconds: float, job: Callable[[], object]) -> None:
        """Run `job` every `seconds`, the first time `seconds` from now; replaces `name`."""
        if not seconds > 0:
            raise ValueError(f"timer {name}: interval must be > 0 s, not {seconds!r}")
        with self._cond:
            self._every[name] = [float(seconds), time.monotonic() + seconds, job]
            self._cond.notify()

    def at(self, name: str, when: float | None, job: Callable[[], object] | None = None) -> None:
        """Run `job` once at the epoch time `when` (at once if that is past); replaces `name`.
        ``when=None`` cancels it."""
        with self._cond:
            if when is None or job is None:
                self._at.pop(name, None)
            else:
                self._at[name] = (float(when), job)
                self._cond.notify()

    def pending(self) -> dict[str, float]:
        """Each job's next run as an epoch time (for status and tests)."""
        with self._cond:
            offset = time.time() - time.monotonic()
            out = {name: nxt + offset for name, (_i, nxt, _j) in self._every.items()}
            out.update({name: due for name, (due, _j) in self._at.items()})
            return out

    # --- the thread --------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopping

    def start(self) -> None:
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stopping:
                    return
                due = self._take_due()
                if not due:
                    self._cond.wait(self._sleep_s())
                    continue
            for name, job in due:
                try:
                    job()
                except Exception:
                    log.exception("timer %s: the job failed; it keeps its schedule", name)

    def _take_due(self) -> list[tuple[str, Callable[[], object]]]:
        """The jobs due now, with the periodic ones moved on past now (called locked)."""
        mono, wall = time.monotonic(), time.time()
        due: list[tuple[str, Callable[[], object]]] = []
        for name, entry in self._every.items():
            interval, nxt, job = entry
            if nxt <= mono:
                missed = int((mono - nxt) // interval)  # runs fallen behind become one
                entry[1] = nxt + (missed + 1) * interval
                due.append((name, job))
        for name, (when, job) in list(self._at.items()):
            if when <= wall:
                del self._at[name]
                due.append((name, job))
        return due

    def _sleep_s(self) -> float:
        """Until the next periodic job, at most WALL_CHECK_S while a one-shot job waits."""
        mono, wall = time.monotonic(), time.time()
        waits = [nxt - mono for _i, nxt, _j in self._every.values()]
        waits += [min(when - wall, WALL_CHECK_S) for when, _j in self._at.values()]
        return max(0.0, min(waits, default=3600.0))
