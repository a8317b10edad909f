-- schema version 6 (PostgreSQL): the console's roles for hazard tickets (inspector 网格员,
-- landlord, tenant safety officer) and their scope; the tickets' photos, whose byte column
-- the dialects name differently (the tickets themselves: version 7).

ALTER TABLE users DROP CONSTRAINT IF EXISTS users_role_check;
ALTER TABLE users ADD CONSTRAINT users_role_check
    CHECK (role IN ('operator', 'viewer', 'inspector', 'landlord', 'tenant'));
ALTER TABLE users ADD COLUMN park TEXT;          -- NULL: every park
ALTER TABLE users ADD COLUMN tenant TEXT;        -- a tenant officer's tenant
ALTER TABLE users ADD CONSTRAINT users_tenant_check
    CHECK (role <> 'tenant' OR (tenant IS NOT NULL AND park IS NOT NULL));

-- A ticket's photos, in the database with it (one backup holds everything).
CREATE TABLE ticket_photos (
    photo_id     TEXT PRIMARY KEY,               -- a ULID
    ticket_id    TEXT NOT NULL,
    step         INTEGER NOT NULL,               -- the step that brought it
    name         TEXT NOT NULL,
    content_type TEXT NOT NULL,                  -- found from the bytes, not from the upload
    size         INTEGER NOT NULL,
    sha256       TEXT NOT NULL,
    data         BYTEA NOT NULL
);
CREATE INDEX ticket_photos_ticket ON ticket_photos (ticket_id, step);
