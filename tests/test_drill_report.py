"""The drill report (issue 25, done-when 3): a fire drill in the simulated park, through a running
daemon with a real Mosquitto and local DingTalk robots; the report's every time is the one the
store recorded (the changes and the delivery marks), its tenants and channels are those
delivered, and the printable page shows them, escaped, in Chinese.  The API's JSON, its HTML and
`parkwatch drill-report` (a real subprocess) are checked; an unknown drill is a 404, a drill
without alarms an empty report that says so."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from html import escape
from pathlib import Path
from typing import Any

import pytest
import yaml

from chat_robots import DingTalkRobot
from conftest import EXAMPLE, REPO, example_config, http_json, wait_until
from parkwatch.cli import main
from parkwatch.daemon.httpapi import state_token

DRILL = "2026-q4-fire-drill"
QUIET = "b-water-drill"  # declared, but nothing in its scope happens
REASON = "第四季度消防演练 <A栋> & 疏散"
DING_SECRET = "SEC" + "0123456789abcdef" * 4
OLD_SECRET = "SEC" + "fedcba9876543210" * 4  # the robot's secret was changed; not this file
CST = timezone(timedelta(hours=8))
LI_NA = {"id": "li-na", "name": "华鑫五金 安全员 李娜", "phone": "13712345678",
         "channels": ["ding"]}
CHEN = {"id": "chen", "name": "瑞丰纺织 <陈工> & 助理", "phone": "13912345678",
        "channels": ["ding-old"]}


def _ding(url: str, secret_file: Path, **more: Any) -> dict[str, Any]:
    return {"type": "dingtalk", "url": url, "secret_file": str(secret_file), **more}


@pytest.fixture
def park(broker: Any, tmp_path: Path, serial_devices: Any) -> Iterator[tuple[Any, Any, Any]]:
    """The example park's daemon with two drills declared around now (fire in building A; water
    in building B), 华鑫's officer on a DingTalk group, and 瑞丰's on a group robot whose
    secret the gateway no longer has (refused until the delivery expires, 3 s)."""
    from parkwatch.daemon.app import Daemon

    (tmp_path / "ding").write_text(DING_SECRET, encoding="utf-8")
    (tmp_path / "ding-old").write_text(OLD_SECRET, encoding="utf-8")
    now = datetime.now(CST).replace(microsecond=0)
    span = {"start": now - timedelta(minutes=10), "end": now + timedelta(hours=1)}
    with DingTalkRobot(DING_SECRET) as robot, DingTalkRobot(DING_SECRET) as stale:
        cfg = example_config(broker, tmp_path, {
            ("alarms", "targets", "ding"): _ding(robot.url, tmp_path / "ding"),
            ("alarms", "targets", "ding-old"): _ding(
                stale.url, tmp_path / "ding-old", expire_after_s=3, retry={"initial_s": 0.5}),
            ("alarms", "contacts"): [LI_NA, CHEN],
            ("alarms", "subscribers", 3, "contact"): "li-na",   # huaxin
            ("alarms", "subscribers", 5, "contact"): "chen",    # ruifeng
            ("alarms", "drills"): [
                {"id": DRILL, **span, "scope": {"buildings": ["A"], "kinds": ["fire"]},
                 "reason": REASON},
                {"id": QUIET, **span, "scope": {"buildings": ["B"], "kinds": ["water"]},
                 "notify": ["facilities"], "reason": "地下室防汛演练"}]})
        d = Daemon(cfg)
        d.start()
        try:
            assert d.uplink.link.connected.wait(5)
            for drv in d.drivers:
                if hasattr(drv, "subscribed"):
                    assert drv.subscribed.wait(5)
            yield d, robot, stale
        finally:
            d.stop()


def call(d: Any, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    return http_json(d.api.port, method, path, data, state_token(d.state_dir))


def fetch(d: Any, path: str) -> tuple[int, str, str]:
    """(status, content type, text) of a GET that need not answer JSON."""
    req = urllib.request.Request(f"http://127.0.0.1:{d.api.port}{path}", headers={
        "Authorization": f"Bearer {state_token(d.state_dir)}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, resp.headers["Content-Type"], resp.read().decode("utf-8")


def settled(d: Any, alarm_id: str) -> dict[str, Any]:
    """The alarm as the store keeps it, once it is closed and none of its deliveries waits."""
    out: dict[str, Any] = {}

    def done() -> bool:
        out.update(call(d, "GET", f"/api/alarms/{alarm_id}")[1])
        return (out["alarm"]["event"] == "closed"
                and all(x["state"] != "pending" for x in out["deliveries"]))
    wait_until(done, timeout=60, what="the alarm closed and every delivery done")
    return out


def clock(at: float, press: float) -> str:
    """A time as the page shows it: +08:00 (the drill's offset), the date when not the press's."""
    t, p = datetime.fromtimestamp(at, CST), datetime.fromtimestamp(press, CST)
    return t.strftime("%H:%M:%S" if t.date() == p.date() else "%m-%d %H:%M:%S")


ROW = re.compile(r"<tr><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td><td>(.*?)</td>"
                 r'<td class="num">([^<]*)</td></tr>')


def notified_rows(page: str) -> set[tuple[str, ...]]:
    return {m.groups() for m in ROW.finditer(page)}


def test_a_fire_drill_report_shows_the_times_the_store_recorded(park, subscriber, device,
                                                                tmp_path):
    d, robot, stale = park
    device.send("A-3F-FB1", {"event": "press"})
    events = subscriber.wait_events(lambda ev: any(e["event"] == "raised" for e in ev))
    alarm_id = next(e["alarm_id"] for e in events if e["event"] == "raised")
    assert call(d, "POST", f"/api/alarms/{alarm_id}/ack",
                {"by": "王工", "note": "已到现场 <核实>"})[0] == 200
    assert call(d, "POST", f"/api/alarms/{alarm_id}/reset",
                {"by": "张三", "note": "演练结束 & 复位"})[0] == 200
    stored = settled(d, alarm_id)
    robot.wait_for(lambda got: any("13712345678" in m["at"]["atMobiles"] for m in got))
    assert stale.refused  # 瑞丰's group never took it

    status, report = call(d, "GET", f"/api/drills/{DRILL}/report")
    assert status == 200
    assert report["drill"] | {"start": None, "end": None, "start_at": None, "end_at": None} == {
        "id": DRILL, "configured": True, "reason": REASON, "state": "running",
        "scope": {"buildings": ["A"], "kinds": ["fire"]}, "notify": None, "escalate": False,
        "start": None, "end": None, "start_at": None, "end_at": None}
    assert report["park"] == {"id": "xinqiao", "name": d.cfg.park.name}
    assert report["utc_offset"] == "+08:00" and report["note"] is None
    (a,) = report["alarms"]
    assert (a["alarm_id"], a["sensor_id"], a["building"], a["floor"]) == (
        alarm_id, "A-3F-FB1", "A", "3F")

    # every time is the store's: the changes ...
    at = {c["event"]: c["at"] for c in stored["changes"]}
    assert list(at) == ["raised", "acknowledged", "cleared", "closed"]
    press = at["raised"]
    assert a["raised_at"] == press
    assert a["acknowledged"] == {"at": at["acknowledged"], "by": "王工", "note": "已到现场 <核实>",
                                 "auto": False,
                                 "elapsed_s": round(at["acknowledged"] - press, 3)}
    assert a["reset"] == {"at": at["cleared"], "by": "张三", "note": "演练结束 & 复位",
                          "elapsed_s": round(at["cleared"] - press, 3)}
    assert a["closed"] == {"at": at["closed"], "elapsed_s": round(at["closed"] - press, 3)}
    assert [(c["seq"], c["event"], c["at"]) for c in a["changes"]] == [
        (c["seq"], c["event"], c["at"]) for c in stored["changes"]]
    # ... and the deliveries, each with its mark's time (none other)
    key = ("seq", "subscriber", "target", "state", "attempts", "done_at", "last_error")
    assert sorted(tuple(x[k] for k in key) for x in a["deliveries"]) == sorted(
        tuple(x[k] for k in key) for x in stored["deliveries"])
    for x in a["deliveries"]:
        delivered = x["state"] == "delivered"
        assert x["delivered_at"] == (x["done_at"] if delivered else None)
        assert x["elapsed_s"] == (round(x["done_at"] - press, 3) if delivered else None)

    # who was told of the press: building A's tenants (华鑫 also in DingTalk, 瑞丰's group
    # refused it), the landlord, the park's officers, the command center
    told = {(x["tenant"] or x["party"], x["subscriber"], x["target"], x["channel"], x["state"])
            for x in a["deliveries"] if x["seq"] == 1}
    assert told == {
        ("huaxin", "huaxin", "app", "mqtt", "delivered"),
        ("huaxin", "huaxin", "ding", "dingtalk", "delivered"),
        ("yongsheng", "yongsheng", "app", "mqtt", "delivered"),
        ("ruifeng", "ruifeng", "app", "mqtt", "delivered"),
        ("ruifeng", "ruifeng", "ding-old", "dingtalk", "expired"),
        ("landlord", "landlord", "app", "mqtt", "delivered"),
        ("any", "safety-officers", "app", "mqtt", "delivered"),
        ("command_center", "uplink", "uplink", "uplink", "delivered")}
    first = {(x["subscriber"], x["target"]): x for x in a["deliveries"] if x["seq"] == 1}
    assert first[("huaxin", "ding")]["person"] == "华鑫五金 安全员 李娜"
    assert first[("huaxin", "ding")]["tenant_name"] == "华鑫五金"
    assert first[("ruifeng", "ding-old")]["last_error"]

    # the printable page: the same times, escaped, in Chinese
    status, ctype, page = fetch(d, f"/api/drills/{DRILL}/report.html")
    assert status == 200 and ctype == "text/html; charset=utf-8"
    assert page.startswith("<!DOCTYPE html>") and '<html lang="zh-CN">' in page
    assert "<title>应急演练报告 — 2026-q4-fire-drill</title>" in page and "@media print" in page
    assert "<script" not in page and "http" not in page.split("</head>")[0].lower()
    assert "第四季度消防演练 &lt;A栋&gt; &amp; 疏散" in page and REASON not in page
    assert "楼栋：A；类别：火警" in page and "进行中" in page
    for header in ("租户", "人员", "渠道", "通知时间", "距按下（秒）"):
        assert f"<th>{header}</th>" in page
    pretty = {"mqtt": "园区App", "dingtalk": "钉钉", "uplink": "指挥中心上行"}
    names = {"huaxin": "华鑫五金", "yongsheng": "永盛包装", "ruifeng": "瑞丰纺织"}
    parties = {"landlord": "业主/房东", "safety-officers": "园区（按过滤）", "uplink": "指挥中心"}
    people = {("huaxin", "ding"): "华鑫五金 安全员 李娜",
              ("ruifeng", "ding-old"): "瑞丰纺织 &lt;陈工&gt; &amp; 助理",
              ("landlord", "app"): "新桥实业 安全部", ("safety-officers", "app"): "园区安全员"}
    expected = set()
    for (sub, target), x in first.items():
        if x["state"] == "delivered":
            when, since = clock(x["done_at"], press), f"{x['elapsed_s']:.1f}"
        else:  # 瑞丰's refused group: why, in the store's words
            assert x["attempts"] >= 1
            when, since = (f'<span class="bad">未送达（已过期）（已试 {x["attempts"]} 次：'
                           f'{escape(x["last_error"])}）</span>'), ""
        expected.add((names.get(sub, parties.get(sub, "")), people.get((sub, target), sub),
                      f"{pretty[x['channel']]}（{target}）", when, since))
    assert notified_rows(page) == expected
    assert (f"<tr><td>确认</td><td>{clock(at['acknowledged'], press)}</td>"
            f"<td class=\"num\">{at['acknowledged'] - press:.1f}</td>"
            "<td>王工（已到现场 &lt;核实&gt;）</td></tr>") in page
    assert (f"<tr><td>复位</td><td>{clock(at['cleared'], press)}</td>"
            f"<td class=\"num\">{at['cleared'] - press:.1f}</td>"
            "<td>张三（演练结束 &amp; 复位）</td></tr>") in page
    assert f"<tr><td>关闭</td><td>{clock(at['closed'], press)}</td>" in page
    later = len(a["deliveries"]) - len(first)
    ok = sum(x["state"] == "delivered" for x in a["deliveries"] if x["seq"] > 1)
    assert f"后续通知（确认、复位、关闭等）：{later} 条，已送达 {ok} 条" in page

    # the command line writes the same page (a real process, as an operator runs it)
    cli_cfg = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    cli_cfg["gateway"]["state_dir"] = str(d.state_dir)
    cli_cfg["api"]["port"] = d.api.port
    (tmp_path / "cli.yaml").write_text(yaml.safe_dump(cli_cfg, allow_unicode=True),
                                       encoding="utf-8")
    out = tmp_path / "report.html"
    proc = subprocess.run([sys.executable, "-m", "parkwatch", "drill-report", DRILL,
                           "--config", str(tmp_path / "cli.yaml"), "--out", str(out)],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"drill {DRILL}: 1 alarm(s), report written to {out}\n"
    written = out.read_text(encoding="utf-8")
    assert notified_rows(written) == expected
    assert written.split("<footer>")[0].split("报告生成")[0] == page.split("报告生成")[0]


def test_an_unknown_drill_is_404_and_a_quiet_drill_an_empty_report(park, capsys):
    d, _robot, _stale = park
    status, body = call(d, "GET", "/api/drills/no-such-drill/report")
    assert status == 404
    assert body["error"] == (f"no drill 'no-such-drill': it is not declared in alarms.drills "
                             f"(declared: {DRILL}, {QUIET}) and no alarm in the store belongs "
                             "to it")
    assert call(d, "GET", "/api/drills/no-such-drill/report.html")[0] == 404
    assert http_json(d.api.port, "GET", f"/api/drills/{DRILL}/report")[0] == 401  # no token

    status, body = call(d, "GET", f"/api/drills/{QUIET}/report")
    assert status == 200 and body["alarms"] == []
    assert body["note"].startswith("本次演练期间未记录到报警")
    assert body["drill"]["notify"] == ["facilities"]
    _, _, page = fetch(d, f"/api/drills/{QUIET}/report.html")
    assert '<p class="empty">本次演练期间未记录到报警' in page
    assert "地下室防汛演练" in page and "楼栋：B；类别：水位" in page and "facilities" in page

    flags = ["--url", f"http://127.0.0.1:{d.api.port}", "--token-file",
             str(d.state_dir / "api.token")]
    code = main(["drill-report", "no-such-drill", *flags])
    _, err = capsys.readouterr()
    assert code == 1 and err.startswith("parkwatch drill-report: no drill 'no-such-drill'")
    code = main(["drill-report", QUIET, "--json", *flags])
    out, _ = capsys.readouterr()
    assert code == 0 and json.loads(out)["alarms"] == []


def _record(alarm_id: str, seq: int, event: str, at: float, drill: str,
            deliveries: list[tuple[str, str]], muted: tuple[str, ...] = ()) -> Any:
    from parkwatch.alarms.records import Delivery, Record, Suppression

    doc = {"alarm_id": alarm_id, "seq": seq, "event": event, "sensor_id": "A-1F-FB1",
           "building": "A", "floor": "1F", "zone": None, "tenants": ["huaxin"],
           "rule": "button_latch", "severity": "critical", "message": "Fire <test>",
           "observed_at": "2026-12-05T06:00:00.000Z", "acked_by": None}
    return Record(alarm_id=alarm_id, source="A-1F-FB1", rule="button_latch", seq=seq,
                  event=event, active=True, acknowledged=False, closed=False, next_due=None,
                  at=at, state={"drill_id": drill, "raised_at": at},
                  payload=json.dumps(doc).encode(),
                  deliveries=[Delivery(s, t, "filter", at + 3600) for s, t in deliveries],
                  suppressions=[Suppression(m, "drill", drill, f"drill {drill}: not in the "
                                            "drill's notify list") for m in muted])


def test_a_drill_no_longer_declared_keeps_its_report_from_the_store(tmp_path):
    """Read through the store's own reader: the drill's alarms in the order of their raise
    (another drill's left out), a delivery still failing shown as pending with its error, those
    the drill's policy muted by name, in English where the park's messages are."""
    from parkwatch.alarms.drillhtml import render_html
    from parkwatch.alarms.drillreport import build_report
    from parkwatch.alarms.store import AlarmStore, OutboxReader
    from parkwatch.alarms.views import StoreReader
    from parkwatch.schema import load_config

    t0 = 1_796_450_400.0  # 2026-12-05T14:00:00+08:00
    store = AlarmStore(tmp_path / "alarms.db")
    try:
        store.commit([_record("B2", 1, "raised", t0 + 60, "q3", [("uplink", "uplink")]),
                      _record("B1", 1, "raised", t0 + 30, "q3",
                              [("uplink", "uplink"), ("landlord", "app")],
                              muted=("huaxin", "safety-officers")),
                      _record("C1", 1, "raised", t0 + 40, "other", [("uplink", "uplink")])])
        rows = dict(((a, s, t), i) for i, a, s, t in store.db.execute(
            "SELECT id, alarm_id, subscriber, target FROM outbox"))
    finally:
        store.close()
    outbox = OutboxReader(tmp_path / "alarms.db", "app")
    try:
        outbox.mark([(rows[("B1", "uplink", "uplink")], "delivered", t0 + 30.25)])
        outbox.failed(rows[("B1", "landlord", "app")], t0 + 31, t0 + 40, "broker <down>")
    finally:
        outbox.close()
    reader = StoreReader(tmp_path / "alarms.db")
    try:
        found = reader.drill_alarms("q3")
    finally:
        reader.close()
    cfg = load_config(EXAMPLE, {("alarms", "language"): "en"})
    assert build_report("q3-typo", cfg, [], t0) is None

    report = build_report("q3", cfg, found, t0 + 600)
    assert report is not None
    assert report["drill"] == {"id": "q3", "configured": False}
    assert [a["alarm_id"] for a in report["alarms"]] == ["B1", "B2"]
    b1 = report["alarms"][0]
    assert (b1["raised_at"], b1["acknowledged"], b1["reset"], b1["closed"]) == (
        t0 + 30, None, None, None)
    assert [(d["subscriber"], d["state"], d["delivered_at"], d["elapsed_s"], d["last_error"])
            for d in b1["deliveries"]] == [
        ("landlord", "pending", None, None, "broker <down>"),
        ("uplink", "delivered", t0 + 30.25, 0.25, None)]
    page = render_html(report)
    assert '<html lang="en">' in page and "Emergency drill report" in page
    assert "q3 (no longer in the config)" in page and "Fire &lt;test&gt;" in page
    assert ('<span class="bad">pending (1 attempt(s): broker &lt;down&gt;)</span>') in page
    assert "<td>command center</td><td>uplink</td><td>command-center uplink (uplink)</td>" in page
    assert page.count("<section>") == 2 and "not yet" in page
    # who the drill's notify list kept from being told, by the names a reader knows
    assert "Not notified (drill policy): 华鑫五金, 园区安全员</p>" in page
