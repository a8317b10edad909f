"""RFC 3339 timestamps with milliseconds in UTC, as the alarm contract requires."""

from __future__ import annotations

import time

#: whole second -> its text: events come many to a second, and one event names a few seconds
#: (its reading's, its raise's, its change's), so a single remembered second kept missing
_seconds: dict[int, str] = {}
_SECONDS_MAX = 64
#: the last instant written and its text: an event's reading, raise and change are often one
_last: tuple[float, str] = (float("nan"), "")


def rfc3339_ms(ts: float) -> str:
    """1763800000.1234 -> '2025-11-22T08:26:40.123Z'."""
    global _last
    last = _last
    if ts == last[0]:
        return last[1]
    secs, milli = divmod(round(ts * 1000.0), 1000)
    text = _seconds.get(secs)
    if text is None:
        if len(_seconds) >= _SECONDS_MAX:
            _seconds.clear()
        text = _seconds[secs] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    out = f"{text}.{milli:03d}Z"
    _last = (ts, out)
    return out
