"""What an alarm is about (fire, overload, water or fault), from its ``rule`` and
``sensor_kind``: the contract's meaning (docs/contract.md), the same mapping the daemon's
routing uses, kept here because the center depends on the contract and never on the daemon.
Both a Python function (statistics) and an SQL expression (the history filter)."""

from __future__ import annotations

HAZARDS: tuple[str, ...] = ("fire", "overload", "water", "fault")
#: rules about the monitoring itself rather than a hazard
FAULT_RULES = frozenset({"no_data", "comm_fault", "sensor_fault", "floor_data", "battery_low",
                         "output_fault", "clock_step"})


def hazard_of(rule: str | None, sensor_kind: str | None) -> str:
    """``fault`` for a monitoring rule, else by the sensor's kind: ``fire`` (fire button),
    ``water`` (water level), ``overload`` (load cells, floor and zone loads)."""
    if rule in FAULT_RULES:
        return "fault"
    if sensor_kind == "fire_button":
        return "fire"
    if sensor_kind == "water_level":
        return "water"
    return "overload"


#: :func:`hazard_of` over the ``alarms`` table's ``rule`` and ``sensor_kind`` columns
HAZARD_SQL = ("CASE WHEN rule IN (" + ", ".join(f"'{r}'" for r in sorted(FAULT_RULES))
              + ") THEN 'fault' WHEN sensor_kind = 'fire_button' THEN 'fire' "
              "WHEN sensor_kind = 'water_level' THEN 'water' ELSE 'overload' END")
