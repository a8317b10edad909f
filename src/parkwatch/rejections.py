"""Rejection accounting: every rejected input is counted; logging is rate-limited.

The first rejection of each reason is logged with its details; after that, at most one summary
line per interval says how many of what were rejected, so a misbehaving device cannot flood the
journal and an engineer still sees what is wrong.
"""

from __future__ import annotations

import logging
import time
from collections import Counter


class Rejections:
    def __init__(self, log: logging.Logger, what: str, interval_s: float = 60.0) -> None:
        self.log = log
        self.what = what
        self.interval_s = interval_s
        self.total: Counter[str] = Counter()
        self._pending: Counter[str] = Counter()
        self._last_detail: str = ""
        self._last_summary = time.monotonic()

    def reject(self, reason: str, detail: str) -> None:
        first = reason not in self.total
        self.total[reason] += 1
        if first:
            self.log.warning("%s: rejected (%s): %s; further rejections are summarised every "
                             "%.0f s", self.what, reason, detail, self.interval_s)
            return
        self._pending[reason] += 1
        self._last_detail = f"{reason}: {detail}"
        if time.monotonic() - self._last_summary >= self.interval_s:
            self.flush()

    def reject_many(self, reason: str, count: int, detail: str) -> None:
        """`count` rejections of one reason at once (a vectorised check's), `detail` telling
        one of them: counted and logged as that many calls of :meth:`reject` would be."""
        if count <= 0:
            return
        self.reject(reason, detail)
        if count > 1:
            self.total[reason] += count - 1
            self._pending[reason] += count - 1

    def flush(self) -> None:
        """Log the summary of rejections since the last one (called periodically too)."""
        self._last_summary = time.monotonic()
        if not self._pending:
            return
        parts = ", ".join(f"{r}: {n}" for r, n in self._pending.most_common())
        self.log.warning("%s: rejected %d more input(s) (%s); last %s", self.what,
                         sum(self._pending.values()), parts, self._last_detail)
        self._pending.clear()

    @property
    def count(self) -> int:
        return sum(self.total.values())


def excerpt(data: bytes | str, limit: int = 80) -> str:
    text = data.decode("utf-8", "backslashreplace") if isinstance(data, bytes) else data
    return repr(text if len(text) <= limit else text[:limit] + "…")
