-- schema version 3: the web console's users (operator: may acknowledge; viewer: reads) and
-- every command the center published, with its author.  Dialect-neutral.

CREATE TABLE users (
    name          TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,            -- argon2id, as argon2-cffi writes it
    role          TEXT NOT NULL CHECK (role IN ('operator', 'viewer')),
    created_at    DOUBLE PRECISION NOT NULL
);

CREATE TABLE commands (
    command_id TEXT PRIMARY KEY,            -- a ULID
    park       TEXT NOT NULL,
    alarm_id   TEXT NOT NULL,
    command    TEXT NOT NULL,               -- ack
    author     TEXT NOT NULL,               -- the logged-in user who gave it
    note       TEXT,
    issued_at  DOUBLE PRECISION NOT NULL
);
CREATE INDEX commands_alarm ON commands (alarm_id, issued_at);
