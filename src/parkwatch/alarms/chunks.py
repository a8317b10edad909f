"""The order in which a storm's alarm work is done, a chunk at a time, fire first.

One batch of readings can change thousands of alarms (a typhoon lifts every sump at once).
Done whole, each stage would wait for the one before it to finish the whole batch: nothing
would reach the command center until every change was turned into an alarm, routed and
written.  Done a chunk at a time, the first changes are written and delivered while the
rest are still being worked out.

Within a batch, a fire alarm's raise goes ahead of everything else, except a change of its own
sensor that came before it: the order of one sensor's changes is never altered.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from parkwatch.alarms.lifecycle import Change
from parkwatch.alarms.routing import FAULT_RULES
from parkwatch.park import KIND_CODE, ParkModel
from parkwatch.rules.registry import RULE_NAMES
from parkwatch.rules.transitions import Transitions

#: alarm changes (and the rule transitions that make them) worked out before they are handed
#: to the commit stage together
ROUTE_CHUNK = 128

_FIRE_BUTTON = KIND_CODE["fire_button"]
_FAULT_CODES = np.array([RULE_NAMES.index(r) for r in sorted(FAULT_RULES)], np.int16)


def transition_chunks(t: Transitions, park: ParkModel, size: int) -> list[Transitions]:
    """`t`'s rows at most `size` at a time: the fire raises first (those no earlier row of
    their sensor precedes), then the others in their order."""
    n = len(t)
    if n <= size:
        return [t]
    sensors = len(park.sensors)
    fire = ((t.new > 0) & (t.old == 0) & (t.sensor < sensors)
            & ~np.isin(t.rule, _FAULT_CODES))
    fire[fire] = park.kind[t.sensor[fire]] == _FIRE_BUTTON
    if fire.any():
        _, first = np.unique(t.sensor, return_index=True)  # each sensor's first row
        ahead = np.zeros(n, bool)
        ahead[first] = True
        fire &= ahead
        t = t.take(np.concatenate([np.flatnonzero(fire), np.flatnonzero(~fire)]))
    return [t.take(slice(i, i + size)) for i in range(0, n, size)]


def change_chunks(changes: list[Change], is_fire: Callable[[Change], bool],
                  size: int) -> list[list[Change]]:
    """`changes` at most `size` at a time: fire raises first (those no earlier change of
    their sensor precedes), then the others in their order."""
    first = [c for c in changes if c.event == "raised" and c.alarm.seq == 1 and is_fire(c)]
    if first:
        seen: set[int] = set()
        ahead: set[int] = set()
        for c in changes:
            if c.event == "raised" and c.alarm.seq == 1 and c.alarm.sensor not in seen:
                ahead.add(id(c))
            seen.add(c.alarm.sensor)
        first = [c for c in first if id(c) in ahead]
        chosen = {id(c) for c in first}
        changes = first + [c for c in changes if id(c) not in chosen]
    return [changes[i:i + size] for i in range(0, len(changes), size)]
