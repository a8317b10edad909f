"""Human-readable alarm messages (Chinese by default), from configurable templates.

Templates are looked up as '{rule}.{event}', then '{rule}', then 'default'; an alarm closed
by the park's policy (``alarms.close_unacknowledged_after_s``) has 'auto_closed'.  They are
Python format strings over :data:`PLACEHOLDERS`.  An unknown placeholder is a config error, so a
template can never fail at alarm time.
"""

from __future__ import annotations

from typing import Any

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

WORDS: dict[str, dict[str, str]] = {
    "zh": {
        "load_cell": "楼层称重", "fire_button": "一键报警按钮", "water_level": "水位",
        "info": "提示", "warning": "预警", "critical": "严重",
        "raised": "报警", "escalated": "升级", "severity_changed": "等级变化",
        "acknowledged": "已确认", "cleared": "已恢复", "closed": "已关闭", "reminder": "提醒",
        "high_threshold": "超上限", "low_threshold": "低于下限", "button_latch": "火警",
        "comm_fault": "通讯故障", "rate_of_rise": "上涨过快", "no_data": "无数据",
        "flapping": "频繁波动", "floor_load": "楼面荷载", "floor_data": "荷载数据不全",
        "floor": "楼面", "zone": "区域",
    },
    "en": {
        "load_cell": "floor load", "fire_button": "fire alarm button", "water_level": "water level",
        "info": "info", "warning": "warning", "critical": "critical",
        "raised": "raised", "escalated": "escalated", "severity_changed": "severity changed",
        "acknowledged": "acknowledged", "cleared": "cleared", "closed": "closed",
        "reminder": "reminder",
        "high_threshold": "above limit", "low_threshold": "below limit", "button_latch": "fire",
        "comm_fault": "communication fault", "rate_of_rise": "rising fast",
        "no_data": "no data", "flapping": "flapping", "floor_load": "floor load",
        "floor_data": "floor load data incomplete", "floor": "floor", "zone": "zone",
    },
}

DEFAULT_TEMPLATES: dict[str, dict[str, str]] = {
    "zh": {
        "button_latch.raised": "【火警】{place} 一键报警按钮（{sensor}）被按下，请立即核实并组织疏散！",
        "button_latch.cleared": "【火警复位】{place} 一键报警按钮（{sensor}）已复位",
        "button_latch.escalated": "【火警升级】{place} 一键报警按钮（{sensor}）报警长时间未确认，已逐级上报，请立即处置！",
        "button_latch.reminder": "【火警未确认】{place} 一键报警按钮（{sensor}）报警仍未确认，请立即核实处置！",
        "button_latch": "【火警{event}】{place} 一键报警按钮（{sensor}）",
        "high_threshold.raised": "【{kind}{severity}】{place} {sensor} 当前 {value}，超过{severity}限值 {threshold}",
        "high_threshold.severity_changed": "【{kind}{severity}】{place} {sensor} 当前 {value}，{severity}限值 {threshold}",
        "low_threshold.raised": "【{kind}{severity}】{place} {sensor} 当前 {value}，低于{severity}限值 {threshold}",
        "low_threshold.severity_changed": "【{kind}{severity}】{place} {sensor} 当前 {value}，{severity}限值 {threshold}",
        "comm_fault.raised": "【通讯故障】{place} {sensor} 超过 {threshold} 未收到有效数据，请检查线缆与设备",
        "comm_fault.cleared": "【通讯恢复】{place} {sensor} 已恢复通讯",
        "rate_of_rise.raised": "【{kind}上涨过快】{place} {sensor} 每分钟上涨 {value}，超过{severity}限值 {threshold}",
        "rate_of_rise.severity_changed": "【{kind}上涨过快】{place} {sensor} 每分钟上涨 {value}，{severity}限值 {threshold}",
        "rate_of_rise.cleared": "【{kind}上涨恢复】{place} {sensor} 上涨速度已回落",
        "no_data.raised": "【无数据】{place} {sensor} 超过 {threshold} 未上报任何数据，请检查设备电池与网络",
        "no_data.cleared": "【数据恢复】{place} {sensor} 已恢复上报",
        "flapping.raised": "【频繁波动】{place} {sensor} 报警状态频繁变化（近期 {value}），已合并为一条报警，请现场核查",
        "flapping.cleared": "【波动结束】{place} {sensor} 已稳定，报警状态已更新",
        "floor_load.raised": "【楼面超载{severity}】{place} 楼面荷载 {value}，达到{severity}限值 {threshold}，请立即停止堆放并疏散货物",
        "floor_load.severity_changed": "【楼面超载{severity}】{place} 楼面荷载 {value}，{severity}限值 {threshold}",
        "floor_load.cleared": "【楼面荷载恢复】{place} 楼面荷载 {value}，已低于限值",
        "floor_data.raised": "【荷载数据不全】{place} 有 {value} 个称重传感器无有效数据，楼面荷载无法计算，请检查传感器",
        "floor_data.cleared": "【荷载数据恢复】{place} 全部称重传感器已恢复，楼面荷载重新计算",
        "default": "【{kind}{event}】{place} {sensor} 当前 {value}",
        "auto_closed": "【自动关闭】{place} {sensor} 的{rule}报警已恢复，超过规定时间无人确认，已按园区策略自动关闭",
    },
    "en": {
        "button_latch.raised": "FIRE: alarm button {sensor} pressed at {place}; verify and evacuate now!",
        "button_latch.cleared": "Fire alarm button {sensor} at {place} has been reset",
        "button_latch.escalated": "FIRE alarm at {place} ({sensor}) still unacknowledged: escalated; act now!",
        "button_latch.reminder": "FIRE alarm at {place} ({sensor}) is still unacknowledged; verify and act now!",
        "button_latch": "Fire alarm button {sensor} at {place}: {event}",
        "high_threshold.raised": "{kind} {severity} at {place}: {sensor} reads {value}, above {threshold}",
        "low_threshold.raised": "{kind} {severity} at {place}: {sensor} reads {value}, below {threshold}",
        "comm_fault.raised": "Communication fault at {place}: no data from {sensor} for {threshold}; check cable and device",
        "comm_fault.cleared": "Communication with {sensor} at {place} restored",
        "rate_of_rise.raised": "{kind} rising fast at {place}: {sensor} rises {value}, {severity} limit {threshold}",
        "rate_of_rise.cleared": "{kind} at {place}: {sensor} no longer rising fast",
        "no_data.raised": "No data at {place}: {sensor} has sent nothing for {threshold}; check its battery and network",
        "no_data.cleared": "{sensor} at {place} reports again",
        "flapping.raised": "{sensor} at {place} is flapping ({value} of recent readings changed its alarms); its alarms are held in this one",
        "flapping.cleared": "{sensor} at {place} has settled; its alarms are up to date",
        "floor_load.raised": "FLOOR OVERLOAD {severity} at {place}: load {value}, limit {threshold}; stop stacking and unload",
        "floor_load.cleared": "Floor load at {place} back below its limits: {value}",
        "floor_data.raised": "Floor load at {place} unknown: {value} load cell(s) without good data; check them",
        "floor_data.cleared": "Floor load at {place} complete again",
        "default": "{kind} {event} at {place}: {sensor} reads {value}",
        "auto_closed": "{rule} alarm of {sensor} at {place} cleared and nobody acknowledged it in time: closed automatically by the park's policy",
    },
}


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
