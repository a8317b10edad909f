"""Every rule kind parkwatch evaluates: one line each (then those of extension packages, see
:mod:`parkwatch.extensions`).

The order is the order of evaluation within a stage and fixes the rule codes.
"""

from __future__ import annotations

from collections.abc import Mapping

from parkwatch.extensions import merged
from parkwatch.rules.battery_low import BatteryLowRule
from parkwatch.rules.button_latch import ButtonLatchRule
from parkwatch.rules.clock_step import ClockStepRule
from parkwatch.rules.comm_fault import CommFaultRule
from parkwatch.rules.flapping import FlappingRule
from parkwatch.rules.floor_load import FloorLoadRule
from parkwatch.rules.kind import RuleKindBase
from parkwatch.rules.no_data import NoDataRule
from parkwatch.rules.output_fault import OutputFaultRule
from parkwatch.rules.rate_of_rise import RateOfRiseRule
from parkwatch.rules.sensor_fault import SensorFaultRule
from parkwatch.rules.threshold import ThresholdRule

RULE_KINDS: dict[str, type[RuleKindBase]] = merged("RULE_KINDS", {
    "threshold": ThresholdRule,
    "rate_of_rise": RateOfRiseRule,
    "button_latch": ButtonLatchRule,
    "comm_fault": CommFaultRule,
    "sensor_fault": SensorFaultRule,
    "no_data": NoDataRule,
    "flapping": FlappingRule,
    "floor_load": FloorLoadRule,
    "output_fault": OutputFaultRule,
    "battery_low": BatteryLowRule,
    "clock_step": ClockStepRule,
})

#: rule code -> rule name, as the rule engine assigns codes (registry order)
RULE_NAMES: tuple[str, ...] = tuple(name for kind in RULE_KINDS.values() for name in kind.rules)

#: rule name -> unit of its value and limit ("{}": the sensor's unit)
RULE_UNITS: dict[str, str] = {rule: kind.units[rule] for kind in RULE_KINDS.values()
                              for rule in kind.rules}


def rule_words(language: str) -> dict[str, str]:
    """Every rule in words, in `language`."""
    return {rule: kind.words[language][rule] for kind in RULE_KINDS.values()
            for rule in kind.rules}


def rule_templates(language: str) -> dict[str, str]:
    """Every rule kind's default messages in `language`."""
    out: dict[str, str] = {}
    for kind in RULE_KINDS.values():
        templates: Mapping[str, str] = kind.templates.get(language, {})
        out.update(templates)
    return out
