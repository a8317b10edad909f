-- schema version 2: the tenants an alarm concerns, searchable (the console's history filter
-- and its statistics per tenant), and the history's time index.  The tenants of the alarms
-- stored under version 1 are taken from their events.

CREATE TABLE alarm_tenants (
    alarm_id TEXT NOT NULL,
    tenant   TEXT NOT NULL,
    PRIMARY KEY (alarm_id, tenant)
);
CREATE INDEX alarm_tenants_tenant ON alarm_tenants (tenant);
CREATE INDEX alarms_raised ON alarms (raised_at);

INSERT INTO alarm_tenants (alarm_id, tenant)
    SELECT DISTINCT e.alarm_id, t.value
    FROM events AS e, json_each(e.body, '$.tenants') AS t
    WHERE t.type = 'text'
    ON CONFLICT DO NOTHING;
