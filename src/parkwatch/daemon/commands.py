"""Operator commands, and calls from any thread onto the pipeline thread.

The pipeline thread owns the alarms and their counters (:mod:`parkwatch.daemon.pipeline`): an
acknowledgement or a reset from the local API, the command center's ack topic or the demo is
queued in its inbox and carried out there, between two batches, like everything else that
changes an alarm.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from typing import Any

from parkwatch.alarms.service import AlarmService, Outcome
from parkwatch.commandsig import CommandError
from parkwatch.config.model import ParkConfig
from parkwatch.daemon.cmdauth import CommandGate
from parkwatch.daemon.inbox import Inbox
from parkwatch.daemon.live import LiveParts


class Commands:
    """Runs calls and operators' commands on the pipeline thread, for any other thread."""

    def __init__(self, inbox: Inbox, live: LiveParts, ack_topic: str,
                 gate: CommandGate) -> None:
        self.inbox = inbox
        self.live = live
        self.gate = gate  # who sent a command: signatures, replays, staleness
        self.ack_topic = ack_topic  # named in the refusal of a malformed ack

    def call(self, fn: Callable[[], Any], timeout: float = 5.0) -> Any:
        """Run `fn` on the pipeline thread (the owner of alarms and counters); its result."""
        done = threading.Event()
        result: list[Any] = []
        error: list[BaseException] = []

        def run() -> None:
            try:
                result.append(fn())
            except BaseException as exc:
                error.append(exc)
            finally:
                done.set()

        self.inbox.call(run)
        if not done.wait(timeout):
            raise TimeoutError("pipeline did not answer")
        if error:
            raise error[0]
        return result[0]

    def command(self, command: str, alarm_id: str, by: str, note: str | None,
                via: str) -> Outcome:
        """An operator's ack or reset, from any thread, by a caller that vouches for `by`."""
        alarms = self.live.alarms
        fn = alarms.acknowledge if command == "ack" else alarms.reset
        outcome: Outcome = self.call(lambda: fn(alarm_id, by, note, via))
        return outcome

    def request(self, command: str, alarm_id: str, body: Mapping[str, Any],
                via: str) -> Outcome:
        """An ack, reset or silence as sent over the HTTP API (plain or signed), from any thread;
        raises CommandError when the gate refuses it (counted with the operator commands, but
        a malformed one, which the API counts as a bad request)."""
        def run() -> Outcome:
            alarms = self.live.alarms
            try:
                ok = self.gate.admit(self.live.cfg, command, body, alarm_id)
            except CommandError as exc:
                if exc.reason != "bad_command":  # a malformed request: the caller counts it
                    alarms.refused.reject(exc.reason, f"{command} of {alarm_id} via {via}: "
                                          f"{exc}")
                raise
            fn = {"ack": alarms.acknowledge, "reset": alarms.reset,
                  "silence": alarms.silence}[command]
            return fn(ok.alarm_id, ok.by, ok.note, f"{via}, signed" if ok.signed else via)
        outcome: Outcome = self.call(run)
        return outcome

    def acknowledge(self, alarm_id: str, by: str, note: str | None = None) -> bool:
        """Acknowledge an open alarm from any thread; False when it was not acknowledged."""
        return self.command("ack", alarm_id, by, note, "local") is Outcome.DONE

    def mqtt_ack(self, payload: bytes) -> None:
        """An ack from the command center's topic, on the pipeline thread."""
        mqtt_ack(self.live.alarms, self.gate, self.live.cfg, self.ack_topic, payload)


def mqtt_ack(alarms: AlarmService, gate: CommandGate, cfg: ParkConfig, topic: str,
             payload: bytes) -> None:
    """An ack on the command topic `topic` (plain `{"alarm_id", "by", "note"}` or a signed
    envelope): carried out, or refused (and counted) with the reason."""
    try:
        msg = json.loads(payload)
        if not isinstance(msg, dict):
            raise CommandError("bad_command", "the command must be a JSON object")
        ok = gate.admit(cfg, "ack", msg)
    except (ValueError, RecursionError) as exc:
        # RecursionError: JSON nested too deeply ("[[[[..."), which escaped before (found by
        # tests/test_fuzz.py); CommandError is a ValueError
        reason = exc.reason if isinstance(exc, CommandError) else "bad_command"
        alarms.refused.reject(reason, f"ack command on {topic}: {exc}: {payload[:200]!r}")
        return
    alarms.acknowledge(ok.alarm_id, ok.by, ok.note, via="mqtt, signed" if ok.signed else "mqtt")
