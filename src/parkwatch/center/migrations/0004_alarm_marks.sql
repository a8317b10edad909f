-- schema version 4: an operator's false-alarm mark (误报) on an alarm, for the alarm's page and
-- the statistics' false-alarm share.  One row per alarm: the latest marking wins (unmarking
-- keeps the row with false_alarm false and who unmarked it); every marking is also a row of
-- commands, with its author.  Dialect-neutral (SQLite stores the boolean as 0 or 1).

CREATE TABLE alarm_marks (
    alarm_id    TEXT PRIMARY KEY,
    false_alarm BOOLEAN NOT NULL,
    marked_by   TEXT NOT NULL,              -- the logged-in operator
    marked_at   DOUBLE PRECISION NOT NULL,
    note        TEXT
);
