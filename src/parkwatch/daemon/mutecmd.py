"""The command center's mute and unmute commands (docs/contract.md, "Mutes"), carried out on
the pipeline thread: checked as every operator command is (signature, operator, age, replay:
:mod:`parkwatch.daemon.cmdauth`), then the mute itself (:func:`parkwatch.alarms.mutes.read_mute`);
kept, and answered.  Every command gets a reply on ``{prefix}/{park}/replies``: done, or
refused with the counted reason, so that the command center shows what the gateway did.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from parkwatch.alarms.mutes import Mute, MuteBook, read_mute
from parkwatch.alarms.service import AlarmService
from parkwatch.commandsig import CommandError
from parkwatch.config.model import ParkConfig
from parkwatch.daemon.cmdauth import CommandGate

log = logging.getLogger("parkwatch.alarms")

REPLY_SCHEMA = "parkwatch.reply/1"


def _rfc3339(ts: float) -> str:
    secs, milli = divmod(round(ts * 1000.0), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{milli:03d}Z"


def mute_command(command: str, payload: bytes, alarms: AlarmService, gate: CommandGate,
                 cfg: ParkConfig, book: MuteBook, now: float) -> dict[str, Any]:
    """Carry out a ``mute`` or ``unmute`` command published on the command topic; the reply
    (``ok`` false with the reason when refused, which is also counted and logged)."""
    reply: dict[str, Any] = {"schema": REPLY_SCHEMA, "command": command, "id": None,
                             "by": None, "nonce": None, "ok": False, "reason": None,
                             "detail": "", "gateway": cfg.gateway.id, "at": _rfc3339(now)}
    try:
        msg = json.loads(payload)
        if not isinstance(msg, dict):
            raise CommandError("bad_command", "the command must be a JSON object")
        _peek(msg, reply)
        ok = gate.admit(cfg, command, msg)
        reply["by"] = ok.by
        if ok.by not in {o.id for o in cfg.alarms.operators}:
            raise CommandError("not_operator", f"{ok.by!r} is not in alarms.operators")
        spec = ok.args.get("mute")
        if command == "mute":
            silence = read_mute(cfg, spec, now)
            reply["id"] = silence.id
            book.prune(now)
            book.put(Mute(silence, ok.by, now, ok.signed))
            reply["detail"] = (f"mute {silence.id} by {ok.by}: {silence.start.isoformat()} to "
                               f"{silence.end.isoformat()}, {silence.reason}")
        else:
            mute_id = spec.get("id") if isinstance(spec, dict) else None
            if not isinstance(mute_id, str) or not mute_id:
                raise CommandError("bad_mute", "unmute names no 'mute.id'")
            reply["id"] = mute_id
            if not book.remove(mute_id):
                raise CommandError("unknown_mute", f"no mute {mute_id!r} in force")
            reply["detail"] = f"mute {mute_id} ended by {ok.by}"
    except (ValueError, RecursionError, OSError) as exc:  # CommandError, bad JSON, disk
        reason = getattr(exc, "reason", "not_saved" if isinstance(exc, OSError) else
                         "bad_command")
        detail = f"the gateway cannot save its mutes: {exc}" if isinstance(exc, OSError) \
            else str(exc)
        reply["reason"], reply["detail"] = reason, detail
        alarms.refused.reject(reason, f"{command} command: {exc}: {payload[:200]!r}")
        return reply
    reply["ok"] = True
    log.warning("%s (via the command center)", reply["detail"])
    return reply


def _peek(msg: dict[str, Any], reply: dict[str, Any]) -> None:
    """What a reply can name of a command before it is admitted (so the command center knows
    which of its commands a refusal answers): the mute's id and the nonce."""
    body: Any = msg
    if isinstance(msg.get("body"), str):
        try:
            body = json.loads(msg["body"])
        except ValueError:
            return
    if not isinstance(body, dict):
        return
    spec = body.get("mute")
    if isinstance(spec, dict) and isinstance(spec.get("id"), str):
        reply["id"] = spec["id"][:64]
    if isinstance(body.get("nonce"), str):
        reply["nonce"] = body["nonce"][:64]
    if isinstance(body.get("by"), str):
        reply["by"] = body["by"][:64]


class MuteCommands:
    """Mute commands from the uplink's topic, run on the pipeline thread, each answered."""

    def __init__(self, book: MuteBook, gate: CommandGate,
                 live: Callable[[], tuple[AlarmService, ParkConfig]],
                 answer: Callable[[dict[str, Any]], None],
                 changed: Callable[[list[dict[str, Any]]], None],
                 clock: Callable[[], float] = time.time) -> None:
        self.book = book
        self.gate = gate
        self.live = live
        self.answer = answer  # publishes a reply
        self.changed = changed  # publishes the retained list of mutes
        self.clock = clock

    def handle(self, command: str, payload: bytes) -> None:
        alarms, cfg = self.live()
        before = len(self.book.mutes), list(self.book.mutes)
        reply = mute_command(command, payload, alarms, self.gate, cfg, self.book, self.clock())
        self.answer(reply)
        if (len(self.book.mutes), list(self.book.mutes)) != before or reply["ok"]:
            self.changed(self.book.listing())
