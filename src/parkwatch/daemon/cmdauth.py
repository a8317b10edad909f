"""Who sent an operator's command: the gateway's checks of a signed command (contract
``parkwatch.command/1``, :mod:`parkwatch.commandsig`) and of the plain form it still accepts
when ``alarms.require_signed_commands`` is off.

A signed command is carried out only when it is signed by the key of the operator it names,
for this park, this command and this alarm, within ``alarms.command_max_age_s`` of the
gateway's clock, and its nonce has not been seen before.  Nonces are kept in the state
directory (appended and synced before the command runs), so a command replayed after a restart
is refused too.  The operator recorded (``acked_by``) is the verified signer.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from parkwatch.commandsig import (
    SCOPED,
    CommandError,
    SignedCommand,
    is_signed,
    public_key,
    read_envelope,
)
from parkwatch.config.model import ParkConfig

if TYPE_CHECKING:  # imported only once an operator has a key (see parkwatch.commandsig)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

log = logging.getLogger("parkwatch.alarms")

SEEN_FILE = "commands.seen"


@dataclass(frozen=True)
class Admitted:
    """A command the gateway may carry out, and who it is from."""

    alarm_id: str
    by: str
    note: str | None
    signed: bool
    #: the command's own fields (a mute's ``mute`` object): the signed body, or the plain
    #: command itself
    args: Mapping[str, Any] = field(default_factory=dict)


class CommandGate:
    """Admits or refuses operators' commands (raises :class:`CommandError` with the reason)."""

    def __init__(self, state_dir: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = state_dir / SEEN_FILE
        self.clock = clock
        #: (signer, nonce) -> the command's time, for commands still young enough to replay
        self._seen: dict[tuple[str, str], float] = {}
        self._keys: tuple[object, dict[str, Ed25519PublicKey | None]] = (None, {})
        self._load()

    def admit(self, cfg: ParkConfig, command: str, payload: Mapping[str, Any],
              alarm_id: str | None = None) -> Admitted:
        """The command `payload` (decoded JSON) as `command` of `alarm_id` (None: the one the
        payload names)."""
        if is_signed(payload):
            return self._signed(cfg, command, read_envelope(payload), alarm_id)
        if cfg.alarms.require_signed_commands:
            raise CommandError("unsigned", "alarms.require_signed_commands is on and the "
                               "command carries no signature")
        target = payload.get("alarm_id") if alarm_id is None else alarm_id
        by, note = payload.get("by"), payload.get("note")
        if command in SCOPED:
            target = ""  # about no one alarm
        elif not isinstance(target, str) or not target:
            raise CommandError("bad_command", "'alarm_id' must be a non-empty string")
        if not isinstance(by, str) or not by.strip():
            raise CommandError("bad_command", "'by' (the operator's name) is required")
        if note is not None and not isinstance(note, str):
            raise CommandError("bad_command", "'note' must be a string")
        return Admitted(str(target), by.strip(), note, signed=False, args=payload)

    def _signed(self, cfg: ParkConfig, command: str, cmd: SignedCommand,
                alarm_id: str | None) -> Admitted:
        who = f"{cmd.command} of {cmd.alarm_id} signed as {cmd.by!r}"
        if cmd.command != command:
            raise CommandError("wrong_command", f"{who} was sent as a {command}")
        if alarm_id is not None and cmd.alarm_id != alarm_id:
            raise CommandError("wrong_command", f"{who} was sent for alarm {alarm_id}")
        if cmd.park != cfg.park.id:
            raise CommandError("wrong_park", f"{who} is for park {cmd.park!r}, not "
                               f"{cfg.park.id!r}")
        keys = self._operator_keys(cfg)
        if cmd.by not in keys:
            raise CommandError("not_operator", f"{who}: not in alarms.operators")
        key = keys[cmd.by]
        if key is None:
            raise CommandError("no_key", f"{who}: the operator has no public_key in "
                               "alarms.operators")
        if not cmd.verify(key):
            raise CommandError("bad_signature", f"{who}: the signature does not match the "
                               "operator's key (forged or altered)")
        now = self.clock()
        limit = cfg.alarms.command_max_age_s
        if abs(now - cmd.ts) > limit:
            raise CommandError("stale", f"{who}: signed {now - cmd.ts:+.0f} s from the "
                               f"gateway's clock, beyond alarms.command_max_age_s ({limit:g} s)")
        self._prune(now - 2 * limit)
        if (cmd.by, cmd.nonce) in self._seen:
            raise CommandError("replayed", f"{who}: this very command (nonce {cmd.nonce}) was "
                               "received before")
        self._remember(cmd.by, cmd.nonce, cmd.ts)
        return Admitted(cmd.alarm_id, cmd.by, cmd.note, signed=True, args=cmd.body)

    def _operator_keys(self, cfg: ParkConfig) -> dict[str, Ed25519PublicKey | None]:
        """Operator id -> public key (None without one), for the running config."""
        source, keys = self._keys
        if source is not cfg.alarms:
            keys = {o.id: public_key(o.public_key) if o.public_key else None
                    for o in cfg.alarms.operators}
            self._keys = (cfg.alarms, keys)
        return keys

    # --- the nonces, kept on disk -----------------------------------------------------------

    def _load(self) -> None:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return
        except OSError as exc:
            log.error("cannot read the seen commands %s (%s): replays of commands signed "
                      "before this start are refused only by their age", self.path, exc)
            return
        for line in lines:
            parts = line.split(" ")
            if len(parts) == 3:
                try:
                    self._seen[(parts[1], parts[2])] = float(parts[0])
                except ValueError:
                    continue

    def _remember(self, by: str, nonce: str, ts: float) -> None:
        self._seen[(by, nonce)] = ts
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{ts:.3f} {by} {nonce}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def _prune(self, before: float) -> None:
        """Forget nonces of commands too old to be accepted anyway; the file is rewritten when
        most of it is such."""
        old = [k for k, ts in self._seen.items() if ts < before]
        if not old:
            return
        for k in old:
            del self._seen[k]
        if len(old) < 64 and len(self._seen) > len(old):
            return
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.writelines(f"{ts:.3f} {by} {nonce}\n" for (by, nonce), ts in self._seen.items())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
