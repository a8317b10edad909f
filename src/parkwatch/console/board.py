"""The operator board as a pure model: what the uplink broker said, nothing drawn, no I/O.

Feed it every message of the command-center contract (docs/contract.md) as
``(topic, payload, retained)``; it keeps

- the open alarms per ``(park, alarm_id)``, from the retained ``alarms/{id}`` states and the
  ``events``: the highest ``seq`` wins (delivery is at least once and the two topics interleave,
  so an older or repeated ``seq`` is ignored), and a ``closed`` event or an empty retained
  state removes the alarm for good (a closed alarm id never opens again);
- each park's gateway status (online, offline, or *stale* when an online gateway has not
  refreshed its status for ``stale_after_s``);
- the fire alarms it has not announced yet (for the bell and the highlight);
- a selection that stays on the same alarm while rows move around it;
- the operator's acknowledgements waiting for the gateway's answer;
- after a reconnect, which alarms the broker still holds (an alarm that closed while the
  console was away sends nothing, see :meth:`Board.begin_resync`).

Malformed payloads are counted by reason and never raise: a console must survive whatever
arrives on a broker it shares with other software.  The app owns time: every call that depends
on it takes ``now`` (epoch seconds), which keeps the model testable without sleeping.
"""

from __future__ import annotations

import json
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any

from parkwatch.alarms.routing import hazard
from parkwatch.console.payloads import Malformed, alarm_payload, parse_time

#: critical first; an unknown severity (a newer contract) sorts after the known ones
SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
#: remembered closed alarm ids, so a late redelivery cannot bring one back (bounded memory)
MAX_CLOSED = 50_000
#: an acknowledgement the gateway has not answered within this is reported as lost or refused
ACK_TIMEOUT_S = 15.0

Key = tuple[str, str]  # (park, alarm_id)


@dataclass
class OpenAlarm:
    """One open alarm as its latest event describes it."""

    park: str
    alarm_id: str
    seq: int
    event: dict[str, Any]
    raised_at: float | None  # gateway time, epoch seconds

    @property
    def key(self) -> Key:
        return (self.park, self.alarm_id)

    @property
    def severity(self) -> str:
        return str(self.event["severity"])

    @property
    def active(self) -> bool:
        return bool(self.event["active"])

    @property
    def acknowledged(self) -> bool:
        return bool(self.event["acknowledged"])

    @property
    def is_fire(self) -> bool:
        """A fire alarm (a fire button's latch), not a fault of a fire button."""
        return hazard(self.event) == "fire"

    def sort_key(self) -> tuple[int, float, str, str]:
        return (SEVERITY_ORDER.get(self.severity, len(SEVERITY_ORDER)),
                self.raised_at if self.raised_at is not None else float("inf"),
                self.park, self.alarm_id)


@dataclass
class GatewayStatus:
    """The last retained status of one park's gateway."""

    park: str
    state: str              # "online", "offline" (or whatever a newer gateway says)
    gateway: str | None
    reason: str | None      # "stopped" on a clean stop; None for the broker's last will
    heard_at: float         # when the gateway last spoke (see Board._gateway), epoch seconds
    status: dict[str, Any] = field(default_factory=dict)

    def view(self, now: float, stale_after_s: float) -> str:
        """'online', 'stale' (online, but silent for longer than stale_after_s) or the
        state as sent ('offline')."""
        if self.state == "online" and now - self.heard_at > stale_after_s:
            return "stale"
        return self.state


@dataclass
class PendingAck:
    """An acknowledgement the operator sent that the gateway has not answered yet."""

    by: str
    sent_at: float


@dataclass
class AckResult:
    """The outcome of the last acknowledgement, for the footer."""

    ok: bool
    text: str


class Board:
    """Open alarms and gateway statuses of every park on one uplink broker."""

    def __init__(self, prefix: str = "parkwatch/v1", stale_after_s: float = 90.0,
                 ack_timeout_s: float = ACK_TIMEOUT_S) -> None:
        self.prefix = prefix.rstrip("/")
        self.stale_after_s = stale_after_s
        self.ack_timeout_s = ack_timeout_s
        self.alarms: dict[Key, OpenAlarm] = {}
        self.gateways: dict[str, GatewayStatus] = {}
        self.closed: OrderedDict[Key, None] = OrderedDict()
        self.malformed: Counter[str] = Counter()
        self.last_malformed: str | None = None
        self.late = 0  # older or repeated seqs ignored (normal with at-least-once delivery)
        self.pending: dict[Key, PendingAck] = {}
        self.last_ack: AckResult | None = None
        self.selected: Key | None = None
        self._position = 0  # the selection's row, kept when its alarm leaves the board
        self._new_fires: list[Key] = []
        self._rows: list[OpenAlarm] | None = None
        self._confirmed: set[Key] | None = None  # during a resync: alarms heard of again

    # --- feeding ---------------------------------------------------------------------------

    def feed(self, topic: str, payload: bytes, retained: bool, now: float) -> bool:
        """Take one message; True when the board changed.  Never raises on bad input."""
        if not topic.startswith(self.prefix + "/"):
            return False
        parts = topic[len(self.prefix) + 1:].split("/")
        try:
            if len(parts) == 2 and parts[1] == "events":
                return self._alarm(parts[0], None, payload)
            if len(parts) == 3 and parts[1] == "alarms":
                return self._alarm(parts[0], parts[2], payload)
            if len(parts) == 2 and parts[1] == "gateway":
                return self._gateway(parts[0], payload, retained, now)
        except Malformed as exc:
            self.malformed[str(exc)] += 1
            self.last_malformed = f"{topic}: {exc}"
            return True  # the footer's count changed
        return False  # another topic under the prefix (e.g. commands/ack): not ours

    def _alarm(self, park: str, topic_id: str | None, payload: bytes) -> bool:
        if topic_id is not None and not payload:  # empty retained state: the alarm closed
            return self._close((park, topic_id), None)
        event = alarm_payload(payload)
        if topic_id is not None and event["alarm_id"] != topic_id:
            raise Malformed("alarm_id differs from the topic's")
        if event.get("park", park) != park:
            raise Malformed("park differs from the topic's")
        key = (park, event["alarm_id"])
        if self._confirmed is not None:
            self._confirmed.add(key)
        current = self.alarms.get(key)
        if key in self.closed or (current is not None and event["seq"] <= current.seq):
            self.late += 1
            return False
        if event["event"] == "closed":
            return self._close(key, event)
        alarm = OpenAlarm(park, event["alarm_id"], event["seq"], event,
                          parse_time(event.get("raised_at")))
        self.alarms[key] = alarm
        if current is None and alarm.is_fire and not alarm.acknowledged:
            self._new_fires.append(key)
        self._resolve_pending(alarm, closed=False)
        self._changed()
        return True

    def _close(self, key: Key, event: dict[str, Any] | None) -> bool:
        self.closed[key] = None
        self.closed.move_to_end(key)
        while len(self.closed) > MAX_CLOSED:
            self.closed.popitem(last=False)
        alarm = self.alarms.pop(key, None)
        if alarm is None:
            return False
        if event is not None:
            alarm.event = event
        self._resolve_pending(alarm, closed=True)
        self._changed()
        return True

    def _gateway(self, park: str, payload: bytes, retained: bool, now: float) -> bool:
        if not payload:  # someone cleared the retained status: nothing known any more
            return self.gateways.pop(park, None) is not None
        try:
            status = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            raise Malformed("not JSON") from None
        if not isinstance(status, dict) or not isinstance(status.get("state"), str):
            raise Malformed("gateway status without a 'state'")
        # A live message is fresh news; a retained one may be old: its own updated_at says
        # when the gateway spoke (never later than now, whatever the gateway's clock says).
        heard = now
        if retained:
            updated = parse_time(status.get("updated_at"))
            if updated is not None:
                heard = min(updated, now)
        gateway, reason = status.get("gateway"), status.get("reason")
        self.gateways[park] = GatewayStatus(
            park, status["state"], gateway if isinstance(gateway, str) else None,
            reason if isinstance(reason, str) else None, heard, status)
        return True

    # --- after a reconnect --------------------------------------------------------------

    def begin_resync(self) -> None:
        """The subscription was (re)made: the broker now sends the retained state of every
        open alarm.  An alarm that closed while the console was disconnected sends nothing
        (its retained state is gone), so remember which alarms are heard of again."""
        self._confirmed = set()

    def end_resync(self) -> bool:
        """Drop the alarms not heard of since begin_resync(); True when any was dropped.

        The app calls it a few seconds after the subscription: an alarm whose retained state
        comes later still is dropped and then shown again when it comes."""
        confirmed, self._confirmed = self._confirmed, None
        if confirmed is None:
            return False
        gone = [k for k in self.alarms if k not in confirmed]
        for key in gone:
            del self.alarms[key]
            self.pending.pop(key, None)
        if gone:
            self._changed()
        return bool(gone)

    # --- what the app asks ----------------------------------------------------------------

    def rows(self) -> list[OpenAlarm]:
        """The open alarms, critical first, then the oldest first."""
        if self._rows is None:
            self._rows = sorted(self.alarms.values(), key=OpenAlarm.sort_key)
        return self._rows

    def gateway_views(self, now: float) -> list[tuple[GatewayStatus, str]]:
        """Every known gateway with its view (online/stale/offline), by park."""
        return [(g, g.view(now, self.stale_after_s))
                for _, g in sorted(self.gateways.items())]

    def take_new_fires(self) -> list[OpenAlarm]:
        """The unacknowledged fire alarms that appeared since the last call (ring once each).

        An unacknowledged fire alarm that is already open when the console starts counts as
        new: it is news to the operator who just sat down."""
        fires = [self.alarms[k] for k in self._new_fires if k in self.alarms]
        self._new_fires.clear()
        return fires

    def tick(self, now: float) -> bool:
        """Give up on acknowledgements the gateway has not answered; True when one expired."""
        expired = [(k, p) for k, p in self.pending.items()
                   if now - p.sent_at > self.ack_timeout_s]
        for key, p in expired:
            del self.pending[key]
            gateway = self.gateways.get(key[0])
            if gateway is not None and gateway.view(now, self.stale_after_s) != "online":
                why = (f"its gateway is {gateway.view(now, self.stale_after_s)}: the broker "
                       "keeps the acknowledgement for it, so it may still apply when the "
                       "gateway is back")
            else:
                why = (f"is '{p.by}' in that gateway's alarms.operators? (refused acks are "
                       "counted as refused_commands in its status)")
            self.last_ack = AckResult(False, f"no answer from park {key[0]} to the "
                                      f"acknowledgement of …{key[1][-6:]} within "
                                      f"{self.ack_timeout_s:.0f} s: {why}")
        return bool(expired)

    # --- selection ------------------------------------------------------------------------

    def selected_alarm(self) -> OpenAlarm | None:
        return self.alarms.get(self.selected) if self.selected is not None else None

    def move(self, delta: int) -> bool:
        """Move the selection by delta rows (clamped); True when it moved."""
        rows = self.rows()
        if not rows:
            return False
        pos = max(0, min(len(rows) - 1, self._position + delta))
        moved = rows[pos].key != self.selected
        self._position, self.selected = pos, rows[pos].key
        return moved

    def _changed(self) -> None:
        """Re-sort, and keep the selection on its alarm, or on the row that took its place."""
        self._rows = None
        rows = self.rows()
        if not rows:
            self.selected, self._position = None, 0
            return
        if self.selected in self.alarms:
            self._position = rows.index(self.alarms[self.selected])
        else:
            self._position = min(self._position, len(rows) - 1)
            self.selected = rows[self._position].key

    # --- acknowledging --------------------------------------------------------------------

    def begin_ack(self, by: str, now: float) -> OpenAlarm | None:
        """The selected alarm to acknowledge as `by`, now marked pending; None (with the
        reason in last_ack) when there is nothing to send."""
        alarm = self.selected_alarm()
        if alarm is None:
            self.last_ack = AckResult(False, "no alarm selected")
            return None
        if alarm.acknowledged:
            self.last_ack = AckResult(True, f"…{alarm.alarm_id[-6:]} is already acknowledged "
                                      f"by {alarm.event.get('acked_by') or '?'}")
            return None
        if alarm.key in self.pending:
            self.last_ack = AckResult(True, f"…{alarm.alarm_id[-6:]}: acknowledgement sent, "
                                      "waiting for the gateway")
            return None
        self.pending[alarm.key] = PendingAck(by, now)
        self.last_ack = AckResult(True, f"acknowledging …{alarm.alarm_id[-6:]} "
                                  f"({_what(alarm)}) as {by}: waiting for the gateway")
        return alarm

    def ack_failed(self, key: Key, why: str) -> None:
        """The acknowledgement could not be sent at all."""
        self.pending.pop(key, None)
        self.last_ack = AckResult(False, f"acknowledgement of …{key[1][-6:]} not sent: {why}")

    def _resolve_pending(self, alarm: OpenAlarm, closed: bool) -> None:
        p = self.pending.get(alarm.key)
        if p is None or not (alarm.acknowledged or closed):
            return
        del self.pending[alarm.key]
        by = alarm.event.get("acked_by")
        what = f"…{alarm.alarm_id[-6:]} ({_what(alarm)})"
        if by is not None and by != p.by:
            self.last_ack = AckResult(True, f"{what} was acknowledged by {by} first")
        else:
            self.last_ack = AckResult(True, f"acknowledged {what} as {p.by}"
                                      + ("; it had cleared, so it is closed" if closed else ""))


def _what(alarm: OpenAlarm) -> str:
    e = alarm.event
    return f"{alarm.severity} {e.get('rule') or '?'} of {e.get('sensor_id') or place(e)}"


def place(event: dict[str, Any]) -> str:
    """'A/3F/east' from building, floor and zone; '-' when none is given."""
    parts = [event.get(k) for k in ("building", "floor", "zone")]
    return "/".join(str(p) for p in parts if p) or "-"
