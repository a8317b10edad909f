"""The console's mutes in the center's database: each mute and unmute command sent, with its
author and the gateway's reply, and each gateway's own list of the mutes in force.  A part of
:class:`parkwatch.center.sqlbase.SqlStore`; the commands themselves:
:mod:`parkwatch.center.mutedesk`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import orjson

from parkwatch.center.sqltx import Tx

T = TypeVar("T")

MUTE_COLUMNS = ("command_id", "park", "mute_id", "command", "spec", "by_user", "note",
                "signed", "nonce", "issued_at", "state", "reason", "detail", "replied_at")


class MutesSql:
    """Mutes over a backend's transactions (``_read`` and ``_write``)."""

    def _write(self, fn: Callable[[Tx], T]) -> T:
        raise NotImplementedError

    def _read(self, fn: Callable[[Tx], T]) -> T:
        raise NotImplementedError

    def record_mute(self, command_id: str, park: str, mute_id: str, command: str,
                    spec: dict[str, Any] | None, by: str, note: str | None, signed: bool,
                    nonce: str | None, issued_at: float) -> None:
        """A mute or unmute command as sent (state ``sent`` until the gateway replies)."""
        row = (command_id, park, mute_id, command,
               None if spec is None else orjson.dumps(spec).decode(), by, note, signed, nonce,
               issued_at, "sent", None, None, None)
        self._write(lambda tx: tx.run(
            f"INSERT INTO mutes ({', '.join(MUTE_COLUMNS)}) VALUES "
            f"({', '.join('?' * len(MUTE_COLUMNS))})", row))

    def mute_replied(self, park: str, reply: dict[str, Any], at: float) -> bool:
        """The gateway's reply to a command (``parkwatch.reply/1``): the command it answers
        (by its nonce when signed, else the latest one still waiting for that mute) is done or
        refused; False when it answers none of ours (another center's, or sent again)."""
        nonce = reply.get("nonce")
        match = "nonce = ?" if nonce else "nonce IS NULL"
        args: list[Any] = [park, str(reply.get("id") or ""), str(reply.get("command") or "")]
        if nonce:
            args.append(nonce)

        def write(tx: Tx) -> bool:
            found = tx.all(f"SELECT command_id FROM mutes WHERE park = ? AND mute_id = ? AND "
                           f"command = ? AND state = 'sent' AND {match} "
                           f"ORDER BY issued_at DESC LIMIT 1", args)
            if not found:
                return False
            tx.run("UPDATE mutes SET state = ?, reason = ?, detail = ?, replied_at = ? "
                   "WHERE command_id = ?",
                   ("done" if reply.get("ok") is True else "refused", reply.get("reason"),
                    str(reply.get("detail") or "")[:1000], at, found[0][0]))
            return True

        return self._write(write)

    def set_gateway_mutes(self, park: str, doc: dict[str, Any], at: float) -> None:
        """A gateway's retained list of the mutes in force."""
        body = orjson.dumps(doc).decode()
        self._write(lambda tx: tx.run(
            "INSERT INTO gateway_mutes (park, body, received_at) VALUES (?, ?, ?) "
            "ON CONFLICT (park) DO UPDATE SET body = excluded.body, "
            "received_at = excluded.received_at", (park, body, at)))

    def mute_commands(self, limit: int = 200) -> list[dict[str, Any]]:
        """The commands sent, newest first."""
        rows = self._read(lambda tx: tx.all(
            f"SELECT {', '.join(MUTE_COLUMNS)} FROM mutes ORDER BY issued_at DESC "
            f"LIMIT {int(limit)}"))
        out = []
        for r in rows:
            d = dict(zip(MUTE_COLUMNS, r, strict=True))
            d["spec"] = orjson.loads(d["spec"]) if d["spec"] else None
            d["signed"] = bool(d["signed"])
            out.append(d)
        return out

    def gateway_mutes(self) -> dict[str, list[dict[str, Any]]]:
        """Each park's mutes in force, as its gateway last said."""
        rows = self._read(lambda tx: tx.all("SELECT park, body FROM gateway_mutes "
                                            "ORDER BY park"))
        out: dict[str, list[dict[str, Any]]] = {}
        for park, body in rows:
            doc = orjson.loads(body)
            mutes = doc.get("mutes") if isinstance(doc, dict) else None
            out[park] = [m for m in mutes or () if isinstance(m, dict)]
        return out
