"""Login sessions in a signed cookie, and the CSRF token every form carries.

The cookie holds ``{"s": session id or null, "c": csrf token, "l": language, "t": issued}``
as base64 JSON with an HMAC-SHA256 of it under the center's session key: the browser can read
it but not change it.  Who is logged in is the center's to say: the session id names a row of
its database (:mod:`parkwatch.center.sqlaccounts`), which logging out, a new password or the
user's removal deletes, so a copy of the cookie is worth nothing after that.

The cookie is HttpOnly (no script reads it) and SameSite=Lax (another site's form does not
carry it), and the CSRF token it holds must come back with every state-changing request, in
the form (``csrf``) or the ``X-CSRF-Token`` header.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from parkwatch.center.config import HttpConfig

COOKIE = "parkwatch_center"


@dataclass
class Session:
    sid: str | None  # the login's id in the database; None: not logged in
    csrf: str
    lang: str
    issued: float

    def dump(self) -> dict[str, Any]:
        return {"s": self.sid, "c": self.csrf, "l": self.lang, "t": self.issued}


def session_key(http: HttpConfig) -> bytes:
    """The configured secret, else the one generated into ``http.state_file`` (kept 0600)."""
    given = http.secret.secret()
    if given is not None:
        return given.encode()
    path: Path = http.state_file
    try:
        return path.read_text(encoding="utf-8").strip().encode()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(fresh + "\n")
    return fresh.encode()


class Signer:
    def __init__(self, key: bytes, max_age_s: float, default_lang: str) -> None:
        self._key = hashlib.sha256(b"parkwatch-center-session\0" + key).digest()
        self.max_age_s = max_age_s
        self.default_lang = default_lang

    def new(self, lang: str | None = None) -> Session:
        return Session(None, secrets.token_urlsafe(24), lang or self.default_lang, time.time())

    def dumps(self, s: Session) -> str:
        body = base64.urlsafe_b64encode(json.dumps(s.dump(), separators=(",", ":")).encode())
        mac = hmac.new(self._key, body, hashlib.sha256).digest()
        return (body + b"." + base64.urlsafe_b64encode(mac)).decode()

    def loads(self, cookie: str | None) -> Session | None:
        """The session of a cookie, None when absent, forged, malformed or expired."""
        if not cookie or "." not in cookie:
            return None
        body, _, mac = cookie.encode().partition(b".")
        good = base64.urlsafe_b64encode(hmac.new(self._key, body, hashlib.sha256).digest())
        if not hmac.compare_digest(good, mac):
            return None
        try:
            d = json.loads(base64.urlsafe_b64decode(body))
            sid = d["s"]
            s = Session(sid if isinstance(sid, str) else None, str(d["c"]), str(d["l"]),
                        float(d["t"]))
        except (ValueError, KeyError, TypeError):
            return None
        if time.time() - s.issued > self.max_age_s:
            return None
        return s


def csrf_ok(session: Session, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(session.csrf.encode(), (given or "").encode())
