"""The words of a hazard ticket's fields (category, grade, state, source, and the landlord as
the party responsible for shared parts), in Chinese and English: one table for the console's
pages (:mod:`parkwatch.center.web.i18n_tickets`), the ledger's files and the escalation
notices, so that all three say the same."""

from __future__ import annotations

WORDS: dict[str, dict[str, str]] = {
    "zh-CN": {
        "landlord_shared": "房东（公共部位）",
        "ticket_state_reported": "已上报", "ticket_state_assigned": "已交办",
        "ticket_state_rectifying": "整改中", "ticket_state_submitted": "待复查",
        "ticket_state_closed": "已销号",
        "cat_fire": "消防", "cat_overload": "超载", "cat_water": "水位", "cat_electrical": "电气",
        "cat_passage": "疏散通道", "cat_storage": "违规存放", "cat_structure": "建筑结构",
        "cat_fault": "监测故障", "cat_other": "其他",
        "level_general": "一般隐患", "level_major": "重大隐患",
        "source_alarm": "报警", "source_inspection": "巡查",
    },
    "en": {
        "landlord_shared": "landlord (shared parts)", "ticket_state_reported": "reported",
        "ticket_state_assigned": "assigned", "ticket_state_rectifying": "rectifying",
        "ticket_state_submitted": "to be checked", "ticket_state_closed": "closed",
        "cat_fire": "fire", "cat_overload": "overload", "cat_water": "water",
        "cat_electrical": "electrical", "cat_passage": "escape route",
        "cat_storage": "storage", "cat_structure": "structure",
        "cat_fault": "monitoring fault", "cat_other": "other", "level_general": "general",
        "level_major": "major", "source_alarm": "alarm", "source_inspection": "inspection",
    },
}
#: a field's prefix in :data:`WORDS`
_PREFIX = {"category": "cat_", "level": "level_", "state": "ticket_state_", "source": "source_"}


def word(lang: str, field: str, value: str) -> str:
    """`value` of a ticket's `field` in words of `lang` (Chinese for a language not known); the
    value itself when it has none."""
    return WORDS.get(lang, WORDS["zh-CN"]).get(_PREFIX[field] + value, value)


def landlord(lang: str) -> str:
    """The responsible party of a ticket with no tenant."""
    return WORDS.get(lang, WORDS["zh-CN"])["landlord_shared"]
