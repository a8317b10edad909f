"""The drill report (:mod:`parkwatch.alarms.drillreport`) as one printable page: self-contained
HTML (inline CSS, no script, nothing fetched), in Chinese (English with ``alarms.language:
en``), laid out to print on one A4 page for a normal drill.

The page is made from the report's JSON alone, so the daemon's ``/report.html`` and
``parkwatch drill-report`` (which fetches the JSON) print the same page.  Every value from the
config or the store is HTML-escaped: names, reasons and notes are free text.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from html import escape
from typing import Any

_CSS = """
@page { size: A4; margin: 12mm; }
* { box-sizing: border-box; }
body { font-family: "Noto Sans CJK SC", "Source Han Sans SC", "PingFang SC",
  "Microsoft YaHei", "SimSun", sans-serif; font-size: 10.5pt; color: #111; margin: 0 auto;
  max-width: 190mm; line-height: 1.35; }
h1 { font-size: 17pt; text-align: center; margin: 0 0 2mm; letter-spacing: 0.2em; }
h2 { font-size: 11.5pt; margin: 4mm 0 1.5mm; }
p.sub { text-align: center; margin: 0 0 3mm; color: #333; }
table { border-collapse: collapse; width: 100%; margin: 0 0 2mm; }
th, td { border: 0.3mm solid #555; padding: 0.8mm 1.5mm; text-align: left;
  vertical-align: top; }
th { background: #eee; font-weight: 600; white-space: nowrap; }
td.num { text-align: right; white-space: nowrap; }
table.meta th { width: 24mm; }
.bad { color: #a00; font-weight: 600; }
.small { font-size: 9pt; color: #333; margin: 0 0 1.5mm; }
.empty { font-size: 11pt; padding: 4mm; border: 0.3mm dashed #555; text-align: center; }
footer { margin-top: 6mm; display: flex; justify-content: space-between; }
@media print {
  body { font-size: 9.5pt; max-width: none; }
  th, td { padding: 0.5mm 1.2mm; }
  section { break-inside: avoid; }
  h2 { margin-top: 3mm; }
}
"""

_ZH = {
    "lang": "zh-CN", "title": "应急演练报告", "gateway": "网关", "drill_id": "演练编号",
    "reason": "演练说明", "scope": "演练范围", "span": "演练时段", "notify": "通知对象",
    "usual": "按常规分派", "state": "演练状态", "generated": "报告生成", "tz": "时间为 UTC",
    "removed": "（已不在配置中）", "any": "全园区", "alarm": "报警", "pressed": "按下（网关记录）",
    "device_time": "设备记录", "alarm_id": "报警编号", "step": "环节", "time": "时间",
    "since": "距按下（秒）", "who": "人员 / 说明", "ack": "确认", "reset": "复位",
    "closed": "关闭", "not_yet": "尚未", "at_device": "现场复位", "tenant": "租户",
    "person": "人员", "channel": "渠道", "told_at": "通知时间", "later": "后续通知（确认、复位、"
    "关闭等）", "later_fmt": "{n} 条，已送达 {ok} 条", "muted": "未通知（演练策略）",
    "sign": ("演练负责人（签字）：", "安全员（签字）：", "日期："),
    "paren": ("（", "）"), "colon": "：", "semi": "；", "list": "、",
    "expired": "未送达（已过期）", "pending": "待送达", "tries": "已试 {n} 次",
    "states": {"planned": "未开始", "running": "进行中", "over": "已结束"},
    "scope_keys": {"buildings": "楼栋", "floors": "楼层", "zones": "区域", "tenants": "租户",
                   "kinds": "类别", "sensors": "设备"},
    "kinds": {"fire": "火警", "overload": "超载", "water": "水位", "fault": "故障"},
    "parties": {"landlord": "业主/房东", "facilities": "物业", "any": "园区（按过滤）",
                "escalation": "上级/升级", "command_center": "指挥中心", None: "（已删除）"},
    "channels": {"uplink": "指挥中心上行", "mqtt": "园区App", "log": "日志", "webhook": "Webhook",
                 "dingtalk": "钉钉", "wecom": "企业微信", "feishu": "飞书",
                 "aliyun_sms": "短信（阿里云）", "http_sms": "短信"},
}
_EN = {
    "lang": "en", "title": "Emergency drill report", "gateway": "gateway", "drill_id": "Drill",
    "reason": "Purpose", "scope": "Scope", "span": "Span", "notify": "Notified",
    "usual": "usual routing", "state": "State", "generated": "Generated", "tz": "times in UTC",
    "removed": " (no longer in the config)", "any": "whole park", "alarm": "Alarm",
    "pressed": "Pressed (gateway)", "device_time": "device time", "alarm_id": "alarm id",
    "step": "Step", "time": "Time", "since": "Since press (s)", "who": "By / note",
    "ack": "Acknowledged", "reset": "Reset", "closed": "Closed", "not_yet": "not yet",
    "at_device": "at the device", "tenant": "Tenant", "person": "Person",
    "channel": "Channel", "told_at": "Notified at", "later": "Later notifications (ack, reset, "
    "close, …)", "later_fmt": "{n}, {ok} delivered", "muted": "Not notified (drill policy)",
    "sign": ("Drill lead (signature):", "Safety officer (signature):", "Date:"),
    "paren": (" (", ")"), "colon": ": ", "semi": "; ", "list": ", ",
    "expired": "not delivered (expired)", "pending": "pending",
    "tries": "{n} attempt(s)",
    "states": {"planned": "not started", "running": "running", "over": "over"},
    "scope_keys": {"buildings": "buildings", "floors": "floors", "zones": "zones",
                   "tenants": "tenants", "kinds": "kinds", "sensors": "sensors"},
    "kinds": {"fire": "fire", "overload": "overload", "water": "water", "fault": "fault"},
    "parties": {"landlord": "landlord", "facilities": "facilities", "any": "park (filter)",
                "escalation": "escalation", "command_center": "command center",
                None: "(removed)"},
    "channels": {"uplink": "command-center uplink", "mqtt": "park app", "log": "log"},
}
LABELS: dict[str, dict[str, Any]] = {"zh": _ZH, "en": _EN}


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


class _Clock:
    """Epoch seconds as the report shows them: in the drill's UTC offset, the date only when
    it is not the press's."""

    def __init__(self, offset_s: int) -> None:
        self.tz = timezone(timedelta(seconds=offset_s))
        self.day = ""

    def full(self, at: float) -> str:
        return datetime.fromtimestamp(at, self.tz).strftime("%Y-%m-%d %H:%M:%S")

    def time(self, at: float | None) -> str:
        if at is None:
            return ""
        dt = datetime.fromtimestamp(at, self.tz)
        day = dt.strftime("%Y-%m-%d")
        return dt.strftime("%H:%M:%S") if day == self.day else dt.strftime("%m-%d %H:%M:%S")


def _secs(x: float | None) -> str:
    return "" if x is None else f"{x:.1f}"


def _meta(r: dict[str, Any], L: dict[str, Any], clock: _Clock) -> str:
    d = r["drill"]
    rows = [(L["drill_id"], _e(d["id"]) + ("" if d["configured"] else _e(L["removed"])))]
    if d["configured"]:
        scope = L["semi"].join(
            f"{_e(L['scope_keys'].get(k, k))}{L['colon']}" + L["list"].join(
                _e(L["kinds"].get(v, v) if k == "kinds" else v) for v in vals)
            for k, vals in d["scope"].items()) or _e(L["any"])
        notify = (L["list"].join(_e(n) for n in d["notify"]) if d["notify"] is not None
                  else None)
        rows += [(L["reason"], _e(d["reason"])), (L["scope"], scope),
                 (L["span"], f"{_e(clock.full(d['start_at']))} – "
                             f"{_e(clock.full(d['end_at']))}"),
                 (L["notify"], notify or _e(L["usual"])),
                 (L["state"], _e(L["states"].get(d["state"], d["state"])))]
    rows.append((L["generated"], f"{_e(clock.full(r['generated_at']))}"
                 + _paren(L, _e(L["tz"]) + _e(r["utc_offset"]))))
    body = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="meta">{body}</table>'


def _step(name: str, step: dict[str, Any] | None, who: str, L: dict[str, Any],
          clock: _Clock) -> str:
    if step is None:
        return (f"<tr><td>{_e(name)}</td><td colspan=\"3\" class=\"bad\">"
                f"{_e(L['not_yet'])}</td></tr>")
    return (f"<tr><td>{_e(name)}</td><td>{_e(clock.time(step['at']))}</td>"
            f"<td class=\"num\">{_e(_secs(step['elapsed_s']))}</td><td>{who}</td></tr>")


def _paren(L: dict[str, Any], inner: str) -> str:
    """`inner` (HTML already) in the language's parentheses."""
    return f"{L['paren'][0]}{inner}{L['paren'][1]}"


def _who(step: dict[str, Any] | None, L: dict[str, Any], default: str = "") -> str:
    if step is None:
        return ""
    by = _e(step.get("by")) if step.get("by") else _e(default)
    note = step.get("note")
    return by + (_paren(L, _e(note)) if note else "")


def _tenant(d: dict[str, Any], L: dict[str, Any]) -> str:
    if d["party"] == "tenant":
        return _e(d["tenant_name"] or d["tenant"])
    return _e(L["parties"].get(d["party"], d["party"]))


def _notified(d: dict[str, Any], L: dict[str, Any], clock: _Clock) -> tuple[str, str]:
    """The cells 通知时间 and 距按下 of one delivery: its time, or why there is none."""
    if d["state"] == "delivered":
        return _e(clock.time(d["delivered_at"])), _e(_secs(d["elapsed_s"]))
    why = L["expired"] if d["state"] == "expired" else L["pending"]
    tries = L["tries"].format(n=d["attempts"]) if d["attempts"] else ""
    error = f"{L['colon']}{d['last_error']}" if d["last_error"] else ""
    more = _paren(L, _e(tries) + _e(error)) if tries or error else ""
    return f'<span class="bad">{_e(why)}{more}</span>', ""


def _alarm(n: int, a: dict[str, Any], L: dict[str, Any], clock: _Clock) -> str:
    clock.day = datetime.fromtimestamp(a["raised_at"], clock.tz).strftime("%Y-%m-%d")
    place = "/".join(p for p in (a["building"], a["floor"], a["zone"]) if p)
    head = (f"<h2>{_e(L['alarm'])} {n}{L['colon']}{_e(place)} {_e(a['sensor_id'] or '')} — "
            f"{_e(a['message'])}</h2>")
    pressed = (f'<p class="small">{_e(L["pressed"])}{L["colon"]}'
               f'{_e(clock.full(a["raised_at"]))}'
               + (_paren(L, f"{_e(L['device_time'])} {_e(clock.time(a['pressed_at']))}")
                  if a["pressed_at"] is not None else "")
               + f" · {_e(L['alarm_id'])} {_e(a['alarm_id'])}</p>")
    steps = (f"<table><tr><th>{_e(L['step'])}</th><th>{_e(L['time'])}</th>"
             f"<th>{_e(L['since'])}</th><th>{_e(L['who'])}</th></tr>"
             + _step(L["ack"], a["acknowledged"], _who(a["acknowledged"], L), L, clock)
             + _step(L["reset"], a["reset"], _who(a["reset"], L, L["at_device"]), L, clock)
             + _step(L["closed"], a["closed"], "", L, clock) + "</table>")
    first: dict[tuple[str, str], dict[str, Any]] = {}
    for d in a["deliveries"]:  # in order of seq: each one's first is how they heard of it
        first.setdefault((d["subscriber"], d["target"]), d)
    rows = []
    for d in first.values():
        when, since = _notified(d, L, clock)
        person = d["person"] or d["name"] or d["subscriber"]
        channel = L["channels"].get(d["channel"], d["channel"] or "?")
        rows.append(f"<tr><td>{_tenant(d, L)}</td><td>{_e(person)}</td>"
                    f"<td>{_e(channel)}{_paren(L, _e(d['target']))}</td><td>{when}</td>"
                    f'<td class="num">{since}</td></tr>')
    table = (f"<table><tr><th>{_e(L['tenant'])}</th><th>{_e(L['person'])}</th>"
             f"<th>{_e(L['channel'])}</th><th>{_e(L['told_at'])}</th>"
             f"<th>{_e(L['since'])}</th></tr>{''.join(rows)}</table>")
    later = [d for d in a["deliveries"] if first[(d["subscriber"], d["target"])] is not d]
    ok = sum(d["state"] == "delivered" for d in later)
    notes = (f'<p class="small">{_e(L["later"])}{L["colon"]}'
             f'{_e(L["later_fmt"].format(n=len(later), ok=ok))}')
    muted = sorted({s.get("name") or s["subscriber"] for s in a["suppressions"]
                    if s["cause"] == "drill"})
    if muted:
        notes += f"{L['semi']}{_e(L['muted'])}{L['colon']}{L['list'].join(_e(m) for m in muted)}"
    return f"<section>{head}{pressed}{steps}{table}{notes}</p></section>"


def render_html(report: dict[str, Any]) -> str:
    """The report as one self-contained HTML page."""
    L = LABELS.get(report.get("language") or "zh", _ZH)
    clock = _Clock(int(report["utc_offset_s"]))
    park = report["park"]
    body = [f"<h1>{_e(L['title'])}</h1>",
            f'<p class="sub">{_e(park["name"])}{_paren(L, _e(park["id"]))} · {_e(L["gateway"])} '
            f"{_e(report['gateway'])}</p>", _meta(report, L, clock)]
    if report["alarms"]:
        body += [_alarm(n, a, L, clock) for n, a in enumerate(report["alarms"], 1)]
    else:
        body.append(f'<p class="empty">{_e(report["note"])}</p>')
    body.append("<footer>" + "".join(f"<span>{_e(s)}______________</span>"
                                     for s in L["sign"]) + "</footer>")
    title = f"{L['title']} — {report['drill']['id']}"
    return (f'<!DOCTYPE html>\n<html lang="{L["lang"]}"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n<body>"
            + "\n".join(body) + "</body></html>\n")
