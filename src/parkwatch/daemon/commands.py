"""Operator commands, and calls from any thread onto the pipeline thread.

The pipeline thread owns the alarms and their counters (:mod:`parkwatch.daemon.pipeline`): an
acknowledgement or a reset from the local API, the command center's ack topic or the demo is
queued in its inbox and carried out there, between two batches, like everything else that
changes an alarm.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from parkwatch.alarms.service import AlarmService, Outcome
from parkwatch.daemon.inbox import Inbox
from parkwatch.daemon.live import LiveParts


class Commands:
    """Runs calls and operators' commands on the pipeline thread, for any other thread."""

    def __init__(self, inbox: Inbox, live: LiveParts, ack_topic: str) -> None:
        self.inbox = inbox
        self.live = live
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
        """An operator's ack or reset, from any thread."""
        alarms = self.live.alarms
        fn = alarms.acknowledge if command == "ack" else alarms.reset
        outcome: Outcome = self.call(lambda: fn(alarm_id, by, note, via))
        return outcome

    def acknowledge(self, alarm_id: str, by: str, note: str | None = None) -> bool:
        """Acknowledge an open alarm from any thread; False when it was not acknowledged."""
        return self.command("ack", alarm_id, by, note, "local") is Outcome.DONE

    def mqtt_ack(self, payload: bytes) -> None:
        """An ack from the command center's topic, on the pipeline thread."""
        mqtt_ack(self.live.alarms, self.ack_topic, payload)


def mqtt_ack(alarms: AlarmService, topic: str, payload: bytes) -> None:
    """`{"alarm_id": ..., "by": ..., "note": ...}` on the ack command topic `topic`: carried
    out, or refused (and counted) as a bad command."""
    try:
        msg = json.loads(payload)
        alarm_id, by, note = msg["alarm_id"], msg["by"], msg.get("note")
        if not (isinstance(alarm_id, str) and isinstance(by, str)
                and (note is None or isinstance(note, str))):
            raise TypeError("alarm_id and by must be strings")
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        # RecursionError: JSON nested too deeply ("[[[[..."), which escaped before (found by
        # tests/test_fuzz.py)
        alarms.refused.reject("bad_command", f"ack command on "
                              f"{topic}: {exc!r}: {payload[:200]!r}")
        return
    alarms.acknowledge(alarm_id, by.strip(), note, via="mqtt")
