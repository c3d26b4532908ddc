-- Every request that carried an outbox entry, not only the latest: the outbox row keeps what
-- the latest request left (state, Concur's message, the provision id and bulkId of a UPS v4
-- Bulk, when it left); when an entry is sent again, what the earlier request left is kept
-- here first, so that `explain` shows each request and its answer, newest first.
-- Written by a trigger on the attempt counter (`mark_inflight` raises it before a request
-- leaves): an entry sent once, the common case, adds no row.
-- Applied once, in order, by src/store/migrate.rs; an applied file is never edited.

CREATE TABLE outbox_requests (
    id            INTEGER PRIMARY KEY,
    outbox_id     INTEGER NOT NULL,            -- the outbox entry (entries are never deleted)
    attempt       INTEGER NOT NULL,            -- which request: 1 is the first
    sent_at       TEXT,                        -- when it left
    state         TEXT NOT NULL,               -- what the entry was when it was sent again
    message       TEXT,                        -- Concur's message (or why it was not applied)
    provision_id  TEXT,                        -- v4: the provision of the Bulk that carried it
    bulk_id       TEXT,                        -- v4: its operation's bulkId in that provision
    submitted_at  TEXT,                        -- v4: when Concur answered 202
    answered_at   TEXT NOT NULL                -- the entry's last change before it was sent again
);
CREATE INDEX outbox_requests_entry ON outbox_requests(outbox_id, attempt);

CREATE TRIGGER outbox_sent_again AFTER UPDATE OF attempts ON outbox
WHEN NEW.attempts > OLD.attempts AND OLD.attempts > 0
BEGIN
    INSERT INTO outbox_requests (outbox_id, attempt, sent_at, state, message, provision_id,
                                 bulk_id, submitted_at, answered_at)
    VALUES (OLD.id, OLD.attempts, OLD.sent_at, OLD.state, OLD.last_error, OLD.provision_id,
            OLD.bulk_id, OLD.submitted_at, OLD.updated_at);
END;
