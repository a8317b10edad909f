"""The console's accounts in the center's database: users (their password hashes and roles)
and their login sessions.  A part of :class:`parkwatch.center.sqlbase.SqlStore`, kept apart
because it is a job of its own (who may use the console), not the alarm history."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from parkwatch.center.sqltx import Tx

T = TypeVar("T")


class AccountsSql:
    """Users and sessions over a backend's transactions (``_read`` and ``_write``)."""

    def _write(self, fn: Callable[[Tx], T]) -> T:
        raise NotImplementedError

    def _read(self, fn: Callable[[Tx], T]) -> T:
        raise NotImplementedError

    # --- users ------------------------------------------------------------------------------

    def add_user(self, name: str, password_hash: str, role: str, now: float, *,
                 park: str | None = None, tenant: str | None = None,
                 buildings: tuple[str, ...] = ()) -> bool:
        """A new user; False (nothing changed) when the name is taken.  ``park``: the one park
        of an inspector, landlord or tenant officer (None: every park); ``tenant``: a tenant
        officer's tenant; ``buildings``: a landlord's buildings in ``park`` ("*": all)."""

        def add(tx: Tx) -> bool:
            if tx.all("SELECT 1 FROM users WHERE name = ?", (name,)):
                return False
            tx.run("INSERT INTO users (name, password_hash, role, created_at, park, tenant) "
                   "VALUES (?, ?, ?, ?, ?, ?)", (name, password_hash, role, now, park, tenant))
            for building in dict.fromkeys(buildings):
                tx.run("INSERT INTO user_buildings (user_name, park, building) "
                       "VALUES (?, ?, ?)", (name, park, building))
            return True

        return self._write(add)

    def set_password(self, name: str, password_hash: str, *,
                     end_sessions: bool = False) -> bool:
        """A user's new password hash (a rehash after a login, or a new password, which ends
        every session of the user when ``end_sessions``); False: unknown user."""

        def change(tx: Tx) -> bool:
            if tx.run("UPDATE users SET password_hash = ? WHERE name = ?",
                      (password_hash, name)) == 0:
                return False
            if end_sessions:
                tx.run("DELETE FROM sessions WHERE user_name = ?", (name,))
            return True

        return self._write(change)

    def user(self, name: str) -> dict[str, Any] | None:
        """``{"name", "password_hash", "role", "park", "tenant", "buildings"}`` of a user,
        None if unknown."""

        def read(tx: Tx) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
            return (tx.all("SELECT name, password_hash, role, park, tenant FROM users "
                           "WHERE name = ?", (name,)),
                    tx.all("SELECT building FROM user_buildings WHERE user_name = ? "
                           "ORDER BY building", (name,)))

        found, buildings = self._read(read)
        if not found:
            return None
        name, pw, role, park, tenant = found[0]
        return {"name": name, "password_hash": pw, "role": role, "park": park,
                "tenant": tenant, "buildings": [b for (b,) in buildings]}

    def users(self, not_before: float = 0.0) -> list[dict[str, Any]]:
        """Every user's ``{"name", "role", "created_at", "sessions"}`` (their logins created
        at or after ``not_before``: not yet expired), by name."""
        found = self._read(lambda tx: tx.all(
            "SELECT u.name, u.role, u.created_at, u.park, u.tenant, COUNT(s.session_id) "
            "FROM users AS u LEFT JOIN sessions AS s ON s.user_name = u.name "
            "AND s.created_at >= ? GROUP BY u.name, u.role, u.created_at, u.park, u.tenant "
            "ORDER BY u.name", (not_before,)))
        return [{"name": n, "role": r, "created_at": c, "park": p, "tenant": t,
                 "sessions": int(k)} for n, r, c, p, t, k in found]

    def remove_user(self, name: str) -> bool:
        """The user and their sessions gone; False: unknown.  Their commands stay, with their
        name as the author."""

        def remove(tx: Tx) -> bool:
            tx.run("DELETE FROM sessions WHERE user_name = ?", (name,))
            tx.run("DELETE FROM user_buildings WHERE user_name = ?", (name,))
            return tx.run("DELETE FROM users WHERE name = ?", (name,)) > 0

        return self._write(remove)

    # --- sessions ---------------------------------------------------------------------------

    def open_session(self, session_id: str, name: str, now: float, older_than: float) -> None:
        """A new login session; sessions created before ``older_than`` (expired) are
        removed on the way."""

        def open_(tx: Tx) -> None:
            tx.run("DELETE FROM sessions WHERE created_at < ?", (older_than,))
            tx.run("INSERT INTO sessions (session_id, user_name, created_at) VALUES (?, ?, ?)",
                   (session_id, name, now))

        self._write(open_)

    def session_user(self, session_id: str, not_before: float) -> dict[str, Any] | None:
        """``{"name", "role", "park", "tenant", "buildings"}`` of the session's user, None
        when the session is unknown, ended, created before ``not_before`` (expired), or its
        user is gone."""

        def read(tx: Tx) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
            found = tx.all(
                "SELECT u.name, u.role, u.park, u.tenant FROM sessions AS s "
                "JOIN users AS u ON u.name = s.user_name "
                "WHERE s.session_id = ? AND s.created_at >= ?", (session_id, not_before))
            if not found or found[0][1] != "landlord":
                return found, []
            return found, tx.all("SELECT building FROM user_buildings WHERE user_name = ? "
                                 "ORDER BY building", (found[0][0],))

        found, buildings = self._read(read)
        if not found:
            return None
        name, role, park, tenant = found[0]
        return {"name": name, "role": role, "park": park, "tenant": tenant,
                "buildings": [b for (b,) in buildings]}

    def end_session(self, session_id: str) -> None:
        self._write(lambda tx: tx.run("DELETE FROM sessions WHERE session_id = ?",
                                      (session_id,)))
