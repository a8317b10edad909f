"""What the channels that speak HTTP share (the webhook, the chat robots, SMS): the keys of
their targets, how a target becomes a courier's carrier, and one request to a vendor's HTTP
API with its JSON answer, where redirects, error statuses, timeouts and answers that are not
JSON are each a :class:`DeliveryError` with the reason, for the courier to retry."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import Field

from parkwatch.alarms.channels.base import NOBODY, Carrier, CarrierFactory, People
from parkwatch.alarms.senders import DeliveryError
from parkwatch.config.delivery import Backoff, TargetBase

if TYPE_CHECKING:
    from parkwatch.alarms.senders import Sender
    from parkwatch.mqttlink.link import MqttLink

#: more of an answer than any vendor sends; the rest is not read
MAX_ANSWER = 65_536


class HttpTarget(TargetBase):
    """The keys of every target reached by HTTP requests."""

    timeout_s: float = Field(5.0, gt=0, le=120, description="per request")
    retry: Backoff = Field(default_factory=Backoff, description="backoff between attempts")
    expire_after_s: float = Field(86_400.0, gt=0, le=30 * 86_400, description="give up on a "
                                  "delivery this long after the change (logged and counted)")


T = TypeVar("T", bound=HttpTarget)


def carrier_of(sender: Callable[[str, T], Sender]) -> CarrierFactory[T]:
    """A channel's carrier factory for a sender class taking (target name, target config):
    the sender, backing off by the target's `retry`, always ready."""
    def carrier(name: str, target: T, _link: MqttLink, _people: People = NOBODY) -> Carrier:
        return Carrier(sender(name, target), target.retry)
    return carrier


def carrier_for_people(sender: Callable[[str, T, People], Sender]) -> CarrierFactory[T]:
    """:func:`carrier_of` for a channel that reaches people: its sender also takes the people
    the target reaches (subscriber id -> contact) and addresses each row to its subscriber's."""
    def carrier(name: str, target: T, _link: MqttLink, people: People = NOBODY) -> Carrier:
        return Carrier(sender(name, target, people), target.retry)
    return carrier


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect of a POST would be followed as a bodiless GET: treat it as a failure."""

    def redirect_request(self, *_args: object, **_kw: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def post(url: str, body: bytes, timeout: float,
         headers: dict[str, str] | None = None) -> bytes:
    """POST `body` (JSON) to `url`; the start of a 2xx answer."""
    return request("POST", url, body, timeout, {
        "Content-Type": "application/json; charset=utf-8", **(headers or {})})


def request(method: str, url: str, body: bytes | None, timeout: float,
            headers: dict[str, str] | None = None) -> bytes:
    """One `method` request to `url` with `body` and `headers`; the start of a 2xx answer."""
    req = urllib.request.Request(url, data=body, method=method, headers={
        "User-Agent": "parkwatch", **(headers or {})})
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            return bytes(resp.read(MAX_ANSWER))
    except urllib.error.HTTPError as exc:  # any answer but 2xx, redirects included
        raise DeliveryError(f"HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeliveryError(f"{type(reason).__name__}: {reason}") from None


def get_json(url: str, timeout: float) -> dict[str, Any]:
    """GET `url`; the decoded JSON object of the answer, also of an error status when it
    carries one (a vendor's error code says more than the status)."""
    req = urllib.request.Request(url, method="GET", headers={"User-Agent": "parkwatch"})
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            data = bytes(resp.read(MAX_ANSWER))
    except urllib.error.HTTPError as exc:
        with exc:
            data = bytes(exc.read(MAX_ANSWER))
        answer = _json_object(data)
        if answer is None:
            raise DeliveryError(f"HTTP {exc.code}") from None
        return answer
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeliveryError(f"{type(reason).__name__}: {reason}") from None
    answer = _json_object(data)
    if answer is None:
        raise DeliveryError(f"the answer is not a JSON object: {data[:80]!r}")
    return answer


def _json_object(data: bytes) -> dict[str, Any] | None:
    try:
        answer = json.loads(data)
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


def post_json(url: str, body: bytes, timeout: float,
              headers: dict[str, str] | None = None) -> dict[str, Any]:
    """POST `body` (JSON) to `url`; the decoded JSON object of a 2xx answer."""
    data = post(url, body, timeout, headers)
    try:
        answer = json.loads(data)
    except ValueError:
        raise DeliveryError(f"the answer is not JSON: {data[:80]!r}") from None
    if not isinstance(answer, dict):
        raise DeliveryError(f"the answer is not a JSON object: {data[:80]!r}")
    return answer
