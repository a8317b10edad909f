-- schema version 9: the notices of overdue hazard tickets, an outbox: written in the
-- transaction that escalates the ticket, sent by the center's notice courier, tried again
-- with growing pauses until delivered or given up.  Dialect-neutral.

CREATE TABLE ticket_notices (
    notice_id  TEXT PRIMARY KEY,               -- a ULID
    ticket_id  TEXT NOT NULL,
    level      INTEGER NOT NULL,               -- the escalation level it tells of
    party      TEXT NOT NULL,                  -- tenant, landlord or grid
    target     TEXT NOT NULL,                  -- tickets.notify.targets
    text       TEXT NOT NULL,                  -- the message
    state      TEXT NOT NULL,                  -- pending, sent or expired
    attempts   INTEGER NOT NULL DEFAULT 0,
    next_at    DOUBLE PRECISION NOT NULL,      -- when it may be tried (a claim moves it on)
    expires_at DOUBLE PRECISION NOT NULL,
    last_error TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    sent_at    DOUBLE PRECISION
);
CREATE INDEX ticket_notices_due ON ticket_notices (state, next_at);
CREATE INDEX ticket_notices_ticket ON ticket_notices (ticket_id, level);
