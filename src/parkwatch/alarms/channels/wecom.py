"""The WeCom (企业微信) group robot: a text message in the group for each alarm change,
@-mentioning people by their phone numbers.

Vendor facts (WeCom developer documentation, "群机器人配置说明",
developer.work.weixin.qq.com/document/path/91770):

* the robot's webhook is ``https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…``: the key
  in the URL is the robot's only credential (there is no signature), so the URL is a secret;
* the body is ``{"msgtype": "text", "text": {"content": …, "mentioned_mobile_list": [...]}}``;
  the content is at most 2,048 bytes of UTF-8;
* the answer is JSON with ``errcode`` 0 on success (HTTP 200 either way), e.g. 93000 for a key
  that is not valid, 45009 when sending too fast;
* a robot takes at most 20 messages a minute.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Literal

from pydantic import Field, SecretStr

from parkwatch.alarms.channels.base import NOBODY, Channel, People, mentions, mentions_of
from parkwatch.alarms.channels.httppost import carrier_for_people, post_json
from parkwatch.alarms.channels.robottext import alarm_text, cut, summary_text
from parkwatch.alarms.channels.shaping import Grouped
from parkwatch.alarms.senders import DeliveryError

if TYPE_CHECKING:
    from parkwatch.alarms.store import Pending

#: WeCom's limit on a text message's content
MAX_BYTES = 2048


class WeComTarget(Grouped):
    """A WeCom group robot; its webhook URL carries its key, so it is kept out of logs."""

    type: Literal["wecom"]
    url: SecretStr = Field(description="the robot's webhook with its key, "
                           "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=… (a secret: "
                           "anyone with it can post in the group)")
    at_mobiles: list[str] = Field(default_factory=list, description="phone numbers to "
                                  "@-mention in every message (the group's members); a "
                                  "delivery for a contact also mentions the contact's phone")


def body(payload: bytes, at_mobiles: list[str]) -> bytes:
    """The robot's JSON for one event, its content within WeCom's 2,048 bytes."""
    return json.dumps({"msgtype": "text", "text": {
        "content": cut(alarm_text(payload), MAX_BYTES), "mentioned_mobile_list": at_mobiles}},
        ensure_ascii=False).encode("utf-8")


def summary_body(payloads: list[bytes], at_mobiles: list[str]) -> tuple[bytes, int]:
    """The robot's JSON for several events in one message, and how many it lists."""
    text, listed = summary_text(payloads, MAX_BYTES)
    return json.dumps({"msgtype": "text", "text": {
        "content": text, "mentioned_mobile_list": at_mobiles}},
        ensure_ascii=False).encode("utf-8"), listed


class WeComSender:
    """POSTs each event as a robot message; anything but ``errcode`` 0 is a failure."""

    def __init__(self, name: str, cfg: WeComTarget, people: People = NOBODY) -> None:
        self.name = name
        self.people = people
        self.url = cfg.url.get_secret_value()
        self.timeout = cfg.timeout_s
        self.at_mobiles = list(cfg.at_mobiles)

    def send(self, row: Pending) -> None:
        at = mentions(self.at_mobiles, self.people, row.subscriber, "phone")
        self._post(body(row.payload, at))

    def send_many(self, rows: list[Pending]) -> int:
        """One message listing several events (as many as fit), mentioning every contact of
        them; how many it lists."""
        at = mentions_of(self.at_mobiles, self.people, (r.subscriber for r in rows), "phone")
        data, listed = summary_body([r.payload for r in rows], at)
        self._post(data)
        return listed

    def _post(self, data: bytes) -> None:
        answer = post_json(self.url, data, self.timeout)
        code = answer.get("errcode")
        if code != 0:
            raise DeliveryError(f"WeCom errcode {code}: {answer.get('errmsg')}")


CHANNEL = Channel(WeComTarget, carrier_for_people(WeComSender), reaches="phone")
