"""People (`alarms.contacts`): a tenant's safety officer is one entry, reached on every channel
they have.  A fire press through a running daemon reaches the contact on the DingTalk group
(@-mentioned by phone beside the robot's own mentions) and by SMS on their own phone, besides the
subscriber's own target; the store keeps one delivery per channel; an old store is carried over;
a contact's new phone replaces the couriers of its channels at a reload."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from chat_robots import DingTalkRobot, SmsGateway
from conftest import EXAMPLE, example_config
from parkwatch.alarms.records import Delivery, Record
from parkwatch.alarms.store import SCHEMA_VERSION, AlarmStore
from parkwatch.config.contacts import Contact, people_of, subscriber_targets
from parkwatch.config.delivery import Subscriber
from parkwatch.daemon.reload import plan_reload
from parkwatch.park import ParkModel
from parkwatch.schema import load_config

DING_SECRET = "SEC" + "0123456789abcdef" * 4
SMS_PASSWORD = "gw-pass-8x"
WANG = {"id": "wang", "name": "园区安全员 王工", "phone": "+86 137 0013 7000",
        "channels": ["ding", "sms"]}


def _targets(ding_url: str, sms_url: str, secrets: Path) -> dict[tuple[Any, ...], Any]:
    (secrets / "ding").write_text(DING_SECRET, encoding="utf-8")
    (secrets / "sms").write_text(SMS_PASSWORD, encoding="utf-8")
    return {
        ("alarms", "targets", "ding"): {"type": "dingtalk", "url": ding_url,
                                        "secret_file": str(secrets / "ding"),
                                        "at_mobiles": ["13800138000"]},
        ("alarms", "targets", "sms"): {
            "type": "http_sms", "method": "GET", "secret_file": str(secrets / "sms"),
            "url": sms_url + "?mobile={phone}&content={signature}{text}&ts={timestamp}"
                             "&nonce={nonce}",
            "headers": {"X-App-Id": "{account}", "X-Signature": "{sign}"},
            "account": "parkwatch", "signature": "【新桥园区】", "text": "{message}",
            "sign": {"algorithm": "hmac-sha256", "over": "{timestamp}\n{nonce}\n{phone}",
                     "encoding": "base64"},
            "success": {"field": "result.status", "equals": "OK"}},
        ("alarms", "contacts"): [WANG],
        ("alarms", "subscribers", 1, "contact"): "wang",  # the safety officers, on `app` too
    }


def test_a_phone_is_kept_as_its_11_digits_and_a_subscriber_needs_a_way_to_be_told() -> None:
    assert Contact.model_validate(WANG).phone == "13700137000"
    for bad in ("1370013700", "23700137000", "+1 415 555 0100", "137OO137000"):
        with pytest.raises(ValidationError, match="not a mainland China mobile number"):
            Contact.model_validate({**WANG, "phone": bad})
    with pytest.raises(ValidationError, match="a `target`, a `contact`, or both"):
        Subscriber.model_validate({"id": "x", "party": "any"})


def test_a_subscriber_with_a_contact_is_told_on_its_target_and_each_channel_once(
        tmp_path: Path) -> None:
    ov = _targets("http://127.0.0.1:9/r", "http://127.0.0.1:9/s", tmp_path)
    targets = subscriber_targets(load_config(EXAMPLE, ov).alarms)
    assert targets["safety-officers"] == ("app", "ding", "sms")
    cfg = load_config(EXAMPLE, {**ov, ("alarms", "subscribers", 1, "target"): "sms"})
    targets = subscriber_targets(cfg.alarms)
    assert targets["safety-officers"] == ("sms", "ding")  # `sms` once
    assert targets["landlord"] == ("app",)
    assert set(people_of(cfg.alarms, "ding")) == {"safety-officers"}
    assert people_of(cfg.alarms, "ding")["safety-officers"].phone == "13700137000"


def test_a_fire_press_reaches_the_contact_on_each_channel_through_the_daemon(
        broker: Any, tmp_path: Path, serial_devices: Any, device: Any) -> None:
    from parkwatch.daemon.app import Daemon

    with DingTalkRobot(DING_SECRET) as robot, SmsGateway(SMS_PASSWORD, shape="hmac") as gw:
        cfg = example_config(broker, tmp_path, _targets(robot.url, gw.url, tmp_path))
        d = Daemon(cfg)
        d.start()
        try:
            assert d.uplink.link.connected.wait(5)
            for drv in d.drivers:
                if hasattr(drv, "subscribed"):
                    assert drv.subscribed.wait(5)
            device.send("A-3F-FB1", {"event": "press"})
            (msg,) = robot.wait_for(lambda got: len(got) >= 1)
            (sms,) = gw.wait_for(lambda got: len(got) >= 1)
        finally:
            d.stop()
    # the group message @-mentions the robot's own member and the contact
    assert msg["at"]["atMobiles"] == ["13800138000", "13700137000"]
    assert msg["text"]["content"].endswith("@13800138000 @13700137000")
    assert "位置：A 3F" in msg["text"]["content"]
    # the SMS goes to the contact's phone, and only there
    assert sms["mobile"] == "13700137000"
    assert sms["content"] == ("【新桥园区】【火警】A栋 三层 一键报警按钮（三层楼梯口按钮）被按下，"
                              "请立即核实并组织疏散！")
    db = sqlite3.connect(cfg.gateway.state_dir / "alarms.db")
    try:
        rows = db.execute("SELECT target FROM outbox WHERE subscriber='safety-officers' "
                          "AND seq=1").fetchall()
    finally:
        db.close()
    assert sorted(r[0] for r in rows) == ["app", "ding", "sms"]


_V1_OUTBOX = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('schema', '1');
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY, alarm_id TEXT NOT NULL, seq INTEGER NOT NULL,
    subscriber TEXT NOT NULL, target TEXT NOT NULL, reason TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL, next_at REAL NOT NULL, expires_at REAL NOT NULL,
    done_at REAL, last_error TEXT, UNIQUE (alarm_id, seq, subscriber));
INSERT INTO outbox (id, alarm_id, seq, subscriber, target, reason, created_at, next_at,
                    expires_at) VALUES (41, 'A1', 1, 'officers', 'app', 'filter', 1, 1, 9e9);
"""


def test_a_store_of_schema_1_keeps_its_waiting_rows_and_takes_a_row_per_channel(
        tmp_path: Path) -> None:
    path = tmp_path / "alarms.db"
    db = sqlite3.connect(path)
    db.executescript(_V1_OUTBOX)
    db.close()
    store = AlarmStore(path)
    try:
        store.commit([Record(
            alarm_id="A2", source="A-3F-FB1", rule="button_latch", seq=1, event="raised",
            active=True, acknowledged=False, closed=False, next_due=None, at=2.0, state={},
            payload=b"{}", deliveries=[Delivery("officers", t, "filter", 9e9)
                                       for t in ("app", "ding", "sms")], suppressions=[])])
        schema = store.db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()[0]
        rows = store.db.execute("SELECT id, alarm_id, target, state FROM outbox "
                                "ORDER BY id").fetchall()
    finally:
        store.close()
    assert int(schema) == SCHEMA_VERSION == 2
    assert rows[0] == (41, "A1", "app", "pending")  # carried over with its id
    assert [(a, t) for _, a, t, _ in rows[1:]] == [("A2", "app"), ("A2", "ding"), ("A2", "sms")]


def test_a_contacts_new_phone_replaces_the_couriers_of_its_channels(tmp_path: Path) -> None:
    ov = _targets("http://127.0.0.1:9/r", "http://127.0.0.1:9/s", tmp_path)
    old = load_config(EXAMPLE, ov)
    new = load_config(EXAMPLE, {**ov, ("alarms", "contacts"): [{**WANG,
                                                               "phone": "13900139000"}]})
    plan = plan_reload(old, ParkModel(old), new, ParkModel(new))
    assert sorted(plan.replace_targets) == ["ding", "sms"]
    assert "app" in plan.keep_targets


def test_wecom_feishu_and_aliyun_address_the_contact_of_the_subscriber(tmp_path: Path) -> None:
    from chat_robots import AliyunSms, FeishuBot, WeComRobot
    from parkwatch.alarms.channels import aliyun_sms, feishu, wecom
    from parkwatch.alarms.store import Pending

    li = Contact.model_validate({"id": "li", "name": "李娜", "phone": "13600136000",
                                 "feishu_user_id": "ou_li", "channels": ["x"]})
    people = {"huaxin-officer": li}
    secret = tmp_path / "secret"
    secret.write_text(DING_SECRET, encoding="utf-8")

    def row(subscriber: str) -> Pending:
        return Pending(1, "A1", 1, subscriber, "test", 0, 9e9, 0.0, 0.0,
                       b'{"alarm_id": "A1", "message": "\\u706b\\u8b66", "event": "raised"}',
                       "raised")

    with WeComRobot("", token="k") as robot:
        sender = wecom.WeComSender("w", wecom.WeComTarget.model_validate(
            {"type": "wecom", "url": robot.url, "at_mobiles": ["13800138000"]}), people)
        sender.send(row("huaxin-officer"))
        sender.send(row("landlord"))
        mine, other = robot.wait_for(lambda got: len(got) == 2)
    assert mine["text"]["mentioned_mobile_list"] == ["13800138000", "13600136000"]
    assert other["text"]["mentioned_mobile_list"] == ["13800138000"]
    with FeishuBot(DING_SECRET, token="h") as bot:
        feishu.FeishuSender("f", feishu.FeishuTarget.model_validate(
            {"type": "feishu", "url": bot.url, "secret_file": str(secret)}),
            people).send(row("huaxin-officer"))
        (msg,) = bot.wait_for(lambda got: len(got) == 1)
    assert msg["content"]["text"].endswith('<at user_id="ou_li"></at>')
    with AliyunSms(DING_SECRET) as sms:
        aliyun_sms.AliyunSmsSender("s", aliyun_sms.AliyunSmsTarget.model_validate(
            {"type": "aliyun_sms", "endpoint": sms.url, "access_key_id": "LTAI-test-key-id",
             "secret_file": str(secret), "sign_name": "新桥园区",
             "template_code": "SMS_123456789", "phones": ["13800138000"]}),
            people).send(row("huaxin-officer"))
        (got,) = sms.wait_for(lambda got: len(got) == 1)
    assert got["phones"] == ["13600136000"]  # the contact's phone, not the target's
