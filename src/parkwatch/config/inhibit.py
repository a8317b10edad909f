"""Inhibition rules (``alarms.inhibit``), as Alertmanager's ``inhibit_rules``: while a *source*
alarm is active, the notifications of the *target* alarms that share its ``equal`` labels are
muted (recorded as suppressions), e.g. a bus's ``comm_fault`` mutes the ``no_data`` of the
sensors on the same driver.  The command-center contract is never muted, and a fire alarm is
never a target: a rule that names fire as its target is a config error.

The matching itself is :mod:`parkwatch.alarms.inhibit`'s; the names a matcher uses (places,
tenants, rules, drivers) are checked against the park in :mod:`parkwatch.config.crosscheck`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from parkwatch.config.base import Id, Strict
from parkwatch.config.delivery import Hazard, SeverityName

#: the labels of an alarm an inhibition rule may match on and compare (``equal``)
Label = Literal["rule", "hazard", "severity", "building", "floor", "zone", "sensor_kind",
                "driver", "tenant"]
LABELS: tuple[str, ...] = ("rule", "hazard", "severity", "building", "floor", "zone",
                           "sensor_kind", "driver", "tenant")
#: the rule of fire alarms (the button latch): never a target
FIRE_RULE = "button_latch"


class Matcher(Strict):
    """Which alarms a side of an inhibition rule takes; an empty list means any, and all the
    lists given must match.  Places are `B`, `B/F` or `B/F/Z`."""

    rules: list[str] = Field(default_factory=list, description="rule names, e.g. comm_fault")
    kinds: list[Hazard] = Field(default_factory=list, description="fire, overload, water, "
                                "fault")
    severities: list[SeverityName] = Field(default_factory=list,
                                           description="info, warning, critical")
    buildings: list[Id] = Field(default_factory=list)
    floors: list[str] = Field(default_factory=list, description="'building/floor'")
    zones: list[str] = Field(default_factory=list, description="'building/floor/zone'")
    sensor_kinds: list[str] = Field(default_factory=list, description="load_cell, "
                                    "fire_button, water_level (a floor or zone alarm has "
                                    "floor or zone)")
    drivers: list[Id] = Field(default_factory=list, description="the sensor's driver (id "
                              "under `drivers`); a floor or zone alarm has none")
    tenants: list[Id] = Field(default_factory=list, description="alarms concerning any of "
                              "these tenants")


class TargetMatcher(Matcher):
    """The alarms whose notifications are muted: never a fire."""

    @field_validator("kinds")
    @classmethod
    def _no_fire_kind(cls, value: list[str]) -> list[str]:
        if "fire" in value:
            raise ValueError("a fire alarm is never inhibited: remove 'fire' (overload, water "
                             "and fault alarms may be targets)")
        return value

    @field_validator("rules")
    @classmethod
    def _no_fire_rule(cls, value: list[str]) -> list[str]:
        if FIRE_RULE in value:
            raise ValueError(f"a fire alarm is never inhibited: remove '{FIRE_RULE}' (the fire "
                             "button's latch)")
        return value


class InhibitRule(Strict):
    """While an alarm matching `source` is active, notifications of alarms matching `target`
    with the same values of the `equal` labels are muted (the command-center contract is
    not); fire alarms are never muted."""

    id: Id = Field(description="named in the suppressions it records")
    source: Matcher = Field(description="the alarms that mute (e.g. rules: [comm_fault])")
    target: TargetMatcher = Field(description="the alarms muted (e.g. rules: [no_data, "
                                  "floor_data]); never fire")
    equal: list[Label] = Field(
        default_factory=list, description="labels source and target must share: rule, hazard, "
        "severity, building, floor, zone, sensor_kind, driver, tenant (the alarm's tenants as "
        "a set); a label neither has counts as equal")
    reason: str | None = Field(None, description="why, added to the suppressions' reason")
