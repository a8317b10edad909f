-- schema version 6 (SQLite): the console's roles for hazard tickets (inspector 网格员,
-- landlord, tenant safety officer) and their scope; the tickets' photos, whose byte column
-- the dialects name differently (the tickets themselves: version 7).
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
