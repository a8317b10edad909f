"""The chat robot channels, DingTalk (钉钉), WeCom (企业微信) and Feishu (飞书), against local
robots that check each vendor's documented signature or key and body (tests/chat_robots.py):
what a safety officer reads in the group, who is @-mentioned, a wrong secret or key refused,
each length limit kept with a long message cut at a sentence, and a fire press reaching the
group through a running daemon."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from chat_robots import AliyunSms, DingTalkRobot, FeishuBot, WeComRobot
from conftest import example_config
from parkwatch.alarms.channels import aliyun_sms, feishu, wecom
from parkwatch.alarms.channels.dingtalk import MAX_BYTES, DingTalkSender, DingTalkTarget
from parkwatch.alarms.channels.robottext import cut
from parkwatch.alarms.senders import DeliveryError
from parkwatch.alarms.store import Pending

SECRET = "SEC" + "0123456789abcdef" * 4


def _event(**changes: Any) -> bytes:
    ev = {"schema": "parkwatch.alarm/1", "alarm_id": "01KAM3Z6W3RZC4T0S8P1QJ2B7N", "seq": 1,
          "event": "raised", "park": "xinqiao", "building": "A", "floor": "3F", "zone": None,
          "tenants": ["huaxin", "yongsheng", "ruifeng"], "sensor_id": "A-3F-FB1",
          "sensor_kind": "fire_button", "rule": "button_latch", "severity": "critical",
          "drill": False, "acked_by": None,
          "message": "【火警】A栋 3F 一键报警按钮 A-3F-FB1 被按下，请全楼疏散"}
    ev.update(changes)
    return json.dumps(ev, ensure_ascii=False).encode()


def _row(payload: bytes) -> Pending:
    return Pending(id=1, alarm_id="01KAM3Z6W3RZC4T0S8P1QJ2B7N", seq=1, subscriber="officers",
                   reason="test", attempts=0, expires_at=0.0, created_at=0.0, next_at=0.0,
                   payload=payload, event="raised")


def _sender(url: str, secret_file: Path, mobiles: list[str]) -> DingTalkSender:
    target = DingTalkTarget.model_validate({"type": "dingtalk", "url": url,
                                            "secret_file": str(secret_file),
                                            "at_mobiles": mobiles})
    return DingTalkSender("ding", target)


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "ding.secret"
    path.write_text(SECRET + "\n", encoding="utf-8")
    return path


def test_a_signed_message_says_what_where_who_what_to_do_and_the_id(secret_file: Path) -> None:
    with DingTalkRobot(SECRET) as robot:
        _sender(robot.url, secret_file, ["13800138000", "13900139000"]).send(_row(_event()))
        (msg,) = robot.wait_for(lambda got: len(got) == 1)
    text = msg["text"]["content"]
    assert text.startswith("【火警】A栋 3F 一键报警按钮 A-3F-FB1 被按下")
    assert "位置：A 3F" in text and "涉及租户：huaxin、yongsheng、ruifeng" in text
    assert "处置：请立即按疏散预案组织人员撤离" in text
    assert "告警编号：01KAM3Z6W3RZC4T0S8P1QJ2B7N" in text
    # a mention shows only with the phone in the text as well
    assert msg["at"] == {"atMobiles": ["13800138000", "13900139000"], "isAtAll": False}
    assert text.endswith("@13800138000 @13900139000")


def test_a_drill_says_so_and_an_ack_names_who(secret_file: Path) -> None:
    with DingTalkRobot(SECRET) as robot:
        sender = _sender(robot.url, secret_file, [])
        sender.send(_row(_event(drill=True)))
        sender.send(_row(_event(event="acknowledged", acked_by="王工", seq=2)))
        drill, acked = robot.wait_for(lambda got: len(got) == 2)
    assert drill["text"]["content"].startswith("【演练】【火警】")
    assert "状态：已确认" in acked["text"]["content"]
    assert "确认人：王工" in acked["text"]["content"]
    assert "处置" not in acked["text"]["content"]


def test_a_wrong_secret_is_refused_by_the_robot_and_is_a_failed_delivery(
        tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.secret"
    wrong.write_text("SEC" + "f" * 64, encoding="utf-8")
    with DingTalkRobot(SECRET) as robot:
        with pytest.raises(DeliveryError, match="errcode 310000"):
            _sender(robot.url, wrong, []).send(_row(_event()))
        assert robot.refused == [(310000, "sign not match")] and robot.accepted == []


def test_a_long_message_is_cut_after_a_sentence_within_the_cap(secret_file: Path) -> None:
    long = "。".join(f"第{i}句说明现场情况" for i in range(400)) + "。"
    with DingTalkRobot(SECRET) as robot:
        _sender(robot.url, secret_file, ["13800138000"]).send(_row(_event(message=long)))
        (msg,) = robot.wait_for(lambda got: len(got) == 1)
    text = msg["text"]["content"]
    assert len(text.encode("utf-8")) <= MAX_BYTES
    assert text.endswith("。…\n@13800138000")


def test_cut_keeps_a_text_that_fits_and_never_splits_a_character() -> None:
    assert cut("短信。", 100) == "短信。"
    out = cut("火" * 100, 31)
    assert len(out.encode("utf-8")) <= 31 and out.endswith("…") and set(out[:-1]) == {"火"}


def test_a_fire_press_reaches_the_group_through_the_daemon(broker: Any, tmp_path: Path,
                                                          serial_devices: Any, device: Any,
                                                          secret_file: Path) -> None:
    from parkwatch.daemon.app import Daemon

    with DingTalkRobot(SECRET) as robot:
        cfg = example_config(broker, tmp_path, {
            ("alarms", "targets", "ding"): {"type": "dingtalk", "url": robot.url,
                                            "secret_file": str(secret_file),
                                            "at_mobiles": ["13800138000"]},
            ("alarms", "subscribers", 1, "target"): "ding"})  # the safety officers
        d = Daemon(cfg)
        d.start()
        try:
            assert d.uplink.link.connected.wait(5)
            for drv in d.drivers:
                if hasattr(drv, "subscribed"):
                    assert drv.subscribed.wait(5)
            device.send("A-3F-FB1", {"event": "press"})
            (msg,) = robot.wait_for(lambda got: len(got) >= 1)
        finally:
            d.stop()
    text = msg["text"]["content"]
    assert "位置：A 3F" in text and "处置：请立即按疏散预案组织人员撤离" in text
    # every tenant of building A must evacuate (厂中厂), building B's is not concerned
    assert "涉及租户：" in text and "huaxin" in text and "jiali" not in text
    assert msg["at"]["atMobiles"] == ["13800138000"]


# --- WeCom -------------------------------------------------------------------------------------


def _wecom(url: str, mobiles: list[str]) -> wecom.WeComSender:
    target = wecom.WeComTarget.model_validate({"type": "wecom", "url": url,
                                               "at_mobiles": mobiles})
    return wecom.WeComSender("wecom", target)


def test_wecom_gets_the_text_and_mentions_and_refuses_a_wrong_key() -> None:
    with WeComRobot("", token="the-robot-key") as robot:
        _wecom(robot.url, ["13800138000"]).send(_row(_event()))
        (msg,) = robot.wait_for(lambda got: len(got) == 1)
        wrong = robot.url.replace("the-robot-key", "a-guessed-key")
        with pytest.raises(DeliveryError, match="errcode 93000"):
            _wecom(wrong, []).send(_row(_event()))
    text = msg["text"]["content"]
    assert "涉及租户：huaxin、yongsheng、ruifeng" in text and "告警编号：" in text
    assert msg["text"]["mentioned_mobile_list"] == ["13800138000"]


def test_wecom_keeps_within_its_2048_bytes() -> None:
    long = "。".join(f"第{i}句说明现场情况" for i in range(400)) + "。"
    with WeComRobot("", token="k") as robot:
        _wecom(robot.url, []).send(_row(_event(message=long)))
        (msg,) = robot.wait_for(lambda got: len(got) == 1)
    content = msg["text"]["content"]
    assert len(content.encode("utf-8")) <= wecom.MAX_BYTES and content.endswith("。…")


def test_the_wecom_key_stays_out_of_the_config_as_printed() -> None:
    target = wecom.WeComTarget.model_validate({"type": "wecom",
                                               "url": "https://qyapi.example/send?key=s3cr3t"})
    assert "s3cr3t" not in repr(target) and "s3cr3t" not in str(target.model_dump())


# --- Feishu ------------------------------------------------------------------------------------


def _feishu(url: str, secret_file: Path | None, users: list[str]) -> feishu.FeishuSender:
    cfg: dict[str, Any] = {"type": "feishu", "url": url, "at_user_ids": users}
    if secret_file is not None:
        cfg["secret_file"] = str(secret_file)
    return feishu.FeishuSender("feishu", feishu.FeishuTarget.model_validate(cfg))


def test_feishu_gets_a_signed_text_with_mentions_and_refuses_a_wrong_secret(
        secret_file: Path, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.secret"
    wrong.write_text("another-long-secret-of-feishu", encoding="utf-8")
    with FeishuBot(SECRET, token="hook-id") as bot:
        _feishu(bot.url, secret_file, ["ou_3f2a"]).send(_row(_event()))
        (msg,) = bot.wait_for(lambda got: len(got) == 1)
        with pytest.raises(DeliveryError, match="code 19021"):
            _feishu(bot.url, wrong, []).send(_row(_event()))
        with pytest.raises(DeliveryError, match="code 19021"):  # unsigned, on a signed bot
            _feishu(bot.url, None, []).send(_row(_event()))
    text = msg["content"]["text"]
    assert text.startswith("【火警】A栋 3F") and "告警编号：" in text
    assert text.endswith('<at user_id="ou_3f2a"></at>')


# --- Alibaba Cloud SMS --------------------------------------------------------------------------


def _sms(url: str, secret_file: Path, **cfg: Any) -> aliyun_sms.AliyunSmsSender:
    target = aliyun_sms.AliyunSmsTarget.model_validate({
        "type": "aliyun_sms", "endpoint": url, "access_key_id": "LTAI-test-key-id",
        "secret_file": str(secret_file), "sign_name": "新桥园区",
        "template_code": "SMS_123456789", "phones": ["13800138000", "13900139000"], **cfg})
    return aliyun_sms.AliyunSmsSender("sms", target)


def test_an_sms_is_signed_as_alibaba_cloud_documents_and_fills_the_template(
        secret_file: Path, tmp_path: Path) -> None:
    with AliyunSms(SECRET) as sms:
        _sms(sms.url, secret_file).send(_row(_event()))
        (got,) = sms.wait_for(lambda got: len(got) == 1)
        wrong = tmp_path / "wrong.secret"
        wrong.write_text("another-access-key-secret", encoding="utf-8")
        with pytest.raises(DeliveryError, match="SignatureDoesNotMatch"):
            _sms(sms.url, wrong).send(_row(_event()))
    assert got["phones"] == ["13800138000", "13900139000"]
    # the shipped template variables: the place, and the message cut to 35 characters
    assert got["params"]["place"] == "A 3F"
    assert len(got["params"]["event"]) <= 35 and got["params"]["event"].startswith("【火警】A栋")


def test_sms_template_variables_come_from_the_events_placeholders(secret_file: Path) -> None:
    with AliyunSms(SECRET) as sms:
        _sms(sms.url, secret_file, template_params={
            "what": "{message}", "who": "{tenants}", "id": "{alarm_id}"},
             max_param_chars=100).send(_row(_event(drill=True)))
        (got,) = sms.wait_for(lambda got: len(got) == 1)
    assert got["params"] == {"what": "【演练】【火警】A栋 3F 一键报警按钮 A-3F-FB1 被按下，"
                                     "请全楼疏散",
                             "who": "huaxin、yongsheng、ruifeng",
                             "id": "01KAM3Z6W3RZC4T0S8P1QJ2B7N"}


def test_an_unknown_placeholder_in_an_sms_template_is_a_config_error() -> None:
    with pytest.raises(ValueError, match=r"unknown placeholder \{floorload\}"):
        aliyun_sms.AliyunSmsTarget.model_validate({
            "type": "aliyun_sms", "access_key_id": "x", "sign_name": "s",
            "template_code": "SMS_1", "phones": ["1"],
            "template_params": {"w": "{floorload}"}})


def test_the_signature_matches_the_documented_example() -> None:
    """Alibaba Cloud's own worked example of the RPC signature (help.aliyun.com, 签名机制):
    these parameters with the secret ``testsecret`` sign to ``OLeaidS1JvxuMvnyHOwuJ+uX5qY=``."""
    params = {"AccessKeyId": "testid", "Action": "DescribeRegions", "Format": "XML",
              "SignatureMethod": "HMAC-SHA1",
              "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
              "SignatureVersion": "1.0", "Timestamp": "2016-02-23T12:46:24Z",
              "Version": "2014-05-26"}
    query = aliyun_sms.signed_query(params, "testsecret")
    assert query.startswith("Signature=" + aliyun_sms.percent("OLeaidS1JvxuMvnyHOwuJ+uX5qY="))
