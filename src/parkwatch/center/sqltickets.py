"""Hazard tickets in the center's database: opening one, each step of its life, reading what a
user may see, photos, and escalating the overdue ones.  A part of
:class:`parkwatch.center.sqlbase.SqlStore`, kept apart as a job of its own; the rules (who may
do what) are :mod:`parkwatch.center.tickets`'.

Every step is one transaction that checks the ticket's step count it read: two people acting
on one ticket at once (two browsers, two center instances) cannot both succeed from the same
state; the second is told the ticket changed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import orjson

from parkwatch.alarms.ids import new_alarm_id
from parkwatch.center import tickets as K
from parkwatch.center.photos import Photo, check_count
from parkwatch.center.sqlnotices import insert_notice
from parkwatch.center.sqltx import Tx

T = TypeVar("T")
#: (the ticket as escalated, now) -> the notices to send of it (rows of ticket_notices)
Notices = Callable[[dict[str, Any], float], list[dict[str, Any]]]

TICKET_COLUMNS = ("ticket_id", "park", "building", "floor", "zone", "tenant", "category",
                  "level", "description", "source", "alarm_id", "evidence", "state",
                  "reported_by", "reported_at", "deadline_at", "submitted_by",
                  "escalation_level", "closed_at", "updated_at", "steps")
_SELECT = f"SELECT {', '.join(TICKET_COLUMNS)} FROM tickets"
STEP_COLUMNS = ("step", "action", "from_state", "to_state", "by_user", "at", "note", "detail")


def _ticket(row: tuple[Any, ...]) -> dict[str, Any]:
    t = dict(zip(TICKET_COLUMNS, row, strict=True))
    t["evidence"] = orjson.loads(t["evidence"]) if t["evidence"] else None
    return t


class TicketsSql:
    """Tickets over a backend's transactions (``_read`` and ``_write``)."""

    def _write(self, fn: Callable[[Tx], T]) -> T:
        raise NotImplementedError

    def _read(self, fn: Callable[[Tx], T]) -> T:
        raise NotImplementedError

    # --- writes -----------------------------------------------------------------------------

    def open_ticket(self, fields: dict[str, Any], actor: K.Actor, now: float,
                    deadline_hours: dict[str, float], photos: Sequence[Photo] = ()) -> str:
        """A new ticket (state ``reported``) from ``fields`` (park, building, floor, zone,
        tenant, category, level, description, source, alarm_id, evidence); its id.
        TicketError when ``actor`` may not report in that park or a field is wrong."""
        f = K.check_new(fields)
        if not K.may_report(actor, f["park"]):
            raise K.TicketError("ticket_forbidden")
        check_count(list(photos))
        ticket_id = new_alarm_id(now)
        row = {**f, "ticket_id": ticket_id, "state": "reported", "reported_by": actor.name,
               "reported_at": now, "deadline_at": K.deadline(f["level"], now, deadline_hours),
               "submitted_by": None, "escalation_level": 0, "closed_at": None,
               "updated_at": now, "steps": 1,
               "evidence": None if f["evidence"] is None else orjson.dumps(f["evidence"]).decode()}

        def write(tx: Tx) -> None:
            tx.run(f"INSERT INTO tickets ({', '.join(TICKET_COLUMNS)}) VALUES "
                   f"({', '.join('?' * len(TICKET_COLUMNS))})",
                   [row[c] for c in TICKET_COLUMNS])
            _step(tx, ticket_id, 1, "report", None, "reported", actor.name, now,
                  f.get("note"), None)
            _photos(tx, ticket_id, 1, photos, now)

        self._write(write)
        return ticket_id

    def act(self, ticket_id: str, action: str, actor: K.Actor, now: float, *,
            note: str | None = None, photos: Sequence[Photo] = (),
            tenant: str | None = None, deadline_at: float | None = None) -> dict[str, Any]:
        """Take ``action`` (:data:`parkwatch.center.tickets.ACTIONS`) on the ticket: the
        ticket as it is now.  ``assign`` may name the responsible ``tenant`` (``""``: the
        landlord) and a new ``deadline_at``; ``submit`` and ``send_back`` need a note.
        TicketError (its ``key`` says why) when it may not be taken."""
        text = K.check_text(note, K.NOTE_MAX, "ticket_note_required",
                            required=action in ("submit", "send_back"))
        check_count(list(photos))

        def write(tx: Tx) -> dict[str, Any]:
            found = tx.all(f"{_SELECT} WHERE ticket_id = ?", (ticket_id,))
            if not found:
                raise K.TicketError("ticket_not_found")
            t = _ticket(found[0])
            why = K.refusal(actor, action, t)
            if why is not None:
                raise K.TicketError(why)
            to = K.ACTIONS[action][1]
            sets: dict[str, Any] = {"state": to, "updated_at": now}
            detail: dict[str, Any] = {}
            if action == "assign":
                if tenant is not None:
                    sets["tenant"] = K.check_tenant(tenant)
                    detail["tenant"] = sets["tenant"]
                if deadline_at is not None:
                    if deadline_at <= now:
                        raise K.TicketError("ticket_deadline_past")
                    sets["deadline_at"] = deadline_at
                    sets["escalation_level"] = 0  # a new deadline: escalation starts over
                    detail["deadline_at"] = deadline_at
            elif action == "submit":
                sets["submitted_by"] = actor.name
            elif action == "verify":
                sets["closed_at"] = now
                detail["on_time"] = now <= t["deadline_at"]
            step = t["steps"] + 1
            sets["steps"] = step
            changed = tx.run(
                f"UPDATE tickets SET {', '.join(f'{k} = ?' for k in sets)} "
                "WHERE ticket_id = ? AND steps = ?", [*sets.values(), ticket_id, t["steps"]])
            if changed != 1:
                raise K.TicketError("ticket_changed")
            _step(tx, ticket_id, step, action, t["state"], to, actor.name, now, text,
                  detail or None)
            _photos(tx, ticket_id, step, photos, now)
            return {**t, **sets}

        return self._write(write)

    def escalate_overdue(self, now: float, after_hours: tuple[float, ...],
                         notices: Notices | None = None) -> list[dict[str, Any]]:
        """Every open ticket whose escalation level is behind what ``now`` calls for
        (:func:`parkwatch.center.tickets.escalation_due`) raised to it, each with a step by
        ``center``, and the ``notices`` of it (pending, in the same transaction: an
        escalation is never recorded without them); the tickets escalated, as they are now
        (their new ``escalation_level``)."""

        def write(tx: Tx) -> list[dict[str, Any]]:
            late = [_ticket(r) for r in tx.all(
                f"{_SELECT} WHERE state <> 'closed' AND deadline_at <= ? "
                "ORDER BY deadline_at", (now,))]
            out = []
            for t in late:
                level = K.escalation_due(t, now, after_hours)
                if level <= t["escalation_level"]:
                    continue
                step = t["steps"] + 1
                if tx.run("UPDATE tickets SET escalation_level = ?, steps = ? "
                          "WHERE ticket_id = ? AND steps = ?",
                          (level, step, t["ticket_id"], t["steps"])) != 1:
                    continue  # changed meanwhile: the next round sees it again
                _step(tx, t["ticket_id"], step, "escalate", t["state"], t["state"], "center",
                      now, None, {"level": level, "to": K.ESCALATION_TARGETS[
                          min(level, len(K.ESCALATION_TARGETS)) - 1]})
                now_t = {**t, "escalation_level": level, "steps": step}
                for notice in notices(now_t, now) if notices is not None else ():
                    insert_notice(tx, notice)
                out.append(now_t)
            return out

        return self._write(write)

    # --- reads ------------------------------------------------------------------------------

    def ticket(self, ticket_id: str, actor: K.Actor) -> dict[str, Any] | None:
        """The ticket with its ``steps`` (oldest first) and ``photos`` (their facts, not their
        bytes); None when there is none or ``actor`` may not see it."""

        def read(tx: Tx) -> tuple[list[tuple[Any, ...]], ...]:
            found = tx.all(f"{_SELECT} WHERE ticket_id = ?", (ticket_id,))
            if not found:
                return [], [], []
            return (found, tx.all(f"SELECT {', '.join(STEP_COLUMNS)} FROM ticket_steps "
                                  "WHERE ticket_id = ? ORDER BY step", (ticket_id,)),
                    tx.all("SELECT photo_id, step, name, content_type, size FROM "
                           "ticket_photos WHERE ticket_id = ? ORDER BY step, photo_id",
                           (ticket_id,)))

        found, steps, photos = self._read(read)
        if not found:
            return None
        t = _ticket(found[0])
        if not K.sees(actor, t):
            return None
        t["steps_list"] = [{**dict(zip(STEP_COLUMNS, s, strict=True)),
                            "detail": orjson.loads(s[7]) if s[7] else None} for s in steps]
        t["photos"] = [dict(zip(("photo_id", "step", "name", "content_type", "size"), p,
                                strict=True)) for p in photos]
        return t

    def tickets(self, actor: K.Actor, *, park: str | None = None, tenant: str | None = None,
                state: str | None = None, open_only: bool = False,
                alarm_id: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
        """The tickets ``actor`` may see, newest first, filtered."""
        where, params = K.visible_sql(actor)
        conds, args = [where], list(params)
        for col, value in (("park", park), ("tenant", tenant), ("state", state),
                           ("alarm_id", alarm_id)):
            if value is not None:
                conds.append(f"tickets.{col} = ?")
                args.append(value)
        if open_only:
            conds.append("tickets.state <> 'closed'")
        rows = self._read(lambda tx: tx.all(
            f"{_SELECT} WHERE {' AND '.join(conds)} ORDER BY reported_at DESC, ticket_id DESC "
            f"LIMIT {int(limit)}", args))
        return [_ticket(r) for r in rows]

    def ticket_counts(self, now: float) -> list[tuple[str, str, int, int]]:
        """(park, state, open tickets, of which overdue) of every open ticket (/metrics)."""
        rows = self._read(lambda tx: tx.all(
            "SELECT park, state, COUNT(*), SUM(CASE WHEN deadline_at < ? THEN 1 ELSE 0 END) "
            "FROM tickets WHERE state <> 'closed' GROUP BY park, state ORDER BY park, state",
            (now,)))
        return [(p, st, int(n), int(late or 0)) for p, st, n, late in rows]

    def photo(self, photo_id: str, actor: K.Actor) -> tuple[str, str, bytes] | None:
        """(name, content type, bytes) of a photo of a ticket ``actor`` may see, else None."""

        def read(tx: Tx) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
            p = tx.all("SELECT ticket_id, name, content_type, data FROM ticket_photos "
                       "WHERE photo_id = ?", (photo_id,))
            if not p:
                return [], []
            return p, tx.all(f"{_SELECT} WHERE ticket_id = ?", (p[0][0],))

        p, t = self._read(read)
        if not p or not t or not K.sees(actor, _ticket(t[0])):
            return None
        _tid, name, content_type, data = p[0]
        return name, content_type, bytes(data)


def _step(tx: Tx, ticket_id: str, step: int, action: str, from_state: str | None,
          to_state: str, by: str, at: float, note: str | None,
          detail: dict[str, Any] | None) -> None:
    tx.run(f"INSERT INTO ticket_steps (ticket_id, {', '.join(STEP_COLUMNS)}) VALUES "
           f"(?, {', '.join('?' * len(STEP_COLUMNS))})",
           (ticket_id, step, action, from_state, to_state, by, at, note,
            None if detail is None else orjson.dumps(detail).decode()))


def _photos(tx: Tx, ticket_id: str, step: int, photos: Sequence[Photo], at: float) -> None:
    for p in photos:
        tx.run("INSERT INTO ticket_photos (photo_id, ticket_id, step, name, content_type, "
               "size, sha256, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
               (new_alarm_id(at), ticket_id, step, p.name, p.content_type, len(p.data),
                p.sha256, p.data))
