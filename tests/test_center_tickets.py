"""Hazard tickets in the center's database, on SQLite and PostgreSQL: every step of a ticket's
life, who may take it, what each user may see (a tenant never another tenant's), photos, and
the escalation of overdue tickets on a clock the test sets."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator

import pytest

from parkwatch.alarms.ids import new_alarm_id
from parkwatch.center import tickets as K
from parkwatch.center.hazards import hazard_of
from parkwatch.center.photos import MAX_BYTES, MAX_PER_STEP, PhotoError, photo
from parkwatch.center.store import CenterStore, open_store
from parkwatch.center.users import add_user
from test_center_store import T0, event, raw, url  # noqa: F401  (url: backends)

HOURS = {"general": 168.0, "major": 72.0}
ESCALATE = (0.0, 24.0, 48.0)
NOW = T0.timestamp()

OPERATOR = K.Actor("zhang-ops", "operator")
VIEWER = K.Actor("wall", "viewer")
INSPECTOR = K.Actor("grid-li", "inspector", park="xinqiao")
OTHER_INSPECTOR = K.Actor("grid-wu", "inspector", park="nanhu")
ACME = K.Actor("acme-safety", "tenant", park="xinqiao", tenant="t-acme")
BOLT = K.Actor("bolt-safety", "tenant", park="xinqiao", tenant="t-bolt")
LANDLORD_B1 = K.Actor("landlord-b1", "landlord", park="xinqiao", buildings=("B1",))
LANDLORD_B2 = K.Actor("landlord-b2", "landlord", park="xinqiao", buildings=("B2",))


def png(extra: bytes = b"") -> bytes:
    """A real 1×1 PNG (RFC 2083): signature, IHDR, IDAT, IEND."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b"") + extra)


@pytest.fixture
def store(url: str) -> Iterator[CenterStore]:  # noqa: F811
    s = open_store(url)
    yield s
    s.close()


def inspection(**fields: object) -> dict[str, object]:
    return {"park": "xinqiao", "building": "B1", "floor": "F2", "zone": "east",
            "tenant": "t-acme", "category": "passage", "level": "general",
            "description": "二层东侧疏散通道堆放纸箱", "source": "inspection", **fields}


def open_(store: CenterStore, actor: K.Actor = INSPECTOR, at: float = NOW,
          **fields: object) -> str:
    return store.open_ticket(inspection(**fields), actor, at, HOURS)


def refused(key: str) -> pytest.RaisesContext[K.TicketError]:
    return pytest.raises(K.TicketError, match=f"^{key}")


# --- the whole life --------------------------------------------------------------------------

def test_a_ticket_walks_from_report_to_verified_with_a_send_back(store: CenterStore) -> None:
    tid = open_(store, note="巡查发现")
    t = store.ticket(tid, INSPECTOR)
    assert t is not None and t["state"] == "reported" and t["reported_by"] == "grid-li"
    assert t["deadline_at"] == NOW + 168 * 3600  # a general hazard: a week

    store.act(tid, "assign", INSPECTOR, NOW + 60, note="请三日内清理",
              deadline_at=NOW + 3 * 86400)
    store.act(tid, "start", ACME, NOW + 120)
    evidence = photo("after.png", png())
    store.act(tid, "submit", ACME, NOW + 3600, note="纸箱已清走", photos=[evidence])
    store.act(tid, "send_back", INSPECTOR, NOW + 7200, note="通道仍有杂物")
    store.act(tid, "submit", ACME, NOW + 9000, note="已全部清空")
    done = store.act(tid, "verify", INSPECTOR, NOW + 10_000, note="复查合格")
    assert done["state"] == "closed" and done["closed_at"] == NOW + 10_000

    t = store.ticket(tid, ACME)
    assert t is not None
    steps = [(s["action"], s["from_state"], s["to_state"], s["by_user"], s["at"], s["note"])
             for s in t["steps_list"]]
    assert steps == [
        ("report", None, "reported", "grid-li", NOW, "巡查发现"),
        ("assign", "reported", "assigned", "grid-li", NOW + 60, "请三日内清理"),
        ("start", "assigned", "rectifying", "acme-safety", NOW + 120, None),
        ("submit", "rectifying", "submitted", "acme-safety", NOW + 3600, "纸箱已清走"),
        ("send_back", "submitted", "rectifying", "grid-li", NOW + 7200, "通道仍有杂物"),
        ("submit", "rectifying", "submitted", "acme-safety", NOW + 9000, "已全部清空"),
        ("verify", "submitted", "closed", "grid-li", NOW + 10_000, "复查合格"),
    ]
    assert t["steps_list"][1]["detail"] == {"deadline_at": NOW + 3 * 86400}
    assert t["steps_list"][-1]["detail"] == {"on_time": True}
    (p,) = t["photos"]
    assert (p["step"], p["name"], p["content_type"]) == (4, "after.png", "image/png")
    assert store.photo(p["photo_id"], INSPECTOR) == ("after.png", "image/png", evidence.data)


@pytest.mark.parametrize(("action", "state_needed"), [
    ("start", "assigned"), ("submit", "rectifying"), ("verify", "submitted"),
    ("send_back", "submitted")])
def test_a_step_from_the_wrong_state_is_refused_and_changes_nothing(
        store: CenterStore, action: str, state_needed: str) -> None:
    tid = open_(store)
    with refused("ticket_wrong_state"):
        store.act(tid, action, OPERATOR, NOW + 1, note="x")
    t = store.ticket(tid, OPERATOR)
    assert t is not None and t["state"] == "reported" and len(t["steps_list"]) == 1


def test_a_closed_ticket_takes_no_more_steps(store: CenterStore) -> None:
    tid = closed_ticket(store)
    for action in K.ACTIONS:
        with refused("ticket_wrong_state"):
            store.act(tid, action, OPERATOR, NOW + 99, note="x")


def closed_ticket(store: CenterStore) -> str:
    tid = open_(store)
    store.act(tid, "assign", INSPECTOR, NOW + 1)
    store.act(tid, "start", ACME, NOW + 2)
    store.act(tid, "submit", ACME, NOW + 3, note="done")
    store.act(tid, "verify", INSPECTOR, NOW + 4)
    return tid


def test_submitting_and_sending_back_need_a_note(store: CenterStore) -> None:
    tid = open_(store)
    store.act(tid, "assign", INSPECTOR, NOW + 1)
    store.act(tid, "start", ACME, NOW + 2)
    with refused("ticket_note_required"):
        store.act(tid, "submit", ACME, NOW + 3, note="   ")
    store.act(tid, "submit", ACME, NOW + 3, note="ok")
    with refused("ticket_note_required"):
        store.act(tid, "send_back", INSPECTOR, NOW + 4)


def test_a_ticket_closed_after_its_deadline_is_recorded_as_late(store: CenterStore) -> None:
    tid = open_(store, level="major")
    store.act(tid, "assign", INSPECTOR, NOW + 1)
    store.act(tid, "start", ACME, NOW + 2)
    store.act(tid, "submit", ACME, NOW + 73 * 3600, note="late")
    store.act(tid, "verify", INSPECTOR, NOW + 74 * 3600)
    t = store.ticket(tid, OPERATOR)
    assert t is not None and t["steps_list"][-1]["detail"] == {"on_time": False}


# --- who may do what -------------------------------------------------------------------------

def test_a_tenant_never_sees_nor_touches_another_tenants_ticket(store: CenterStore) -> None:
    tid = open_(store)  # t-acme's
    store.act(tid, "assign", INSPECTOR, NOW + 1)
    assert store.ticket(tid, BOLT) is None
    assert store.tickets(BOLT) == []
    for action in ("start", "submit", "verify", "send_back", "assign"):
        with refused("ticket_not_found"):  # not even "forbidden": it does not exist for them
            store.act(tid, action, BOLT, NOW + 2, note="x")
    store.act(tid, "start", ACME, NOW + 3)
    store.act(tid, "submit", ACME, NOW + 4, note="n", photos=[photo("a.png", png())])
    t = store.ticket(tid, ACME)
    assert t is not None
    assert store.photo(t["photos"][0]["photo_id"], BOLT) is None
    assert [x["ticket_id"] for x in store.tickets(ACME)] == [tid]


def test_each_role_sees_its_scope(store: CenterStore) -> None:
    acme_b1 = open_(store)
    bolt_b2 = open_(store, building="B2", tenant="t-bolt")
    shared_b1 = open_(store, tenant=None, category="electrical")
    nanhu = open_(store, OPERATOR, park="nanhu", tenant="t-acme")  # another park's t-acme

    def seen(actor: K.Actor) -> set[str]:
        return {t["ticket_id"] for t in store.tickets(actor)}

    assert seen(OPERATOR) == seen(VIEWER) == {acme_b1, bolt_b2, shared_b1, nanhu}
    assert seen(INSPECTOR) == {acme_b1, bolt_b2, shared_b1}
    assert seen(OTHER_INSPECTOR) == {nanhu}
    assert seen(ACME) == {acme_b1}  # not nanhu's t-acme: the officer belongs to xinqiao
    assert seen(BOLT) == {bolt_b2}
    assert seen(LANDLORD_B1) == {acme_b1, shared_b1}
    assert seen(LANDLORD_B2) == {bolt_b2}
    everywhere = K.Actor("boss", "landlord", park="xinqiao", buildings=("*",))
    assert seen(everywhere) == {acme_b1, bolt_b2, shared_b1}
    for actor, ticket_id in ((ACME, bolt_b2), (LANDLORD_B2, acme_b1), (INSPECTOR, nanhu)):
        assert store.ticket(ticket_id, actor) is None


def test_a_shared_part_is_the_landlords_to_rectify(store: CenterStore) -> None:
    tid = open_(store, tenant=None, category="electrical", description="配电箱门损坏")
    store.act(tid, "assign", INSPECTOR, NOW + 1)
    with refused("ticket_not_found"):
        store.act(tid, "start", ACME, NOW + 2)  # a tenant's officer does not see it
    with refused("ticket_not_found"):
        store.act(tid, "start", LANDLORD_B2, NOW + 2)  # another building's landlord
    store.act(tid, "start", LANDLORD_B1, NOW + 2)
    store.act(tid, "submit", LANDLORD_B1, NOW + 3, note="已更换箱门")
    with refused("ticket_forbidden"):
        store.act(tid, "verify", LANDLORD_B1, NOW + 4)  # a landlord checks no one's work
    store.act(tid, "verify", INSPECTOR, NOW + 4)


def test_rectifiers_do_not_assign_nor_verify_and_viewers_do_nothing(store: CenterStore) -> None:
    tid = open_(store)
    for actor in (ACME, LANDLORD_B1, VIEWER):
        with refused("ticket_forbidden"):
            store.act(tid, "assign", actor, NOW + 1)
    store.act(tid, "assign", INSPECTOR, NOW + 1)
    with refused("ticket_forbidden"):
        store.act(tid, "start", INSPECTOR, NOW + 2)  # the tenant's to do
    with refused("ticket_forbidden"):
        store.act(tid, "start", VIEWER, NOW + 2)
    store.act(tid, "start", ACME, NOW + 2)
    store.act(tid, "submit", ACME, NOW + 3, note="n")
    for actor in (ACME, VIEWER):
        with refused("ticket_forbidden"):
            store.act(tid, "verify", actor, NOW + 4)


def test_no_one_verifies_their_own_rectification(store: CenterStore) -> None:
    tid = open_(store)
    store.act(tid, "assign", OPERATOR, NOW + 1)
    store.act(tid, "start", OPERATOR, NOW + 2)  # an operator may stand in for the tenant
    store.act(tid, "submit", OPERATOR, NOW + 3, note="done on site")
    with refused("ticket_own_work"):
        store.act(tid, "verify", OPERATOR, NOW + 4)
    store.act(tid, "verify", INSPECTOR, NOW + 4)


def test_who_may_report_where(store: CenterStore) -> None:
    for actor in (ACME, LANDLORD_B1, VIEWER, OTHER_INSPECTOR):
        with refused("ticket_forbidden"):
            open_(store, actor)
    assert store.tickets(OPERATOR) == []
    open_(store, INSPECTOR)
    open_(store, OPERATOR, park="nanhu")
    open_(store, K.Actor("grid-any", "inspector"), park="nanhu")  # an inspector of every park


@pytest.mark.parametrize(("field", "value", "key"), [
    ("park", "", "ticket_bad_park"), ("description", " ", "ticket_bad_description"),
    ("category", "ghosts", "ticket_bad_category"), ("level", "huge", "ticket_bad_level"),
    ("source", "rumour", "ticket_bad_source"), ("alarm_id", "A1", "ticket_bad_alarm_id"),
    ("building", 7, "ticket_bad_building"), ("description", "长" * 2001, "ticket_text_too_long"),
    ("tenant", "ACME 公司!", "ticket_bad_tenant"),
])
def test_a_report_with_a_wrong_field_is_refused_and_nothing_is_saved(
        store: CenterStore, field: str, value: object, key: str) -> None:
    with refused(key):
        open_(store, **{field: value})
    assert store.tickets(OPERATOR) == []


# --- from an alarm ---------------------------------------------------------------------------

def test_a_ticket_opened_from_an_alarm_carries_its_place_tenant_and_evidence(
        store: CenterStore) -> None:
    aid = new_alarm_id(NOW)
    raised = event(aid, 1, severity="critical", tenants=["t-acme"])
    store.store_events([raised], NOW)
    alarm = store.alarm(aid)
    assert alarm is not None
    fields = K.from_alarm(alarm, hazard_of(alarm["rule"], alarm["sensor_kind"]))
    tid = store.open_ticket(fields, OPERATOR, NOW + 5, HOURS)
    t = store.ticket(tid, ACME)
    assert t is not None
    assert (t["park"], t["building"], t["floor"], t["tenant"], t["category"], t["level"],
            t["source"], t["alarm_id"]) == ("xinqiao", "B1", "F1", "t-acme", "overload",
                                            "major", "alarm", aid)
    assert t["deadline_at"] == NOW + 5 + 72 * 3600
    assert t["evidence"]["value"] == 812.5 and t["evidence"]["raised_at"] == raised["raised_at"]
    assert [x["ticket_id"] for x in store.tickets(OPERATOR, alarm_id=aid)] == [tid]
    building_wide = K.from_alarm({**alarm, "tenants": ["t-acme", "t-bolt"]}, "fire")
    assert building_wide["tenant"] is None  # several tenants: a shared matter, the landlord's


# --- overdue tickets -------------------------------------------------------------------------

def test_an_overdue_ticket_is_escalated_one_level_at_a_time(store: CenterStore) -> None:
    tid = open_(store, level="major")  # due at NOW + 72 h
    due = NOW + 72 * 3600
    closed = closed_ticket(store)
    assert store.escalate_overdue(due - 1, ESCALATE) == []
    (first,) = store.escalate_overdue(due, ESCALATE)
    assert (first["ticket_id"], first["escalation_level"]) == (tid, 1)
    assert store.escalate_overdue(due + 3600, ESCALATE) == []  # level 1 until 24 h late
    assert [t["escalation_level"] for t in store.escalate_overdue(due + 24 * 3600,
                                                                  ESCALATE)] == [2]
    # a center that was down for days catches up in one step, to the level now due
    assert [t["escalation_level"] for t in store.escalate_overdue(due + 30 * 86400,
                                                                  ESCALATE)] == [3]
    assert store.escalate_overdue(due + 31 * 86400, ESCALATE) == []
    t = store.ticket(tid, OPERATOR)
    assert t is not None
    assert [(s["action"], s["by_user"], s["detail"]) for s in t["steps_list"][1:]] == [
        ("escalate", "center", {"level": 1, "to": "responsible"}),
        ("escalate", "center", {"level": 2, "to": "landlord"}),
        ("escalate", "center", {"level": 3, "to": "grid"}),
    ]
    after = store.ticket(closed, OPERATOR)
    assert after is not None and after["escalation_level"] == 0  # closed in time


def test_a_new_deadline_starts_the_escalation_over(store: CenterStore) -> None:
    tid = open_(store, level="major")
    due = NOW + 72 * 3600
    store.escalate_overdue(due, ESCALATE)
    store.act(tid, "assign", INSPECTOR, due + 60, deadline_at=due + 86400)
    t = store.ticket(tid, OPERATOR)
    assert t is not None and t["escalation_level"] == 0 and t["state"] == "assigned"
    assert store.escalate_overdue(due + 86400 - 1, ESCALATE) == []
    assert [x["escalation_level"] for x in store.escalate_overdue(due + 86400, ESCALATE)] == [1]
    with refused("ticket_deadline_past"):
        store.act(tid, "assign", INSPECTOR, due + 2 * 86400, deadline_at=due)


def test_a_step_read_from_a_state_that_changed_meanwhile_is_refused(
        store: CenterStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each write checks the step count it read: a step taken from a ticket another writer
    changed between the read and the write (two browsers, two center instances) is refused,
    not applied over the other's."""
    from parkwatch.center import sqltickets

    tid = open_(store)
    store.act(tid, "assign", INSPECTOR, NOW + 1)
    read = sqltickets._ticket

    def stale(row: tuple[object, ...]) -> dict[str, object]:
        t = read(row)
        t["steps"] = int(t["steps"]) - 1  # what the ticket was before its last step
        return t

    monkeypatch.setattr(sqltickets, "_ticket", stale)
    with refused("ticket_changed"):
        store.act(tid, "assign", INSPECTOR, NOW + 2, note="again")
    monkeypatch.undo()
    t = store.ticket(tid, OPERATOR)
    assert t is not None and len(t["steps_list"]) == 2 and t["steps"] == 2


# --- photos ---------------------------------------------------------------------------------

def test_photos_are_judged_by_their_bytes() -> None:
    assert photo("x.png", png()).content_type == "image/png"
    assert photo("x.jpg", b"\xff\xd8\xff\xe0" + b"\0" * 100).content_type == "image/jpeg"
    assert photo("x", b"RIFF\x10\0\0\0WEBPVP8 ").content_type == "image/webp"
    assert photo("../../etc/passwd.png", png()).name == "passwd.png"
    for data, key in ((b"<html><script>alert(1)</script>", "photo_not_image"),
                      (b"", "photo_empty"), (png(b"\0" * MAX_BYTES), "photo_too_large")):
        with pytest.raises(PhotoError, match=key):
            photo("evil.png", data)


def test_a_step_with_too_many_photos_is_refused_whole(store: CenterStore) -> None:
    tid = open_(store)
    store.act(tid, "assign", INSPECTOR, NOW + 1)
    store.act(tid, "start", ACME, NOW + 2)
    with pytest.raises(PhotoError, match="photo_too_many"):
        store.act(tid, "submit", ACME, NOW + 3, note="n",
                  photos=[photo(f"{i}.png", png()) for i in range(MAX_PER_STEP + 1)])
    t = store.ticket(tid, ACME)
    assert t is not None and t["state"] == "rectifying" and t["photos"] == []


# --- users with a scope ----------------------------------------------------------------------

def test_users_keep_their_scope_and_a_wrong_scope_is_refused(store: CenterStore) -> None:
    pw = "long-enough-pw"
    assert add_user(store, "acme-safety", "tenant", pw, park="xinqiao") is not None
    assert add_user(store, "lord", "landlord", pw, park="xinqiao") is not None
    assert add_user(store, "ops", "operator", pw, park="xinqiao") is not None
    assert add_user(store, "acme-safety", "tenant", pw, park="xinqiao", tenant="t-acme") is None
    assert add_user(store, "lord", "landlord", pw, park="xinqiao",
                    buildings=("B1", "B2")) is None
    user = store.user("lord")
    assert user is not None and (user["park"], user["buildings"]) == ("xinqiao", ["B1", "B2"])
    assert K.Actor.of(user).buildings == ("B1", "B2")
    tenant = store.user("acme-safety")
    assert tenant is not None and K.Actor.of(tenant) == ACME
    assert store.remove_user("lord")
    assert add_user(store, "lord", "landlord", pw, park="xinqiao", buildings=("B3",)) is None
    again = store.user("lord")
    assert again is not None and again["buildings"] == ["B3"]  # nothing left of the old one


def test_the_users_of_a_previous_schema_keep_their_roles(url: str) -> None:  # noqa: F811
    old = open_store(url, migrate=False)
    assert old.migrate(upto=5) == 5
    old.close()
    raw(url, "INSERT INTO users (name, password_hash, role, created_at) "
             "VALUES ('ops', 'h', 'operator', 1.0)")
    s = open_store(url)
    try:
        user = s.user("ops")
        assert user is not None and (user["role"], user["park"]) == ("operator", None)
        assert add_user(s, "grid-li", "inspector", "long-enough-pw", park="xinqiao") is None
    finally:
        s.close()


def test_the_centers_watch_escalates_on_its_clock_and_tells_its_listeners(
        store: CenterStore, caplog: pytest.LogCaptureFixture) -> None:
    import threading

    from parkwatch.center.config import TicketsConfig
    from parkwatch.center.overdue import OverdueWatch

    tid = open_(store, level="major")
    now = [NOW]
    watch = OverdueWatch(TicketsConfig(check_interval_s=3600), store, clock=lambda: now[0])
    told: list[dict[str, object]] = []
    heard = threading.Event()
    watch.listeners.append(lambda t: (told.append(t), heard.set()))
    assert watch.check() == []
    now[0] = NOW + 72 * 3600  # the deadline
    watch.start()  # its first look is at once
    try:
        assert heard.wait(30)
    finally:
        watch.stop()
    assert [(t["ticket_id"], t["escalation_level"]) for t in told] == [(tid, 1)]
    assert watch.escalated == 1
    assert f"hazard ticket {tid} (xinqiao B1, t-acme) is overdue: escalated to level 1" \
        in caplog.text


def test_the_docs_list_the_ledgers_columns_as_the_export_writes_them() -> None:
    from conftest import REPO
    from parkwatch.center.ledger import COLUMNS

    docs = (REPO / "docs" / "center.md").read_text(encoding="utf-8")
    section = docs[docs.index("#### The ledger"):]
    table = section[section.index("| column |"):].split("\n\n", 1)[0]
    documented = [line.split("|")[1:3] for line in table.splitlines()[2:]]
    assert [(zh.strip(), en.strip()) for zh, en in documented] == \
        [(zh, en) for _k, zh, en in COLUMNS]


def test_an_assignment_to_a_tenant_that_is_no_tenant_id_is_refused(store: CenterStore) -> None:
    """The tenant's officers see the tickets of their tenant id: a name typed instead would
    hide the ticket from them."""
    tid = open_(store)
    with refused("ticket_bad_tenant"):
        store.act(tid, "assign", INSPECTOR, NOW + 60, tenant="ACME 公司 ")
    t = store.ticket(tid, INSPECTOR)
    assert t is not None and t["state"] == "reported"  # nothing changed
    store.act(tid, "assign", INSPECTOR, NOW + 60, tenant=" t-acme ")
    assert store.ticket(tid, ACME) is not None  # theirs now
