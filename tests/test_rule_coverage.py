"""Every registered rule reaches the people who read its alarms: a registered rule that one of
these places does not know is a test failure here, not a raw rule name in an operator's message
or a contract nobody documented.

The places: the words of the messages in each language (the `{rule}` placeholder and the
fallback template), the contract's table of rules and their fields (docs/contract.md), and the
rule reference (docs/rules.md).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from conftest import EXAMPLE
from parkwatch.alarms.messages import DEFAULT_TEMPLATES, WORDS
from parkwatch.park import ParkModel
from parkwatch.rules.kind import RuleKindBase, no_fingerprint
from parkwatch.rules.registry import RULE_KINDS, RULE_NAMES, RULE_UNITS
from parkwatch.rules.snapshot import fingerprints
from parkwatch.schema import ParkConfig, RulesConfig

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


# --- what each kind declares reaches config, snapshots, events and messages ----------------

def test_every_registered_kind_is_a_rule_kind_base_with_its_declarations() -> None:
    for name, kind in RULE_KINDS.items():
        assert issubclass(kind, RuleKindBase), name
        for rule in kind.rules:
            assert rule in RULE_UNITS, rule


def test_a_kind_that_forgets_a_declaration_fails_when_it_is_defined() -> None:
    with pytest.raises(TypeError, match="does not declare fingerprinter"):
        class NoFingerprint(RuleKindBase):
            rules = ("x",)
            units: ClassVar[Mapping[str, str]] = {"x": "{}"}
            words: ClassVar[Mapping[str, Mapping[str, str]]] = {"zh": {"x": "x"},
                                                                 "en": {"x": "x"}}
            templates: ClassVar[Mapping[str, Mapping[str, str]]] = {"zh": {"x": "x"}}
    with pytest.raises(TypeError, match="has no words in language 'en'"):
        class NoEnglish(RuleKindBase):
            rules = ("x",)
            units: ClassVar[Mapping[str, str]] = {"x": "{}"}
            words: ClassVar[Mapping[str, Mapping[str, str]]] = {"zh": {"x": "x"}}
            templates: ClassVar[Mapping[str, Mapping[str, str]]] = {"zh": {"x": "x"}}
            fingerprinter = staticmethod(lambda park: no_fingerprint)


SECTIONS = [kind.settings for kind in RULE_KINDS.values() if kind.settings is not None]


@pytest.mark.parametrize("section", SECTIONS, ids=lambda s: s.key)
def test_every_settings_section_is_in_the_config_and_its_reference(section) -> None:
    field = RulesConfig.model_fields[section.key]
    assert field.description == section.description
    assert f"## `rules.{section.key}`" in (DOCS / "config.md").read_text(encoding="utf-8")
    assert f"`rules.{section.key}" in (DOCS / "rules.md").read_text(encoding="utf-8")


def _changed(model: type[BaseModel]) -> Iterator[tuple[str, Any]]:
    """Each field of a settings model set to another valid value than its default."""
    default = model()
    for name in model.model_fields:
        value = getattr(default, name)
        for other in ((not value,) if isinstance(value, bool)
                      else (value * 1.5, value * 0.5, value + 1, value - 1)
                      if isinstance(value, int | float) else ()):
            if type(value)(other) == value:
                continue
            try:
                model(**{**default.model_dump(), name: type(value)(other)})
            except (ValidationError, ValueError):
                continue
            yield name, type(value)(other)
            break


@pytest.mark.parametrize("section", SECTIONS, ids=lambda s: s.key)
def test_changing_any_setting_of_a_kind_changes_the_fingerprint_of_what_it_shapes(
        section) -> None:
    """Forgetting a setting in the kind's fingerprinter would keep a state that meant something
    else after a restart: every field of every section must reach the fingerprints."""
    example = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    example.setdefault("rules", {})[section.key] = section.model().model_dump()
    base = fingerprints(ParkModel(ParkConfig.model_validate(example)))
    changed = list(_changed(section.model))
    assert changed, f"no field of rules.{section.key} could be varied"
    for name, value in changed:
        data = copy.deepcopy(example)
        data["rules"][section.key][name] = value
        after = fingerprints(ParkModel(ParkConfig.model_validate(data)))
        assert after != base, f"rules.{section.key}.{name} does not reach the fingerprints"


def test_the_rule_docs_name_every_part_of_a_rule_kind() -> None:
    """docs/rules.md's "Adding a rule kind" says exactly what a kind takes: every declaration
    and hook of RuleKindBase is named there."""
    text = (DOCS / "rules.md").read_text(encoding="utf-8")
    section = text[text.index("## Adding a rule kind"):]
    parts = {name for name in (*vars(RuleKindBase), *RuleKindBase.__annotations__)
             if not name.startswith("_")}
    missing = sorted(p for p in parts if f"`{p}" not in section)
    assert not missing, f"docs/rules.md's 'Adding a rule kind' does not name {missing}"


def test_a_kind_on_the_reported_base_still_declares_its_rules_and_messages() -> None:
    from parkwatch.rules.reported import ReportedRule

    with pytest.raises(TypeError, match="does not declare rules, units, words, templates"):
        class Bare(ReportedRule):
            pass
    assert ReportedRule.fingerprinter is not None  # the base itself is not checked as a kind
