"""Which outputs the open alarms demand (parkwatch.outputs.demand), on the example park: fire
sounds its building (or the park), a drill the same and marked, a linkage rule switches its
relay, silence quiets the audible ones only, and only the end of every demanding alarm returns
an output to rest."""

from __future__ import annotations

from typing import Any

from conftest import EXAMPLE
from parkwatch.alarms.lifecycle import Alarm
from parkwatch.outputs.demand import Demand
from parkwatch.park import ParkModel
from parkwatch.rules.transitions import Severity
from parkwatch.schema import load_config

_n = 0


def _park(overrides: dict[tuple[Any, ...], Any] | None = None) -> ParkModel:
    return ParkModel(load_config(EXAMPLE, overrides))


def _alarm(park: ParkModel, sensor: str, rule: str = "button_latch",
           severity: Severity = Severity.CRITICAL, *, active: bool = True,
           drill: bool = False) -> Alarm:
    global _n
    _n += 1
    return Alarm(alarm_id=f"A{_n:025d}", sensor=park.index[sensor], rule=rule,
                 severity=severity, value=1.0, threshold=float("nan"), observed_at=0.0,
                 raised_at=0.0, changed_at=0.0, active=active, drill=drill)


def _on(park: ParkModel, demand: Demand) -> set[str]:
    on, _ = demand.wanted()
    return {o.config.id for o, x in zip(park.outputs, on, strict=True) if x}


A_ALL = {"A-SND-1F", "A-SND-3F", "A-STB-1F", "A-PA", "A-SND-W1"}


def test_a_fire_sounds_its_building_and_park_wide_when_configured() -> None:
    park = _park()
    d = Demand(park)
    assert d.observe(_alarm(park, "A-2F-FB1"))
    assert _on(park, d) == A_ALL  # building A's, not B's
    park = _park({("linkage", "fire"): "park"})
    d = Demand(park)
    d.observe(_alarm(park, "B-3F-FB1"))
    assert _on(park, d) == A_ALL | {"B-SND-1F", "B-STB-1F"}  # the pump is a relay: a rule's
    park = _park({("linkage", "fire"): "none"})
    d = Demand(park)
    assert not d.observe(_alarm(park, "B-3F-FB1")) and _on(park, d) == set()


def test_a_drill_sounds_the_same_and_is_marked() -> None:
    park = _park()
    d = Demand(park)
    d.observe(_alarm(park, "A-2F-FB1", drill=True))
    on, drill = d.wanted()
    assert _on(park, d) == A_ALL
    assert all(dr == x for dr, x in zip(drill, on, strict=True))  # only drills demand them
    d.observe(_alarm(park, "A-1F-FB1"))  # a real fire meanwhile: no longer a drill's alone
    assert not any(d.wanted()[1])


def test_a_linkage_rule_switches_its_relay_at_its_severity_only() -> None:
    park = _park()
    d = Demand(park)
    sump = _alarm(park, "B-B1-WL1", "high_threshold", Severity.WARNING)
    assert not d.observe(sump) and _on(park, d) == set()  # below min_severity critical
    sump.severity = Severity.CRITICAL
    assert d.observe(sump) and _on(park, d) == {"B-PUMP-B1"}
    other = _alarm(park, "A-1F-WL1", "high_threshold", Severity.CRITICAL)
    assert not d.observe(other)  # not a sensor of the rule
    sump.active = False
    assert d.observe(sump) and _on(park, d) == set()
    load = _alarm(park, "A-2F-LC1", "high_threshold", Severity.CRITICAL)
    assert not d.observe(load)  # nothing else switches an output


def test_silence_quiets_the_audible_ones_until_a_new_alarm_and_only_the_end_rests() -> None:
    park = _park()
    d = Demand(park)
    first = _alarm(park, "A-2F-FB1")
    b_fire = _alarm(park, "B-3F-FB1")
    d.observe(first)
    d.observe(b_fire)
    assert d.silence("A") == [first.alarm_id]  # building A's only
    assert _on(park, d) == {"A-STB-1F", "B-SND-1F", "B-STB-1F"}  # strobes stay, B sounds
    second = _alarm(park, "A-3F-FB1")
    d.observe(second)
    assert _on(park, d) >= A_ALL  # a new fire sounds again
    first.active = False
    d.observe(first)
    assert first.alarm_id not in d.silenced  # a silence ends with its alarm
    assert _on(park, d) >= A_ALL  # the second fire still demands them
    second.active = False
    d.observe(second)
    assert _on(park, d) == {"B-SND-1F", "B-STB-1F"}
    assert d.silence("A") == []
