"""The console's mutes on the gateways (docs/contract.md, "Mutes"): a mute or unmute command
sent on the park's command topic (signed with the operator's key where there is one, as the
acknowledgements), recorded with its author; the gateways' replies and their retained lists of
the mutes in force, heard on the center's command connection and kept in the database, so the
console shows what each gateway did with each command.

A mute is checked here as the gateway will check it (the park config's silence model, and fire
only with ``include_fire``), so that an operator learns at once what is wrong; the gateway
stays the authority, and its reply is what the console shows.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import paho.mqtt.client as mqtt
from pydantic import ValidationError

from parkwatch.alarms.ids import new_alarm_id
from parkwatch.center.acksigning import AckSigner
from parkwatch.center.store import CenterStore
from parkwatch.config.delivery import Silence
from parkwatch.mqttlink.link import MqttLink

log = logging.getLogger("parkwatch.center")

MUTE_SCHEMA = "parkwatch.mute/1"


class MuteError(ValueError):
    """A mute the console will not send; ``key`` names the message (i18n), ``detail`` which
    field."""

    def __init__(self, key: str, detail: str = "") -> None:
        super().__init__(f"{key}: {detail}")
        self.key = key
        self.detail = detail


def mute_spec(mute_id: str, start: datetime, end: datetime, scope: dict[str, list[str]],
              subscribers: list[str], include_fire: bool, reason: str) -> dict[str, Any]:
    """The ``mute`` object of a command, checked; MuteError when the gateway would refuse it
    for its form (its own checks of the park's subscribers and places are its own)."""
    spec = {"schema": MUTE_SCHEMA, "id": mute_id, "start": start.isoformat(),
            "end": end.isoformat(), "scope": {k: v for k, v in scope.items() if v},
            "subscribers": subscribers, "include_fire": include_fire, "reason": reason}
    try:
        Silence.model_validate_json(json.dumps({k: v for k, v in spec.items()
                                                if k != "schema"}))
    except ValidationError as exc:
        first = exc.errors()[0]
        raise MuteError("mute_invalid", ".".join(str(p) for p in first["loc"])) from None
    if "fire" in scope.get("kinds", ()) and not include_fire:
        raise MuteError("mute_fire_not_explicit")
    if end.timestamp() <= time.time():
        raise MuteError("mute_ended")
    return spec


def new_mute_id(now: float) -> str:
    """A mute's id: ``m-`` and a ULID, lower case (an id of the park config's form)."""
    return f"m-{new_alarm_id(now).lower()}"


class MuteDesk:
    def __init__(self, prefix: str, store: CenterStore, link: MqttLink, signer: AckSigner,
                 clock: Callable[[], float] = time.time) -> None:
        self.prefix = prefix
        self.store = store
        self.link = link
        self.signer = signer
        self.clock = clock
        self.replies = f"{prefix}/+/replies"
        self.lists = f"{prefix}/+/mutes"
        link.on_connected = self._subscribe
        link.client.message_callback_add(self.replies, self._on_reply)
        link.client.message_callback_add(self.lists, self._on_list)

    def _subscribe(self, link: MqttLink) -> None:
        link.client.subscribe([(self.replies, 1), (self.lists, 1)])

    def _park(self, topic: str) -> str:
        return topic[len(self.prefix) + 1:].split("/", 1)[0]

    def _on_reply(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        doc = _json(msg.payload)
        if doc is None or doc.get("schema") != "parkwatch.reply/1":
            log.warning("center: a reply that is not parkwatch.reply/1 on %s ignored", msg.topic)
            return
        park = self._park(msg.topic)
        try:
            matched = self.store.mute_replied(park, doc, self.clock())
        except Exception:  # the database away: the command shows as sent, not lost
            log.exception("center: the reply of park %s to %s %s not recorded", park,
                          doc.get("command"), doc.get("id"))
            return
        if matched:
            log.info("center: park %s %s %s %s: %s", park, doc.get("command"), doc.get("id"),
                     "done" if doc.get("ok") else f"refused ({doc.get('reason')})",
                     doc.get("detail"))

    def _on_list(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        doc = _json(msg.payload)
        if doc is None or doc.get("schema") != "parkwatch.mutes/1":
            return  # an emptied retained message, or not the contract's
        try:
            self.store.set_gateway_mutes(self._park(msg.topic), doc, self.clock())
        except Exception:
            log.exception("center: the mutes in force of %s not recorded", msg.topic)

    def known(self, park: str) -> bool:
        """Whether `park`'s gateway has reported to this center: a command for any other
        park would go to a topic no gateway listens on (a typo), and wait for ever."""
        return any(g["park"] == park for g in self.store.gateways())

    def send(self, park: str, command: str, spec: dict[str, Any], user: str,
             note: str | None) -> bool:
        """Publish a ``mute`` (``spec``: :func:`mute_spec`) or ``unmute`` (``spec``: its id)
        and record it; whether it was signed.  ValueError when the user's key file cannot be
        used (nothing is sent)."""
        payload, signed, nonce = self.signer.scoped(command, park, user, note, {"mute": spec})
        self.store.record_mute(new_alarm_id(self.clock()), park, str(spec["id"]), command,
                               spec if command == "mute" else None, user, note, signed, nonce,
                               self.clock())
        self.link.publish(f"{self.prefix}/{park}/commands/{command}", payload, qos=1)
        log.info("console: %s sent %s %s to park %s (%s)", user, command, spec["id"], park,
                 "signed" if signed else "plain")
        return signed


def _json(payload: bytes | bytearray) -> dict[str, Any] | None:
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None
