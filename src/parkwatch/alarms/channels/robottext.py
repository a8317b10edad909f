"""The text of an alarm for people in a chat group or on a phone: what, where, which tenants,
what to do, and the alarm id, in the event's language (Chinese by default).

The chat robots (DingTalk, and the other vendors' to come) show plain text on a phone; the
event's own `message` already says what and where in the operator's words, so this adds what
a chat reader needs besides: the tenants concerned, the state, what to do, and the id to quote
when calling the command center.
"""

from __future__ import annotations

import json
import string
from typing import Any

_EVENT_ZH = {"raised": "告警", "escalated": "升级", "severity_changed": "级别变化",
             "acknowledged": "已确认", "cleared": "已解除", "closed": "已关闭",
             "reminder": "提醒"}
_SEVERITY_ZH = {"critical": "严重", "warning": "警告", "info": "提示"}
#: what the people reading should do, by the alarm's rule (fire first), else by severity
_TODO_ZH = {"button_latch": "请立即按疏散预案组织人员撤离，并到现场确认火情。",
            "floor_load": "请立即停止向该楼层堆放货物，组织卸载并疏散楼下人员。"}
_TODO_SEVERITY_ZH = {"critical": "请立即到现场处置，并向园区安全员报告。",
                     "warning": "请尽快到现场查看。"}
#: where a text may be cut short: after the end of a sentence or a line
_BREAKS = ("\n", "。", "！", "；", "？", ". ", "; ")


def alarm_text(payload: bytes) -> str:
    """The message for an alarm change's event JSON (`payload`, an outbox row's)."""
    ev: dict[str, Any] = json.loads(payload)
    where = " ".join(str(p) for p in (ev.get("building"), ev.get("floor"), ev.get("zone")) if p)
    tenants = "、".join(ev.get("tenants") or []) or "无"
    event = str(ev.get("event", ""))
    head = "【演练】" if ev.get("drill") else ""
    lines = [f"{head}{ev.get('message', '')}",
             f"园区：{ev.get('park', '')}  位置：{where or '—'}",
             f"涉及租户：{tenants}",
             f"级别：{_SEVERITY_ZH.get(str(ev.get('severity')), ev.get('severity'))}  "
             f"状态：{_EVENT_ZH.get(event, event)}"]
    if event in ("raised", "escalated", "severity_changed", "reminder"):
        todo = (_TODO_ZH.get(str(ev.get("rule")))
                or _TODO_SEVERITY_ZH.get(str(ev.get("severity")), ""))
        if todo:
            lines.append(f"处置：{todo}")
    if ev.get("acked_by"):
        lines.append(f"确认人：{ev['acked_by']}")
    lines.append(f"告警编号：{ev.get('alarm_id', '')}")
    return "\n".join(lines)


#: the placeholders a text template (an SMS template's variables) may use
PLACEHOLDERS = ("park", "place", "building", "floor", "zone", "tenants", "message",
                "severity", "event", "rule", "sensor_id", "alarm_id", "acked_by")


def placeholders(payload: bytes) -> dict[str, str]:
    """An alarm change's event JSON as the values of :data:`PLACEHOLDERS`, in words."""
    ev: dict[str, Any] = json.loads(payload)
    out = {k: "" if ev.get(k) is None else str(ev[k]) for k in PLACEHOLDERS}
    out["place"] = " ".join(str(p) for p in (ev.get("building"), ev.get("floor"),
                                             ev.get("zone")) if p) or "—"
    out["tenants"] = "、".join(ev.get("tenants") or []) or "无"
    out["severity"] = _SEVERITY_ZH.get(out["severity"], out["severity"])
    out["event"] = _EVENT_ZH.get(out["event"], out["event"])
    if ev.get("drill"):
        out["message"] = "【演练】" + out["message"]
    return out


def unknown_placeholders(template: str) -> list[str]:
    """The names in `template` that are not :data:`PLACEHOLDERS` (ValueError if malformed)."""
    names = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    return [n for n in names if n not in PLACEHOLDERS]


def cut_chars(text: str, limit: int, tail: str = "…") -> str:
    """`text` in at most `limit` characters, cut after a sentence where one fits."""
    if len(text) <= limit:
        return text
    head = text[:max(limit - len(tail), 0)]
    at = max(head.rfind(b) + len(b) for b in _BREAKS)
    if at > len(head) // 2:
        head = head[:at]
    return head.rstrip() + tail


def cut(text: str, limit_bytes: int, tail: str = "…") -> str:
    """`text` in at most `limit_bytes` of UTF-8: whole when it fits, else cut after the last
    sentence or line that fits (mid-sentence only when no break fits), marked with `tail`."""
    data = text.encode("utf-8")
    if len(data) <= limit_bytes:
        return text
    room = limit_bytes - len(tail.encode("utf-8"))
    head = data[:max(room, 0)].decode("utf-8", "ignore")
    at = max(head.rfind(b) + len(b) for b in _BREAKS)
    if at > len(head) // 2:  # a break in the second half: cut there
        head = head[:at]
    return head.rstrip() + tail


#: characters of one SMS of Chinese text: UCS-2, 140 octets (3GPP TS 23.038 §6.2.3, TS 23.040
#: §9.2.3.16); a concatenated SMS spends 6 octets of each part on its header, leaving 67
#: (TS 23.040 §9.2.3.24.1), which is what carriers and gateways bill a long message by
SMS_CHARS = 70
#: where an SMS is cut: after the end of a sentence or a line
_SMS_SENTENCE = frozenset("\n。；！？!?;")
#: where it is cut when a sentence is longer than an SMS: after a clause
_SMS_CLAUSE = frozenset("，、：,: ")


def sms_segments(text: str, limit: int = SMS_CHARS, reserve: int = 0) -> list[str]:
    """`text` as standalone SMS of at most `limit` characters each, `reserve` of them spent on
    each by something else (the 【signature】 the gateway puts in front).

    A text that fits is one SMS.  A longer one is cut after the last end of a sentence or line
    (。；！？ or a newline) that fits, else after a clause (，、：), else between two
    characters that are not both letters or digits (never inside an id or a number), and each
    part starts with its number, ``(1/3)``.  Each part is sent as an SMS of its own, so each
    takes the 70 characters of one SMS (:data:`SMS_CHARS`), not the 67 of a concatenated
    part, and arrives readable even where a phone does not join a long SMS.
    """
    text = text.strip()
    room = limit - reserve
    if len(text) <= room:
        return [text] if text else []
    count = 2
    while True:  # the numbers' width depends on how many parts there are
        width = len(f"({count}/{count})")
        parts = _sms_cut(text, room - width)
        if len(parts) <= count or len(f"({len(parts)}/{len(parts)})") == width:
            count = len(parts)
            return [f"({k}/{count}){p}" for k, p in enumerate(parts, 1)]
        count = len(parts)


def _sms_cut(text: str, room: int) -> list[str]:
    if room < 8:
        raise ValueError(f"an SMS part of {room} characters cannot hold a sentence")
    parts: list[str] = []
    rest = text
    while len(rest) > room:
        at = _sms_break(rest, room)
        part = rest[:at].strip()
        if part:
            parts.append(part)
        rest = rest[at:].lstrip()
    if rest:
        parts.append(rest)
    return parts


def _sms_break(rest: str, room: int) -> int:
    """How many characters of `rest` the next part takes (at most `room`)."""
    window = rest[:room]
    for breaks in (_SMS_SENTENCE, _SMS_CLAUSE):
        at = max((i + 1 for i, ch in enumerate(window) if ch in breaks), default=0)
        if at:
            return at
    for at in range(room, 0, -1):
        if not (rest[at - 1].isascii() and rest[at - 1].isalnum()
                and rest[at].isascii() and rest[at].isalnum()):
            return at
    return room


def brief_line(payload: bytes) -> str:
    """One alarm change in one line, for a message that carries several: what (the event's
    message), its state, where, and the alarm id."""
    return _brief(json.loads(payload))


def _where(ev: dict[str, Any]) -> str:
    return " ".join(str(p) for p in (ev.get("building"), ev.get("floor"), ev.get("zone"))
                    if p) or "—"


def _state(ev: dict[str, Any]) -> str:
    event = str(ev.get("event", ""))
    return _EVENT_ZH.get(event, event)


def _brief(ev: dict[str, Any]) -> str:
    head = "【演练】" if ev.get("drill") else ""
    return (f"{head}{ev.get('message', '')}（{_state(ev)}）位置：{_where(ev)} "
            f"编号：{ev.get('alarm_id', '')}")


def _short(ev: dict[str, Any]) -> str:
    """A line of a group of the same rule and change: where, which sensor, the id."""
    sensor = f" {ev['sensor_id']}" if ev.get("sensor_id") else ""
    return f"{_where(ev)}{sensor} 编号：{ev.get('alarm_id', '')}"


def summary_text(payloads: list[bytes], limit_bytes: int) -> tuple[str, int]:
    """One message for several alarm changes, within `limit_bytes` of UTF-8: a line each, as
    many as fit, and how many more follow in the next message; the text and how many it lists
    (at least one: a line too long alone is cut).  Changes of one rule and one kind of change
    (a cut cable's comm faults) that do not fit in full lines are listed short: the first
    one's message in full, then where, which sensor and the id of each."""
    evs = [json.loads(p) for p in payloads]
    total = len(evs)
    head = [f"【告警汇总】共 {total} 条告警"]
    lines = [f"{i}. {_brief(ev)}" for i, ev in enumerate(evs, 1)]
    same = len({(ev.get("rule"), ev.get("event"), bool(ev.get("drill"))) for ev in evs}) == 1

    def text(k: int) -> str:
        out = [*head, *lines[:k]]
        if k < total:
            out.append(f"另有 {total - k} 条告警将在下一条消息中列出。")
        return "\n".join(out)

    if same and total > 1 and len(text(total).encode("utf-8")) > limit_bytes:
        first = evs[0]
        head = [f"【告警汇总】共 {total} 条同类告警（{_state(first)}）",
                f"首条：{'【演练】' if first.get('drill') else ''}{first.get('message', '')}"]
        lines = [f"{i}. {_short(ev)}" for i, ev in enumerate(evs, 1)]
    k = 0
    while k < total and len(text(k + 1).encode("utf-8")) <= limit_bytes:
        k += 1
    if k == 0:  # not even one line fits whole: the first, cut
        k = 1
        room = limit_bytes - len(text(0).encode("utf-8")) - 1
        lines[0] = cut(lines[0], max(room, 0))
    return text(k), k
