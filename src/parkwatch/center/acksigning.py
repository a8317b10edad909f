"""The console's acknowledgements, signed with the operator's own key where there is one.

A gateway with ``alarms.require_signed_commands`` carries out only commands signed with an
operator's Ed25519 key (docs/contract.md, "Signed commands").  The center keeps such keys in
``commands.signing_keys_dir``, one PEM file per console user, ``<user>.key`` (``parkwatch
keygen``); the gateway's ``alarms.operators`` lists the same user with the public half.  An
operator with a key file sends signed acknowledgements; one without sends the plain ack,
which such a gateway refuses (counted there as ``unsigned``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from parkwatch.commandsig import load_private_key, sign


class AckSigner:
    def __init__(self, keys_dir: Path | None) -> None:
        self.keys_dir = keys_dir

    def key_file(self, user: str) -> Path | None:
        """The user's key file, when signing is configured and the user has one."""
        if self.keys_dir is None:
            return None
        path = self.keys_dir / f"{user}.key"
        return path if path.exists() else None

    def payload(self, park: str, alarm_id: str, user: str,
                note: str | None) -> tuple[bytes, bool]:
        """The ack to publish, and whether it is signed; ValueError (saying why) when the
        user's key file is there but cannot be used: then nothing must be sent."""
        path = self.key_file(user)
        if path is None:
            doc: dict[str, object] = {"alarm_id": alarm_id, "by": user, "note": note}
            return json.dumps(doc, ensure_ascii=False).encode(), False
        envelope = sign(load_private_key(path), "ack", park, alarm_id, user, note)
        return json.dumps(envelope, ensure_ascii=False).encode(), True

    def scoped(self, command: str, park: str, user: str, note: str | None,
               extra: dict[str, Any]) -> tuple[bytes, bool, str | None]:
        """A command about no one alarm (``mute``, ``unmute``: ``extra`` holds its object):
        the payload, whether it is signed, and its nonce (the reply names it); ValueError as
        :meth:`payload`."""
        path = self.key_file(user)
        if path is None:
            doc: dict[str, Any] = {"by": user, "note": note, **extra}
            return json.dumps(doc, ensure_ascii=False).encode(), False, None
        envelope = sign(load_private_key(path), command, park, "", user, note, extra=extra)
        nonce = json.loads(envelope["body"])["nonce"]
        return json.dumps(envelope, ensure_ascii=False).encode(), True, nonce
