"""The webhook channel: a JSON POST of each event, signed with HMAC-SHA256 of the body when a
secret is set (header ``X-Parkwatch-Signature: sha256=<hex>``).

The body is exactly the contract event, one per POST, so a webhook with a `rate_limit` is paced
(what is over waits for room in the window) but never folded."""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING, Literal

from pydantic import Field, HttpUrl

from parkwatch.alarms.channels.base import Channel
from parkwatch.alarms.channels.httppost import carrier_of, post
from parkwatch.alarms.channels.shaping import Paced
from parkwatch.config.delivery import Secret

if TYPE_CHECKING:
    from parkwatch.alarms.store import Pending

SIGNATURE_HEADER = "X-Parkwatch-Signature"


class WebhookTarget(Paced, Secret):
    """JSON POST of each event; signed with HMAC-SHA256 of the body when a secret is set."""

    type: Literal["webhook"]
    url: HttpUrl = Field(description="where to POST each event (http or https)")


def sign(secret: str, body: bytes) -> str:
    """The signature header value: ``sha256=`` and the hex HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


class WebhookSender:
    """POSTs the event JSON; any answer but 2xx, a timeout or a refused connection is a failure."""

    def __init__(self, name: str, cfg: WebhookTarget) -> None:
        self.name = name
        self.url = str(cfg.url)
        self.timeout = cfg.timeout_s
        self.secret = cfg.secret()

    def send(self, row: Pending) -> None:
        headers = {
            "X-Parkwatch-Subscriber": row.subscriber,
            "X-Parkwatch-Delivery": f"{row.alarm_id}/{row.seq}",
        }
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, row.payload)
        post(self.url, row.payload, self.timeout, headers)


CHANNEL = Channel(WebhookTarget, carrier_of(WebhookSender))
