"""Signed operator commands (contract ``parkwatch.command/1``): the envelope, signing and
checking a signature.

A command that changes an alarm (acknowledge, reset) proves who sent it with an Ed25519
signature (RFC 8032) by the operator's own key.  Ed25519 rather than a shared secret: a gateway
holds only the operators' public keys, so a gateway that is stolen, or whose config leaks,
cannot forge a command to any other gateway; signatures are 64 bytes and quick to check.

The signature covers the exact UTF-8 bytes of the envelope's ``body`` string (a JSON object),
after a fixed prefix that keeps these signatures from meaning anything elsewhere.  Signing the
bytes as sent, rather than a re-serialised form, means an implementation in any language needs
no canonical JSON: it signs the string it publishes.  The contract is in docs/contract.md
("Signed commands").  This module imports nothing of the gateway: the command center and the
console use it as they are.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where keys are used: OpenSSL's binding costs a gateway ~7 MB
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

SCHEMA = "parkwatch.command/1"
#: what is signed: this prefix, then the body's bytes
PREFIX = (SCHEMA + "\n").encode("ascii")
COMMANDS = ("ack", "reset", "silence", "mute", "unmute")
#: the commands about no one alarm (a mute of notifications in a scope, its end): their body
#: has no ``alarm_id`` and carries its own object (``mute``; docs/contract.md, "Mutes")
SCOPED = ("mute", "unmute")
NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


class CommandError(ValueError):
    """A command that cannot be read as a signed command; `reason` is its counted name."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class SignedCommand:
    """A signed command as read from its envelope; the signature is not checked yet."""

    command: str
    park: str
    alarm_id: str
    by: str
    note: str | None
    ts: float  # seconds since 1970, from the body's RFC 3339 `ts`
    nonce: str
    signed: bytes  # what the signature covers
    sig: bytes
    body: Mapping[str, Any] = field(default_factory=dict)  # the whole body, decoded

    def verify(self, key: Ed25519PublicKey) -> bool:
        from cryptography.exceptions import InvalidSignature

        try:
            key.verify(self.sig, self.signed)
        except InvalidSignature:
            return False
        return True


def is_signed(payload: Mapping[str, Any]) -> bool:
    """Whether a decoded command claims to be a signed envelope."""
    return "sig" in payload or payload.get("schema") == SCHEMA


def _rfc3339(ts: float) -> str:
    secs, milli = divmod(round(ts * 1000.0), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{milli:03d}Z"


def _text(body: Mapping[str, Any], key: str, optional: bool = False) -> str | None:
    value = body.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise CommandError("bad_command", f"the body's {key!r} must be a non-empty string")
    return value


def read_envelope(payload: Mapping[str, Any]) -> SignedCommand:
    """The command in a decoded envelope ``{"schema", "body", "sig"}``; CommandError when it is
    not one."""
    if payload.get("schema") != SCHEMA:
        raise CommandError("bad_command", f"'schema' must be {SCHEMA!r}")
    body_text, sig_text = payload.get("body"), payload.get("sig")
    if not isinstance(body_text, str) or not isinstance(sig_text, str):
        raise CommandError("bad_command", "'body' and 'sig' must be strings")
    try:
        sig = base64.b64decode(sig_text, validate=True)
        body = json.loads(body_text)
    except (binascii.Error, ValueError, RecursionError) as exc:
        raise CommandError("bad_command", f"unreadable body or signature: {exc}") from None
    if len(sig) != 64 or not isinstance(body, dict):
        raise CommandError("bad_command", "'sig' must be 64 bytes in base64 and 'body' a JSON "
                           "object")
    command = _text(body, "command")
    if command not in COMMANDS:
        raise CommandError("bad_command", f"unknown command {command!r}")
    ts_text = _text(body, "ts")
    nonce = _text(body, "nonce")
    assert ts_text is not None and nonce is not None
    try:
        ts = _parse_time(ts_text)
    except ValueError:
        raise CommandError("bad_command", f"'ts' is not an RFC 3339 time: {ts_text!r}") from None
    if not NONCE.match(nonce):
        raise CommandError("bad_command", "'nonce' must be 16 to 64 characters of A-Z a-z 0-9 "
                           "_ -")
    return SignedCommand(
        command=command, park=_text(body, "park") or "",
        alarm_id=_text(body, "alarm_id", optional=command in SCOPED) or "",
        by=_text(body, "by") or "", note=_text(body, "note", optional=True), ts=ts, nonce=nonce,
        signed=PREFIX + body_text.encode("utf-8"), sig=sig, body=body)


def _parse_time(text: str) -> float:
    when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if when.tzinfo is None:
        raise ValueError("no offset")
    return when.timestamp()


def sign(key: Ed25519PrivateKey, command: str, park: str, alarm_id: str, by: str,
         note: str | None = None, now: float | None = None,
         extra: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The envelope of a command signed with `key`, ready to publish or POST as JSON.
    ``extra``: more keys of the body (a mute's ``mute`` object); a scoped command
    (:data:`SCOPED`) has no ``alarm_id`` (pass "")."""
    body: dict[str, Any] = {"command": command, "park": park, "by": by,
                            "ts": _rfc3339(time.time() if now is None else now),
                            "nonce": secrets.token_urlsafe(18)}
    if alarm_id or command not in SCOPED:
        body["alarm_id"] = alarm_id
    if note is not None:
        body["note"] = note
    body.update(extra or {})
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    sig = key.sign(PREFIX + text.encode("utf-8"))
    return {"schema": SCHEMA, "body": text, "sig": base64.b64encode(sig).decode("ascii")}


# --- keys ---------------------------------------------------------------------------------

def public_key(text: str) -> Ed25519PublicKey:
    """An operator's public key as written in the config: the 32 raw bytes in base64."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    raw = base64.b64decode(text.strip(), validate=True)
    return Ed25519PublicKey.from_public_bytes(raw)


def public_text(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """An operator's private key from a PEM file (``parkwatch keygen`` or ``openssl genpkey
    -algorithm ed25519``); ValueError saying what is wrong."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read the key file {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
    return key


def write_new_key(path: Path) -> Ed25519PrivateKey:
    """A new private key written to `path` (mode 0600, never over an existing file)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return key
