"""Every rule kind parkwatch evaluates: one line each."""

from __future__ import annotations

from parkwatch.rules.button_latch import ButtonLatchRule
from parkwatch.rules.comm_fault import CommFaultRule
from parkwatch.rules.threshold import ThresholdRule

RULE_KINDS: dict[str, type] = {
    "threshold": ThresholdRule,
    "button_latch": ButtonLatchRule,
    "comm_fault": CommFaultRule,
}

#: rule code -> rule name, as the rule engine assigns codes (registry order)
RULE_NAMES: tuple[str, ...] = tuple(name for kind in RULE_KINDS.values() for name in kind.rules)
