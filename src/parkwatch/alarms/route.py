"""The route stage: each alarm change as the store keeps it, with who is told and why.

For each change (:class:`~parkwatch.alarms.lifecycle.Change`) the stage builds its contract
event once (:class:`~parkwatch.alarms.event.EventBuilder`) and works out its hazard once; a
raise is matched to a declared drill (set on the built event); a raise or a first severity
change starts its escalation ladder, a clear nobody acknowledged the park's closing policy; the
routing policy (:mod:`parkwatch.alarms.routing`) chooses the subscribers, or mutes them and
says why, and an active source alarm of an inhibition rule mutes them too
(:mod:`parkwatch.alarms.inhibit`).  The result is a :class:`~parkwatch.alarms.store.Record`,
ready for the commit stage.

It also keeps the tally of open alarms by hazard and state with every change, so a scrape or a
status never walks the open alarms.  It runs on the pipeline thread, inside the alarm service.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

from parkwatch.alarms.event import EventBuilder, encode
from parkwatch.alarms.inhibit import Inhibitor
from parkwatch.alarms.lifecycle import Alarm, Change, alarm_state
from parkwatch.alarms.records import Record
from parkwatch.alarms.routing import Router, hazard, hazard_of
from parkwatch.config.delivery import Hazard
from parkwatch.config.model import ParkConfig
from parkwatch.park import ParkModel

log = logging.getLogger("parkwatch.alarms")


def state_of(alarm: Alarm) -> str:
    """active or cleared × unacknowledged or acknowledged, as the tally counts it."""
    return (f"{'active' if alarm.active else 'cleared'}_"
            f"{'' if alarm.acknowledged else 'un'}acknowledged")


class Route:
    """The route stage of one park's config (a reload builds another)."""

    def __init__(self, cfg: ParkConfig, park: ParkModel, open_alarms: dict[str, Alarm],
                 schedule: Callable[[Alarm], None]) -> None:
        self.park = park
        self.builder = EventBuilder(park)
        self.router = Router(cfg, park)
        #: inhibition rules and the active source alarms of each (alarms.inhibit)
        self.inhibitor = Inhibitor(cfg, park)
        self.close_after = cfg.alarms.close_unacknowledged_after_s
        #: the lifecycle's open alarms: a change carries a copy, its timers go on the alarm
        self.open = open_alarms
        #: puts an alarm's next escalation step, reminder or closing on the service's clock
        self.schedule = schedule
        #: open alarms by (hazard, state), kept with every change
        self.tally: Counter[tuple[str, str]] = Counter()

    def hazard_of(self, alarm: Alarm) -> Hazard:
        """fire, overload, water or fault, as the routing sees it (no event needed)."""
        sensors = self.park.sensors
        kind = sensors[alarm.sensor].config.kind if alarm.sensor < len(sensors) else None
        return hazard_of(alarm.rule, kind)

    def record(self, change: Change, now: float) -> Record:
        """One change as the store keeps it: its contract event, its drill, ladder and
        closing, and who is told (or muted, and why)."""
        alarm = self.open.get(change.alarm.alarm_id, change.alarm)
        snap = change.alarm
        event = self.builder.build(change)
        hz = hazard(event)
        if change.event == "raised":
            drill = self.router.drill_for(event, now)
            if drill is not None:
                alarm.drill, alarm.drill_id = True, drill.id
                snap.drill, snap.drill_id = True, drill.id
                event["drill"] = True
        self._timers(alarm, change.event, event, hz, now)
        self._count(hz, change.event, snap)
        decision = self.router.route(alarm, event, hz, now)
        if self.inhibitor.rules:
            decision = self.inhibitor.apply(alarm, hz, decision)
        told = alarm.told
        new = [s for s in decision.subscribers if s != "uplink" and s not in told]
        if new:
            told = alarm.told = (*told, *dict.fromkeys(new))
        state = alarm_state(alarm)
        state.update(sensor=self.park.ident(alarm.sensor), severity=int(alarm.severity),
                     seq=snap.seq, told=list(told))
        for s in decision.suppressions:
            log.info("alarm %s seq %d: %s not told (%s)", snap.alarm_id, snap.seq,
                     s.subscriber, s.reason)
        return Record(
            alarm_id=snap.alarm_id, source=self.park.ident(snap.sensor), rule=snap.rule,
            seq=snap.seq, event=change.event, active=snap.active,
            acknowledged=snap.acknowledged, closed=change.event == "closed",
            next_due=alarm.next_due if not snap.closed else None, at=now, state=state,
            payload=encode(event), deliveries=decision.deliveries,
            suppressions=decision.suppressions, doc=event)

    def _timers(self, alarm: Alarm, what: str, event: dict[str, object], hz: Hazard,
                now: float) -> None:
        """A raise (or a first severity change) starts its escalation ladder; a clear nobody
        acknowledged starts the park's closing policy."""
        if alarm.ladder < 0 and alarm.active and not alarm.acknowledged and (
                what in ("raised", "severity_changed")):
            self._start_ladder(alarm, event, hz, now)
        elif what == "cleared" and not alarm.acknowledged and not alarm.latching:
            after = self.close_after.get(hz)
            if after is not None:  # closed by the park's policy unless acknowledged first
                alarm.close_at = now + after
                self.schedule(alarm)

    def _start_ladder(self, alarm: Alarm, event: dict[str, object], hz: Hazard,
                      now: float) -> None:
        alarm.ladder = self.router.ladder_for(event, alarm, hz)
        if alarm.ladder < 0:
            return
        ladder = self.router.ladders[alarm.ladder]
        alarm.escalation_base = now
        alarm.next_step_at = now + ladder.steps[0].after_s if ladder.steps else None
        alarm.next_reminder_at = (now + ladder.reminder_every_s
                                  if ladder.reminder_every_s else None)
        self.schedule(alarm)

    def _count(self, hz: str, what: str, snap: Alarm) -> None:
        """Keep :attr:`tally` with a change: where the alarm was counted, and where it is now
        (a cleared and acknowledged alarm is closed: counted no more)."""
        tally = self.tally
        if what == "raised":
            tally[(hz, "active_unacknowledged")] += 1
        elif what == "acknowledged":
            tally[(hz, f"{'active' if snap.active else 'cleared'}_unacknowledged")] -= 1
            if snap.active:
                tally[(hz, "active_acknowledged")] += 1
        elif what == "cleared":
            tally[(hz, f"active_{'' if snap.acknowledged else 'un'}acknowledged")] -= 1
            if not snap.acknowledged:
                tally[(hz, "cleared_unacknowledged")] += 1
        elif what == "closed" and snap.auto_closed:
            tally[(hz, "cleared_unacknowledged")] -= 1
