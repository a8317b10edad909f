"""The statistics page's figures, per park and per tenant, over a time span: alarms by hazard
(fire, overload, water, fault), the time to acknowledge and to clear (median and p90) and the
false-alarm share (the alarms an operator marked as false, :meth:`CenterStore.mark_alarm`).

The alarms are those raised in the span (real ones: drills are left out), read with the
history query; each alarm's times come from its stored events (:meth:`event_times`): time to
acknowledge is its first ``acknowledged`` event's ``changed_at`` minus its ``raised`` event's
``changed_at`` (the gateway's clock for both, so the center's own lag does not count), time to
clear the same with its first ``cleared`` event.  An alarm not (yet) acknowledged or cleared,
or whose raised event the center never received, counts in its hazard but not in the times.
The percentiles are computed here in Python over those durations (the nearest-rank method: the
same on SQLite and PostgreSQL, which has percentile_cont but SQLite has none).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from parkwatch.center.hazards import HAZARDS, hazard_of
from parkwatch.center.store import CenterStore
from parkwatch.center.storetypes import TimeBound

#: at most this many alarms go into one statistics page (a note says when there were more)
MAX_ALARMS = 100_000


def percentile(values: list[float], p: float) -> float | None:
    """The nearest-rank ``p``-th percentile (0 < p <= 100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


@dataclass
class Group:
    """The figures of one park or one tenant."""

    name: str
    total: int = 0
    by_hazard: dict[str, int] = field(default_factory=lambda: dict.fromkeys(HAZARDS, 0))
    to_ack: list[float] = field(default_factory=list)
    to_clear: list[float] = field(default_factory=list)
    false_alarms: int = 0

    def add(self, hazard: str, to_ack: float | None, to_clear: float | None,
            false_alarm: bool = False) -> None:
        self.total += 1
        self.false_alarms += false_alarm
        self.by_hazard[hazard] = self.by_hazard.get(hazard, 0) + 1
        if to_ack is not None:
            self.to_ack.append(to_ack)
        if to_clear is not None:
            self.to_clear.append(to_clear)

    def figures(self) -> dict[str, Any]:
        return {"name": self.name, "total": self.total, "by_hazard": dict(self.by_hazard),
                "acked": len(self.to_ack), "cleared": len(self.to_clear),
                "ack_median_s": statistics.median(self.to_ack) if self.to_ack else None,
                "ack_p90_s": percentile(self.to_ack, 90),
                "clear_median_s": statistics.median(self.to_clear) if self.to_clear else None,
                "clear_p90_s": percentile(self.to_clear, 90),
                "false_alarms": self.false_alarms,
                "false_share": 100 * self.false_alarms / self.total if self.total else None}


def _since_raised(times: dict[str, float], key: str) -> float | None:
    raised, then = times.get("raised"), times.get(key)
    if raised is None or then is None:
        return None
    return max(0.0, then - raised)


def compute(store: CenterStore, since: TimeBound, until: TimeBound) -> dict[str, Any]:
    """``parks`` and ``tenants``: each a list of :meth:`Group.figures` by name; ``count``
    (alarms counted) and ``cut_off`` (more alarms than :data:`MAX_ALARMS` in the span)."""
    alarms = store.history(since=since, until=until, drill=False, limit=MAX_ALARMS + 1)
    cut_off = len(alarms) > MAX_ALARMS
    alarms = alarms[:MAX_ALARMS]
    times = store.event_times([a["alarm_id"] for a in alarms])
    marked = store.false_alarms([a["alarm_id"] for a in alarms])
    parks: dict[str, Group] = {}
    tenants: dict[str, Group] = {}
    for a in alarms:
        t = times.get(a["alarm_id"], {})
        one = (hazard_of(a.get("rule"), a.get("sensor_kind")), _since_raised(t, "acknowledged"),
               _since_raised(t, "cleared"), a["alarm_id"] in marked)
        parks.setdefault(a["park"], Group(a["park"])).add(*one)
        for tenant in a.get("tenants") or ():
            tenants.setdefault(tenant, Group(tenant)).add(*one)
    return {"parks": [parks[k].figures() for k in sorted(parks)],
            "tenants": [tenants[k].figures() for k in sorted(tenants)],
            "count": len(alarms), "cut_off": cut_off}


def duration(seconds: float | None) -> str:
    """``1 h 02 min``, ``3 min 05 s``, ``12 s``; ``–`` for none."""
    if seconds is None:
        return "–"
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"


def share(percent: float | None) -> str:
    """``25.0 %``; ``—`` when there was no alarm."""
    return "—" if percent is None else f"{percent:.1f} %"
