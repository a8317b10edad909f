"""Failed console logins, counted per user name from one client address, and per client
address, in a sliding window: past the limit, that name from that address, or that address,
may not try again until its oldest failure leaves the window, so a password cannot be guessed
at the speed of the network.

The name is counted per address on purpose: someone who tries an operator's name from their
own machine holds back only their own machine, never the operator at the command center's
desk (a per-name lock would let anybody keep an operator out during an emergency).  Behind a
reverse proxy the address is the one the proxy names (``http.trusted_proxies``).

Kept in the instance's memory: behind a load balancer each instance counts its own, and a
restart starts over.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable

log = logging.getLogger("parkwatch.center")

#: failures in the window after which a user name from one address, or an address, must wait
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
        for key in (("name", f"{name}@{address}"), ("address", address)):
            times = self._recent(key, now)
            if times is not None and len(times) >= self.limits[key[0]]:
                wait = max(wait, times[0] + self.window_s - now)
        return wait

    def failed(self, name: str, address: str) -> None:
        self.failures += 1
        now = self.clock()
        for key, who in ((("name", f"{name}@{address}"), f"{name!r} from {address}"),
                         (("address", address), f"address {address}")):
            times = self._recent(key, now)
            if times is None:
                if len(self._failures) >= KEYS_MAX:
                    del self._failures[next(iter(self._failures))]
                times = self._failures[key] = deque()
            times.append(now)
            if len(times) == self.limits[key[0]]:
                log.warning("console: %d failed logins for %s within %.0f min; further "
                            "attempts are refused for a while", len(times), who,
                            self.window_s / 60)

    def succeeded(self, name: str, address: str) -> None:
        """A right password: the name's failures from the address are forgotten (the
        address's are not)."""
        self._failures.pop(("name", f"{name}@{address}"), None)

    def _recent(self, key: tuple[str, str], now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window_s:
            times.popleft()
        return times
