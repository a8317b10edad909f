"""Mutes: silences and maintenance windows the command center sets on a gateway at run time
(contract: docs/contract.md, "Mutes"), beside the ``alarms.silences`` of the config.

A mute is a :class:`~parkwatch.config.delivery.Silence` (scope, span, subscribers, reason,
``include_fire``) with who set it.  The gateway keeps its mutes in its state directory
(``mutes.json``, written whole and synced before the command is confirmed), so a restart keeps
them; the routing reads them with the configured silences.  As a configured silence, a mute
holds back notifications, never the command-center contract, and never a fire alarm's unless it
says ``include_fire: true``; a mute whose scope names fire alarms without it is refused, so
that nobody believes a fire is muted when it is not.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from parkwatch.commandsig import CommandError
from parkwatch.config.delivery import Silence
from parkwatch.config.model import ParkConfig

log = logging.getLogger("parkwatch.alarms")

MUTE_SCHEMA = "parkwatch.mute/1"
FILE = "mutes.json"


@dataclass(frozen=True)
class Mute:
    silence: Silence
    by: str
    created_at: float
    signed: bool

    def doc(self) -> dict[str, Any]:
        """As the contract shows it (the retained ``mutes`` list, the local API)."""
        return {**self.silence.model_dump(mode="json"), "by": self.by,
                "created_at": self.created_at, "signed": self.signed}


def read_mute(cfg: ParkConfig, spec: Any, now: float) -> Silence:
    """The mute a command's ``mute`` object describes, checked against this park's config;
    CommandError (``bad_mute``, ``fire_not_explicit``) saying why it cannot be."""
    if not isinstance(spec, dict):
        raise CommandError("bad_mute", "the command's 'mute' must be a JSON object")
    if spec.get("schema") != MUTE_SCHEMA:
        raise CommandError("bad_mute", f"'mute.schema' must be {MUTE_SCHEMA!r}")
    try:
        # JSON mode: the config models are strict, and a time arrives as RFC 3339 text
        silence = Silence.model_validate_json(json.dumps(
            {k: v for k, v in spec.items() if k != "schema"}))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise CommandError("bad_mute", f"mute.{where}: {first['msg']}") from None
    if "fire" in silence.scope.kinds and not silence.include_fire:
        raise CommandError("fire_not_explicit", "the mute names fire alarms without "
                          "include_fire: true; a fire alarm is muted only when that is said")
    known = {s.id for s in cfg.alarms.subscribers}
    unknown = sorted(set(silence.subscribers) - known)
    if unknown:
        raise CommandError("bad_mute", f"unknown subscriber(s) {', '.join(unknown)}")
    if silence.end.timestamp() <= now:
        raise CommandError("bad_mute", "the mute's end has passed")
    if any(s.id == silence.id for s in cfg.alarms.silences):
        raise CommandError("bad_mute", f"{silence.id!r} is a silence of the config")
    return silence


class MuteBook:
    """The gateway's mutes, kept in ``<state_dir>/mutes.json``."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / FILE
        self.mutes: dict[str, Mute] = {}
        #: what the routing reads (a list rebuilt on each change, not per alarm)
        self.silences: list[Silence] = []
        self._load()

    def put(self, mute: Mute) -> None:
        """Add or replace (same id) a mute, written to disk before this returns (OSError:
        it could not be, and nothing changed)."""
        self._use({**self.mutes, mute.silence.id: mute})

    def remove(self, mute_id: str) -> bool:
        if mute_id not in self.mutes:
            return False
        self._use({k: m for k, m in self.mutes.items() if k != mute_id})
        return True

    def prune(self, now: float) -> list[str]:
        """Forget the mutes that have ended; their ids."""
        ended = [k for k, m in self.mutes.items() if m.silence.end.timestamp() <= now]
        if ended:
            self._use({k: m for k, m in self.mutes.items() if k not in ended})
        return ended

    def in_force(self, now: float) -> list[dict[str, Any]]:
        """:meth:`listing`, each with ``active``: whether it mutes now."""
        return [{**m.doc(), "active": m.silence.start.timestamp() <= now
                 < m.silence.end.timestamp()} for m in self._ordered()]

    def _ordered(self, mutes: dict[str, Mute] | None = None) -> list[Mute]:
        return sorted((self.mutes if mutes is None else mutes).values(),
                      key=lambda m: (m.silence.start, m.silence.id))

    def listing(self) -> list[dict[str, Any]]:
        return [m.doc() for m in self._ordered()]

    def _use(self, mutes: dict[str, Mute]) -> None:
        """Write `mutes` to disk, then put them in force (OSError: nothing changed)."""
        tmp = self.path.with_suffix(".tmp")
        data = json.dumps({"schema": "parkwatch.mutes/1",
                           "mutes": [m.doc() for m in self._ordered(mutes)]},
                          ensure_ascii=False, indent=1).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        self.mutes = mutes
        self.silences = [m.silence for m in mutes.values()]

    def _load(self) -> None:
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            for m in doc["mutes"]:
                silence = Silence.model_validate_json(json.dumps(
                    {k: v for k, v in m.items() if k not in ("by", "created_at", "signed")}))
                self.mutes[silence.id] = Mute(silence, m["by"], float(m["created_at"]),
                                              bool(m.get("signed")))
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("the mutes in %s cannot be read (%s): the command center's mutes are "
                      "not in force; set them again", self.path, exc)
            self.mutes = {}
        self.silences = [m.silence for m in self.mutes.values()]
        if self.mutes:
            log.info("mutes from the command center in force: %s", ", ".join(self.mutes))
