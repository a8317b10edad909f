-- schema version 8: mutes (silences and maintenance windows) the console sets on gateways
-- (docs/contract.md, "Mutes"): every mute and unmute command sent, with its author and the
-- gateway's reply; and each gateway's own list of the mutes in force (its retained `mutes`).
-- Dialect-neutral.

CREATE TABLE mutes (
    command_id TEXT PRIMARY KEY,               -- a ULID, one per command sent
    park       TEXT NOT NULL,
    mute_id    TEXT NOT NULL,
    command    TEXT NOT NULL,                  -- mute or unmute
    spec       TEXT,                           -- the mute object sent (JSON)
    by_user    TEXT NOT NULL,
    note       TEXT,
    signed     BOOLEAN NOT NULL,
    nonce      TEXT,                           -- a signed command's (its reply names it)
    issued_at  DOUBLE PRECISION NOT NULL,
    state      TEXT NOT NULL,                  -- sent, done or refused
    reason     TEXT,                           -- the gateway's counted reason of a refusal
    detail     TEXT,
    replied_at DOUBLE PRECISION
);
CREATE INDEX mutes_park ON mutes (park, mute_id, issued_at);

CREATE TABLE gateway_mutes (
    park        TEXT PRIMARY KEY,
    body        TEXT NOT NULL,                 -- the gateway's parkwatch.mutes/1 document
    received_at DOUBLE PRECISION NOT NULL
);
