"""The DingTalk (钉钉) custom group robot: a text message in the group for each alarm change,
@-mentioning people by their phone numbers, signed when the robot's security setting is
"加签" (a secret).

Vendor facts (DingTalk open platform, "自定义机器人安全设置" and "自定义机器人发送群消息",
open.dingtalk.com/document/robots/customize-robot-security-settings):

* the robot's webhook is ``https://oapi.dingtalk.com/robot/send?access_token=…``; with 加签,
  the request adds ``timestamp`` (milliseconds since 1970) and ``sign`` = URL-encoded base64
  of HMAC-SHA256, keyed with the secret, of ``"{timestamp}\\n{secret}"``; the robot refuses a
  timestamp more than an hour from its clock;
* the body is ``{"msgtype": "text", "text": {"content": …}, "at": {"atMobiles": [...],
  "isAtAll": false}}``; a mention shows only when ``@<phone>`` is also in the content;
* the answer is JSON with ``errcode`` 0 on success (HTTP 200 either way), e.g. 310000 for a
  signature or keyword the robot refuses, 130101 when sending too fast;
* a robot takes at most 20 messages a minute.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.parse
from typing import TYPE_CHECKING, Literal

from pydantic import Field, HttpUrl

from parkwatch.alarms.channels.base import NOBODY, Channel, People, mentions, mentions_of
from parkwatch.alarms.channels.httppost import carrier_for_people, post_json
from parkwatch.alarms.channels.robottext import alarm_text, cut, summary_text
from parkwatch.alarms.channels.shaping import Grouped
from parkwatch.alarms.senders import DeliveryError
from parkwatch.config.delivery import Secret

if TYPE_CHECKING:
    from parkwatch.alarms.store import Pending

#: parkwatch's own cap on a message, well inside what a phone shows at once
MAX_BYTES = 4000


class DingTalkTarget(Grouped, Secret):
    """A DingTalk custom group robot; `secret_file` / `secret_env` hold its 加签 secret
    (``SEC…``), without one the robot must trust the gateway by keyword or IP."""

    type: Literal["dingtalk"]
    url: HttpUrl = Field(description="the robot's webhook, "
                         "https://oapi.dingtalk.com/robot/send?access_token=…")
    at_mobiles: list[str] = Field(default_factory=list, description="phone numbers to "
                                  "@-mention in every message (the group's members); a "
                                  "delivery for a contact also mentions the contact's phone")


def signed_url(url: str, secret: str, now_ms: int) -> str:
    """`url` with the 加签 query parameters for the moment `now_ms`."""
    to_sign = f"{now_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode("utf-8"), to_sign, hashlib.sha256).digest()
    sign = urllib.parse.quote_plus(base64.b64encode(digest).decode("ascii"))
    return f"{url}{'&' if '?' in url else '?'}timestamp={now_ms}&sign={sign}"


def body(payload: bytes, at_mobiles: list[str]) -> bytes:
    """The robot's JSON for one event: the text, with the mentioned phones at its end."""
    mentions = " ".join(f"@{m}" for m in at_mobiles)
    room = MAX_BYTES - len(mentions.encode("utf-8")) - 1
    text = cut(alarm_text(payload), room) + (f"\n{mentions}" if mentions else "")
    return json.dumps({"msgtype": "text", "text": {"content": text},
                       "at": {"atMobiles": at_mobiles, "isAtAll": False}},
                      ensure_ascii=False).encode("utf-8")


def summary_body(payloads: list[bytes], at_mobiles: list[str]) -> tuple[bytes, int]:
    """The robot's JSON for several events in one message (:func:`summary_text`), and how
    many of them it lists."""
    mentions = " ".join(f"@{m}" for m in at_mobiles)
    room = MAX_BYTES - len(mentions.encode("utf-8")) - 1
    text, listed = summary_text(payloads, room)
    text += f"\n{mentions}" if mentions else ""
    return json.dumps({"msgtype": "text", "text": {"content": text},
                       "at": {"atMobiles": at_mobiles, "isAtAll": False}},
                      ensure_ascii=False).encode("utf-8"), listed


class DingTalkSender:
    """POSTs each event as a robot message; anything but ``errcode`` 0 is a failure."""

    def __init__(self, name: str, cfg: DingTalkTarget, people: People = NOBODY) -> None:
        self.name = name
        self.people = people
        self.url = str(cfg.url)
        self.timeout = cfg.timeout_s
        self.secret = cfg.secret()
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
        url = (signed_url(self.url, self.secret, int(time.time() * 1000)) if self.secret
               else self.url)
        answer = post_json(url, data, self.timeout)
        code = answer.get("errcode")
        if code != 0:
            raise DeliveryError(f"DingTalk errcode {code}: {answer.get('errmsg')}")


CHANNEL = Channel(DingTalkTarget, carrier_for_people(DingTalkSender), reaches="phone")
