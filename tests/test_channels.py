"""Each channel's carrier gives its courier what the daemon gave it before the registry: the
sender of its kind, its backoff and its readiness (no broker needed: the carriers only build)."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from parkwatch.alarms.channels import uplink
from parkwatch.alarms.channels.log import LogSender, LogTarget
from parkwatch.alarms.channels.mqtt import MqttSender, MqttTarget
from parkwatch.alarms.channels.registry import CHANNELS
from parkwatch.alarms.channels.webhook import WebhookSender, WebhookTarget
from parkwatch.config.delivery import Backoff


def _link() -> SimpleNamespace:
    return SimpleNamespace(connected=threading.Event())


def test_a_log_target_logs_with_the_default_backoff_and_is_always_ready() -> None:
    target = LogTarget.model_validate({"type": "log"})
    carrier = CHANNELS["log"].carrier("journal", target, _link())
    assert isinstance(carrier.sender, LogSender)
    assert carrier.sender.log.name == "parkwatch.notify.journal"
    assert carrier.backoff == Backoff()
    assert carrier.ready is None


def test_an_mqtt_target_publishes_on_the_uplink_link_and_waits_for_it() -> None:
    target = MqttTarget.model_validate({"type": "mqtt", "topic": "tenants/{subscriber}",
                                        "retry": {"initial_s": 2}})
    link = _link()
    carrier = CHANNELS["mqtt"].carrier("apps", target, link)
    assert isinstance(carrier.sender, MqttSender)
    assert carrier.sender.link is link and carrier.sender.topic == "tenants/{subscriber}"
    assert carrier.backoff is target.retry and carrier.backoff.initial_s == 2
    assert carrier.ready is link.connected


def test_a_webhook_target_posts_to_its_url_with_its_retry_and_is_always_ready() -> None:
    target = WebhookTarget.model_validate({"type": "webhook", "url": "http://127.0.0.1:9/hook",
                                           "timeout_s": 3, "retry": {"max_s": 60}})
    carrier = CHANNELS["webhook"].carrier("hook", target, _link())
    assert isinstance(carrier.sender, WebhookSender)
    assert (carrier.sender.name, carrier.sender.url, carrier.sender.timeout) == (
        "hook", "http://127.0.0.1:9/hook", 3)
    assert carrier.backoff is target.retry and carrier.backoff.max_s == 60
    assert carrier.ready is None


def test_the_command_center_contract_waits_for_its_broker_and_backs_off_briefly() -> None:
    link, topics = _link(), SimpleNamespace(events="p/events")
    carrier = uplink.carrier(link, topics)
    assert isinstance(carrier.sender, uplink.UplinkSender)
    assert carrier.sender.link is link and carrier.sender.topics is topics
    assert carrier.backoff == Backoff(initial_s=1.0, max_s=30.0)
    assert carrier.ready is link.connected


def test_the_channels_that_address_people_give_their_senders_the_targets_people() -> None:
    from parkwatch.config.contacts import Contact

    minimal = {"dingtalk": {"url": "https://oapi.dingtalk.com/robot/send?access_token=t"},
               "wecom": {"url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k"},
               "feishu": {"url": "https://open.feishu.cn/open-apis/bot/v2/hook/h"},
               "aliyun_sms": {"access_key_id": "LTAI", "sign_name": "园区",
                              "template_code": "SMS_1"},
               "http_sms": {"url": "https://sms.example.cn/send?m={phone}&t={text}",
                            "method": "GET"}}
    people = {"officers": Contact.model_validate({"id": "li", "name": "李娜",
                                                  "phone": "13712345678",
                                                  "channels": ["x"]})}
    reaching = {name for name, channel in CHANNELS.items() if channel.reaches is not None}
    assert reaching == set(minimal)  # the webhook, the log and MQTT address nobody
    for name, keys in minimal.items():
        target = CHANNELS[name].target.model_validate({"type": name, **keys})
        carrier = CHANNELS[name].carrier(name, target, _link(), people)
        assert carrier.sender.people is people, name  # type: ignore[attr-defined]
