"""The outbox of overdue tickets' notices in the center's database: claimed, sent, tried again,
given up.  A part of :class:`parkwatch.center.sqlbase.SqlStore`; the sending:
:mod:`parkwatch.center.notices`.

A notice is claimed by moving its ``next_at`` on, in a statement that checks the value it
read: of several center instances, one sends it; an instance that dies with a notice claimed
leaves it to be claimed again when the claim runs out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from parkwatch.center.sqltx import Tx

T = TypeVar("T")

NOTICE_COLUMNS = ("notice_id", "ticket_id", "level", "party", "target", "text", "state",
                  "attempts", "next_at", "expires_at", "last_error", "created_at", "sent_at")


def insert_notice(tx: Tx, notice: dict[str, Any]) -> None:
    """A new pending notice, inside the caller's transaction (the escalation's)."""
    tx.run(f"INSERT INTO ticket_notices ({', '.join(NOTICE_COLUMNS)}) VALUES "
           f"({', '.join('?' * len(NOTICE_COLUMNS))})",
           [notice.get(c) for c in NOTICE_COLUMNS])


class NoticesSql:
    """The notices over a backend's transactions (``_read`` and ``_write``)."""

    def _write(self, fn: Callable[[Tx], T]) -> T:
        raise NotImplementedError

    def _read(self, fn: Callable[[Tx], T]) -> T:
        raise NotImplementedError

    def claim_notices(self, now: float, lease_s: float, limit: int = 20
                      ) -> list[dict[str, Any]]:
        """Pending notices due by ``now``, each claimed for ``lease_s`` (no other instance
        takes it meanwhile), oldest first."""

        def write(tx: Tx) -> list[dict[str, Any]]:
            due = tx.all(f"SELECT {', '.join(NOTICE_COLUMNS)} FROM ticket_notices "
                         f"WHERE state = 'pending' AND next_at <= ? ORDER BY next_at "
                         f"LIMIT {int(limit)}", (now,))
            out = []
            for row in due:
                n = dict(zip(NOTICE_COLUMNS, row, strict=True))
                if tx.run("UPDATE ticket_notices SET next_at = ? WHERE notice_id = ? AND "
                          "next_at = ? AND state = 'pending'",
                          (now + lease_s, n["notice_id"], n["next_at"])) == 1:
                    out.append(n)
            return out

        return self._write(write)

    def notice_sent(self, notice_id: str, now: float) -> None:
        self._write(lambda tx: tx.run(
            "UPDATE ticket_notices SET state = 'sent', sent_at = ?, attempts = attempts + 1, "
            "last_error = NULL WHERE notice_id = ?", (now, notice_id)))

    def notice_failed(self, notice_id: str, error: str, next_at: float, give_up: bool) -> None:
        self._write(lambda tx: tx.run(
            "UPDATE ticket_notices SET state = ?, attempts = attempts + 1, last_error = ?, "
            "next_at = ? WHERE notice_id = ?",
            ("expired" if give_up else "pending", error[:500], next_at, notice_id)))

    def notices(self, ticket_id: str | None = None) -> list[dict[str, Any]]:
        """The notices (of a ticket), oldest first."""
        where, args = ("WHERE ticket_id = ?", (ticket_id,)) if ticket_id else ("", ())
        rows = self._read(lambda tx: tx.all(
            f"SELECT {', '.join(NOTICE_COLUMNS)} FROM ticket_notices {where} "
            f"ORDER BY created_at, notice_id", args))
        return [dict(zip(NOTICE_COLUMNS, r, strict=True)) for r in rows]
