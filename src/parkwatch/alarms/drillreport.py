"""The drill report: for one declared drill (``alarms.drills[]``), every alarm raised in it and
when each step of the response happened, from the alarm store's own records.

A drill is judged by how fast the park answered the press: when each tenant's people were told,
on each channel, when someone acknowledged, when the button was reset and the alarm closed.
The store already holds every one of those moments (the changes and the outbox's delivery
marks); this module only gathers them, names who each delivery reached (the subscriber, its
party and tenant, the contact the channel addresses) from the park config, and measures each
from the press.  It is pure: the store's reads (:meth:`StoreReader.drill_alarms`) and the config
in, a JSON-ready dict out, which the local API serves as it is and
:mod:`parkwatch.alarms.drillhtml` prints on one page.

Every elapsed time is measured from the **raise**, the gateway's record of the press: the
deliveries, acknowledgement and reset are on the gateway's clock too, so a device clock that is
off does not skew them.  The reading's own time (``observed_at``, the device's when it sends
one) is shown beside it as ``pressed_at``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from parkwatch.alarms.lifecycle import AUTO_CLOSE_BY
from parkwatch.config.delivery import UPLINK, Drill
from parkwatch.config.model import ParkConfig

SCHEMA = "parkwatch.drill-report/1"
#: the order of the parties in a report: the tenants first (a drill is about them), then the
#: landlord's people, facilities, the park's officers, escalation contacts, the command center
PARTIES = ("tenant", "landlord", "facilities", "any", "escalation", "command_center")
#: what the report says when the drill has no alarm (in the config's message language)
NO_ALARMS = {"zh": "本次演练期间未记录到报警（演练范围内无人按下按钮，或记录已过保存期）。",
             "en": "No alarm was recorded during this drill (no button in its scope was "
                   "pressed, or the records are past their retention)."}


def _parse(text: Any) -> float | None:
    """An event's RFC 3339 time as epoch seconds (None when absent)."""
    if not isinstance(text, str):
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _since(at: float | None, origin: float) -> float | None:
    return None if at is None else round(at - origin, 3)


def _offset(drill: Drill | None, now: float) -> timedelta:
    """The UTC offset the report's times are shown in: the one the drill was declared in (the
    park's own), else the gateway's local one."""
    if drill is not None and (off := drill.start.utcoffset()) is not None:
        return off
    return datetime.fromtimestamp(now).astimezone().utcoffset() or timedelta(0)


def _offset_text(off: timedelta) -> str:
    minutes = int(off.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _drill(drill: Drill | None, drill_id: str, now: float) -> dict[str, Any]:
    if drill is None:  # removed from the config since: what the store says is all there is
        return {"id": drill_id, "configured": False}
    scope = {k: v for k, v in drill.scope.model_dump(mode="json").items() if v}
    start, end = drill.start.timestamp(), drill.end.timestamp()
    state = "planned" if now < start else "running" if now < end else "over"
    return {"id": drill.id, "configured": True, "reason": drill.reason,
            "start": drill.start.isoformat(), "end": drill.end.isoformat(),
            "start_at": start, "end_at": end, "state": state, "scope": scope,
            "notify": drill.notify, "escalate": drill.escalate}


class People:
    """Who each subscriber is, from the park config: name, party, tenant, and the contact a
    channel of theirs addresses."""

    def __init__(self, cfg: ParkConfig) -> None:
        a = cfg.alarms
        self.subscribers = {s.id: s for s in a.subscribers}
        self.contacts = {c.id: c for c in a.contacts}
        self.tenants = {t.id: t.name for t in cfg.tenants}
        self.tenant_rank = {t.id: i for i, t in enumerate(cfg.tenants)}
        self.channels = {name: t.type for name, t in a.targets.items()}

    def of(self, subscriber: str, target: str) -> dict[str, Any]:
        """Who a delivery to `subscriber` on `target` reached."""
        channel = "uplink" if target == UPLINK else self.channels.get(target)
        if subscriber == UPLINK:
            return {"party": "command_center", "name": None, "tenant": None,
                    "tenant_name": None, "person": None, "channel": channel}
        s = self.subscribers.get(subscriber)
        if s is None:  # removed from the config since the drill
            return {"party": None, "name": None, "tenant": None, "tenant_name": None,
                    "person": None, "channel": channel}
        contact = self.contacts.get(s.contact) if s.contact is not None else None
        person = contact.name if contact is not None and target in contact.channels else None
        return {"party": s.party, "name": s.name, "tenant": s.tenant,
                "tenant_name": self.tenants.get(s.tenant) if s.tenant else None,
                "person": person, "channel": channel}

    def label(self, subscriber: str) -> str:
        """A subscriber as a reader knows it: its name, else its tenant's, else its id."""
        s = self.subscribers.get(subscriber)
        if s is None:
            return subscriber
        return s.name or (self.tenants.get(s.tenant) if s.tenant else None) or subscriber

    def rank(self, d: dict[str, Any]) -> tuple[int, int, str, str]:
        """A delivery's place in the report: by party, tenant (config order), subscriber."""
        party = PARTIES.index(d["party"]) if d["party"] in PARTIES else len(PARTIES)
        tenant = self.tenant_rank.get(d["tenant"] or "", len(self.tenant_rank))
        return party, tenant, d["subscriber"], d["target"]


def _deliveries(found: dict[str, Any], events: dict[int, str], origin: float,
                people: People) -> list[dict[str, Any]]:
    out = []
    for d in found["deliveries"]:
        delivered = d["done_at"] if d["state"] == "delivered" else None
        out.append({
            "seq": d["seq"], "event": events.get(d["seq"]), "subscriber": d["subscriber"],
            **people.of(d["subscriber"], d["target"]), "target": d["target"],
            "reason": d["reason"], "state": d["state"], "attempts": d["attempts"],
            "created_at": d["created_at"], "done_at": d["done_at"],
            "delivered_at": delivered, "elapsed_s": _since(delivered, origin),
            "last_error": d["last_error"]})
    out.sort(key=lambda d: (d["seq"], people.rank(d)))
    return out


def _alarm(found: dict[str, Any], people: People) -> dict[str, Any]:
    """One alarm of the drill: its press, its changes and deliveries, measured from the raise."""
    latest, details = found["alarm"], found["details"]
    raised = found.get("raised") or latest
    changes = found["changes"]
    events = {c["seq"]: c["event"] for c in changes}
    first: dict[str, float] = {}  # each kind of change's first time (escalations repeat)
    for c in changes:
        first.setdefault(c["event"], c["at"])
    origin = first.get("raised", changes[0]["at"] if changes else 0.0)

    def step(event: str, **more: Any) -> dict[str, Any] | None:
        at = first.get(event)
        return None if at is None else {"at": at, "elapsed_s": _since(at, origin), **more}

    acked_by = latest.get("acked_by")
    return {
        "alarm_id": latest["alarm_id"], "sensor_id": raised.get("sensor_id"),
        "building": raised.get("building"), "floor": raised.get("floor"),
        "zone": raised.get("zone"), "tenants": raised.get("tenants", []),
        "rule": raised.get("rule"), "severity": raised.get("severity"),
        "message": raised.get("message"), "pressed_at": _parse(raised.get("observed_at")),
        "raised_at": origin, "open": latest.get("event") != "closed",
        "acknowledged": step("acknowledged", by=acked_by, note=details.get("ack_note"),
                             auto=acked_by == AUTO_CLOSE_BY),
        "reset": step("cleared", by=details.get("reset_by"), note=details.get("reset_note")),
        "closed": step("closed"),
        "changes": [{"seq": c["seq"], "event": c["event"], "at": c["at"],
                     "elapsed_s": _since(c["at"], origin)} for c in changes],
        "deliveries": _deliveries(found, events, origin, people),
        "suppressions": [{"seq": s["seq"], "subscriber": s["subscriber"],
                          "name": people.label(s["subscriber"]), "cause": s["cause"],
                          "reason": s["reason"], "at": s["at"]}
                         for s in sorted(found["suppressions"],
                                         key=lambda s: (s["seq"], s["subscriber"]))],
    }


def build_report(drill_id: str, cfg: ParkConfig, found: list[dict[str, Any]],
                 now: float) -> dict[str, Any] | None:
    """The report of drill `drill_id` from its alarms as the store reader gives them
    (:meth:`~parkwatch.alarms.views.StoreReader.drill_alarms`); None when the drill is
    neither declared in `cfg` nor named by any alarm in the store."""
    drill = next((d for d in cfg.alarms.drills if d.id == drill_id), None)
    if drill is None and not found:
        return None
    people = People(cfg)
    alarms = [_alarm(f, people) for f in found]
    off = _offset(drill, now)
    language = cfg.alarms.language
    return {
        "schema": SCHEMA, "language": language,
        "park": {"id": cfg.park.id, "name": cfg.park.name}, "gateway": cfg.gateway.id,
        "drill": _drill(drill, drill_id, now), "generated_at": now,
        "utc_offset": _offset_text(off), "utc_offset_s": int(off.total_seconds()),
        "alarms": alarms,
        "note": None if alarms else NO_ALARMS.get(language, NO_ALARMS["zh"]),
    }
