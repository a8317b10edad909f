"""A target's sliding rate window: when its last messages went, kept on disk across a crash.

**Never over the vendor's rate.**  A message counts from the moment its request ends (the
vendor's answer, a refusal, a timeout or an error all count: the vendor may have counted it),
which is never before the vendor received it; a new message goes only while fewer than
`messages` ended in the `per_s` seconds before it starts.  So in every window of `per_s` on the
vendor's side, at most `messages` arrive, whatever the network's delays.

**Across a SIGKILL.**  Before a request starts, the window is written to
``{state_dir}/shaping/{target}.json`` with that request counted at the latest moment it can
reach the vendor (its start plus the request timeout), and fsynced: a daemon killed while the
request is in flight, or right after, finds it on restart and waits for it.  Why a file of its
own rather than a table in the alarm store: the store has one writer, the commit stage, and
the window must be on disk *before* each request; a round trip through the commit thread for
every robot message, and a new kind of mark in its group writer, would couple the two for a
file of a few hundred bytes that only this courier reads.  At most a few fsyncs a minute (the
vendor's rate) cost nothing.  A window the disk refuses is logged once and kept in memory:
the rate still holds while the daemon runs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

from parkwatch.alarms.channels.shaping import RateLimit
from parkwatch.statedir import private_dir, private_opener

log = logging.getLogger("parkwatch.delivery")


class RateWindow:
    """The ends of a target's recent messages, within each of its `limits`."""

    def __init__(self, limits: Sequence[RateLimit], path: Path | None) -> None:
        self.limits = list(limits)
        self.path = path
        self.span = max((lim.per_s for lim in self.limits), default=0.0)
        self.times: list[float] = self._load()
        self._failing = False

    def _load(self) -> list[float]:
        if self.path is None or not self.limits:
            return []
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return sorted(float(t) for t in data["ends"])
        except FileNotFoundError:
            return []
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # unreadable: every slot taken until one window has passed, rather than exceed
            log.error("rate window %s unreadable (%s); waiting one window before sending",
                      self.path, exc)
            return [time.time()] * max(lim.messages for lim in self.limits)

    def _cap(self, lim: RateLimit, urgent: bool) -> int:
        return lim.messages - (0 if urgent else lim.reserve)

    def free(self, now: float, urgent: bool) -> int:
        """Messages that may start now (a fire alarm's may use the fire reserve)."""
        if not self.limits:
            return 1 << 30
        return min(self._cap(lim, urgent) - sum(1 for t in self.times if t > now - lim.per_s)
                   for lim in self.limits)

    def next_free(self, now: float, urgent: bool) -> float:
        """The first moment from `now` at which a message may start."""
        at = now
        for lim in self.limits:
            recent = [t for t in self.times if t > now - lim.per_s]
            excess = len(recent) - (self._cap(lim, urgent) - 1)
            if excess > 0:
                at = max(at, recent[excess - 1] + lim.per_s)
        return at

    def begin(self, now: float, timeout_s: float) -> int:
        """A request starts now: counted at the latest it can end, written to disk first.
        Returns its place, for :meth:`end`."""
        self.times = [t for t in self.times if t > now - self.span]
        self.times.append(now + timeout_s)
        self._save()
        return len(self.times) - 1

    def end(self, place: int, at: float) -> None:
        """The request that began at `place` ended at `at` (in memory; the disk keeps the later
        bound until the next write, which is only more careful)."""
        if 0 <= place < len(self.times):
            self.times[place] = min(self.times[place], at)

    def _save(self) -> None:
        if self.path is None or not self.limits:
            return
        tmp = self.path.with_suffix(".tmp")
        try:
            private_dir(self.path.parent)
            with open(tmp, "w", encoding="utf-8", opener=private_opener) as f:
                json.dump({"ends": self.times}, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            if not self._failing:
                log.error("rate window %s: cannot write it (%s); kept in memory, a restart "
                          "meanwhile may not know of the last messages", self.path, exc)
                self._failing = True
            with contextlib.suppress(OSError):
                tmp.unlink()
            return
        if self._failing:
            log.info("rate window %s is written again", self.path)
            self._failing = False
