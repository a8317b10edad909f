"""Overdue hazard tickets reach people: each escalation level's notices (the responsible
party, then the landlord, then the grid officers) are written with the escalation, on
SQLite and PostgreSQL, and delivered to local stand-ins of the chat robots that check what
each vendor documents (tests/chat_robots.py) and to a webhook that checks the signature; a
notice the robot refuses is tried again, not lost."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chat_robots import DingTalkRobot, FeishuBot, WeComRobot
from parkwatch.center import tickets as K
from parkwatch.center.noticeconfig import NoticeConfig
from parkwatch.center.notices import NoticeCourier, notices_of, recipients_for
from parkwatch.center.store import CenterStore, open_store
from test_center_store import url  # noqa: F401  (the backends fixture)
from test_center_tickets import HOURS, INSPECTOR, NOW, open_
from webhook_receiver import WebhookReceiver

ESCALATE = (0.0, 24.0, 48.0)
DUE = NOW + 168 * 3600  # a general ticket's deadline, reported at NOW
SECRET = "SEC-parkwatch-test-robot-secret-0123"


@pytest.fixture
def store(url: str) -> Iterator[CenterStore]:  # noqa: F811
    s = open_store(url)
    yield s
    s.close()


def notify(targets: dict[str, Any], **extra: Any) -> NoticeConfig:
    recipients = [
        {"party": "tenant", "park": "xinqiao", "tenant": "t-acme", "target": "acme"},
        {"party": "landlord", "park": "xinqiao", "buildings": ["B1"], "target": "landlord"},
        {"party": "grid", "park": "xinqiao", "target": "grid"},
    ]
    return NoticeConfig.model_validate({"targets": targets, "recipients": recipients,
                                        **extra})


def plain(url_: str, type_: str = "wecom") -> dict[str, Any]:
    return {"type": type_, "url": url_}


def test_each_level_tells_its_party(store: CenterStore) -> None:
    cfg = notify({n: plain(f"http://127.0.0.1:9/{n}") for n in ("acme", "landlord", "grid")})
    tenant_ticket = open_(store)
    shared = open_(store, tenant=None, category="electrical")
    other_building = open_(store, building="B2", tenant="t-bolt")
    make = notices_of(cfg)
    for at, level in ((DUE, 1), (DUE + 24 * 3600, 2), (DUE + 48 * 3600, 3)):
        store.escalate_overdue(at, ESCALATE, make)
        assert {t["ticket_id"] for t in store.tickets(INSPECTOR)
                if t["escalation_level"] == level} == {tenant_ticket, shared, other_building}
    told = {(n["ticket_id"], n["level"]): n["target"] for n in store.notices()}
    assert told == {
        (tenant_ticket, 1): "acme", (tenant_ticket, 2): "landlord", (tenant_ticket, 3): "grid",
        (shared, 1): "landlord", (shared, 2): "landlord", (shared, 3): "grid",
        (other_building, 3): "grid",  # no recipient for t-bolt, nor for B2's landlord
    }
    (text,) = [n["text"] for n in store.notices(tenant_ticket) if n["level"] == 2]
    assert text.startswith("【隐患逾期督办·第二级：房东】") and "二层东侧疏散通道堆放纸箱" in text
    assert tenant_ticket in text and "已逾期 24 小时" in text


def test_an_escalation_nobody_is_configured_for_is_said_in_the_log(
        store: CenterStore, caplog: pytest.LogCaptureFixture) -> None:
    tid = open_(store, tenant="t-bolt")
    with caplog.at_level(logging.WARNING, "parkwatch.center"):
        store.escalate_overdue(DUE, ESCALATE, notices_of(NoticeConfig()))
    assert store.notices() == []
    assert f"hazard ticket {tid} escalated to level 1 (responsible) tells nobody" in caplog.text


def test_notices_reach_the_robots_and_the_webhook_as_each_vendor_documents(
        store: CenterStore, tmp_path: Path) -> None:
    (tmp_path / "ding.secret").write_text(SECRET + "\n")
    (tmp_path / "feishu.secret").write_text(SECRET + "\n")
    (tmp_path / "hook.secret").write_text(SECRET + "\n")
    with DingTalkRobot(SECRET) as ding, WeComRobot("", token="wecom-key") as wecom, \
            FeishuBot(SECRET, token="feishu-hook") as feishu, \
            WebhookReceiver(secret=SECRET) as hook:
        cfg = notify({
            "acme": {"type": "dingtalk", "url": ding.url,
                     "secret_file": str(tmp_path / "ding.secret")},
            "landlord": plain(wecom.url),
            "grid": {"type": "feishu", "url": feishu.url,
                     "secret_file": str(tmp_path / "feishu.secret")},
            "city": {"type": "webhook", "url": hook.url,
                     "secret_file": str(tmp_path / "hook.secret")}},
            recipients=[
                {"party": "tenant", "park": "xinqiao", "tenant": "t-acme", "target": "acme"},
                {"party": "landlord", "park": "xinqiao", "target": "landlord"},
                {"party": "grid", "park": "xinqiao", "target": "grid"},
                {"party": "grid", "park": "xinqiao", "target": "city"}])
        tid = open_(store)
        clock = [DUE]
        courier = NoticeCourier(cfg, store, clock=lambda: clock[0])
        for hours in (0, 24, 48):
            clock[0] = DUE + hours * 3600
            store.escalate_overdue(clock[0], ESCALATE, notices_of(cfg))
            courier.deliver_due()
        ding.wait_for(lambda got: len(got) == 1)
        wecom.wait_for(lambda got: len(got) == 1)
        feishu.wait_for(lambda got: len(got) == 1)
        assert "第一级：责任方" in ding.accepted[0]["text"]["content"]
        assert "第二级：房东" in wecom.accepted[0]["text"]["content"]
        assert "第三级：网格员" in feishu.accepted[0]["content"]["text"]
        (post,) = hook.requests
        assert post.signature_ok is True and post.json["ticket_id"] == tid
        assert post.json["level"] == 3 and post.json["party"] == "grid"
        assert ding.refused == wecom.refused == feishu.refused == []
    assert {n["state"] for n in store.notices()} == {"sent"}
    assert courier.sent == 4


def test_a_refused_notice_is_tried_again_until_delivered(store: CenterStore,
                                                         tmp_path: Path) -> None:
    (tmp_path / "wrong.secret").write_text("SEC-not-the-robots-secret-000000\n")
    (tmp_path / "right.secret").write_text(SECRET + "\n")
    with DingTalkRobot(SECRET) as ding:
        wrong = notify({"acme": {"type": "dingtalk", "url": ding.url,
                                 "secret_file": str(tmp_path / "wrong.secret")},
                        "landlord": plain("http://127.0.0.1:9/x"),
                        "grid": plain("http://127.0.0.1:9/y")})
        open_(store)
        clock = [DUE]
        store.escalate_overdue(DUE, ESCALATE, notices_of(wrong))
        assert NoticeCourier(wrong, store, clock=lambda: clock[0]).deliver_due() == 0
        assert ding.refused and ding.refused[0][0] == 310000  # the signature did not match
        (n,) = store.notices()
        assert n["state"] == "pending" and n["attempts"] == 1 and "310000" in n["last_error"]
        right = wrong.model_copy(update={"targets": {
            **wrong.targets, "acme": wrong.targets["acme"].model_copy(
                update={"secret_file": tmp_path / "right.secret"})}})
        courier = NoticeCourier(right, store, clock=lambda: clock[0])
        assert courier.deliver_due() == 0  # not yet: it waits out its pause
        clock[0] = DUE + 11
        assert courier.deliver_due() == 1
        ding.wait_for(lambda got: len(got) == 1)
    (n,) = store.notices()
    assert n["state"] == "sent" and n["attempts"] == 2 and n["last_error"] is None


def test_a_notice_is_given_up_after_retry_for_s(store: CenterStore) -> None:
    cfg = notify({n: plain(f"http://127.0.0.1:9/{n}") for n in ("acme", "landlord", "grid")},
                 retry_for_s=60)
    open_(store)
    store.escalate_overdue(DUE, ESCALATE, notices_of(cfg))
    clock = [DUE]
    courier = NoticeCourier(cfg, store, clock=lambda: clock[0])
    for step in (0, 11, 41, 102):  # each attempt after the pause before it
        clock[0] = DUE + step
        courier.deliver_due()
    (n,) = store.notices()
    assert n["state"] == "expired" and n["attempts"] >= 2


def test_recipients_name_known_targets() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"not in tickets\.notify\.targets"):
        NoticeConfig.model_validate({"recipients": [{"party": "grid", "park": "xinqiao",
                                                     "target": "nowhere"}]})
    with pytest.raises(ValidationError, match="names its tenant"):
        NoticeConfig.model_validate({"targets": {"t": plain("http://x/")}, "recipients": [
            {"party": "tenant", "park": "xinqiao", "target": "t"}]})
    cfg = notify({n: plain("http://x/") for n in ("acme", "landlord", "grid")})
    ticket = {"park": "xinqiao", "building": "B1", "tenant": None}
    assert [r.target for r in recipients_for(cfg, ticket, 1)] == ["landlord"]
    assert K.ESCALATION_TARGETS == ("responsible", "landlord", "grid")
    assert HOURS["general"] == 168.0
