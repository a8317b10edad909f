"""The alarm lifecycle: raise, change severity, escalate, remind, clear, acknowledge, close.

An alarm is identified by a stable ``alarm_id`` and counts its changes in ``seq``.  Its state is
active or cleared × unacknowledged or acknowledged; it is *open* until it is both cleared and
acknowledged, then it is *closed*.  While a condition holds on a (sensor, rule) there is exactly
one active alarm for it; if the condition returns after a clear, that is a new alarm.

A fire alarm (the button latch) clears only when its button is reset at the device or an
operator resets it explicitly: never by time, and never because its sensor's config changed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from operator import attrgetter
from typing import Any

from parkwatch.alarms.ids import new_alarm_id
from parkwatch.rules.registry import RULE_NAMES
from parkwatch.rules.transitions import Severity, Transitions

#: `acked_by` of an alarm closed by the park's policy (an operator id cannot contain ':')
AUTO_CLOSE_BY = "parkwatch:auto_close"


@dataclass(slots=True)
class Alarm:
    alarm_id: str
    sensor: int
    rule: str
    severity: Severity
    value: float
    threshold: float
    observed_at: float
    raised_at: float
    changed_at: float
    seq: int = 0
    active: bool = True
    acknowledged: bool = False
    acked_by: str | None = None
    acked_at: float | None = None
    ack_note: str | None = None
    escalation_level: int = 0
    drill: bool = False
    drill_id: str | None = None
    #: escalation: the ladder (index in config, -1 none), when the next step and the next
    #: reminder fall due (None: not any more), measured from `escalation_base`
    ladder: int = -1
    escalation_base: float = 0.0
    next_step_at: float | None = None
    next_reminder_at: float | None = None
    #: subscribers already told of this alarm: they hear the rest of its story
    told: tuple[str, ...] = ()
    reset_by: str | None = None
    reset_note: str | None = None
    #: when a cleared alarm nobody acknowledged is closed by the park's policy (None: never),
    #: and whether it was
    close_at: float | None = None
    auto_closed: bool = False

    @property
    def closed(self) -> bool:
        return not self.active and self.acknowledged

    @property
    def latching(self) -> bool:
        """Fire-button alarms: cleared only by a device reset or an operator reset."""
        return self.rule == "button_latch"

    @property
    def next_due(self) -> float | None:
        """When its clock next moves it: an escalation step, a reminder or its closing."""
        due = None
        for t in (self.next_step_at, self.next_reminder_at, self.close_at):
            if t is not None and (due is None or t < due):
                due = t
        return due


#: every field of an alarm, in order: its state as the store keeps it, and a copy
ALARM_FIELDS = tuple(f.name for f in fields(Alarm))
_values = attrgetter(*ALARM_FIELDS)
#: fields that are always a float (NaN when there is none): a stored null reads back as NaN
FLOAT_FIELDS = tuple(f.name for f in fields(Alarm) if f.type == "float")


def _state_function() -> Callable[[Alarm], dict[str, object]]:
    """One dict display of every field, compiled once from the dataclass's own field names
    (every change of every alarm builds its state: this takes half the time of
    ``dict(zip(names, values))``)."""
    body = ", ".join(f"{name!r}: a.{name}" for name in ALARM_FIELDS)
    scope: dict[str, Any] = {}
    exec(f"def alarm_state(a):\n    return {{{body}}}", scope)
    fn: Callable[[Alarm], dict[str, object]] = scope["alarm_state"]
    fn.__doc__ = "The alarm's fields by name (plain values and tuples: no deep copy needed)."
    return fn


alarm_state = _state_function()


@dataclass(frozen=True, slots=True)
class Change:
    """One change of one alarm: the event name and a copy of the alarm right after it."""

    event: str
    alarm: Alarm


class AlarmBook:
    """Open alarms of this gateway; turns rule transitions and operator acks into changes."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.open: dict[str, Alarm] = {}
        self.active_by_key: dict[tuple[int, str], Alarm] = {}

    def _change(self, alarm: Alarm, event: str, now: float) -> Change:
        alarm.seq += 1
        alarm.changed_at = now
        return Change(event, Alarm(*_values(alarm)))  # a copy (dataclasses.replace: 6× slower)

    def apply(self, transitions: Transitions) -> list[Change]:
        changes: list[Change] = []
        now = self.clock()
        for sensor, rule_code, _old, new, value, threshold, ts in transitions.rows():
            rule = RULE_NAMES[rule_code]
            key = (sensor, rule)
            alarm = self.active_by_key.get(key)
            if new > Severity.NORMAL and alarm is None:
                alarm = Alarm(new_alarm_id(now), sensor, rule, Severity(new), value, threshold,
                              ts, now, now)
                self.open[alarm.alarm_id] = alarm
                self.active_by_key[key] = alarm
                changes.append(self._change(alarm, "raised", now))
                continue
            if alarm is None:
                continue  # a clear for an alarm this book never raised (e.g. state restored)
            if not math.isnan(ts):  # NaN: born of no reading (an operator's reset)
                alarm.value, alarm.observed_at = value, ts
            if not math.isnan(threshold):
                alarm.threshold = threshold
            if new > Severity.NORMAL:
                if new != alarm.severity:
                    alarm.severity = Severity(new)
                    changes.append(self._change(alarm, "severity_changed", now))
                continue
            changes += self._clear(key, alarm, now)
        return changes

    def _clear(self, key: tuple[int, str], alarm: Alarm, now: float) -> list[Change]:
        alarm.active = False
        alarm.next_step_at = alarm.next_reminder_at = None  # nothing left to escalate
        del self.active_by_key[key]
        changes = [self._change(alarm, "cleared", now)]
        if alarm.closed:
            changes.append(self._close(alarm, now))
        return changes

    def clear_sources(self, sources: set[int]) -> list[Change]:
        """Clear the active alarms of sensors (or floors) whose rule state starts afresh, e.g.
        after their limits changed: the condition is judged anew from the next reading.

        Fire alarms stay: only a reset clears them (the caller re-latches their buttons)."""
        changes: list[Change] = []
        now = self.clock()
        for key, alarm in list(self.active_by_key.items()):
            if key[0] in sources and not alarm.latching:
                changes += self._clear(key, alarm, now)
        return changes

    def resettable(self, alarm_id: str) -> Alarm | None:
        """The active fire alarm an operator may reset (None: it has cleared already);
        KeyError when there is no such open alarm, ValueError when it is not a fire alarm."""
        alarm = self.open.get(alarm_id)
        if alarm is None:
            raise KeyError(alarm_id)
        if not alarm.latching:
            raise ValueError(f"a {alarm.rule} alarm clears when its condition does; only fire "
                             "alarms are reset")
        return alarm if alarm.active else None

    def reset(self, alarm: Alarm, by: str, note: str | None,
              transitions: Transitions) -> list[Change]:
        """An operator's explicit reset of an active fire alarm (the button could not be reset
        at the device): the rule engine's transition of its button's latch
        (:meth:`~parkwatch.rules.engine.RuleEngine.reset_latch`), applied as any other, the
        alarm keeping who reset it and why."""
        alarm.reset_by, alarm.reset_note = by, note
        if not len(transitions):  # its latch was off already: the reset still clears it
            return self._clear((alarm.sensor, alarm.rule), alarm, self.clock())
        return self.apply(transitions)

    def escalate(self, alarm: Alarm, level: int) -> Change:
        alarm.escalation_level = level
        return self._change(alarm, "escalated", self.clock())

    def remind(self, alarm: Alarm) -> Change:
        return self._change(alarm, "reminder", self.clock())

    def auto_close(self, alarm: Alarm) -> Change:
        """Close a cleared alarm nobody acknowledged, by the park's policy (never a fire)."""
        if alarm.active or alarm.acknowledged or alarm.latching:
            raise ValueError(f"alarm {alarm.alarm_id} is not a cleared, unacknowledged, "
                             "non-fire alarm")
        now = self.clock()
        alarm.auto_closed, alarm.close_at = True, None
        # the contract's closed event is acknowledged: by the policy, under a name no
        # operator can have
        alarm.acknowledged, alarm.acked_by, alarm.acked_at = True, AUTO_CLOSE_BY, now
        alarm.ack_note = "closed by alarms.close_unacknowledged_after_s"
        return self._close(alarm, now)

    def acknowledge(self, alarm_id: str, by: str, note: str | None = None) -> list[Change]:
        """Acknowledge an open alarm; closes it when it has already cleared."""
        alarm = self.open.get(alarm_id)
        if alarm is None:
            raise KeyError(alarm_id)
        if alarm.acknowledged:
            return []
        now = self.clock()
        alarm.acknowledged, alarm.acked_by, alarm.acked_at, alarm.ack_note = True, by, now, note
        alarm.next_step_at = alarm.next_reminder_at = None  # escalation stops at the ack
        alarm.close_at = None
        changes = [self._change(alarm, "acknowledged", now)]
        if alarm.closed:
            changes.append(self._close(alarm, now))
        return changes

    def _close(self, alarm: Alarm, now: float) -> Change:
        del self.open[alarm.alarm_id]
        return self._change(alarm, "closed", now)
