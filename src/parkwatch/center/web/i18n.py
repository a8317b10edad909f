"""The console's words in Chinese (the default) and English: one catalogue, one key per text
a person reads.  A missing English text falls back to the Chinese one."""

from __future__ import annotations

from parkwatch.center.web import i18n_tickets as tickets_i18n

LANGUAGES = ("zh-CN", "en")

_ZH: dict[str, str] = {
    "title": "parkwatch 指挥中心",
    "board": "实时看板",
    "open_alarms": "未关闭的报警",
    "gateways": "网关",
    "no_alarms": "目前没有未关闭的报警",
    "no_gateways": "还没有收到任何网关的状态",
    "park": "园区", "where": "位置", "kind": "类型", "severity": "级别", "state": "状态",
    "raised_at": "发生时间", "message": "内容", "last_seen": "最近状态",
    "online": "在线", "stale": "状态过期", "offline": "离线",
    "critical": "严重", "warning": "警告", "info": "提示",
    "acknowledged": "已确认", "unacknowledged": "未确认", "active": "持续中", "cleared": "已恢复",
    "raised": "发生", "escalated": "升级", "severity_changed": "级别变化", "closed": "已关闭",
    "reminder": "提醒",
    "fire": "火警",
    "alarm": "报警", "timeline": "时间线", "event": "事件", "at": "时间", "by": "确认人",
    "commands": "中心发出的命令", "author": "操作人", "note": "备注", "none": "无",
    "ack": "确认报警", "ack_sent": "确认命令已发送，等待网关回复；网关发回“已确认”事件后这里才显示已确认。",
    "ack_wait": "已发送确认，等待网关回复",
    "not_found": "没有这个报警",
    "login": "登录", "logout": "退出", "user": "用户名", "password": "密码",
    "login_failed": "用户名或密码不对，请重试。",
    "login_throttled": "登录失败次数过多，请 {minutes} 分钟后再试。",
    "sensor_kind_load_cell": "称重传感器", "sensor_kind_fire_button": "一键报警按钮",
    "sensor_kind_water_level": "水位计",
    "signing_failed": "您的签名密钥无法使用，确认指令未发送。请联系管理员（中心日志里有原因）。",
    "csrf_failed": "表单已过期或来源不明（缺少或错误的 CSRF 令牌），操作未执行。请刷新页面后重试。",
    "forbidden_role": "只有值班员（operator）可以确认报警；你的账号只能查看。",
    "broker_down": "与中心消息服务器的连接断开，命令未发送，请稍后重试。",
    "language": "English", "signed_in_as": "当前用户", "live": "实时", "reconnecting": "重新连接中…",
    "back": "返回看板", "operator": "值班员", "viewer": "查看者",
    "sound_on": "开启声音",
    # history and statistics
    "history": "历史记录", "stats": "统计", "building": "楼栋", "tenant": "租户", "all": "全部",
    "since": "开始时间", "until": "结束时间", "drill_or_real": "演练/真实", "drill": "演练",
    "real": "真实", "limit": "最多条数", "filter": "查询", "csv_export": "导出 CSV",
    "no_results": "没有符合条件的报警", "cut_off": "只显示最新的 {n} 条，还有更多：请缩小范围或提高条数。",
    "times_local": "时间均按中心服务器所在时区。",
    "hazard_fire": "火警", "hazard_overload": "超载", "hazard_water": "水浸", "hazard_fault": "故障",
    "bad_time_since": "开始时间格式不对（应为 年-月-日 时:分）",
    "bad_time_until": "结束时间格式不对（应为 年-月-日 时:分）",
    "until_before_since": "结束时间必须晚于开始时间。", "bad_limit": "最多条数必须是整数",
    "bad_kind": "不认识的类型", "bad_severity": "不认识的级别",
    "by_park": "按园区", "by_tenant": "按租户", "total": "报警数",
    "ack_median": "确认用时（中位数）", "ack_p90": "确认用时（P90）",
    "clear_median": "恢复用时（中位数）", "clear_p90": "恢复用时（P90）",
    "stats_real_only": "只统计真实报警（不含演练）；误报比例 = 值班员标记为误报的报警数 / 报警数。",
    "false_share": "误报比例", "mark_false": "标记为误报", "unmark_false": "取消误报标记",
    "marked_false": "已标记为误报", "unmarked_false": "误报标记已取消", "marked_by": "操作人",
    "forbidden_role_mark": "只有值班员（operator）可以标记误报；你的账号只能查看。",
    "stats_cut_off": "时间范围内的报警太多，只统计了最新的部分：请缩小时间范围。",
    "park_view": "园区视图", "no_park": "没有这个园区的任何报警或网关状态",
    "floor": "楼层", "zone": "区域", "tenants": "租户", "sensors": "传感器",
    "sensor": "传感器", "latest_alarm": "最近报警", "unspecified": "（未注明）",
    "no_zone": "未分区", "reported_sensors": "网关报告的传感器数",
    "park_view_note": "园区布局不在中心收到的数据里：这里只显示有过报警的位置和传感器。",
}

_EN: dict[str, str] = {
    "title": "parkwatch command center",
    "board": "Live board",
    "open_alarms": "Open alarms",
    "gateways": "Gateways",
    "no_alarms": "No open alarms",
    "no_gateways": "No gateway status received yet",
    "park": "Park", "where": "Where", "kind": "Kind", "severity": "Severity", "state": "State",
    "raised_at": "Raised", "message": "Message", "last_seen": "Last status",
    "online": "online", "stale": "stale", "offline": "offline",
    "critical": "critical", "warning": "warning", "info": "info",
    "acknowledged": "acknowledged", "unacknowledged": "not acknowledged", "active": "active",
    "cleared": "cleared", "raised": "raised", "escalated": "escalated",
    "severity_changed": "severity changed", "closed": "closed", "reminder": "reminder",
    "fire": "FIRE",
    "alarm": "Alarm", "timeline": "Timeline", "event": "Event", "at": "At", "by": "By",
    "commands": "Commands sent by the center", "author": "Author", "note": "Note",
    "none": "none",
    "ack": "Acknowledge",
    "ack_sent": "Acknowledgement sent; this page shows it acknowledged once the gateway's "
                "acknowledged event comes back.",
    "ack_wait": "acknowledgement sent, waiting for the gateway",
    "not_found": "No such alarm",
    "login": "Log in", "logout": "Log out", "user": "User", "password": "Password",
    "login_failed": "Wrong user name or password; try again.",
    "login_throttled": "Too many failed logins; try again in {minutes} minutes.",
    "sensor_kind_load_cell": "load cell", "sensor_kind_fire_button": "fire alarm button",
    "sensor_kind_water_level": "water level gauge",
    "signing_failed": "Your signing key cannot be used; the acknowledgement was not sent. Ask the administrator (the center's log says why).",
    "csrf_failed": "This form has expired or did not come from this console (missing or wrong "
                   "CSRF token); nothing was done. Reload the page and try again.",
    "forbidden_role": "Only operators may acknowledge; your account can only view.",
    "broker_down": "The center is not connected to its broker; the command was not sent. Try "
                   "again shortly.",
    "language": "中文", "signed_in_as": "Signed in as", "live": "live",
    "reconnecting": "reconnecting…", "back": "Back to the board", "operator": "operator",
    "viewer": "viewer", "sound_on": "Sound on",
    "history": "History", "stats": "Statistics", "building": "Building", "tenant": "Tenant",
    "all": "all", "since": "From", "until": "Until", "drill_or_real": "Drill or real",
    "drill": "drill", "real": "real", "limit": "At most", "filter": "Show",
    "csv_export": "Export CSV", "no_results": "No alarm matches",
    "cut_off": "Only the newest {n} are shown and there are more: narrow the filter or raise "
               "the limit.",
    "times_local": "Times are in the center server's time zone.",
    "hazard_fire": "fire", "hazard_overload": "overload", "hazard_water": "water",
    "hazard_fault": "fault",
    "bad_time_since": "The start time does not parse (use YYYY-MM-DD HH:MM)",
    "bad_time_until": "The end time does not parse (use YYYY-MM-DD HH:MM)",
    "until_before_since": "The end time must be after the start time.",
    "bad_limit": "The limit must be a whole number", "bad_kind": "Unknown kind",
    "bad_severity": "Unknown severity", "by_park": "By park", "by_tenant": "By tenant",
    "total": "Alarms", "ack_median": "To acknowledge (median)",
    "ack_p90": "To acknowledge (p90)", "clear_median": "To clear (median)",
    "clear_p90": "To clear (p90)",
    "stats_real_only": "Real alarms only (drills left out); false-alarm share = alarms an "
                       "operator marked as false / alarms.",
    "false_share": "False-alarm share", "mark_false": "Mark as false alarm",
    "unmark_false": "Remove the false-alarm mark", "marked_false": "Marked as a false alarm",
    "unmarked_false": "False-alarm mark removed", "marked_by": "by",
    "forbidden_role_mark": "Only operators may mark false alarms; your account can only view.",
    "stats_cut_off": "Too many alarms in this span: only the newest were counted. Narrow the "
                     "span.",
    "park_view": "Park view", "no_park": "No alarm and no gateway status of this park yet",
    "floor": "Floor", "zone": "Zone", "tenants": "Tenants",
    "sensors": "Sensors", "sensor": "Sensor", "latest_alarm": "Latest alarm",
    "unspecified": "(unspecified)", "no_zone": "no zone",
    "reported_sensors": "sensors reported by the gateway",
    "park_view_note": "The center receives no park layout: this view shows only the places "
                      "and sensors that have had alarms.",
}

_ZH.update(tickets_i18n.ZH)
_EN.update(tickets_i18n.EN)
CATALOGUE = {"zh-CN": _ZH, "en": _EN}


def text(lang: str, key: str) -> str:
    """The text of ``key`` in ``lang`` (Chinese when missing; the key itself if unknown)."""
    return CATALOGUE.get(lang, _ZH).get(key) or _ZH.get(key, key)


def other(lang: str) -> str:
    """The language the switch offers."""
    return "en" if lang == "zh-CN" else "zh-CN"
