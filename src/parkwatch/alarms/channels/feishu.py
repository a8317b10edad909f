"""The Feishu (飞书) custom group bot: a text message in the group for each alarm change,
@-mentioning people by their Feishu user ids, signed when the bot's security setting is
"签名校验" (a secret).

Vendor facts (Feishu open platform, "自定义机器人使用指南",
open.feishu.cn/document/client-docs/bot-v3/add-custom-bot):

* the bot's webhook is ``https://open.feishu.cn/open-apis/bot/v2/hook/…``;
* with 签名校验 the body carries ``timestamp`` (seconds since 1970, as a string) and ``sign``
  = base64 of HMAC-SHA256 keyed with ``"{timestamp}\\n{secret}"`` over an empty message; the
  bot refuses a timestamp more than an hour from its clock;
* the body is ``{"msg_type": "text", "content": {"text": …}}``, a mention is
  ``<at user_id="ou_…"></at>`` in the text (a custom bot cannot mention by phone number);
  the request body is at most 20 KB;
* the answer is JSON with ``code`` 0 on success, e.g. 19021 for a signature it refuses;
* a bot takes at most 100 messages a minute and 5 a second.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import TYPE_CHECKING, Literal

from pydantic import Field, HttpUrl

from parkwatch.alarms.channels.base import NOBODY, Channel, People, mentions, mentions_of
from parkwatch.alarms.channels.httppost import carrier_for_people, post_json
from parkwatch.alarms.channels.robottext import alarm_text, cut, summary_text
from parkwatch.alarms.channels.shaping import Grouped, RateLimit
from parkwatch.alarms.senders import DeliveryError
from parkwatch.config.delivery import Secret

if TYPE_CHECKING:
    from parkwatch.alarms.store import Pending

#: parkwatch's own cap on a message's text, well inside Feishu's 20 KB request body
MAX_BYTES = 4000


class FeishuTarget(Grouped, Secret):
    """A Feishu custom group bot; `secret_file` / `secret_env` hold its 签名校验 secret."""

    rate_limit: list[RateLimit] = Field(
        default_factory=lambda: [RateLimit(messages=5, per_s=1.0),
                                 RateLimit(messages=100, per_s=60.0)],
        description="the bot's rate: {messages: 100, per_s: 60}, or a list of such windows, "
        "each kept (default: Feishu's 5 a second and 100 a minute; [] for none)")

    type: Literal["feishu"]
    url: HttpUrl = Field(description="the bot's webhook, "
                         "https://open.feishu.cn/open-apis/bot/v2/hook/…")
    at_user_ids: list[str] = Field(default_factory=list, description="Feishu user ids "
                                   "(open_id ou_…, or user_id) to @-mention in every message; a "
                                   "delivery for a contact also mentions its feishu_user_id")


def sign(secret: str, timestamp: str) -> str:
    """The body's ``sign`` for `timestamp` (seconds, as sent)."""
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode("ascii")


def body(payload: bytes, at_user_ids: list[str], secret: str | None, now: float) -> bytes:
    """The bot's JSON for one event, signed when a secret is set."""
    mentions = "".join(f'<at user_id="{u}"></at>' for u in at_user_ids)
    room = MAX_BYTES - len(mentions.encode("utf-8")) - 1
    text = cut(alarm_text(payload), room) + (f"\n{mentions}" if mentions else "")
    out: dict[str, object] = {"msg_type": "text", "content": {"text": text}}
    if secret:
        ts = str(int(now))
        out = {"timestamp": ts, "sign": sign(secret, ts), **out}
    return json.dumps(out, ensure_ascii=False).encode("utf-8")


def summary_body(payloads: list[bytes], at_user_ids: list[str], secret: str | None,
                 now: float) -> tuple[bytes, int]:
    """The bot's JSON for several events in one message, and how many it lists."""
    mentions = "".join(f'<at user_id="{u}"></at>' for u in at_user_ids)
    text, listed = summary_text(payloads, MAX_BYTES - len(mentions.encode("utf-8")) - 1)
    text += f"\n{mentions}" if mentions else ""
    out: dict[str, object] = {"msg_type": "text", "content": {"text": text}}
    if secret:
        ts = str(int(now))
        out = {"timestamp": ts, "sign": sign(secret, ts), **out}
    return json.dumps(out, ensure_ascii=False).encode("utf-8"), listed


class FeishuSender:
    """POSTs each event as a bot message; anything but ``code`` 0 is a failure."""

    def __init__(self, name: str, cfg: FeishuTarget, people: People = NOBODY) -> None:
        self.name = name
        self.people = people
        self.url = str(cfg.url)
        self.timeout = cfg.timeout_s
        self.secret = cfg.secret()
        self.at_user_ids = list(cfg.at_user_ids)

    def send(self, row: Pending) -> None:
        users = mentions(self.at_user_ids, self.people, row.subscriber, "feishu_user_id")
        self._post(body(row.payload, users, self.secret, time.time()))

    def send_many(self, rows: list[Pending]) -> int:
        """One message listing several events (as many as fit), mentioning every contact of
        them; how many it lists."""
        users = mentions_of(self.at_user_ids, self.people, (r.subscriber for r in rows),
                            "feishu_user_id")
        data, listed = summary_body([r.payload for r in rows], users, self.secret, time.time())
        self._post(data)
        return listed

    def _post(self, data: bytes) -> None:
        answer = post_json(self.url, data, self.timeout)
        code = answer.get("code", answer.get("StatusCode"))
        if code != 0:
            raise DeliveryError(f"Feishu code {code}: {answer.get('msg')}")


CHANNEL = Channel(FeishuTarget, carrier_for_people(FeishuSender),
                  reaches="feishu_user_id")
