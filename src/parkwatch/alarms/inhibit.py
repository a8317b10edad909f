"""Inhibition (``alarms.inhibit``, as Alertmanager's ``inhibit_rules``): while a source alarm is
active, the notifications of matching target alarms that share its ``equal`` labels are muted.

Part of the route stage (:class:`~parkwatch.alarms.route.Route`): every change passes
:meth:`Inhibitor.apply` after the routing decision.  It keeps, per rule, an index of the active
source alarms by their ``equal`` key, updated with each change of an alarm (a raise or a
severity change may make it a source, a clear ends it) and filled at start from the restored
open alarms (:meth:`Inhibitor.observe`).  A change of a target then costs one dictionary look-up
per rule, never a walk over the open alarms.

What is muted: every subscriber's notification of the change, recorded as a suppression with
cause ``inhibit``, ref ``{rule id}/{source alarm id}`` and a reason in the park's language.
Never muted: the command-center contract (the uplink delivery), and a fire alarm (the config
refuses a fire target; a rule whose target matches anything still skips fire here).  An alarm
never mutes itself, and as in Alertmanager an alarm that matches both sides of a rule is not
muted by another that does too (so twenty comm faults of one bus do not mute each other).

When the last source of a key clears, nothing is sent on its own: the target's next change
(its escalation, reminder, clear, ...) is routed as usual again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from parkwatch.alarms.lifecycle import Alarm
from parkwatch.alarms.records import Delivery, Suppression
from parkwatch.alarms.routing import Decision
from parkwatch.config.delivery import UPLINK
from parkwatch.config.inhibit import InhibitRule, Matcher
from parkwatch.config.model import ParkConfig
from parkwatch.park import ParkModel
from parkwatch.rules.registry import rule_words

#: an alarm's labels, in the order of :data:`parkwatch.config.inhibit.LABELS`
Labels = tuple[object, ...]
_AT = {name: i for i, name in enumerate(("rule", "hazard", "severity", "building", "floor",
                                         "zone", "sensor_kind", "driver", "tenant"))}


def _compile(m: Matcher) -> Callable[[Labels], bool]:
    """A matcher as one function over labels (empty lists left out)."""
    checks: list[tuple[int, frozenset[object]]] = []
    for key, label in (("rules", "rule"), ("kinds", "hazard"), ("severities", "severity"),
                       ("buildings", "building"), ("sensor_kinds", "sensor_kind"),
                       ("drivers", "driver")):
        values = getattr(m, key)
        if values:
            checks.append((_AT[label], frozenset(values)))
    floors, zones, tenants = frozenset(m.floors), frozenset(m.zones), frozenset(m.tenants)
    b, f, z, t = _AT["building"], _AT["floor"], _AT["zone"], _AT["tenant"]

    def matches(labels: Labels) -> bool:
        for at, values in checks:
            if labels[at] not in values:
                return False
        if floors and f"{labels[b]}/{labels[f]}" not in floors:
            return False
        if zones and f"{labels[b]}/{labels[f]}/{labels[z]}" not in zones:
            return False
        return not tenants or not tenants.isdisjoint(labels[t])  # type: ignore[arg-type]

    return matches


@dataclass(slots=True)
class _Rule:
    config: InhibitRule
    source: Callable[[Labels], bool]
    target: Callable[[Labels], bool]
    equal: tuple[int, ...]
    #: active source alarms by their equal key: alarm id -> (alarm, also matches the target)
    active: dict[tuple[object, ...], dict[str, tuple[Alarm, bool]]]


class Inhibitor:
    """The inhibition rules of one config, and the active source alarms of each."""

    def __init__(self, cfg: ParkConfig, park: ParkModel) -> None:
        self.park = park
        self.language = cfg.alarms.language
        self.words = rule_words(self.language)
        self.rules = [_Rule(r, _compile(r.source), _compile(r.target),
                            tuple(_AT[label] for label in r.equal), {})
                      for r in cfg.alarms.inhibit]
        #: alarm id -> (rule index, key) of each index it is in
        self._member: dict[str, list[tuple[int, tuple[object, ...]]]] = {}
        #: the labels of a sensor, group or output that do not change: (building, floor, zone,
        #: sensor kind, driver, tenants)
        self._place: dict[int, tuple[object, ...]] = {}

    def labels(self, alarm: Alarm, hazard: str) -> Labels:
        place = self._place.get(alarm.sensor)
        if place is None:
            place = self._place[alarm.sensor] = self._place_of(alarm.sensor)
        b, f, z, kind, driver, tenants = place
        return (alarm.rule, hazard, alarm.severity.label, b, f, z, kind, driver, tenants)

    def _place_of(self, index: int) -> tuple[object, ...]:
        sensors = self.park.sensors
        if index < len(sensors):
            info = sensors[index]
            s = info.config
            return (s.building, s.floor, s.zone, s.kind, s.driver, frozenset(info.tenants))
        if index >= self.park.gateway.index:  # the gateway itself: no place, no driver
            return (None, None, None, None, None, frozenset())
        if index >= self.park.size:  # an output (its output_fault alarm): on its driver
            o = self.park.outputs[index - self.park.size].config
            return (o.building, o.floor, o.zone, None, o.driver, frozenset())
        g = self.park.groups[index - len(sensors)]
        return (g.building, g.floor, g.zone, g.kind, None, frozenset(g.tenants))

    def observe(self, alarm: Alarm, hazard: str) -> Labels:
        """Keep the index of active sources with this alarm's latest state; its labels."""
        labels = self.labels(alarm, hazard)
        was = self._member.pop(alarm.alarm_id, None)
        if was:
            for k, key in was:
                held = self.rules[k].active.get(key)
                if held is not None:
                    held.pop(alarm.alarm_id, None)
                    if not held:
                        del self.rules[k].active[key]
        if not alarm.active:
            return labels
        now: list[tuple[int, tuple[object, ...]]] = []
        for k, rule in enumerate(self.rules):
            if rule.source(labels):
                key = tuple(labels[i] for i in rule.equal)
                rule.active.setdefault(key, {})[alarm.alarm_id] = (alarm, rule.target(labels))
                now.append((k, key))
        if now:
            self._member[alarm.alarm_id] = now
        return labels

    def muted_by(self, alarm: Alarm, labels: Labels) -> tuple[InhibitRule, Alarm] | None:
        """The first rule and active source alarm that mute this (non-fire) alarm, if any."""
        for rule in self.rules:
            if not rule.target(labels):
                continue
            sources = rule.active.get(tuple(labels[i] for i in rule.equal))
            if not sources:
                continue
            both = rule.source(labels)
            for source_id, (source, also_target) in sources.items():
                if source_id != alarm.alarm_id and not (both and also_target):
                    return rule.config, source
        return None

    def apply(self, alarm: Alarm, hazard: str, decision: Decision) -> Decision:
        """The decision of a change with its notifications muted when a source is active;
        the index kept with the change.  The contract and fire alarms are never muted."""
        labels = self.observe(alarm, hazard)
        if hazard == "fire":
            return decision  # never inhibited, whatever a rule says
        found = self.muted_by(alarm, labels)
        if found is None:
            return decision
        rule, source = found
        ref, reason = f"{rule.id}/{source.alarm_id}", self._reason(rule, source)
        kept: list[Delivery] = []
        muted = list(decision.suppressions)
        for d in decision.deliveries:
            if d.subscriber == UPLINK:
                kept.append(d)
            else:
                muted.append(Suppression(d.subscriber, "inhibit", ref, reason))
        return Decision(kept, muted)

    def _reason(self, rule: InhibitRule, source: Alarm) -> str:
        """Why, as an operator reads it: which alarm of what, where, mutes this one."""
        what = self.words.get(source.rule, source.rule)
        index = source.sensor
        sensors = self.park.sensors
        if index < len(sensors):
            info = sensors[index]
            where = f"{info.place} {info.config.name or info.config.id}".strip()
        elif index >= self.park.gateway.index:  # the gateway's own fault
            where = self.park.gateway.place
        elif index >= self.park.size:  # an output's output_fault
            out = self.park.outputs[index - self.park.size]
            where = f"{out.place} {out.config.name or out.config.id}".strip()
        else:
            where = self.park.groups[index - len(sensors)].place
        extra = f" ({rule.reason})" if rule.reason else ""
        if self.language == "zh":
            extra = f"（{rule.reason}）" if rule.reason else ""
            return (f"抑制规则 {rule.id}：{where} 的{what}告警（{source.alarm_id}）仍在，"
                    f"本通知暂不发送，仍上报指挥中心{extra}")
        return (f"inhibit rule {rule.id}: muted while the {what} alarm {source.alarm_id} of "
                f"{where} is active; the command center still has it{extra}")
