"""The console's hazard-ticket pages over HTTP: reporting with photos, each step by its role,
a refused step saving nothing, the ledger's CSV and Excel exports, opening a ticket from an
alarm, and a tenant's officer trying every page and form for another tenant's ticket."""

from __future__ import annotations

import io
import re
import time

import pytest
from openpyxl import load_workbook

from center_web import PASSWORDS, Client, console, console_any  # noqa: F401  (fixtures)
from parkwatch.alarms.ids import new_alarm_id
from parkwatch.center.service import CenterService
from parkwatch.center.users import add_user
from test_center_tickets import png
from test_center_web import port_of

PW = "ticket-pass-1"
SCOPED = (("grid-li", "inspector", {"park": "xinqiao"}),
          ("acme-safety", "tenant", {"park": "xinqiao", "tenant": "t-acme"}),
          ("bolt-safety", "tenant", {"park": "xinqiao", "tenant": "t-bolt"}),
          ("landlord-b1", "landlord", {"park": "xinqiao", "buildings": ("B1",)}))


def users(service: CenterService) -> None:
    for name, role, scope in SCOPED:
        assert add_user(service.store, name, role, PW, **scope) is None  # type: ignore[arg-type]


def client(service: CenterService, name: str) -> Client:
    c = Client(port_of(service))
    assert c.login(name, PASSWORDS.get(name, PW)).status == 303
    return c


def report(c: Client, **fields: str) -> str:
    token = c.get("/tickets/new").csrf()
    form = {"csrf": token, "park": "xinqiao", "building": "B1", "floor": "F2", "zone": "east",
            "tenant": "t-acme", "category": "passage", "level": "general",
            "description": "二层东侧疏散通道堆放纸箱", **fields}
    r = c.send("/tickets", form, [("photos", "found.png", png())])
    assert r.status == 303, r.body
    return r.headers["location"].rsplit("/", 1)[1]


def step(c: Client, ticket_id: str, action: str, files: list[tuple[str, str, bytes]] | None = None,
         **form: str) -> int:
    token = c.get(f"/tickets/{ticket_id}").csrf()
    return c.send(f"/tickets/{ticket_id}/{action}", {"csrf": token, **form}, files or []).status


def test_a_ticket_goes_round_the_loop_through_the_pages(console: CenterService) -> None:
    users(console)
    grid, acme = client(console, "grid-li"), client(console, "acme-safety")
    tid = report(grid)
    page = acme.get(f"/tickets/{tid}")
    assert page.status == 200 and "二层东侧疏散通道堆放纸箱" in page.body
    assert 'id="nothing-to-do"' in page.body  # not assigned yet: nothing for the tenant
    assert step(grid, tid, "assign", deadline="2099-12-31T18:00", note="请限期整改") == 303
    assert 'id="do-start"' in acme.get(f"/tickets/{tid}").body
    assert step(acme, tid, "start") == 303
    assert step(acme, tid, "submit", [("photos", "after.png", png())], note="已清理") == 303
    assert step(grid, tid, "verify", note="复查合格") == 303
    t = console.store.ticket(tid, _operator())
    assert t is not None and t["state"] == "closed"
    assert [s["action"] for s in t["steps_list"]] == ["report", "assign", "start", "submit",
                                                      "verify"]
    assert [p["step"] for p in t["photos"]] == [1, 4]
    shown = acme.get(f"/tickets/{tid}")
    assert "已销号" in shown.body and shown.body.count("/tickets/photos/") >= 2
    img = acme.get(f"/tickets/photos/{t['photos'][1]['photo_id']}")
    assert img.status == 200 and img.raw == png()
    assert img.headers["content-type"] == "image/png"
    assert img.headers["x-content-type-options"] == "nosniff"


def _operator() -> object:
    from parkwatch.center.tickets import Actor
    return Actor("王工", "operator")


def test_a_refused_report_says_why_and_saves_nothing(console: CenterService) -> None:
    users(console)
    grid = client(console, "grid-li")
    token = grid.get("/tickets/new").csrf()
    form = {"csrf": token, "park": "xinqiao", "category": "passage", "level": "general",
            "description": "有隐患"}
    r = grid.send("/tickets", form, [("photos", "virus.png", b"MZ\x90\x00 not an image")])
    assert r.status == 400 and "不是照片" in r.body
    assert 'value="xinqiao"' in r.body and "有隐患" in r.body  # what was typed stays
    r = grid.send("/tickets", {**form, "description": "  "}, [])
    assert r.status == 400 and "请描述隐患" in r.body
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    r = grid.send("/tickets", form, [("photos", f"{i}.png", png) for i in range(9)])
    assert r.status == 400 and "照片太多" in r.body  # the console's page, in Chinese
    assert console.store.tickets(_operator()) == []  # type: ignore[arg-type]


def test_an_inspector_reports_only_in_their_own_park(console: CenterService) -> None:
    users(console)
    grid = client(console, "grid-li")
    tid = report(grid, park="nanhu")  # the form's park is theirs, whatever is sent
    t = console.store.ticket(tid, _operator())  # type: ignore[arg-type]
    assert t is not None and t["park"] == "xinqiao"
    acme = client(console, "acme-safety")
    assert acme.get("/tickets/new").status == 403


def test_steps_without_the_csrf_token_or_by_the_wrong_role_change_nothing(
        console: CenterService) -> None:
    users(console)
    grid, acme, viewer = (client(console, n) for n in ("grid-li", "acme-safety", "viewer"))
    tid = report(grid)
    assert acme.send(f"/tickets/{tid}/assign", {"note": "x"}, []).status == 403  # no token
    token = viewer.get(f"/tickets/{tid}").csrf()
    r = viewer.send(f"/tickets/{tid}/assign", {"csrf": token}, [])
    assert r.status == 403 and "你的账号不能做这一步" in r.body
    r = acme.send(f"/tickets/{tid}/start", {"csrf": acme.get(f"/tickets/{tid}").csrf()}, [])
    assert r.status == 409  # not assigned yet
    t = console.store.ticket(tid, _operator())  # type: ignore[arg-type]
    assert t is not None and t["state"] == "reported" and len(t["steps_list"]) == 1


def test_a_tenant_officer_can_reach_nothing_of_another_tenant(console_any: CenterService
                                                              ) -> None:
    console = console_any
    users(console)
    grid, bolt = client(console, "grid-li"), client(console, "bolt-safety")
    tid = report(grid)  # t-acme's
    assert step(grid, tid, "assign") == 303
    acme = client(console, "acme-safety")
    assert step(acme, tid, "start") == 303
    assert step(acme, tid, "submit", [("photos", "p.png", png())], note="done") == 303
    t = console.store.ticket(tid, _operator())  # type: ignore[arg-type]
    assert t is not None
    photo_id = t["photos"][0]["photo_id"]

    listed = bolt.get("/tickets?state=all")
    assert listed.status == 200 and tid not in listed.body and 'id="no-tickets"' in listed.body
    assert bolt.get("/tickets?state=all&tenant=t-acme").body.count(tid) == 0
    assert bolt.get(f"/tickets/{tid}").status == 404
    assert bolt.get(f"/tickets/photos/{photo_id}").status == 404
    token = bolt.get("/tickets").csrf()
    for action in ("start", "submit", "verify", "send_back", "assign"):
        r = bolt.send(f"/tickets/{tid}/{action}", {"csrf": token, "note": "x"}, [])
        assert r.status == 404, (action, r.status)
    csv = bolt.get("/tickets/ledger.csv")
    assert csv.status == 200 and tid not in csv.body
    # nor the alarms' pages, which show every tenant's alarms
    for path in ("/", "/history", "/history.csv", "/stats", "/parks/xinqiao",
                 f"/alarms/{new_alarm_id(time.time())}"):
        r = bolt.get(path)
        assert r.status == 303 and r.headers["location"] == "/tickets", path
    assert bolt.get("/events").status == 403
    after = console.store.ticket(tid, _operator())  # type: ignore[arg-type]
    assert after is not None and after["steps"] == t["steps"] and after["state"] == "submitted"


def test_the_ledger_exports_as_csv_and_as_a_workbook(console: CenterService) -> None:
    users(console)
    grid, acme = client(console, "grid-li"), client(console, "acme-safety")
    tid = report(grid)
    other = report(grid, tenant="t-bolt", building="B2", description="B2 配电箱未上锁")
    for who, action, form in ((grid, "assign", {}), (acme, "start", {}),
                              (acme, "submit", {"note": "ok"}), (grid, "verify", {})):
        assert step(who, tid, action, **form) == 303
    ops = client(console, "王工")
    csv = ops.get("/tickets/ledger.csv")
    assert csv.status == 200 and csv.raw.startswith(b"\xef\xbb\xbf")
    lines = csv.raw.decode("utf-8-sig").splitlines()
    assert lines[0].startswith("隐患编号,园区,楼栋,楼层,区域,责任方,类别,等级")
    closed = next(line for line in lines if line.startswith(tid))
    assert ",已销号," in closed and ",是," in closed  # closed, on time
    assert any(line.startswith(other) and ",整改中," not in line for line in lines)
    xlsx = ops.get("/tickets/ledger.xlsx")
    assert xlsx.status == 200 and "spreadsheetml" in xlsx.headers["content-type"]
    wb = load_workbook(io.BytesIO(xlsx.raw))
    ledger, records = wb["隐患台账"], wb["责任方记录"]
    rows = {r[0]: r for r in ledger.iter_rows(min_row=2, values_only=True)}
    assert rows[tid][11] == "已销号" and rows[other][11] == "已上报"
    by_party = {r[1]: r for r in records.iter_rows(min_row=2, values_only=True)}
    assert by_party["t-acme"][2:7] == (1, 0, 0, 1, 0) and by_party["t-acme"][7] == "100%"
    assert by_party["t-bolt"][2:4] == (1, 1)
    # a tenant's officer exports their own ledger only
    mine = acme.get("/tickets/ledger.csv").raw.decode("utf-8-sig")
    assert tid in mine and other not in mine


def test_an_operator_opens_a_ticket_from_an_alarm_in_one_click(console: CenterService) -> None:
    from test_center_store import event

    users(console)
    aid = new_alarm_id(time.time())
    console.store.store_events([event(aid, 1, severity="critical", tenants=["t-acme"])],
                               time.time())
    ops = client(console, "王工")
    page = ops.get(f"/alarms/{aid}")
    assert 'id="open-ticket"' in page.body
    r = ops.post(f"/alarms/{aid}/ticket", {"csrf": page.csrf()})
    assert r.status == 303
    tid = r.headers["location"].rsplit("/", 1)[1]
    again = ops.post(f"/alarms/{aid}/ticket", {"csrf": page.csrf()})
    assert again.headers["location"].endswith(tid)  # the open one, not a second
    shown = client(console, "acme-safety").get(f"/tickets/{tid}")
    assert shown.status == 200 and "重大隐患" in shown.body and "812.5" in shown.body
    assert re.search(r"tickets_of_alarm|这条报警的隐患单", ops.get(f"/alarms/{aid}").body)
    viewer = client(console, "viewer")
    assert viewer.post(f"/alarms/{aid}/ticket", {"csrf": viewer.get(f"/alarms/{aid}").csrf()}
                       ).status == 403


@pytest.mark.parametrize("path", ["/tickets", "/tickets/new", "/tickets/ledger",
                                  "/tickets/ledger.csv"])
def test_the_ticket_pages_need_a_login(console: CenterService, path: str) -> None:
    r = Client(port_of(console)).get(path)
    assert r.status == 303 and r.headers["location"] == "/login"


def test_metrics_count_open_and_overdue_tickets(console: CenterService) -> None:
    from parkwatch.center.tickets import Actor

    grid = Actor("grid-li", "inspector", park="xinqiao")
    form = {"park": "xinqiao", "building": "B1", "tenant": "t-acme", "category": "passage",
            "level": "general", "description": "通道堆物", "source": "inspection"}
    hours = console.cfg.tickets.deadline_hours
    console.overdue.stop()  # joined: it cannot escalate the overdue ticket behind our back
    console.store.open_ticket(form, grid, time.time() - 200 * 3600, hours)  # a week overdue
    console.store.open_ticket(form, grid, time.time(), hours)
    text = Client(port_of(console)).get("/metrics").body
    assert 'parkwatch_center_tickets_open{park="xinqiao",state="reported"} 2.0' in text
    assert 'parkwatch_center_tickets_overdue{park="xinqiao"} 1.0' in text
    assert "parkwatch_center_tickets_escalated_total 0.0" in text


def test_a_tickets_page_lists_its_escalation_notices(console: CenterService) -> None:
    from parkwatch.center.noticeconfig import NoticeConfig
    from parkwatch.center.notices import notices_of

    users(console)
    grid = client(console, "grid-li")
    tid = report(grid)
    t = console.store.ticket(tid, _operator())  # type: ignore[arg-type]
    assert t is not None
    cfg = NoticeConfig.model_validate({
        "targets": {"acme-group": {"type": "wecom", "url": "http://127.0.0.1:9/x"}},
        "recipients": [{"party": "tenant", "park": "xinqiao", "tenant": "t-acme",
                        "target": "acme-group"}]})
    console.store.escalate_overdue(t["deadline_at"], (0.0, 24.0, 48.0), notices_of(cfg))
    page = client(console, "acme-safety").get(f"/tickets/{tid}")
    assert 'id="ticket-notices"' in page.body and "acme-group" in page.body
    assert "待发送" in page.body and "逾期督办" in page.body


def test_a_refused_step_keeps_what_was_typed_and_says_which_photo(console: CenterService) -> None:
    users(console)
    grid, acme = client(console, "grid-li"), client(console, "acme-safety")
    tid = report(grid)
    assert step(grid, tid, "assign", deadline="2099-12-31T18:00") == 303
    assert step(acme, tid, "start") == 303
    token = acme.get(f"/tickets/{tid}").csrf()
    r = acme.send(f"/tickets/{tid}/submit", {"csrf": token, "note": "纸箱已全部清走，通道畅通"},
                  [("photos", "virus.png", b"MZ\x90\x00 not an image")])
    assert r.status == 400 and "不是照片" in r.body and "virus.png" in r.body
    assert "纸箱已全部清走，通道畅通</textarea>" in r.body  # nothing typed on the phone is lost
    bad = grid.get(f"/tickets/{tid}")
    assert "纸箱已全部清走" not in bad.body  # only on the page that refused it
