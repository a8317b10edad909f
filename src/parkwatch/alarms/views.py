"""Read-only views of the alarm store for the HTTP API, /metrics, the status and the CLI.

Each reading thread has its own connection (``synchronous=NORMAL``; it never writes), so a
reader never waits for the commit stage and the commit stage never waits for a reader.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from parkwatch.alarms.store import connect


class StoreReader:
    """Read-only views for the HTTP API and the CLI (one connection per thread)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()

    @property
    def db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = connect(self.path, "NORMAL")
        return db

    def alarms(self, include_closed: bool = False, limit: int = 500) -> list[dict[str, Any]]:
        """The latest event of each alarm (open ones, or also closed ones), newest first."""
        where = "" if include_closed else "WHERE closed=0"
        rows = self.db.execute(f"SELECT event FROM alarms {where} ORDER BY changed_at DESC "
                               "LIMIT ?", (limit,)).fetchall()
        return [json.loads(r[0]) for r in rows]

    def alarm(self, alarm_id: str) -> dict[str, Any] | None:
        """An alarm's latest event with its history, deliveries and suppressions."""
        row = self.db.execute("SELECT event, state, next_due FROM alarms WHERE alarm_id=?",
                              (alarm_id,)).fetchone()
        if row is None:
            return None
        state = json.loads(row[1])
        out: dict[str, Any] = {"alarm": json.loads(row[0])}
        out["details"] = {k: state.get(k) for k in ("ack_note", "reset_by", "reset_note",
                                                     "drill_id", "told", "auto_closed")}
        out["details"]["next_escalation_at"] = row[2]
        out["changes"] = [
            {"seq": s, "event": e, "at": at} for s, e, at in self.db.execute(
                "SELECT seq, event, at FROM changes WHERE alarm_id=? ORDER BY seq", (alarm_id,))]
        out["deliveries"] = [dict(zip(
            ("seq", "subscriber", "target", "reason", "state", "attempts", "created_at",
             "done_at", "last_error"), r, strict=True)) for r in self.db.execute(
            "SELECT seq, subscriber, target, reason, state, attempts, created_at, done_at, "
            "last_error FROM outbox WHERE alarm_id=? ORDER BY id", (alarm_id,))]
        out["suppressions"] = self.suppressions(alarm_id)
        return out

    def suppressions(self, alarm_id: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
        where, args = ("WHERE alarm_id=?", (alarm_id, limit)) if alarm_id else ("", (limit,))
        rows = self.db.execute(
            f"SELECT alarm_id, seq, subscriber, cause, ref, reason, at FROM suppressions {where} "
            "ORDER BY id DESC LIMIT ?", args).fetchall()
        return [dict(zip(("alarm_id", "seq", "subscriber", "cause", "ref", "reason", "at"), r,
                         strict=True)) for r in rows]

    def outbox_stats(self, now: float) -> dict[str, dict[str, float]]:
        """Per target: pending rows and the age of the oldest, expired rows."""
        out: dict[str, dict[str, float]] = {}
        for target, state, n, oldest in self.db.execute(
                "SELECT target, state, count(*), min(created_at) FROM outbox "
                "WHERE state!='delivered' GROUP BY target, state"):
            t = out.setdefault(target, {"pending": 0, "oldest_pending_s": 0.0, "expired": 0})
            t[state] = n
            if state == "pending":
                t["oldest_pending_s"] = max(0.0, now - oldest)
        return out

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
