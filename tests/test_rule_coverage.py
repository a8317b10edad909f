"""Every registered rule reaches the people who read its alarms: a registered rule that one of
these places does not know is a test failure here, not a raw rule name in an operator's message
or a contract nobody documented.

The places: the words of the messages in each language (the `{rule}` placeholder and the
fallback template), the contract's table of rules and their fields (docs/contract.md), and the
rule reference (docs/rules.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from parkwatch.alarms.messages import DEFAULT_TEMPLATES, WORDS
from parkwatch.rules.registry import RULE_NAMES

DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.mark.parametrize("rule", RULE_NAMES)
@pytest.mark.parametrize("language", sorted(WORDS))
def test_every_rule_has_words_in_every_language(rule: str, language: str) -> None:
    assert rule in WORDS[language], f"WORDS[{language!r}] lacks {rule!r}"


@pytest.mark.parametrize("rule", RULE_NAMES)
def test_every_rule_raised_has_a_chinese_message(rule: str) -> None:
    """Chinese is the default language: a raise of every rule reads as a sentence of its own
    or of its rule, not the generic fallback that names no limit."""
    templates = DEFAULT_TEMPLATES["zh"]
    assert f"{rule}.raised" in templates or rule in templates, rule


@pytest.mark.parametrize("rule", RULE_NAMES)
def test_every_rule_is_in_the_contract_and_the_rule_reference(rule: str) -> None:
    contract = (DOCS / "contract.md").read_text(encoding="utf-8")
    assert f"`{rule}`" in contract, f"docs/contract.md's table of rules lacks `{rule}`"
    rules = (DOCS / "rules.md").read_text(encoding="utf-8")
    assert f"`{rule}`" in rules, f"docs/rules.md lacks `{rule}`"
