"""Who is told of each alarm change, and why: the 厂中厂 policy, filters, escalation ladders,
drills and silences.

Every decision is a reason string stored with the delivery (or the suppression), so an operator
can always answer "why did tenant X get this, and why did Y not".  The command-center contract
(the built-in ``uplink`` subscriber) receives every change and is never silenced: silences mute
notifications, not the record.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from itertools import chain
from typing import Any

from parkwatch.alarms.lifecycle import Alarm
from parkwatch.alarms.mutes import MuteBook
from parkwatch.alarms.records import Delivery, Suppression
from parkwatch.config.contacts import subscriber_targets
from parkwatch.config.delivery import (
    UPLINK,
    Drill,
    Filter,
    Hazard,
    Ladder,
    Scope,
    Silence,
    Subscriber,
)
from parkwatch.config.model import ParkConfig
from parkwatch.park import ParkModel

SEVERITY_RANK = {"info": 1, "warning": 2, "critical": 3}
#: rules about the monitoring itself rather than a hazard
FAULT_RULES = frozenset({"no_data", "comm_fault", "sensor_fault", "floor_data", "battery_low",
                         "output_fault", "clock_step"})
#: the contract is kept for 30 days of outage; a subscriber's target sets its own expiry
UPLINK_EXPIRY_S = 30 * 86_400.0


def hazard(event: dict[str, Any]) -> Hazard:
    """fire, overload, water or fault: what the alarm is about, for routing."""
    return hazard_of(event["rule"], event["sensor_kind"])


def hazard_of(rule: str, kind: str | None) -> Hazard:
    """The hazard of an alarm of `rule` on a sensor of `kind` (None: a floor or zone)."""
    if rule in FAULT_RULES:
        return "fault"
    if kind == "fire_button":
        return "fire"
    if kind == "water_level":
        return "water"
    return "overload"  # load cells and floor/zone loads


def _ts(d: datetime) -> float:
    return d.timestamp()


def _in_place(event: dict[str, Any], buildings: list[str], floors: list[str],
              zones: list[str]) -> bool:
    b, f, z = event["building"], event["floor"], event["zone"]
    if buildings and b not in buildings:
        return False
    if floors and f"{b}/{f}" not in floors:
        return False
    return not zones or f"{b}/{f}/{z}" in zones


def matches_filter(f: Filter, event: dict[str, Any], park: str) -> bool:
    return (
        (not f.parks or park in f.parks)
        and _in_place(event, f.buildings, f.floors, f.zones)
        and (not f.tenants or bool(set(f.tenants) & set(event["tenants"])))
        and (not f.kinds or hazard(event) in f.kinds)
        and (not f.rules or event["rule"] in f.rules)
        and SEVERITY_RANK[event["severity"]] >= SEVERITY_RANK[f.min_severity]
    )


def in_scope(s: Scope, event: dict[str, Any]) -> bool:
    return (
        _in_place(event, s.buildings, s.floors, s.zones)
        and (not s.tenants or bool(set(s.tenants) & set(event["tenants"])))
        and (not s.kinds or hazard(event) in s.kinds)
        and (not s.sensors or event["sensor_id"] in s.sensors)
    )


@dataclass(frozen=True, slots=True)
class Decision:
    deliveries: list[Delivery]
    suppressions: list[Suppression]

    @property
    def subscribers(self) -> set[str]:
        return {d.subscriber for d in self.deliveries}


class Router:
    def __init__(self, cfg: ParkConfig, park: ParkModel) -> None:
        self.cfg = cfg
        self.park = park
        a = cfg.alarms
        self.subscribers: dict[str, Subscriber] = {s.id: s for s in a.subscribers}
        self.policy = a.routing
        self.ladders: list[Ladder] = a.escalation
        self.silences: list[Silence] = a.silences
        #: the command center's mutes (:mod:`parkwatch.alarms.mutes`), read with the silences;
        #: the daemon sets its book here, and a reload's router takes it over
        self.mutes: MuteBook | None = None
        self.drills: list[Drill] = a.drills
        self.expiry = {name: getattr(t, "expire_after_s", UPLINK_EXPIRY_S)
                       for name, t in a.targets.items()}
        self.all_tenants = tuple(t.id for t in cfg.tenants)
        #: each subscriber's targets: its own, and each channel of its contact
        self.targets_of = subscriber_targets(a)

    # --- at the raise -------------------------------------------------------------------

    def drill_for(self, event: dict[str, Any], now: float) -> Drill | None:
        """The declared drill an alarm raised now belongs to, if any."""
        for d in self.drills:
            if _ts(d.start) <= now < _ts(d.end) and in_scope(d.scope, event):
                return d
        return None

    def ladder_for(self, event: dict[str, Any], alarm: Alarm, hz: Hazard) -> int:
        """Index of the first escalation ladder for this alarm (of hazard `hz`), -1 for
        none."""
        if alarm.drill_id is not None:
            drill = next((d for d in self.drills if d.id == alarm.drill_id), None)
            if drill is None or not drill.escalate:
                return -1
        for i, ladder in enumerate(self.ladders):
            if ((not ladder.kinds or hz in ladder.kinds)
                    and SEVERITY_RANK[event["severity"]] >= SEVERITY_RANK[ladder.min_severity]):
                return i
        return -1

    # --- every change ---------------------------------------------------------------------

    def _party(self, s: Subscriber, event: dict[str, Any], hz: str) -> str | None:
        """Why the 厂中厂 policy tells this subscriber, or None when it does not."""
        pol = getattr(self.policy, hz)
        if s.party == "any":
            return "filter"
        if s.party == "escalation":
            return None
        if s.party == "landlord":
            return f"landlord: {hz} policy" if pol.landlord else None
        if s.party == "facilities":
            return f"facilities: {hz} policy" if pol.facilities else None
        reach = pol.tenants
        if reach == "none":
            return None
        if reach == "park":
            tenants = self.all_tenants
        elif reach == "building":
            tenants = self.park.occupants(event["building"], None, None)
        else:
            tenants = tuple(event["tenants"]) if hz != "fire" else self.park.occupants(
                event["building"], event["floor"], event["zone"])
        if s.tenant in tenants:
            return f"tenant ({reach}): {hz} policy"
        return None

    def route(self, alarm: Alarm, event: dict[str, Any], hz: Hazard, now: float) -> Decision:
        """Who is told of this change (of hazard `hz`) and why, and who is muted."""
        chosen: dict[str, str] = {}
        muted: list[Suppression] = []
        ladder = self.ladders[alarm.ladder] if alarm.ladder >= 0 else None
        laddered = {sid for step in ladder.steps for sid in step.notify} if ladder else set()
        drill = (next((d for d in self.drills if d.id == alarm.drill_id), None)
                 if alarm.drill_id else None)
        by_drill = drill is not None and drill.notify is not None
        if drill is not None and drill.notify is not None:
            chosen = {sid: f"drill {drill.id}: drill policy" for sid in drill.notify}
        for s in self.subscribers.values():
            if s.id in laddered or s.id in chosen:
                continue
            why = self._party(s, event, hz)
            if why is None or not matches_filter(s.filter, event, self.cfg.park.id):
                continue
            if drill is not None and by_drill:
                muted.append(Suppression(s.id, "drill", drill.id,
                                         f"drill {drill.id}: not in the drill's notify list"))
                continue
            chosen[s.id] = why
        if ladder is not None:
            for k, step in enumerate(ladder.steps[:alarm.escalation_level]):
                for sid in step.notify:
                    chosen.setdefault(sid, f"escalation step {k + 1} (unacknowledged "
                                      f"{step.after_s:g} s)")
        for sid in alarm.told:
            if sid in self.subscribers:
                chosen.setdefault(sid, "told of this alarm before")
        deliveries = [Delivery(UPLINK, UPLINK, "command-center contract", now + UPLINK_EXPIRY_S)]
        for sid, why in chosen.items():
            silence = self._silence(sid, event, hz, now)
            if silence is not None:
                muted.append(Suppression(sid, "silence", silence.id,
                                         f"silence {silence.id}: {silence.reason}"))
                continue
            # one delivery per target of the subscriber (its own, its contact's channels)
            deliveries += [Delivery(sid, target, why, now + self.expiry[target])
                           for target in self.targets_of[sid]]
        return Decision(deliveries, muted)

    def _silence(self, sid: str, event: dict[str, Any], hz: str, now: float) -> Silence | None:
        mutes = self.mutes.silences if self.mutes is not None else ()
        for s in chain(self.silences, mutes):
            if not (_ts(s.start) <= now < _ts(s.end)):
                continue
            if hz == "fire" and not s.include_fire:
                continue  # a silence never mutes a fire alarm unless it says so
            if (not s.subscribers or sid in s.subscribers) and in_scope(s.scope, event):
                return s
        return None
