"""Every rule kind parkwatch evaluates: one line each.

The order is the order of evaluation within a stage and fixes the rule codes.
"""

from __future__ import annotations

from typing import ClassVar, Protocol

from parkwatch.park import ParkModel
from parkwatch.rules.button_latch import ButtonLatchRule
from parkwatch.rules.comm_fault import CommFaultRule
from parkwatch.rules.flapping import FlappingRule
from parkwatch.rules.floor_load import FloorLoadRule
from parkwatch.rules.no_data import NoDataRule
from parkwatch.rules.rate_of_rise import RateOfRiseRule
from parkwatch.rules.threshold import ThresholdRule


class RuleKindClass(Protocol):
    """What the engine needs of a kind's class: its rule names and its constructor (the rest
    of :class:`~parkwatch.rules.kind.RuleKind` is optional or, for ``evaluate``, differs by
    kind, so the engine finds it by name)."""

    rules: ClassVar[tuple[str, ...]]

    def __init__(self, park: ParkModel, rule_base: int, start: float) -> None: ...


RULE_KINDS: dict[str, type[RuleKindClass]] = {
    "threshold": ThresholdRule,
    "rate_of_rise": RateOfRiseRule,
    "button_latch": ButtonLatchRule,
    "comm_fault": CommFaultRule,
    "no_data": NoDataRule,
    "flapping": FlappingRule,
    "floor_load": FloorLoadRule,
}

#: rule code -> rule name, as the rule engine assigns codes (registry order)
RULE_NAMES: tuple[str, ...] = tuple(name for kind in RULE_KINDS.values() for name in kind.rules)
