"""The console's history (filter, CSV export) and statistics pages over HTTP, on SQLite and on
a real PostgreSQL: the filters find the right alarms, the CSV parses back with its BOM, bad
input gets a message (not a 500), the figures on known events are exact, a login is needed."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from center_web import Client, console  # noqa: F401  (console: the fixture)
from conftest import wait_until
from parkwatch.alarms.ids import new_alarm_id
from parkwatch.center.config import load_center_config
from parkwatch.center.service import CenterService
from parkwatch.center.users import add_user
from parkwatch.center.web import stats as S
from parkwatch.devtools.localbroker import LocalMosquitto
from parkwatch.devtools.localpostgres import LocalPostgres
from test_center_ingest import center_yaml
from test_center_store import event, rfc3339

PASSWORD = "viewer-pass-1"
#: the known events' first raise, an hour boundary some days ago (inside the default 30 days)
T = (datetime.now().astimezone() - timedelta(days=3)).replace(minute=0, second=0,
                                                               microsecond=0)


def form_time(at: datetime) -> str:
    """As a browser's datetime-local input gives it: local time, no zone."""
    return at.astimezone().strftime("%Y-%m-%dT%H:%M")


@pytest.fixture(params=["sqlite", "postgresql"])
def center(request: pytest.FixtureRequest, broker: LocalMosquitto,
           tmp_path: Path) -> Iterator[CenterService]:
    """A center with its console on SQLite or PostgreSQL and one viewer."""
    if request.param == "sqlite":
        db = f"sqlite:///{tmp_path / 'center.db'}"
    else:
        server: LocalPostgres = request.getfixturevalue("pg_server")
        if server.proc is None:
            server.start()
        db = server.create_database()
    service = CenterService(load_center_config(center_yaml(tmp_path / "center.yaml", broker,
                                                           db, "hist")))
    assert add_user(service.store, "viewer", "viewer", PASSWORD) is None
    service.start()
    wait_until(lambda: service.web is not None and service.web.started, 10, "console serving")
    yield service
    service.stop()


def client(service: CenterService) -> Client:
    assert service.web is not None
    c = Client(service.web.port)
    assert c.login("viewer", PASSWORD).status == 303
    return c


def life(at: datetime, ack_s: float | None, clear_s: float | None,
         **fields: Any) -> tuple[str, list[dict[str, Any]]]:
    """An alarm raised at ``at``, acknowledged ``ack_s`` and cleared ``clear_s`` later."""
    alarm_id = new_alarm_id(at.timestamp())
    steps = [("raised", 0.0)]
    if ack_s is not None:
        steps.append(("acknowledged", ack_s))
    if clear_s is not None:
        steps.append(("cleared", clear_s))
    out = []
    for seq, (kind, after) in enumerate(steps, 1):
        changed = rfc3339(at + timedelta(seconds=after))
        extra = {"acked_at": changed} if kind == "acknowledged" else {}
        if kind == "cleared" and ack_s is None:
            extra = {"acknowledged": False, "acked_by": None, "acked_at": None}
        out.append(event(alarm_id, seq, kind, raised=at, changed_at=changed, observed_at=changed,
                         **{**fields, **extra}))
    return alarm_id, out


def known(service: CenterService) -> dict[str, str]:
    """Six alarms in two parks (one a drill) and one raised long before; stored in reverse
    order, as a broker may deliver them.  Their ids by name."""
    ids: dict[str, str] = {}
    events: list[dict[str, Any]] = []
    fire = {"rule": "button_latch", "severity": "critical", "sensor_kind": "fire_button",
            "sensor_id": "fb-1", "value": 1, "threshold": None, "unit": None,
            "message": "【火警】B1 一层 按钮被按下"}
    for name, at, ack, clear, fields in (
            ("fire", T, 30, 300, {**fire, "tenants": ["t-acme", "t-bolt"]}),
            ("overload", T + timedelta(hours=1), 90, 600, {"tenants": ["t-acme"]}),
            ("water", T + timedelta(hours=2), 150, None,
             {"sensor_kind": "water_level", "building": "B2", "tenants": ["t-bolt"],
              "unit": "cm", "message": "B2 水位超限"}),
            ("fault", T + timedelta(hours=3), None, None,
             {"rule": "comm_fault", "tenants": ["t-acme"], "unit": "s"}),
            ("drill", T + timedelta(hours=4), 5, 10, {**fire, "drill": True}),
            ("dongli", T + timedelta(hours=1, minutes=5), 60, 120,
             {"park": "dongli", "building": "D1", "tenants": ["t-cargo"]}),
            ("old", T - timedelta(days=40), 10, 20, {})):
        ids[name], evs = life(at, ack, clear, **fields)
        events += evs
    service.store.store_events(events[::-1], 1.0)
    return ids


def rows_of(body: str) -> list[str]:
    return re.findall(r'<tr class="sev-\w+" data-alarm="([^"]+)"', body)


def test_history_filters_and_links_each_alarm_to_its_page(center: CenterService) -> None:
    ids = known(center)
    c = client(center)
    page = c.get("/history")
    assert page.status == 200 and "历史记录" in page.body
    everything = [ids[k] for k in ("drill", "fault", "water", "dongli", "overload", "fire",
                                   "old")]
    assert rows_of(page.body) == everything  # newest first
    assert f'href="/alarms/{ids["fire"]}"' in page.body
    assert rows_of(c.get("/history?park=dongli").body) == [ids["dongli"]]
    assert rows_of(c.get("/history?building=B2").body) == [ids["water"]]
    assert rows_of(c.get("/history?tenant=t-bolt").body) == [ids["water"], ids["fire"]]
    assert rows_of(c.get("/history?hazard=fire").body) == [ids["drill"], ids["fire"]]
    assert rows_of(c.get("/history?hazard=fire&drill=real").body) == [ids["fire"]]
    assert rows_of(c.get("/history?drill=drill").body) == [ids["drill"]]
    assert rows_of(c.get("/history?hazard=fault").body) == [ids["fault"]]
    assert rows_of(c.get("/history?severity=critical&park=xinqiao").body) == \
        [ids["drill"], ids["fire"]]
    span = (f"/history?since={form_time(T + timedelta(hours=1))}"
            f"&until={form_time(T + timedelta(hours=3))}")
    assert rows_of(c.get(span).body) == [ids["water"], ids["dongli"], ids["overload"]]
    assert rows_of(c.get("/history?park=nowhere").body) == []
    assert "没有符合条件的报警" in c.get("/history?park=nowhere").body
    cut = c.get("/history?park=xinqiao&limit=2")
    assert rows_of(cut.body) == [ids["drill"], ids["fault"]]
    assert 'id="cut-off"' in cut.body and "只显示最新的 2 条" in cut.body
    assert 'id="cut-off"' not in c.get("/history?park=xinqiao&limit=6").body


def test_the_csv_export_has_a_bom_the_columns_and_one_row_per_alarm(
        center: CenterService) -> None:
    ids = known(center)
    c = client(center)
    assert 'href="/history.csv?tenant=t-acme&amp;drill=real"' in \
        c.get("/history?tenant=t-acme&drill=real").body
    r = c.request("GET", "/history.csv?tenant=t-acme&drill=real")
    assert r.status == 200 and r.headers["content-type"].startswith("text/csv")
    today = datetime.now().astimezone().strftime("%Y-%m-%d")
    assert r.headers["content-disposition"] == \
        f'attachment; filename="parkwatch-history-{today}.csv"'
    assert r.body.startswith("\ufeff")  # the BOM, decoded
    table = list(csv.DictReader(io.StringIO(r.body.removeprefix("\ufeff"))))
    assert list(table[0]) == ["alarm_id", "park", "building", "floor", "zone", "sensor_id",
                              "sensor_kind", "hazard", "tenants", "rule", "severity", "state",
                              "raised_at", "acknowledged_at", "acked_by", "cleared_at", "drill",
                              "message"]
    assert [row["alarm_id"] for row in table] == [ids[k] for k in ("fault", "overload",
                                                                   "fire", "old")]
    fire = table[2]
    local = "%Y-%m-%d %H:%M:%S"
    assert (fire["park"], fire["building"], fire["tenants"], fire["rule"], fire["hazard"],
            fire["severity"], fire["drill"]) == ("xinqiao", "B1", "t-acme t-bolt",
                                                 "button_latch", "fire", "critical", "0")
    assert fire["raised_at"] == T.strftime(local)
    assert fire["acknowledged_at"] == (T + timedelta(seconds=30)).strftime(local)
    assert fire["cleared_at"] == (T + timedelta(seconds=300)).strftime(local)
    assert fire["acked_by"] == "王工" and fire["message"] == "【火警】B1 一层 按钮被按下"
    assert fire["state"] == "cleared"
    fault = table[0]
    assert (fault["hazard"], fault["acknowledged_at"], fault["cleared_at"], fault["acked_by"],
            fault["state"]) == ("fault", "", "", "", "raised")


def test_stats_per_park_and_tenant_on_known_events(center: CenterService) -> None:
    known(center)
    since, until = T - timedelta(hours=1), T + timedelta(days=1)
    figures = S.compute(center.store, since, until)
    parks = {g["name"]: g for g in figures["parks"]}
    tenants = {g["name"]: g for g in figures["tenants"]}
    assert figures["count"] == 5 and not figures["cut_off"]  # not the drill, not the old one
    assert parks["xinqiao"]["by_hazard"] == {"fire": 1, "overload": 1, "water": 1, "fault": 1}
    assert (parks["xinqiao"]["ack_median_s"], parks["xinqiao"]["ack_p90_s"],
            parks["xinqiao"]["clear_median_s"], parks["xinqiao"]["clear_p90_s"]) == \
        (90, 150, 450, 600)
    assert (parks["dongli"]["total"], parks["dongli"]["ack_median_s"],
            parks["dongli"]["clear_p90_s"]) == (1, 60, 120)
    acme, bolt = tenants["t-acme"], tenants["t-bolt"]
    assert (acme["total"], acme["ack_median_s"], acme["ack_p90_s"], acme["clear_median_s"],
            acme["clear_p90_s"]) == (3, 60, 90, 450, 600)
    assert (bolt["total"], bolt["ack_median_s"], bolt["ack_p90_s"], bolt["clear_median_s"]) \
        == (2, 90, 150, 300)
    assert sorted(tenants) == ["t-acme", "t-bolt", "t-cargo"]

    c = client(center)
    page = c.get(f"/stats?since={form_time(since)}&until={form_time(until)}")
    assert page.status == 200
    row = re.search(r'<tr data-name="xinqiao">(.*?)</tr>', page.body, re.S)
    assert row, page.body
    cells = dict(re.findall(r'<td class="([\w-]+)">([^<]*)</td>', row.group(1)))
    assert cells == {"total": "4", "h-fire": "1", "h-overload": "1", "h-water": "1",
                     "h-fault": "1", "ack-median": "1 min 30 s", "ack-p90": "2 min 30 s",
                     "clear-median": "7 min 30 s", "clear-p90": "10 min 00 s",
                     "false-share": "0.0 %"}
    assert '<tr data-name="t-cargo">' in page.body
    default = c.get("/stats")  # the last 30 days: the same five alarms, not the old one
    row = re.search(r'<tr data-name="xinqiao">.*?<td class="total">(\d+)</td>', default.body,
                    re.S)
    assert row and row.group(1) == "4"
    assert "误报比例" in default.body  # the false-alarm share's column


def test_bad_filter_input_gets_a_message_not_an_error(console: CenterService) -> None:  # noqa: F811
    c = client(console)
    r = c.get("/history?since=2026-13-45T99:00")
    assert r.status == 400 and "开始时间格式不对" in r.body and 'id="filter-errors"' in r.body
    assert 'value="2026-13-45T99:00"' in r.body  # the form keeps what was typed
    r = c.get("/history?since=2026-12-02T10:00&until=2026-12-01T10:00")
    assert r.status == 400 and "结束时间必须晚于开始时间" in r.body
    r = c.get("/history?limit=lots&hazard=meteor")
    assert r.status == 400 and "最多条数必须是整数" in r.body and "不认识的类型" in r.body
    r = c.get("/history.csv?until=yesterday")
    assert r.status == 400 and "结束时间格式不对" in r.body
    r = c.get("/stats?since=2026-12-02&until=2026-12-01")
    assert r.status == 400 and "结束时间必须晚于开始时间" in r.body
    assert c.get("/stats?until=soon").status == 400
    c.post("/language", {"csrf": c.get("/history").csrf(), "lang": "en", "next": "/"})
    r = c.get("/history?since=not-a-date")
    assert r.status == 400 and "The start time does not parse" in r.body


def test_history_csv_and_stats_need_a_login(console: CenterService) -> None:  # noqa: F811
    assert console.web is not None
    c = Client(console.web.port)
    for path in ("/history", "/history.csv", "/history.csv?park=xinqiao", "/stats"):
        r = c.get(path)
        assert r.status == 303 and r.headers["location"] == "/login", path
