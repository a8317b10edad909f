"""Which of a target's waiting rows go out in its next message, and when: the rate window,
grouping and folding of a notification target (:mod:`parkwatch.alarms.channels.shaping`).

The rules, in order:

1. **A fire goes at once.**  A fire alarm's changes that call for action (raised, escalated,
   severity changed, a reminder) are never held by `group_wait_s` and may use the window's
   fire reserve, which other alarms may not: they go as soon as the window has any room
   (several fires waiting together, more than the room, go in one message).  Only when even
   the reserve is used up does a fire wait, for the first free moment, still never past the
   rate the vendor takes.
2. **Grouping.**  Other rows are grouped by the target's `group_by` (fields of the event, or
   the sensor's driver); a group goes `group_wait_s` after the change of its first row, in one
   message with every row of its group that waits by then.
3. **Folding.**  When more groups are ready than the window has room for, all the ready rows
   go in one message (the sender lists as many as its length limit allows and says how many
   more; the rest go in the next).  When the window is full, they wait for its first free
   moment, and then go together.
4. **Order.**  An alarm's rows never overtake each other: a row waits while an earlier row of
   its alarm waits (a fire alarm's earlier rows go along with it).

Nothing here sends, sleeps or reads the clock; the courier (:mod:`parkwatch.alarms.shaped`)
asks :meth:`Shaper.next` and does what it says.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from parkwatch.alarms.ratewindow import RateWindow
from parkwatch.alarms.routing import hazard
from parkwatch.alarms.store import Pending

#: the changes of a fire alarm that call for action now
URGENT_EVENTS = frozenset({"raised", "escalated", "severity_changed", "reminder"})


@dataclass(frozen=True, slots=True)
class Message:
    """Rows to carry in one message, in their order; `urgent`: a fire's."""

    rows: list[Pending]
    urgent: bool


@dataclass(frozen=True, slots=True)
class _Facts:
    urgent: bool
    key: tuple[str, ...]


class Shaper:
    """A target's rate window, `group_by` and `group_wait_s`; `fold`: its sender can carry
    several rows in one message (else each message is one row, and rows over the rate wait)."""

    def __init__(self, window: RateWindow, group_by: Sequence[str], group_wait_s: float,
                 drivers: Mapping[str, str], fold: bool, personal: bool = False) -> None:
        self.window = window
        #: each message goes to its subscriber's own phone (SMS): one message never carries
        #: the alarms of two subscribers, so no one reads another tenant's alarms
        self.personal = personal
        self.group_by = tuple(group_by)
        self.group_wait_s = group_wait_s
        self.drivers = drivers  # sensor id -> driver id, for group_by: [driver]
        self.fold = fold
        self._facts: dict[tuple[str, int, str], _Facts] = {}

    def facts(self, row: Pending) -> _Facts:
        k = (row.alarm_id, row.seq, row.subscriber)
        got = self._facts.get(k)
        if got is None:
            ev = json.loads(row.payload)
            urgent = ev.get("event") in URGENT_EVENTS and hazard(ev) == "fire"
            if self.group_by:
                key = tuple(str(self.drivers.get(str(ev.get("sensor_id")), "")
                                if f == "driver" else ev.get(f)) for f in self.group_by)
            else:
                key = (row.alarm_id,)
            got = self._facts[k] = _Facts(urgent, key)
        return got

    def forget(self, rows: Sequence[Pending]) -> None:
        """Rows done with (delivered or expired)."""
        for r in rows:
            self._facts.pop((r.alarm_id, r.seq, r.subscriber), None)

    def next(self, rows: Sequence[Pending], now: float) -> Message | float:
        """The message to send now from `rows` (waiting, in commit order), or the moment to
        look again (math.inf: when more rows come)."""
        got = self._next(rows, now)
        if self.personal and isinstance(got, Message) and got.rows:
            who = got.rows[0].subscriber
            return Message([r for r in got.rows if r.subscriber == who], got.urgent)
        return got

    def _next(self, rows: Sequence[Pending], now: float) -> Message | float:
        wake = math.inf
        urgent = [r for r in rows if r.next_at <= now and self.facts(r).urgent]
        if urgent:
            free = self.window.free(now, urgent=True)
            if free < 1:
                return self.window.next_free(now, urgent=True)
            carried = urgent if len(urgent) > free and self.fold else urgent[:1]
            ids = {r.alarm_id for r in carried}
            mine = {id(r) for r in carried}
            last = {a: max(i for i, r in enumerate(rows) if id(r) in mine and r.alarm_id == a)
                    for a in ids}
            # a fire alarm's earlier rows go along with it, in order
            along = [r for i, r in enumerate(rows) if r.alarm_id in ids and i <= last[r.alarm_id]]
            return Message(along if self.fold else along[:1], True)
        release: dict[tuple[str, ...], float] = {}
        for r in rows:  # a group goes group_wait_s after its first change (a fire never waits)
            facts = self.facts(r)
            if not facts.urgent:
                release[facts.key] = min(release.get(facts.key, math.inf),
                                         r.created_at + self.group_wait_s)
        ready: list[Pending] = []
        blocked: set[str] = set()
        for r in rows:
            if r.alarm_id in blocked:
                continue
            facts = self.facts(r)
            at = r.next_at if facts.urgent else max(r.next_at, release[facts.key])
            if at > now:
                blocked.add(r.alarm_id)
                wake = min(wake, at)
                continue
            ready.append(r)
        if not ready:
            return wake
        free = self.window.free(now, urgent=False)
        if free < 1:
            return self.window.next_free(now, urgent=False)
        groups: dict[tuple[str, ...], list[Pending]] = {}
        for r in ready:
            groups.setdefault(self.facts(r).key, []).append(r)
        if not self.fold:
            return Message(ready[:1], False)
        if len(groups) > free:
            return Message(ready, False)
        return Message(next(iter(groups.values())), False)
