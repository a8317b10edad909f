-- parkwatch command center, schema version 1: every event of every park, each alarm's
-- current state (its highest seq), each gateway's last status.  Dialect-neutral: SQLite and
-- PostgreSQL read it alike.  Times are seconds since 1970 (UTC).

CREATE TABLE events (
    alarm_id    TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    park        TEXT NOT NULL,
    event       TEXT NOT NULL,              -- raised, escalated, ..., closed
    changed_at  DOUBLE PRECISION,           -- the gateway's time of this change
    received_at DOUBLE PRECISION NOT NULL,  -- when the center stored it
    body        TEXT NOT NULL,              -- the event JSON
    PRIMARY KEY (alarm_id, seq)
);

CREATE TABLE alarms (
    alarm_id     TEXT PRIMARY KEY,
    park         TEXT NOT NULL,
    building     TEXT,
    floor        TEXT,
    zone         TEXT,
    sensor_id    TEXT,
    sensor_kind  TEXT,
    rule         TEXT NOT NULL,
    severity     TEXT NOT NULL,
    active       BOOLEAN NOT NULL,
    acknowledged BOOLEAN NOT NULL,
    drill        BOOLEAN NOT NULL,
    raised_at    DOUBLE PRECISION,
    changed_at   DOUBLE PRECISION,
    acked_by     TEXT,
    acked_at     DOUBLE PRECISION,
    last_event   TEXT NOT NULL,             -- the highest seq's event: 'closed' once closed
    event        TEXT NOT NULL,             -- the JSON of the highest seq
    seq          INTEGER NOT NULL
);

CREATE INDEX alarms_open ON alarms (park) WHERE last_event <> 'closed';
CREATE INDEX alarms_park_raised ON alarms (park, raised_at);

CREATE TABLE gateways (
    park        TEXT PRIMARY KEY,
    status      TEXT,                       -- the retained status JSON; NULL: emptied
    received_at DOUBLE PRECISION NOT NULL
);
