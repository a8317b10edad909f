"""SMS through Alibaba Cloud's SMS service (阿里云短信服务, Dysmsapi ``SendSms``): one message to
each phone of the target for each alarm change, filled into the target's approved template.

Vendor facts (Alibaba Cloud documentation: "SendSms" of Dysmsapi 2017-05-25, and "RPC
风格请求体 & 签名机制", help.aliyun.com/document_detail/101343 and /315526):

* a GET to ``https://dysmsapi.aliyuncs.com/`` with the public parameters ``AccessKeyId``,
  ``Action=SendSms``, ``Format=JSON``, ``RegionId``, ``SignatureMethod=HMAC-SHA1``,
  ``SignatureNonce`` (new for each request), ``SignatureVersion=1.0``, ``Timestamp``
  (ISO 8601 in UTC, ``2026-12-05T10:00:00Z``), ``Version=2017-05-25`` and the action's
  ``PhoneNumbers`` (comma-separated), ``SignName``, ``TemplateCode``, ``TemplateParam`` (JSON);
* ``Signature`` = base64 of HMAC-SHA1, keyed with the AccessKey secret followed by ``&``, over
  ``GET&%2F&`` + the percent-encoded canonical query: every parameter but the signature,
  sorted by name, each name and value percent-encoded by RFC 3986 (``%20`` for a space,
  ``~`` left as it is), joined with ``=`` and ``&``;
* the answer is JSON with ``Code`` ``OK`` on success; e.g. ``SignatureDoesNotMatch``,
  ``isv.BUSINESS_LIMIT_CONTROL`` (sending too fast) otherwise;
* a message is the approved template with its variables filled in: what parkwatch sends is the
  variables (``template_params``, each the event's placeholders), each cut to
  ``max_param_chars``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import urllib.parse
from typing import TYPE_CHECKING, Literal

from pydantic import Field, HttpUrl, field_validator

from parkwatch.alarms.channels.base import NOBODY, Channel, People, address
from parkwatch.alarms.channels.httppost import carrier_for_people, get_json
from parkwatch.alarms.channels.robottext import cut_chars, placeholders, unknown_placeholders
from parkwatch.alarms.channels.shaping import Grouped, RateLimit
from parkwatch.alarms.senders import DeliveryError
from parkwatch.config.delivery import Secret

if TYPE_CHECKING:
    from parkwatch.alarms.store import Pending


class AliyunSmsTarget(Grouped, Secret):
    """SMS by Alibaba Cloud; `secret_file` / `secret_env` hold the AccessKey secret."""

    type: Literal["aliyun_sms"]
    rate_limit: list[RateLimit] = Field(
        default_factory=list, description="the target's rate: {messages: 5, per_s: 3600}, or a "
        "list of such windows, each kept (default none: set it to the flow control of the "
        "service's console, and what is over is folded into one SMS)")
    access_key_id: str = Field(min_length=1, description="the AccessKey id (RAM user with "
                               "SMS rights only)")
    sign_name: str = Field(min_length=1, description="the approved signature (签名), e.g. "
                           "新桥园区")
    template_code: str = Field(min_length=1, description="the approved template, SMS_…")
    template_params: dict[str, str] = Field(
        default_factory=lambda: {"place": "{place}", "event": "{message}"},
        description="the template's variables, each filled from the alarm event's "
        "placeholders ({park}, {place}, {message}, {tenants}, {severity}, {event}, "
        "{alarm_id}, ...)")
    max_param_chars: int = Field(35, ge=1, le=500, description="each variable is cut to this "
                                 "many characters (the template type's limit)")
    phones: list[str] = Field(default_factory=list, description="phone numbers to send to; a "
                              "delivery for a contact goes to the contact's phone instead "
                              "(without phones, the target sends only to contacts)")
    region: str = Field("cn-hangzhou", description="RegionId")
    endpoint: HttpUrl = Field(HttpUrl("https://dysmsapi.aliyuncs.com/"),
                              description="the service's endpoint")

    @field_validator("template_params")
    @classmethod
    def _known(cls, v: dict[str, str]) -> dict[str, str]:
        for var, template in v.items():
            try:
                unknown = unknown_placeholders(template)
            except ValueError as exc:
                raise ValueError(f"{var}: bad template {template!r}: {exc}") from None
            if unknown:
                raise ValueError(f"{var}: unknown placeholder {{{unknown[0]}}}")
        return v

    def reaches_without_contact(self) -> bool:
        return bool(self.phones)


def percent(text: str) -> str:
    """RFC 3986 percent-encoding as Alibaba Cloud's signature wants it."""
    return urllib.parse.quote(text, safe="~")


def signed_query(params: dict[str, str], secret: str) -> str:
    """`params` with their ``Signature``, as a query string."""
    canonical = "&".join(f"{percent(k)}={percent(v)}" for k, v in sorted(params.items()))
    to_sign = f"GET&{percent('/')}&{percent(canonical)}"
    digest = hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()
    return f"Signature={percent(base64.b64encode(digest).decode())}&{canonical}"


def summary_placeholders(payloads: list[bytes]) -> dict[str, str]:
    """The placeholders of several events in one SMS: the first event's, its message led by
    how many alarms there are (共N条告警，首条：…), its place the common one (or 多处), its id
    with 等N条."""
    each = [placeholders(p) for p in payloads]
    out = dict(each[0])
    out["message"] = f"共{len(each)}条告警，首条：{out['message']}"
    if len({v["place"] for v in each}) > 1:
        out["place"] = "多处"
    out["alarm_id"] = f"{out['alarm_id']}等{len(each)}条"
    return out


class AliyunSmsSender:
    """Sends each event's SMS; anything but ``Code`` OK is a failure."""

    def __init__(self, name: str, cfg: AliyunSmsTarget, people: People = NOBODY) -> None:
        self.name = name
        self.cfg = cfg
        self.people = people
        self.secret = cfg.secret() or ""

    def phones(self, subscriber: str) -> list[str]:
        """Whom a delivery for `subscriber` goes to: its contact, else the target's phones."""
        person = address(self.people, subscriber, "phone")
        return [person] if person is not None else list(self.cfg.phones)

    def params(self, payload: bytes, now: float, nonce: str,
               phones: list[str] | None = None,
               values: dict[str, str] | None = None) -> dict[str, str]:
        values = values or placeholders(payload)
        fill = {var: cut_chars(template.format_map(values), self.cfg.max_param_chars)
                for var, template in self.cfg.template_params.items()}
        return {
            "AccessKeyId": self.cfg.access_key_id, "Action": "SendSms", "Format": "JSON",
            "RegionId": self.cfg.region, "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": nonce, "SignatureVersion": "1.0",
            "Timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            "Version": "2017-05-25",
            "PhoneNumbers": ",".join(self.cfg.phones if phones is None else phones),
            "SignName": self.cfg.sign_name, "TemplateCode": self.cfg.template_code,
            "TemplateParam": json.dumps(fill, ensure_ascii=False, separators=(",", ":")),
        }

    def send(self, row: Pending) -> None:
        phones = self.phones(row.subscriber)
        if not phones:  # a row routed before a reload took the subscriber's contact away
            raise DeliveryError(f"no phone to send to for subscriber {row.subscriber}")
        self._get(self.params(row.payload, time.time(), secrets.token_hex(16), phones))

    def send_many(self, rows: list[Pending]) -> int:
        """One SMS for several events to everyone they are for: the template filled with the
        first event's values, its message saying how many alarms there are (each variable is
        cut to its limit, so an SMS cannot list them: the chat groups and the app do); all of
        them carried."""
        phones = list(dict.fromkeys(p for r in rows for p in self.phones(r.subscriber)))
        if not phones:
            raise DeliveryError("no phone to send to for these subscribers")
        values = summary_placeholders([r.payload for r in rows])
        self._get(self.params(rows[0].payload, time.time(), secrets.token_hex(16), phones,
                              values))
        return len(rows)

    def _get(self, params: dict[str, str]) -> None:
        query = signed_query(params, self.secret)
        answer = get_json(f"{self.cfg.endpoint}?{query}", self.cfg.timeout_s)
        if answer.get("Code") != "OK":
            raise DeliveryError(f"Aliyun SMS {answer.get('Code')}: {answer.get('Message')}")


CHANNEL = Channel(AliyunSmsTarget, carrier_for_people(AliyunSmsSender), reaches="phone",
                  personal=True)
