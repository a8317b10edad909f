"""SMS through any HTTP gateway: the many smaller Chinese SMS services (短信网关) whose APIs
differ only in where the number, the text and a signature go.  The target describes the request
as templates; parkwatch fills them for each SMS.

* ``url``, ``headers`` and ``body`` are templates with placeholders: ``{phone}``, ``{text}`` (one
  SMS), ``{timestamp}`` (``timestamp_format``: Unix seconds, milliseconds, or a strftime
  pattern in China Standard Time such as ``%Y%m%d%H%M%S``), ``{nonce}`` (new for each
  request), ``{account}``, ``{secret}`` (the password or key: ``secret_file`` /
  ``secret_env``), ``{signature}`` (the 【签名】), ``{alarm_id}`` and ``{sign}``;
* ``{sign}`` is computed by the target's ``sign`` recipe: md5, sha1 or sha256 of a template
  (e.g. ``{account}{secret}{timestamp}``, the md5(account+password+timestamp) many gateways
  use), or HMAC-MD5/SHA1/SHA256 of it keyed with the secret, as hex, upper-case hex or base64;
* each value is escaped for where it goes: percent-encoded in the URL, a JSON string's content
  in a JSON body, form-encoded in a form body, as it is in a header and in the sign's template;
  text is UTF-8, or GBK (``charset``) for the older gateways that want it;
* success is an HTTP 2xx answer and, when ``success`` names a field of its JSON, that field
  equal to a value (``{field: code, equals: 0}``; ``0`` and ``"0"`` both match ``0``).

The text is the alarm's (what, where, tenants, what to do, id; or the ``text`` template of the
event's placeholders), split into SMS of at most 70 characters each, the signature included, cut
after a sentence (:func:`parkwatch.alarms.channels.robottext.sms_segments`).  Each SMS goes to
each phone: a delivery for a contact to the contact's phone, any other to the target's
``phones``.  A failed request fails the delivery; its retry sends only what did not go out yet.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator, model_validator

from parkwatch.alarms.channels.base import NOBODY, Channel, People, address
from parkwatch.alarms.channels.httppost import HttpTarget, carrier_for_people, request
from parkwatch.alarms.channels.robottext import (
    SMS_CHARS,
    alarm_text,
    placeholders,
    sms_segments,
    unknown_placeholders,
)
from parkwatch.alarms.senders import DeliveryError
from parkwatch.config.base import Strict
from parkwatch.config.contacts import mobile
from parkwatch.config.delivery import Secret

if TYPE_CHECKING:
    from parkwatch.alarms.store import Pending

#: the placeholders of the request's templates
FIELDS = ("phone", "text", "timestamp", "nonce", "account", "secret", "signature", "alarm_id",
          "sign")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: China Standard Time, for a timestamp written as a date and time
_CST = 8 * 3600
_CONTENT_TYPES = {"json": "application/json", "form": "application/x-www-form-urlencoded",
                  "text": "text/plain"}


def fill(template: str, values: Mapping[str, str], escape: Callable[[str], str]) -> str:
    """`template` with each ``{name}`` replaced by its escaped value (other braces stay)."""
    return _PLACEHOLDER.sub(lambda m: escape(values[m.group(1)]) if m.group(1) in values
                            else m.group(0), template)


def _unknown(template: str, known: tuple[str, ...]) -> list[str]:
    return [n for n in _PLACEHOLDER.findall(template) if n not in known]


def _json_string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)[1:-1]


def _raw(value: str) -> str:
    return value


def _url(value: str, charset: str = "utf-8") -> str:
    return urllib.parse.quote(value, safe="", encoding=charset, errors="replace")


def _form(value: str, charset: str = "utf-8") -> str:
    return urllib.parse.quote_plus(value, encoding=charset, errors="replace")


def _header(value: str) -> str:
    if "\r" in value or "\n" in value:
        raise DeliveryError("a header value would hold a line break")
    return value


def _escape(where: str, charset: str) -> Callable[[str], str]:
    """How a value is written into the URL or a body of `where` format, in `charset`."""
    if where == "url":
        return lambda v: _url(v, charset)
    if where == "form":
        return lambda v: _form(v, charset)
    return _json_string if where == "json" else _raw


class SignRecipe(Strict):
    """How ``{sign}`` is computed."""

    algorithm: Literal["md5", "sha1", "sha256", "hmac-md5", "hmac-sha1", "hmac-sha256"] = Field(
        description="a digest of `over`, or an HMAC of it keyed with the secret")
    over: str = Field(min_length=1, description="template of what is signed, e.g. "
                      "{account}{secret}{timestamp} (values as they are, unescaped)")
    encoding: Literal["hex", "HEX", "base64"] = Field("hex", description="hex (lower case), HEX "
                                                      "(upper case) or base64")

    @field_validator("over")
    @classmethod
    def _known(cls, v: str) -> str:
        unknown = _unknown(v, tuple(f for f in FIELDS if f != "sign"))
        if unknown:
            raise ValueError(f"unknown placeholder {{{unknown[0]}}} (known: "
                             f"{', '.join('{' + f + '}' for f in FIELDS if f != 'sign')})")
        return v

    def sign(self, values: Mapping[str, str], secret: str, charset: str = "utf-8") -> str:
        data = fill(self.over, values, _raw).encode(charset, "replace")
        name = self.algorithm.removeprefix("hmac-")
        digest = (hmac.new(secret.encode("utf-8"), data, name).digest()
                  if self.algorithm.startswith("hmac-") else hashlib.new(name, data).digest())
        if self.encoding == "base64":
            return base64.b64encode(digest).decode("ascii")
        return digest.hex().upper() if self.encoding == "HEX" else digest.hex()


class Success(Strict):
    """What says the gateway took the SMS, besides HTTP 2xx."""

    field: str = Field(min_length=1, description="a field of the JSON answer, dotted for a "
                       "nested one (e.g. code, result.status)")
    equals: str | int | bool = Field(description="its value on success (compared as text too)")


class HttpSmsTarget(HttpTarget, Secret):
    """SMS through a gateway's HTTP API, described by templates; `secret_file` / `secret_env`
    hold its password or key ({secret}, and the key of an HMAC sign)."""

    type: Literal["http_sms"]
    url: str = Field(min_length=1, description="template of the request's URL, e.g. "
                     "https://sms.example.cn/api/send?account={account}&ts={timestamp}")
    method: Literal["GET", "POST"] = Field("POST", description="GET sends no body")
    headers: dict[str, str] = Field(default_factory=dict, description="templates of extra "
                                    "request headers (Content-Type follows body_format unless "
                                    "given here)")
    body: str | None = Field(None, description="template of a POST's body, e.g. "
                             '{"mobile": "{phone}", "content": "{text}", "sign": "{sign}"}')
    body_format: Literal["json", "form", "text"] = Field(
        "json", description="how values are escaped in the body, and its Content-Type")
    charset: Literal["utf-8", "gbk"] = Field("utf-8", description="how text is encoded in the "
                                             "URL, the body and what is signed (many older "
                                             "Chinese gateways want gbk)")
    account: str = Field("", description="the account or app id ({account})")
    sign: SignRecipe | None = Field(None, description="the recipe of {sign}")
    timestamp_format: str = Field("unix", description="{timestamp}: unix (seconds), unix_ms, "
                                  "or a strftime pattern in China Standard Time, e.g. "
                                  "%Y%m%d%H%M%S")
    success: Success | None = Field(None, description="a field of the JSON answer that must "
                                    "equal a value; without it any 2xx answer is success")
    phones: list[str] = Field(default_factory=list, description="mainland mobile numbers the "
                              "SMS go to; a delivery for a contact goes to the contact's "
                              "phone instead (without phones, only to contacts)")
    text: str | None = Field(None, description="template of the SMS text from the alarm's "
                             "placeholders ({message}, {place}, {tenants}, {alarm_id}, ...); "
                             "default: the chat robots' text (what, where, tenants, what to "
                             "do, alarm id)")
    signature: str = Field("", description="the 【签名】 the gateway or the body puts in each "
                           "SMS ({signature}): its characters count against each SMS's 70")
    sms_chars: int = Field(SMS_CHARS, ge=30, le=SMS_CHARS, description="characters of one SMS, "
                           "signature and part number included (70 for Chinese text)")

    @field_validator("phones")
    @classmethod
    def _mobiles(cls, v: list[str]) -> list[str]:
        return [mobile(p) for p in v]

    @field_validator("text")
    @classmethod
    def _text(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                unknown = unknown_placeholders(v)
            except ValueError as exc:
                raise ValueError(f"bad template {v!r}: {exc}") from None
            if unknown:
                raise ValueError(f"unknown placeholder {{{unknown[0]}}}")
        return v

    @model_validator(mode="after")
    def _templates(self) -> HttpSmsTarget:
        for where, template in (("url", self.url), ("body", self.body or ""),
                                *((f"headers.{k}", v) for k, v in self.headers.items())):
            unknown = _unknown(template, FIELDS)
            if unknown:
                raise ValueError(f"{where}: unknown placeholder {{{unknown[0]}}} (known: "
                                 f"{', '.join('{' + f + '}' for f in FIELDS)})")
        if "{sign}" in self.url + (self.body or "") + "".join(self.headers.values()) \
                and self.sign is None:
            raise ValueError("{sign} is used but no `sign` recipe is given")
        sample = dict.fromkeys(FIELDS, "0")
        url = urllib.parse.urlsplit(fill(self.url, sample, _url))
        if url.scheme not in ("http", "https") or not url.netloc:
            raise ValueError(f"url: {self.url!r} is not an http(s) URL")
        if self.method == "GET" and self.body is not None:
            raise ValueError("body: a GET sends no body (use POST, or put the fields in the url)")
        if self.body is not None and self.body_format == "json":
            try:
                json.loads(fill(self.body, dict.fromkeys(FIELDS, 'a "b"\nc'), _json_string))
            except ValueError as exc:
                raise ValueError(f"body: not JSON once filled in ({exc}); put each "
                                 "placeholder inside a JSON string, e.g. \"{text}\"") from None
        if self.timestamp_format not in ("unix", "unix_ms") and "%" not in \
                self.timestamp_format:
            raise ValueError("timestamp_format: unix, unix_ms or a strftime pattern (%Y%m%d…)")
        if len(self.signature) > self.sms_chars - 30:
            raise ValueError("signature: too long for an SMS")
        return self

    def reaches_without_contact(self) -> bool:
        return bool(self.phones)

    def secret_problem(self) -> tuple[str, str] | None:
        """Whether the secret can be read; of any length (the gateway chose the password)."""
        try:
            self.secret()
        except OSError as exc:
            return "secret_file", f"cannot read {self.secret_file}: {exc.strerror}"
        except KeyError:
            return "secret_env", f"environment variable {self.secret_env} is not set"
        return None

    def timestamp(self, now: float) -> str:
        if self.timestamp_format == "unix":
            return str(int(now))
        if self.timestamp_format == "unix_ms":
            return str(int(now * 1000))
        return time.strftime(self.timestamp_format, time.gmtime(now + _CST))


class HttpSmsSender:
    """Sends each event's SMS, each part to each phone, one request each."""

    def __init__(self, name: str, cfg: HttpSmsTarget, people: People = NOBODY) -> None:
        self.name = name
        self.cfg = cfg
        self.people = people
        self.secret = cfg.secret() or ""
        #: the row being sent and which of its (phone, part) went out: a retry sends the rest
        self._progress: tuple[int, set[tuple[str, int]]] = (0, set())

    def phones(self, subscriber: str) -> list[str]:
        """Whom a delivery for `subscriber` goes to: its contact, else the target's phones."""
        person = address(self.people, subscriber, "phone")
        return [person] if person is not None else list(self.cfg.phones)

    def segments(self, payload: bytes) -> list[str]:
        """The SMS of one event: its text in parts of at most `sms_chars`, signature included."""
        cfg = self.cfg
        text = (alarm_text(payload) if cfg.text is None
                else cfg.text.format_map(placeholders(payload)))
        return sms_segments(text, cfg.sms_chars, len(cfg.signature))

    def request(self, phone: str, text: str, alarm_id: str, now: float,
                nonce: str) -> tuple[str, bytes | None, dict[str, str]]:
        """(url, body, headers) of one SMS."""
        cfg = self.cfg
        values = {"phone": phone, "text": text, "timestamp": cfg.timestamp(now), "nonce": nonce,
                  "account": cfg.account, "secret": self.secret, "signature": cfg.signature,
                  "alarm_id": alarm_id}
        if cfg.sign is not None:
            values["sign"] = cfg.sign.sign(values, self.secret, cfg.charset)
        headers = ({"Content-Type": f"{_CONTENT_TYPES[cfg.body_format]}; charset={cfg.charset}"}
                   if cfg.body else {})
        headers.update({k: fill(v, values, _header) for k, v in cfg.headers.items()})
        body = (None if cfg.body is None
                else fill(cfg.body, values, _escape(cfg.body_format, cfg.charset)).encode(
                    cfg.charset, "replace"))
        return fill(cfg.url, values, _escape("url", cfg.charset)), body, headers

    def send(self, row: Pending) -> None:
        phones = self.phones(row.subscriber)
        if not phones:  # a row routed before a reload took the subscriber's contact away
            raise DeliveryError(f"no phone to send to for subscriber {row.subscriber}")
        if self._progress[0] != row.id or row.id < 0:
            self._progress = (row.id, set())
        done = self._progress[1]
        for k, text in enumerate(self.segments(row.payload)):
            for phone in phones:
                if (phone, k) in done:
                    continue
                url, body, headers = self.request(phone, text, row.alarm_id, time.time(),
                                                  secrets.token_hex(8))
                self._check(request(self.cfg.method, url, body, self.cfg.timeout_s, headers))
                done.add((phone, k))

    def _check(self, answer: bytes) -> None:
        success = self.cfg.success
        if success is None:
            return
        try:
            value: object = json.loads(answer)
        except ValueError:
            raise DeliveryError(f"the answer is not JSON: {answer[:80]!r}") from None
        for key in success.field.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        if value != success.equals and str(value) != str(success.equals):
            raise DeliveryError(f"SMS gateway {success.field}={value!r}: {answer[:200]!r}")


CHANNEL = Channel(HttpSmsTarget, carrier_for_people(HttpSmsSender), reaches="phone",
                  personal=True)
