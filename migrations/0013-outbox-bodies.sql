-- What an outbox entry carries (the desired user, its field changes) moves to a table of its
-- own, written once when the entry is planned. The outbox row keeps only what changes while it
-- is sent (state, attempts, times, the provision that carried it): a large sync rewrites each
-- entry three or four times (in flight, accepted, done), and a narrow row rewrites a few pages
-- where a row with its payload rewrote dozens.
-- Applied once, in order, by src/store/migrate.rs; an applied file is never edited.

CREATE TABLE outbox_bodies (
    outbox_id     INTEGER PRIMARY KEY REFERENCES outbox(id),
    payload       TEXT NOT NULL,               -- JSON of the desired user, never a password
    -- JSON [{field, old, new}] of the planned operation; NULL when it changes no field by name
    -- (passwords) and for creates, whose fields are all in the payload.
    changes       TEXT
);
INSERT INTO outbox_bodies (outbox_id, payload, changes)
    SELECT id, payload, CASE WHEN op = 'create' THEN NULL ELSE changes END FROM outbox;
ALTER TABLE outbox DROP COLUMN payload;
ALTER TABLE outbox DROP COLUMN changes;
