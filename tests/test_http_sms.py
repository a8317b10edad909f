"""The generic HTTP SMS gateway channel (``http_sms``) against local gateways that check every
templated field and the signature recipe byte for byte (tests/chat_robots.py SmsGateway):
what a safety officer reads, split into SMS of at most 70 characters cut after a sentence, the
numbers it goes to, a wrong password refused, a retry that sends only what did not go out,
and the config errors of a template."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from chat_robots import SmsGateway
from parkwatch.alarms.channels.http_sms import HttpSmsSender, HttpSmsTarget
from parkwatch.alarms.channels.robottext import alarm_text, sms_segments
from parkwatch.alarms.senders import DeliveryError
from parkwatch.alarms.store import Pending
from parkwatch.config.contacts import Contact

PASSWORD = "gw-pass-8x"  # a gateway's password: short, chosen by the gateway
ALARM_ID = "01KAM3Z6W3RZC4T0S8P1QJ2B7N"
SIGNATURE = "【新桥园区】"
#: the sentence and line ends an SMS may be cut after
ENDS = ("\n", "。", "；", "！", "？")


def _event(**changes: Any) -> bytes:
    ev = {"schema": "parkwatch.alarm/1", "alarm_id": ALARM_ID, "seq": 1, "event": "raised",
          "park": "xinqiao", "building": "A", "floor": "3F", "zone": None,
          "tenants": ["huaxin", "yongsheng", "ruifeng"], "sensor_id": "A-3F-FB1",
          "sensor_kind": "fire_button", "rule": "button_latch", "severity": "critical",
          "drill": False, "acked_by": None,
          "message": "【火警】A栋 3F 一键报警按钮 A-3F-FB1 被按下，请全楼疏散"}
    ev.update(changes)
    return json.dumps(ev, ensure_ascii=False).encode()


def _row(payload: bytes, subscriber: str = "officers", row_id: int = 1) -> Pending:
    return Pending(id=row_id, alarm_id=ALARM_ID, seq=1, subscriber=subscriber, reason="test",
                   attempts=0, expires_at=0.0, created_at=0.0, next_at=0.0, payload=payload,
                   event="raised")


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "sms.secret"
    path.write_text(PASSWORD + "\n", encoding="utf-8")
    return path


def _md5_target(endpoint: str, secret_file: Path, **cfg: Any) -> HttpSmsTarget:
    return HttpSmsTarget.model_validate({
        "type": "http_sms", "url": endpoint, "account": "parkwatch",
        "secret_file": str(secret_file),
        "body": '{"account": "{account}", "mobile": "{phone}", '
                '"content": "{signature}{text}", "timestamp": "{timestamp}", "sign": "{sign}"}',
        "timestamp_format": "%Y%m%d%H%M%S", "signature": SIGNATURE,
        "sign": {"algorithm": "md5", "over": "{account}{secret}{timestamp}"},
        "success": {"field": "code", "equals": 0},
        "phones": ["13800138000", "+86 139-0013-9000"], **cfg})


def _hmac_target(url: str, secret_file: Path, **cfg: Any) -> HttpSmsTarget:
    return HttpSmsTarget.model_validate({
        "type": "http_sms", "method": "GET", "secret_file": str(secret_file),
        "url": url + "?mobile={phone}&content={signature}{text}&ts={timestamp}&nonce={nonce}",
        "headers": {"X-App-Id": "{account}", "X-Signature": "{sign}"}, "account": "parkwatch",
        "sign": {"algorithm": "hmac-sha256", "over": "{timestamp}\n{nonce}\n{phone}",
                 "encoding": "base64"},
        "success": {"field": "result.status", "equals": "OK"}, "signature": SIGNATURE,
        "phones": ["13800138000"], **cfg})


def _unmarked(content: str) -> str:
    """An SMS's text without the signature and its part number."""
    return re.sub(r"^\(\d+/\d+\)", "", content.removeprefix(SIGNATURE))


def test_a_long_alarm_goes_as_sms_of_70_characters_cut_after_sentences(
        password_file: Path) -> None:
    with SmsGateway(PASSWORD) as gw:
        HttpSmsSender("sms", _md5_target(gw.url, password_file)).send(_row(_event()))
        got = gw.wait_for(lambda got: len(got) == 6)
    assert gw.refused == []
    by_phone: dict[str, list[str]] = {}
    for sms in got:
        by_phone.setdefault(sms["mobile"], []).append(sms["content"])
    assert sorted(by_phone) == ["13800138000", "13900139000"]  # +86 and hyphens dropped
    text = alarm_text(_event())
    for parts in by_phone.values():
        assert [p[len(SIGNATURE):len(SIGNATURE) + 5] for p in parts] == ["(1/3)", "(2/3)",
                                                                         "(3/3)"]
        assert all(len(p) <= 70 for p in parts)
        bodies = [_unmarked(p) for p in parts]
        # together they are the whole text, each cut after a sentence or a line
        assert "".join(bodies).replace("\n", "") == text.replace("\n", "")
        for body in bodies[:-1]:
            at = text.index(body) + len(body)
            assert body.endswith(ENDS) or text[at] == "\n", body
    assert bodies[0].startswith("【火警】A栋 3F 一键报警按钮 A-3F-FB1 被按下")
    assert "涉及租户：huaxin、yongsheng、ruifeng" in "".join(bodies)
    assert bodies[-1].endswith(f"告警编号：{ALARM_ID}")


def test_a_wrong_password_is_refused_by_the_gateway_and_fails_the_delivery(
        tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.secret"
    wrong.write_text("not-the-password", encoding="utf-8")
    with SmsGateway(PASSWORD) as gw:
        with pytest.raises(DeliveryError, match="code=1002"):
            HttpSmsSender("sms", _md5_target(gw.url, wrong)).send(_row(_event()))
        assert gw.accepted == [] and gw.refused == ["sign"]
    with SmsGateway(PASSWORD, shape="hmac") as gw:
        with pytest.raises(DeliveryError, match="HTTP 401"):
            HttpSmsSender("sms", _hmac_target(gw.url, wrong)).send(_row(_event()))
        assert gw.accepted == [] and gw.refused == ["sign"]


def test_an_hmac_signed_get_with_a_short_text_template_is_one_sms(password_file: Path) -> None:
    with SmsGateway(PASSWORD, shape="hmac") as gw:
        target = _hmac_target(gw.url, password_file,
                              text="{message}。{place}")
        HttpSmsSender("sms", target).send(_row(_event(drill=True)))
        (sms,) = gw.wait_for(lambda got: len(got) == 1)
    assert sms == {"mobile": "13800138000", "content": (
        f"{SIGNATURE}【演练】【火警】A栋 3F 一键报警按钮 A-3F-FB1 被按下，请全楼疏散。A 3F")}


def test_a_gbk_form_with_an_upper_case_md5_reaches_an_older_gateway(tmp_path: Path) -> None:
    secret = tmp_path / "gbk.secret"
    secret.write_text("密码pw", encoding="utf-8")  # signed as GBK bytes, as the gateway does
    with SmsGateway("密码pw", shape="gbk", account="园区01") as gw:
        target = HttpSmsTarget.model_validate({
            "type": "http_sms", "url": gw.url, "account": "园区01", "secret_file": str(secret),
            "body": "userid={account}&mobile={phone}&content={signature}{text}"
                    "&timestamp={timestamp}&sign={sign}",
            "body_format": "form", "charset": "gbk", "timestamp_format": "%m%d%H%M%S",
            "sign": {"algorithm": "md5", "over": "{account}{secret}{timestamp}",
                     "encoding": "HEX"},
            "success": {"field": "ret", "equals": 0}, "signature": SIGNATURE,
            "phones": ["13800138000"], "text": "{message}；{tenants}"})
        HttpSmsSender("sms", target).send(_row(_event()))
        (sms,) = gw.wait_for(lambda got: len(got) == 1)
    assert sms["content"] == (f"{SIGNATURE}【火警】A栋 3F 一键报警按钮 A-3F-FB1 被按下，"
                              "请全楼疏散；huaxin、yongsheng、ruifeng")


def test_a_delivery_for_a_contact_goes_to_the_contacts_phone_only(password_file: Path) -> None:
    wang = Contact.model_validate({"id": "wang", "name": "王工", "phone": "+8613700137000",
                                   "channels": ["sms"]})
    with SmsGateway(PASSWORD, shape="hmac") as gw:
        sender = HttpSmsSender("sms", _hmac_target(gw.url, password_file, text="{message}"),
                               {"huaxin-officer": wang})
        sender.send(_row(_event(), subscriber="huaxin-officer", row_id=1))
        sender.send(_row(_event(), subscriber="landlord", row_id=2))
        got = gw.wait_for(lambda got: len(got) == 2)
    assert [s["mobile"] for s in got] == ["13700137000", "13800138000"]


def test_a_retry_sends_only_the_sms_that_did_not_go_out(password_file: Path) -> None:
    with SmsGateway(PASSWORD) as gw:
        sender = HttpSmsSender("sms", _md5_target(gw.url, password_file,
                                                  phones=["13800138000"]))
        parts = sender.segments(_event())
        gw.fail_after = 1  # the first part goes out, the second meets an outage
        with pytest.raises(DeliveryError, match="HTTP 503"):
            sender.send(_row(_event(), row_id=8))
        assert len(gw.accepted) == 1
        sender.send(_row(_event(), row_id=8))  # the courier's retry of the same row
        got = gw.wait_for(lambda got: len(got) == 3)
    # each part once, in order: none sent twice, none lost
    assert [s["content"] for s in got] == [SIGNATURE + p for p in parts]


def test_segments_fit_and_break_after_a_sentence_never_inside_an_id() -> None:
    assert sms_segments("短信。") == ["短信。"]
    text = "。".join(f"第{i}句说明现场情况" for i in range(30)) + "。"
    parts = sms_segments(text, 70, 6)
    assert all(len(p) <= 64 for p in parts) and len(parts) > 3
    assert all(re.sub(r"^\(\d+/\d+\)", "", p).endswith("。") for p in parts)
    assert parts[0].startswith(f"(1/{len(parts)})")
    # no sentence end: after a clause; no clause either: never inside an id
    clauses = sms_segments("，".join(["现场有烟雾"] * 30))
    assert all(p.endswith("，") for p in clauses[:-1])
    ids = sms_segments("火" * 40 + ALARM_ID * 3)
    assert all(len(p) <= 70 for p in ids)
    joined = "".join(re.sub(r"^\(\d+/\d+\)", "", p) for p in ids)
    assert joined == "火" * 40 + ALARM_ID * 3


@pytest.mark.parametrize(("change", "message"), [
    ({"body": '{"mobile": "{phone}", "content": "{txt}"}'},
     r"body: unknown placeholder \{txt\}"),
    ({"body": '{"mobile": {phone}}'}, "body: not JSON once filled in"),
    ({"sign": None}, r"\{sign\} is used but no `sign` recipe is given"),
    ({"sign": {"algorithm": "md5", "over": "{account}{pasword}"}},
     r"unknown placeholder \{pasword\}"),
    ({"phones": ["12345678901"]}, "not a mainland China mobile number"),
    ({"text": "{mesage}"}, r"unknown placeholder \{mesage\}"),
    ({"url": "sms.example.cn/send"}, "is not an http"),
    ({"method": "GET"}, "a GET sends no body"),
])
def test_template_mistakes_are_config_errors(password_file: Path, change: dict[str, Any],
                                             message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _md5_target("http://127.0.0.1:9/sms/send", password_file, **change)
