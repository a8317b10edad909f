"""The gateway's clock, watched: whether the kernel says it is synchronised, and every step of
it (a jump forwards or backwards, by a time daemon, an operator, a battery-less board's boot)
noticed, logged once and counted.

Readings the gateway stamps, rule durations and escalations all trust the wall clock.  A step
is seen as a change of the wall clock against the monotonic clock, which never jumps: NTP's
slewing moves them apart by at most 500 ppm (``adjtimex``'s limit), so anything beyond that
since the last look, and beyond :data:`STEP_S`, is a step.  The pipeline looks before each
batch and tick, so the step is known before the first reading stamped after it is judged (a
backward step must not make those readings look older than the last ones: see
:meth:`parkwatch.rules.engine.RuleEngine.rebase`).

Synchronisation is the kernel's own verdict: ``adjtimex(2)`` with no change requested returns
``TIME_ERROR`` (5) while the clock is not synchronised (STA_UNSYNC), whichever time daemon
(chrony, systemd-timesyncd, ntpd) disciplines it.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("parkwatch.clock")

#: the smallest jump taken for a step, seconds
STEP_S = 1.0
#: the most the wall clock may drift from the monotonic one while slewed (500 ppm)
SLEW = 0.0005
#: adjtimex's return value while the clock is not synchronised (man 2 adjtimex)
TIME_ERROR = 5
#: a clock not synchronised for this long is warned of (a time daemon needs some minutes
#: after a boot, or after its network came up, to synchronise it)
UNSYNC_WARN_S = 900.0


def kernel_synchronized() -> bool | None:
    """Whether the kernel says the clock is synchronised; None when it cannot be asked."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        timex = (ctypes.c_byte * 512)()  # struct timex, zeroed: modes 0 asks, sets nothing
        state = int(libc.adjtimex(timex))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return state != TIME_ERROR


class ClockWatch:
    def __init__(self, wall: Callable[[], float] | None = None,
                 mono: Callable[[], float] = time.monotonic,
                 synchronized: Callable[[], bool | None] = kernel_synchronized) -> None:
        #: the wall clock the daemon reads: time.time, looked up at each call (a test steps
        #: the daemon's clock by replacing it)
        self.wall: Callable[[], float] = wall if wall is not None else (lambda: time.time())
        self.mono = mono
        self._synchronized = synchronized
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._offset = self.wall() - mono()
        self._at = mono()
        self.steps = 0  # steps seen since the start
        #: the last step: (seconds, + forwards / - backwards; the wall time after it)
        self.last_step: tuple[float, float] | None = None
        self._synced: bool | None = None
        self._synced_at = -1e18
        self._unsynced_since: float | None = None  # monotonic
        self._warned = False

    def check(self) -> float:
        """The step of the wall clock since the last look, in seconds (0.0: none)."""
        with self._lock:
            wall, mono = self.wall(), self.mono()
            offset = wall - mono
            delta = offset - self._offset
            elapsed = mono - self._at
            self._offset, self._at = offset, mono
            if abs(delta) <= max(STEP_S, SLEW * elapsed):
                return 0.0
            self.steps += 1
            self.last_step = (delta, wall)
        log.warning("系统时钟跳变 %+.1f 秒 (the system clock stepped %s by %.1f s): readings "
                    "are judged from the new time on, none is dropped as out of order; "
                    "durations running across the step are off by it",
                    delta, "forwards" if delta > 0 else "backwards", abs(delta))
        return delta

    def synchronized(self, max_age_s: float = 10.0) -> bool | None:
        """The kernel's verdict, asked at most every ``max_age_s``.  Logged once at the first
        answer, once when it changes, and as a warning once the clock has not been
        synchronised for :data:`UNSYNC_WARN_S`.  Asked from the HTTP server's threads too:
        one asks at a time, so each change is logged once."""
        with self._sync_lock:  # not the step check's lock: the pipeline never waits on this
            return self._ask(max_age_s)

    def _ask(self, max_age_s: float) -> bool | None:
        now = self.mono()
        if now - self._synced_at < max_age_s:
            return self._synced
        self._synced_at = now
        synced = self._synchronized()
        if synced is False and self._unsynced_since is None:
            self._unsynced_since = now
        elif synced is not False:
            self._unsynced_since, self._warned = None, False
        if synced != self._synced and synced is not None:
            lost = self._synced is True and not synced
            (log.warning if lost else log.info)(
                "系统时钟%s (the system clock is %s)", "已同步" if synced else "未同步",
                "synchronised" if synced else "not synchronised")
        if self.unsynchronized_s() >= UNSYNC_WARN_S and not self._warned:
            self._warned = True
            log.warning("系统时钟已 %.0f 分钟未同步 (the system clock has not been synchronised "
                        "for %.0f min): check chrony or systemd-timesyncd and the NTP servers",
                        self.unsynchronized_s() / 60, self.unsynchronized_s() / 60)
        self._synced = synced
        return synced

    def unsynchronized_s(self) -> float:
        """How long the kernel has said the clock is not synchronised (0: it is, or unknown)."""
        since = self._unsynced_since
        return 0.0 if since is None else self.mono() - since

    def health(self) -> dict[str, Any]:
        """What /healthz and the gateway status say of the clock."""
        step = self.last_step
        return {"synchronized": self.synchronized(),
                "unsynchronized_s": round(self.unsynchronized_s(), 1), "steps": self.steps,
                "last_step_s": None if step is None else round(step[0], 3),
                "last_step_at": None if step is None else step[1]}
