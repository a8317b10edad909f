"""Times as the local API gives them (RFC 3339) and ages as an operator reads them (``5m12s``),
for the CLI's tables and the console's board."""

from __future__ import annotations

from datetime import datetime


def parse_time(text: str | None) -> float | None:
    """Epoch seconds of an RFC 3339 time (``Z`` or an offset); None when absent or unreadable."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def format_age(seconds: float | None) -> str:
    """12 -> '12s', 312 -> '5m12s', 7500 -> '2h05m', 190000 -> '2d04h'."""
    if seconds is None:
        return "?"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86_400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86_400}d{s % 86_400 // 3600:02d}h"
