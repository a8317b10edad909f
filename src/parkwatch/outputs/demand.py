"""Which outputs the open alarms demand, and what an operator's silence takes back.

The linkage stage of the alarm path: it sees every alarm change right after the route stage
(so it knows a drill), before the commit, and answers with each output's wanted state.

* A fire alarm (a drill's too) demands every sounder, strobe and PA trigger of its building,
  or of the park (``linkage.fire``); a linkage rule's alarms demand its outputs.
* An output is on while any active alarm demands it.  Clearing or resetting the last of them
  returns it to rest; an acknowledgement changes nothing.
* **Silence** (fire-panel 消音): the audible outputs (sounders, PA) of the silenced alarms go
  quiet, strobes stay on, the alarms stay active and unacknowledged.  A new alarm that demands
  them sounds them again, since it was not silenced.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from parkwatch.alarms.lifecycle import Alarm
from parkwatch.alarms.routing import SEVERITY_RANK, hazard_of
from parkwatch.config.outputs import ALARM_KINDS, AUDIBLE, LinkageRule
from parkwatch.park import ParkModel


@dataclass(frozen=True, slots=True)
class Demanded:
    """What one active alarm demands."""

    outputs: tuple[int, ...]  # output positions
    building: str | None
    drill: bool


class Demand:
    """The demands of the open alarms of one config (rebuilt with it)."""

    def __init__(self, park: ParkModel, silenced: Iterable[str] = ()) -> None:
        self.park = park
        cfg = park.cfg
        self.kinds = [o.config.kind for o in park.outputs]
        alarm_outputs = [o.position for o in park.outputs if o.config.kind in ALARM_KINDS]
        #: building -> the outputs a fire there sounds
        self.fire: dict[str, tuple[int, ...]] = {}
        for b in cfg.buildings:
            if cfg.linkage.fire == "park":
                self.fire[b.id] = tuple(alarm_outputs)
            elif cfg.linkage.fire == "building":
                self.fire[b.id] = tuple(k for k in alarm_outputs
                                        if park.outputs[k].config.building == b.id)
        positions = {o.config.id: o.position for o in park.outputs}
        self.rules: list[tuple[LinkageRule, tuple[int, ...]]] = [
            (r, tuple(positions[o] for o in r.outputs)) for r in cfg.linkage.rules]
        #: alarm id -> what it demands (active alarms only)
        self.active: dict[str, Demanded] = {}
        #: alarms whose audible outputs an operator silenced
        self.silenced: set[str] = set(silenced)

    def observe(self, alarm: Alarm) -> bool:
        """An alarm changed (a copy right after the change); whether the demands changed."""
        before = self.active.get(alarm.alarm_id)
        now = self._demanded(alarm) if alarm.active else None
        if now is None or not now.outputs:
            if before is None:
                return False
            del self.active[alarm.alarm_id]
            self.silenced.discard(alarm.alarm_id)
            return True
        self.active[alarm.alarm_id] = now
        return now != before

    def _demanded(self, alarm: Alarm) -> Demanded | None:
        park = self.park
        if alarm.sensor >= len(park.sensors):
            return None  # floors, zones and outputs switch nothing (a floor overload: rules)
        s = park.sensors[alarm.sensor].config
        hz = hazard_of(alarm.rule, s.kind)
        if hz == "fire":
            return Demanded(self.fire.get(s.building or "", ()), s.building, alarm.drill)
        if not self.rules:  # a storm of load alarms costs a lookup each, no more
            return None
        outs: list[int] = []
        for rule, positions in self.rules:
            if ((not rule.kinds or hz in rule.kinds)
                    and (not rule.sensors or s.id in rule.sensors)
                    and (not rule.rules or alarm.rule in rule.rules)
                    and int(alarm.severity) >= SEVERITY_RANK[rule.min_severity]):
                outs += positions
        return Demanded(tuple(dict.fromkeys(outs)), s.building, alarm.drill) if outs else None

    def silence(self, building: str | None) -> list[str]:
        """Silence the alarms now sounding (in `building`, or all); the ones newly silenced."""
        new = [a for a, d in self.active.items()
               if a not in self.silenced and (building is None or d.building == building)
               and any(self.kinds[k] in AUDIBLE for k in d.outputs)]
        self.silenced.update(new)
        return new

    def wanted(self) -> tuple[list[bool], list[bool]]:
        """Per output: whether it should be on, and whether only drills demand it."""
        on = [False] * len(self.kinds)
        real = [False] * len(self.kinds)
        for alarm_id, d in self.active.items():
            quiet = alarm_id in self.silenced
            for k in d.outputs:
                if quiet and self.kinds[k] in AUDIBLE:
                    continue
                on[k] = True
                real[k] = real[k] or not d.drill
        return on, [o and not r for o, r in zip(on, real, strict=True)]
