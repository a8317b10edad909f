-- schema version 6 (SQLite): hazard tickets (隐患整改) with their steps and photos; the
-- console's roles for them (inspector 网格员, landlord, tenant safety officer) and their scope.
-- SQLite cannot change a CHECK constraint: the users table is made again, as SQLite's manual
-- says (https://www.sqlite.org/lang_altertable.html, "Making Other Kinds Of Table Schema
-- Changes"); no other table refers to it.

CREATE TABLE users_v6 (
    name          TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL
                  CHECK (role IN ('operator', 'viewer', 'inspector', 'landlord', 'tenant')),
    created_at    DOUBLE PRECISION NOT NULL,
    park          TEXT,                          -- NULL: every park
    tenant        TEXT,                          -- a tenant officer's tenant
    CHECK (role <> 'tenant' OR (tenant IS NOT NULL AND park IS NOT NULL))
);
INSERT INTO users_v6 (name, password_hash, role, created_at)
    SELECT name, password_hash, role, created_at FROM users;
DROP TABLE users;
ALTER TABLE users_v6 RENAME TO users;

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

-- A ticket's photos, in the database with it (one backup holds everything).
CREATE TABLE ticket_photos (
    photo_id     TEXT PRIMARY KEY,               -- a ULID
    ticket_id    TEXT NOT NULL,
    step         INTEGER NOT NULL,               -- the step that brought it
    name         TEXT NOT NULL,
    content_type TEXT NOT NULL,                  -- found from the bytes, not from the upload
    size         INTEGER NOT NULL,
    sha256       TEXT NOT NULL,
    data         BLOB NOT NULL
);
CREATE INDEX ticket_photos_ticket ON ticket_photos (ticket_id, step);
