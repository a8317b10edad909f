"""Marking an alarm as a false alarm (误报) from its page, over HTTP on SQLite and on a real
PostgreSQL: an operator marks and unmarks it (the page says who and when, the command is
recorded with its author), a viewer and a form without its CSRF token are refused, and the
statistics show the false-alarm share per park and per tenant; a version 3 database is
migrated to the marks."""

from __future__ import annotations

import re
from datetime import timedelta

from center_web import Client, console_any  # noqa: F401  (console_any: the fixture)
from parkwatch.center.service import CenterService
from parkwatch.center.store import open_store
from parkwatch.center.web import stats as S
from test_center_history import T, form_time, life
from test_center_store import url  # noqa: F401  (the fixture: SQLite and PostgreSQL)


def stored(service: CenterService) -> dict[str, str]:
    """Four real alarms in park xinqiao (tenant t-acme on three of them) and a drill."""
    ids: dict[str, str] = {}
    events = []
    for n, (name, extra) in enumerate((("a", {"tenants": ["t-acme"]}),
                                       ("b", {"tenants": ["t-acme"]}),
                                       ("c", {"tenants": ["t-acme", "t-bolt"]}),
                                       ("d", {"tenants": ["t-bolt"]}),
                                       ("drill", {"drill": True, "tenants": ["t-acme"]}))):
        ids[name], evs = life(T + timedelta(minutes=n), 30, 60, **extra)
        events += evs
    service.store.store_events(events, 1.0)
    return ids


def logged_in(service: CenterService, user: str) -> Client:
    assert service.web is not None
    c = Client(service.web.port)
    assert c.login(user).status == 303
    return c


def mark(c: Client, alarm_id: str, false_alarm: bool, note: str = "") -> int:
    token = c.get(f"/alarms/{alarm_id}").csrf()
    return c.post(f"/alarms/{alarm_id}/false-alarm",
                  {"csrf": token, "false_alarm": "1" if false_alarm else "0",
                   "note": note}).status


def cells(body: str, name: str) -> dict[str, str]:
    row = re.search(rf'<tr data-name="{name}">(.*?)</tr>', body, re.S)
    assert row, body
    return dict(re.findall(r'<td class="([\w-]+)">([^<]*)</td>', row.group(1)))


def test_an_operator_marks_and_unmarks_a_false_alarm(console_any: CenterService) -> None:  # noqa: F811
    ids = stored(console_any)
    c = logged_in(console_any, "王工")
    page = c.get(f"/alarms/{ids['a']}")
    assert 'id="false-form"' in page.body and "标记为误报" in page.body
    assert 'id="marked-false"' not in page.body
    assert mark(c, ids["a"], True, "施工粉尘触发") == 303
    page = c.get(f"/alarms/{ids['a']}")
    shown = re.search(r'<p class="notice" id="marked-false">(.*?)</p>', page.body, re.S)
    assert shown and "已标记为误报" in shown.group(1) and "王工" in shown.group(1) \
        and "施工粉尘触发" in shown.group(1)
    assert "取消误报标记" in page.body
    assert 'id="ack-waiting"' not in page.body  # a mark is no ack waiting for its gateway
    commands = console_any.store.commands(ids["a"])
    assert [(x["command"], x["author"], x["note"]) for x in commands] == \
        [("mark_false", "王工", "施工粉尘触发")]
    assert console_any.store.false_alarms(list(ids.values())) == {ids["a"]}

    assert mark(c, ids["a"], False) == 303
    page = c.get(f"/alarms/{ids['a']}")
    assert 'id="marked-false"' not in page.body and 'id="unmarked-false"' in page.body
    assert "误报标记已取消" in page.body and "标记为误报" in page.body
    assert [x["command"] for x in console_any.store.commands(ids["a"])] == \
        ["mark_false", "unmark_false"]
    assert console_any.store.false_alarms(list(ids.values())) == set()
    mark_ = console_any.store.alarm_mark(ids["a"])
    assert mark_ is not None and mark_["false_alarm"] is False and mark_["marked_by"] == "王工"


def test_a_viewer_and_a_missing_csrf_token_are_refused(console_any: CenterService) -> None:  # noqa: F811
    ids = stored(console_any)
    viewer = logged_in(console_any, "viewer")
    page = viewer.get(f"/alarms/{ids['a']}")
    assert page.status == 200 and 'id="false-form"' not in page.body
    r = viewer.post(f"/alarms/{ids['a']}/false-alarm",
                    {"csrf": page.csrf(), "false_alarm": "1"})
    assert r.status == 403 and "只有值班员（operator）可以标记误报" in r.body
    operator = logged_in(console_any, "王工")
    r = operator.post(f"/alarms/{ids['a']}/false-alarm", {"false_alarm": "1"})
    assert r.status == 403 and "CSRF" in r.body
    r = operator.post(f"/alarms/{ids['a']}/false-alarm", {"csrf": "forged", "false_alarm": "1"})
    assert r.status == 403
    assert console_any.store.alarm_mark(ids["a"]) is None
    assert console_any.store.commands(ids["a"]) == []
    token = operator.get(f"/alarms/{ids['a']}").csrf()
    assert operator.post("/alarms/no-such-alarm/false-alarm",
                         {"csrf": token, "false_alarm": "1"}).status == 404


def test_the_stats_show_the_false_alarm_share_per_park_and_tenant(
        console_any: CenterService) -> None:  # noqa: F811
    ids = stored(console_any)
    c = logged_in(console_any, "王工")
    for name in ("a", "c", "drill"):  # a marked drill does not count: drills are left out
        assert mark(c, ids[name], True) == 303
    span = f"/stats?since={form_time(T - timedelta(hours=1))}" \
           f"&until={form_time(T + timedelta(hours=1))}"
    page = c.get(span)
    assert page.status == 200 and "误报比例" in page.body
    assert cells(page.body, "xinqiao")["false-share"] == "50.0 %"  # 2 of 4
    assert cells(page.body, "t-acme")["false-share"] == "66.7 %"  # a and c of a, b, c
    assert cells(page.body, "t-bolt")["false-share"] == "50.0 %"  # c of c, d
    assert mark(c, ids["c"], False) == 303
    page = c.get(span)
    assert cells(page.body, "xinqiao")["false-share"] == "25.0 %"
    assert cells(page.body, "t-bolt")["false-share"] == "0.0 %"
    c.post("/language", {"csrf": page.csrf(), "lang": "en", "next": "/"})
    assert "False-alarm share" in c.get(span).body


def test_the_share_is_a_percentage_and_a_dash_without_alarms() -> None:
    assert (S.share(None), S.share(0.0), S.share(100 / 3)) == ("—", "0.0 %", "33.3 %")


def test_a_version_3_database_gets_the_marks_and_keeps_its_commands(url: str) -> None:  # noqa: F811
    old = open_store(url, migrate=False)
    try:
        assert old.migrate(upto=3) == 3
        alarm_id, events = life(T, 30, 60)
        old.store_events(events, 1.0)
        old.record_command("c-1", "xinqiao", alarm_id, "ack", "王工", None, 2.0)
    finally:
        old.close()
    s = open_store(url)  # the current release migrates to version 4
    try:
        assert s.alarm_mark(alarm_id) is None and s.false_alarms([alarm_id]) == set()
        s.mark_alarm("c-2", "xinqiao", alarm_id, True, "王工", "误报", 3.0)
        assert s.alarm_mark(alarm_id) == {"false_alarm": True, "marked_by": "王工",
                                          "marked_at": 3.0, "note": "误报"}
        assert [c["command"] for c in s.commands(alarm_id)] == ["ack", "mark_false"]
        assert s.false_alarms([alarm_id, "unknown"]) == {alarm_id}
    finally:
        s.close()
