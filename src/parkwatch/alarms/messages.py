"""Human-readable alarm messages (Chinese by default), from configurable templates.

Each rule kind brings its rules' words and default messages (parkwatch.rules.kind); this
module adds those of no rule in particular.  Templates are looked up as '{rule}.{event}', then
'{rule}', then 'default'; an alarm closed by the park's policy
(``alarms.close_unacknowledged_after_s``) has 'auto_closed'.  They are Python format strings
over :data:`PLACEHOLDERS`.  An unknown placeholder is a config error, so a template can never
fail at alarm time.
"""

from __future__ import annotations

from typing import Any

from parkwatch.config.model import LANGUAGES
from parkwatch.rules.registry import rule_templates, rule_words

#: every event of the contract (parkwatch.alarm/1)
EVENTS: tuple[str, ...] = ("raised", "escalated", "severity_changed", "acknowledged", "cleared",
                           "closed", "reminder")

PLACEHOLDERS: dict[str, str] = {
    "park": "park display name",
    "place": "building / floor / zone, joined for reading",
    "building": "building display name",
    "floor": "floor display name",
    "zone": "zone display name (empty when none)",
    "sensor": "sensor display name (its id when it has no name)",
    "sensor_id": "sensor id",
    "kind": "sensor kind in words",
    "rule": "rule in words",
    "severity": "severity in words",
    "event": "event in words",
    "value": "value that caused the change, with unit",
    "threshold": "the limit concerned, with unit",
    "tenants": "tenants concerned, by name",
    "by": "operator who acknowledged (empty otherwise)",
}

#: words of everything but the rules (those come with each rule kind, parkwatch.rules)
_WORDS: dict[str, dict[str, str]] = {
    "zh": {
        "load_cell": "楼层称重", "fire_button": "一键报警按钮", "water_level": "水位",
        "info": "提示", "warning": "预警", "critical": "严重",
        "raised": "报警", "escalated": "升级", "severity_changed": "等级变化",
        "acknowledged": "已确认", "cleared": "已恢复", "closed": "已关闭", "reminder": "提醒",
        "floor": "楼面", "zone": "区域",
        "sounder": "声报警器", "strobe": "光报警器", "pa": "应急广播", "relay": "联动继电器",
    },
    "en": {
        "load_cell": "floor load", "fire_button": "fire alarm button", "water_level": "water level",
        "info": "info", "warning": "warning", "critical": "critical",
        "raised": "raised", "escalated": "escalated", "severity_changed": "severity changed",
        "acknowledged": "acknowledged", "cleared": "cleared", "closed": "closed",
        "reminder": "reminder", "floor": "floor", "zone": "zone",
        "sounder": "sounder", "strobe": "strobe", "pa": "PA trigger", "relay": "relay",
    },
}

#: the messages of no rule in particular (each rule kind brings its own)
_TEMPLATES: dict[str, dict[str, str]] = {
    "zh": {
        "default": "【{kind}{event}】{place} {sensor} 当前 {value}",
        "auto_closed": "【自动关闭】{place} {sensor} 的{rule}报警已恢复，超过规定时间无人确认，已按园区策略自动关闭",
    },
    "en": {
        "default": "{kind} {event} at {place}: {sensor} reads {value}",
        "auto_closed": "{rule} alarm of {sensor} at {place} cleared and nobody acknowledged it in time: closed automatically by the park's policy",
    },
}

#: every word of the messages, by language: the general ones and each rule kind's
WORDS: dict[str, dict[str, str]] = {language: {**_WORDS[language], **rule_words(language)}
                                    for language in LANGUAGES}
#: every default message, by language: each rule kind's, then the general ones
DEFAULT_TEMPLATES: dict[str, dict[str, str]] = {
    language: {**rule_templates(language), **_TEMPLATES[language]} for language in LANGUAGES}


class _Blank(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return ""


class MessageFormatter:
    """Renders the `message` field of alarm events."""

    def __init__(self, language: str, overrides: dict[str, str]) -> None:
        self.words = WORDS[language]
        self.templates = {**DEFAULT_TEMPLATES[language], **overrides}
        #: (rule, event) -> its template: looked up for every alarm change
        self._chosen: dict[tuple[str, str], str] = {}

    def word(self, key: str) -> str:
        return self.words.get(key, key)

    def template(self, rule: str, event: str) -> str:
        """The template of a rule's event: its own, else the rule's, else the default."""
        key = (rule, event)
        found = self._chosen.get(key)
        if found is None:
            found = self._chosen[key] = (self.templates.get(f"{rule}.{event}")
                                         or self.templates.get(rule)
                                         or self.templates["default"])
        return found

    def render(self, rule: str, event: str, fields: dict[str, Any],
               auto_closed: bool = False) -> str:
        """The message of an event; an alarm closed by policy has the 'auto_closed' one.  A
        field the template names and `fields` lacks is left empty."""
        template = self.templates["auto_closed"] if auto_closed else self.template(rule, event)
        try:
            return template.format_map(fields)
        except KeyError:  # a template of the park's own naming a field events do not have
            return template.format_map(_Blank(fields))
