"""RFC 3339 timestamps with milliseconds in UTC, as the alarm contract requires."""

from __future__ import annotations

import time

_last: list[object] = [None, ""]  # (whole second, its text): events come many to a second


def rfc3339_ms(ts: float) -> str:
    """1763800000.1234 -> '2025-11-22T08:26:40.123Z'."""
    ms = round(ts * 1000.0)
    secs, milli = divmod(ms, 1000)
    last = _last
    if last[0] != secs:
        last[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
        last[0] = secs
    return f"{last[1]}.{milli:03d}Z"
