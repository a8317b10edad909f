-- schema version 5: the console's login sessions, kept by the center, so that logging out,
-- a new password or a removed user ends them at once (a signed cookie alone stays good until
-- it expires, wherever a copy of it is).  The browser's cookie holds the session id only.
-- Dialect-neutral.

CREATE TABLE sessions (
    session_id TEXT PRIMARY KEY,             -- 32 random bytes, URL-safe base64
    user_name  TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_name);
