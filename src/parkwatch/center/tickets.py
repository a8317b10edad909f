"""Hazard tickets (隐患整改): the life of a ticket and who may do what to it.

A hazard is found (by a sensor's alarm, or by a grid worker's inspection), someone is made
responsible for it, they rectify it, an inspector checks the work, and only then is it struck
off the ledger; an inspector who is not satisfied sends it back (整改闭环: 不整改不放过).

    reported ──assign──▶ assigned ──start──▶ rectifying ──submit──▶ submitted ──verify──▶ closed
                                                 ▲                      │
                                                 └──────send_back───────┘

A ticket past its deadline and not closed is escalated, one level at a time: the responsible
party, then the landlord, then the park's grid officers (:data:`ESCALATION_TARGETS`).

Who sees a ticket, by role: an operator (command center) and a viewer see every ticket; an
inspector (网格员) the tickets of their park; a landlord those of their buildings; a tenant's
safety officer only their own tenant's.  Who acts: see :func:`refusal`.  Everything here is
pure: the store applies it inside its transactions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from parkwatch.config.base import ID_PATTERN

STATES = ("reported", "assigned", "rectifying", "submitted", "closed")
#: action → (the states it starts from, the state it leads to)
ACTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "assign": (("reported", "assigned"), "assigned"),  # again: a new party or deadline
    "start": (("assigned",), "rectifying"),
    "submit": (("rectifying",), "submitted"),
    "verify": (("submitted",), "closed"),
    "send_back": (("submitted",), "rectifying"),
}
#: 一般隐患 / 重大隐患: the two grades of China's rules on hazard investigation (《安全生产事故
#: 隐患排查治理暂行规定》, 国家安监总局令第16号, 第三条)
LEVELS = ("general", "major")
CATEGORIES = ("fire", "overload", "water", "electrical", "passage", "storage", "structure",
              "fault", "other")
SOURCES = ("alarm", "inspection")
#: the console's roles, from the most to the least it may see
ROLES = ("operator", "viewer", "inspector", "landlord", "tenant")
#: who is told at each escalation level of an overdue ticket
ESCALATION_TARGETS = ("responsible", "landlord", "grid")
#: an alarm's severity → the grade of a ticket opened from it
LEVEL_OF_SEVERITY = {"critical": "major", "warning": "general", "info": "general"}
#: the longest note of a step, in characters
NOTE_MAX = 2000
DESCRIPTION_MAX = 2000


class TicketError(Exception):
    """A step that cannot be taken; ``key`` names the message (the console's i18n keys)."""

    def __init__(self, key: str, detail: str = "") -> None:
        super().__init__(f"{key}: {detail}" if detail else key)
        self.key = key
        self.detail = detail


@dataclass(frozen=True)
class Actor:
    """A logged-in user as the tickets see them.  ``park``: the park of an inspector, landlord
    or tenant (None: every park); ``tenant``: a tenant officer's tenant; ``buildings``: a
    landlord's buildings in ``park`` (``"*"``: all of them)."""

    name: str
    role: str
    park: str | None = None
    tenant: str | None = None
    buildings: tuple[str, ...] = ()

    @classmethod
    def of(cls, user: dict[str, Any]) -> Actor:
        return cls(user["name"], user["role"], user.get("park"), user.get("tenant"),
                   tuple(user.get("buildings") or ()))


def sees(actor: Actor, ticket: dict[str, Any]) -> bool:
    """Whether ``actor`` may read ``ticket`` (the same rule as :func:`visible_sql`)."""
    if actor.role in ("operator", "viewer"):
        return True
    if actor.park is not None and ticket["park"] != actor.park:
        return False
    if actor.role == "inspector":
        return True
    if actor.role == "tenant":
        return actor.tenant is not None and ticket["tenant"] == actor.tenant
    if actor.role == "landlord":
        return "*" in actor.buildings or ticket["building"] in actor.buildings
    return False


def visible_sql(actor: Actor) -> tuple[str, list[Any]]:
    """A WHERE condition over ``tickets`` that keeps what ``actor`` may read, and its
    parameters."""
    if actor.role in ("operator", "viewer"):
        return "1 = 1", []
    where: list[str] = []
    params: list[Any] = []
    if actor.park is not None:
        where.append("tickets.park = ?")
        params.append(actor.park)
    if actor.role == "tenant":
        where.append("tickets.tenant = ?")
        params.append(actor.tenant)  # None: matches nothing
    elif actor.role == "landlord":
        if "*" not in actor.buildings:
            where.append(f"tickets.building IN ({', '.join('?' * len(actor.buildings))})"
                         if actor.buildings else "1 = 0")
            params.extend(actor.buildings)
    elif actor.role != "inspector":
        where.append("1 = 0")
    return " AND ".join(where) or "1 = 1", params


def responsible(actor: Actor, ticket: dict[str, Any]) -> bool:
    """Whether ``actor`` answers for rectifying ``ticket``: its tenant's officer, or for a
    shared part of a building (no tenant) its landlord."""
    if not sees(actor, ticket):
        return False
    if ticket["tenant"] is not None:
        return actor.role == "tenant"
    return actor.role == "landlord"


def may_report(actor: Actor, park: str) -> bool:
    return actor.role == "operator" or (
        actor.role == "inspector" and actor.park in (None, park))


def refusal(actor: Actor, action: str, ticket: dict[str, Any]) -> str | None:
    """Why ``actor`` may not take ``action`` on ``ticket`` now (an i18n key), or None.

    * assign: an operator or an inspector of the park;
    * start, submit: the responsible party (:func:`responsible`) or an operator;
    * verify, send_back: an inspector of the park or an operator, and not whoever submitted
      the work being checked (no one passes their own rectification).
    """
    if not sees(actor, ticket):
        return "ticket_not_found"  # what a stranger is told: nothing of its existence
    if action not in ACTIONS:
        return "ticket_unknown_action"
    if ticket["state"] not in ACTIONS[action][0]:
        return "ticket_wrong_state"
    checker = actor.role == "operator" or actor.role == "inspector"
    if action == "assign" and not checker:
        return "ticket_forbidden"
    if action in ("start", "submit") and not (
            actor.role == "operator" or responsible(actor, ticket)):
        return "ticket_forbidden"
    if action in ("verify", "send_back"):
        if not checker:
            return "ticket_forbidden"
        if ticket.get("submitted_by") == actor.name:
            return "ticket_own_work"
    return None


def deadline(level: str, from_time: float, hours: dict[str, float]) -> float:
    """When a ticket of ``level`` reported at ``from_time`` must be closed."""
    return from_time + hours[level] * 3600.0


def escalation_due(ticket: dict[str, Any], now: float, after_hours: tuple[float, ...]) -> int:
    """The escalation level an open ticket should be at, at ``now``: 0 before its deadline,
    then 1, 2, ... as each of ``after_hours`` (hours past the deadline) passes."""
    if ticket["state"] == "closed" or ticket["deadline_at"] is None:
        return 0
    late_h = (now - ticket["deadline_at"]) / 3600.0
    return sum(1 for h in after_hours if late_h >= h)


def check_new(fields: dict[str, Any]) -> dict[str, Any]:
    """The fields of a new ticket, checked and stripped; TicketError (its key names the
    field) for one that is missing or wrong."""

    def text(key: str, required: bool = False, limit: int = 200) -> str | None:
        value = fields.get(key)
        if value is not None and not isinstance(value, str):
            raise TicketError(f"ticket_bad_{key}")
        return check_text(value, limit, f"ticket_bad_{key}", required)

    out: dict[str, Any] = {k: text(k) for k in ("building", "floor", "zone", "tenant",
                                                 "alarm_id")}
    out["tenant"] = check_tenant(out["tenant"])
    out["park"] = text("park", True)
    out["description"] = text("description", True, DESCRIPTION_MAX)
    out["note"] = text("note", False, NOTE_MAX)
    for key, allowed in (("category", CATEGORIES), ("level", LEVELS), ("source", SOURCES)):
        if fields.get(key) not in allowed:
            raise TicketError(f"ticket_bad_{key}")
        out[key] = fields[key]
    if (out["source"] == "alarm") != (out["alarm_id"] is not None):
        raise TicketError("ticket_bad_alarm_id")
    evidence = fields.get("evidence")
    if evidence is not None and not isinstance(evidence, dict):
        raise TicketError("ticket_bad_evidence")
    out["evidence"] = evidence
    return out


#: what a ticket opened from an alarm keeps of it, as evidence
EVIDENCE_KEYS = ("alarm_id", "rule", "severity", "sensor_id", "sensor_kind", "value",
                 "threshold", "unit", "message", "raised_at", "changed_at", "drill")


def from_alarm(alarm: dict[str, Any], category: str) -> dict[str, Any]:
    """A new ticket's fields from an alarm's state (the store's ``alarm()``): its place, the
    tenant when one alone is concerned (several, or none: a shared part, the landlord's), the
    grade from its severity, and the alarm's facts as evidence.  ``category``: the alarm's
    hazard (:func:`parkwatch.center.hazards.hazard_of`)."""
    event = alarm.get("event") or {}
    tenants = alarm.get("tenants") or []
    return {
        "park": alarm["park"], "building": alarm.get("building"), "floor": alarm.get("floor"),
        "zone": alarm.get("zone"), "tenant": tenants[0] if len(tenants) == 1 else None,
        "category": category if category in CATEGORIES else "other",
        "level": LEVEL_OF_SEVERITY.get(alarm.get("severity") or "", "general"),
        "description": event.get("message") or alarm.get("rule") or "",
        "source": "alarm", "alarm_id": alarm["alarm_id"],
        "evidence": {k: event.get(k, alarm.get(k)) for k in EVIDENCE_KEYS},
    }


def check_text(value: str | None, limit: int, key: str, required: bool = False) -> str | None:
    """A note or a description, stripped; TicketError(key) when required and empty or when
    longer than ``limit``."""
    text = (value or "").strip()
    if required and not text:
        raise TicketError(key)
    if len(text) > limit:
        raise TicketError("ticket_text_too_long", str(limit))
    return text or None


def check_tenant(value: str | None) -> str | None:
    """A responsible tenant's id as the park config names it (none: the landlord's);
    TicketError("ticket_bad_tenant") for anything else (a name typed instead of the id would
    hide the ticket from the tenant's safety officers, who see their tenant id's tickets)."""
    tenant = (value or "").strip() or None
    if tenant is not None and not re.match(ID_PATTERN, tenant):
        raise TicketError("ticket_bad_tenant")
    return tenant
