"""Failed console logins, counted per user name and per client address in a sliding window:
past the limit, that name or address may not try again until its oldest failure leaves the
window, so a password cannot be guessed at the speed of the network.

Kept in the instance's memory: behind a load balancer each instance counts its own, and a
restart starts over (it is a brake on guessing, not an account lock an attacker could use to
keep a real operator out for long).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable

log = logging.getLogger("parkwatch.center")

#: failures in the window after which a user name, or a client address, must wait
PER_NAME, PER_ADDRESS = 5, 20
WINDOW_S = 900.0
#: names and addresses remembered at most (the oldest are forgotten first)
KEYS_MAX = 10_000


class LoginThrottle:
    def __init__(self, per_name: int = PER_NAME, per_address: int = PER_ADDRESS,
                 window_s: float = WINDOW_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = {"name": per_name, "address": per_address}
        self.window_s = window_s
        self.clock = clock
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self.failures = 0  # every failed login since the start (/metrics)

    def wait_s(self, name: str, address: str) -> float:
        """Seconds until a login as ``name`` from ``address`` may be tried (0: now)."""
        now = self.clock()
        wait = 0.0
        for key in (("name", name), ("address", address)):
            times = self._recent(key, now)
            if times is not None and len(times) >= self.limits[key[0]]:
                wait = max(wait, times[0] + self.window_s - now)
        return wait

    def failed(self, name: str, address: str) -> None:
        self.failures += 1
        now = self.clock()
        for key in (("name", name), ("address", address)):
            times = self._recent(key, now)
            if times is None:
                if len(self._failures) >= KEYS_MAX:
                    del self._failures[next(iter(self._failures))]
                times = self._failures[key] = deque()
            times.append(now)
            if len(times) == self.limits[key[0]]:
                log.warning("console: %d failed logins for %s %r within %.0f min; further "
                            "attempts are refused for a while", len(times), key[0], key[1],
                            self.window_s / 60)

    def succeeded(self, name: str) -> None:
        """A right password: the name's failures are forgotten (the address's are not)."""
        self._failures.pop(("name", name), None)

    def _recent(self, key: tuple[str, str], now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window_s:
            times.popleft()
        return times
