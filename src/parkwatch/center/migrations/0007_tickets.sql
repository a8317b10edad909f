-- schema version 7: hazard tickets (隐患整改) and every step of each, and the landlords'
-- buildings (their scope).  Dialect-neutral; the roles and the photos are version 6.

-- A landlord's buildings ('*': every building of the park).
CREATE TABLE user_buildings (
    user_name TEXT NOT NULL,
    park      TEXT NOT NULL,
    building  TEXT NOT NULL,
    PRIMARY KEY (user_name, park, building)
);

-- One hazard (隐患) from its report to its verified rectification.
CREATE TABLE tickets (
    ticket_id        TEXT PRIMARY KEY,           -- a ULID
    park             TEXT NOT NULL,
    building         TEXT,
    floor            TEXT,
    zone             TEXT,
    tenant           TEXT,                       -- answers for it; NULL: the landlord (shared parts)
    category         TEXT NOT NULL,              -- fire, overload, water, electrical, passage, ...
    level            TEXT NOT NULL CHECK (level IN ('general', 'major')),  -- 一般 / 重大隐患
    description      TEXT NOT NULL,
    source           TEXT NOT NULL CHECK (source IN ('alarm', 'inspection')),
    alarm_id         TEXT,                       -- the alarm it was opened from
    evidence         TEXT,                       -- that alarm's facts when opened (JSON)
    state            TEXT NOT NULL CHECK (state IN ('reported', 'assigned', 'rectifying',
                                                    'submitted', 'closed')),
    reported_by      TEXT NOT NULL,
    reported_at      DOUBLE PRECISION NOT NULL,
    deadline_at      DOUBLE PRECISION NOT NULL,
    submitted_by     TEXT,                       -- who submitted the work being checked
    escalation_level INTEGER NOT NULL DEFAULT 0, -- 1 responsible party, 2 landlord, 3 grid
    closed_at        DOUBLE PRECISION,
    updated_at       DOUBLE PRECISION NOT NULL,
    steps            INTEGER NOT NULL            -- how many rows of ticket_steps it has
);
CREATE INDEX tickets_park_state ON tickets (park, state);
CREATE INDEX tickets_park_tenant ON tickets (park, tenant);
CREATE INDEX tickets_alarm ON tickets (alarm_id);
CREATE INDEX tickets_open_deadline ON tickets (deadline_at) WHERE state <> 'closed';

-- Every step of a ticket: who, when, from which state to which, and their note.
CREATE TABLE ticket_steps (
    ticket_id  TEXT NOT NULL,
    step       INTEGER NOT NULL,                 -- 1, 2, ... in order
    action     TEXT NOT NULL,                    -- report, assign, start, submit, verify,
                                                 -- send_back, escalate
    from_state TEXT,
    to_state   TEXT NOT NULL,
    by_user    TEXT NOT NULL,                    -- the logged-in user; "center" for escalations
    at         DOUBLE PRECISION NOT NULL,
    note       TEXT,
    detail     TEXT,                             -- what else the step set (JSON)
    PRIMARY KEY (ticket_id, step)
);
