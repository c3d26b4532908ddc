-- The asynchronous ledger of User Provisioning Service v4: a Bulk request is answered 202 with
-- a provision id and settles later. Its entries become `submitted`, with the provision id and
-- each operation's bulkId recorded in the transaction that records the 202; a restart resumes
-- polling them instead of sending them again. SQLite cannot alter a CHECK, so the table is
-- rebuilt with every row and index it had.
-- Applied once, in order, by src/store/migrate.rs; an applied file is never edited.

CREATE TABLE outbox_new (
    id            INTEGER PRIMARY KEY,
    cycle_id      INTEGER NOT NULL REFERENCES cycles(id),
    seq           INTEGER NOT NULL,            -- send order within the cycle
    employee_id   TEXT NOT NULL,
    op            TEXT NOT NULL CHECK (op IN ('create', 'update', 'reactivate', 'deactivate', 'password')),
    payload       TEXT NOT NULL,               -- JSON of the desired user, never a password
    old_login_id  TEXT,
    old_employee_id TEXT,
    origin        TEXT NOT NULL DEFAULT '',
    state         TEXT NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'inflight', 'submitted', 'done', 'failed', 'abandoned', 'held')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT,
    updated_at    TEXT NOT NULL,
    provision_id  TEXT,                        -- v4: the provision of the Bulk that carried it
    bulk_id       TEXT,                        -- v4: its operation's bulkId in that provision
    submitted_at  TEXT,                        -- v4: when Concur answered 202
    concur_uuid   TEXT                         -- v4: the user's UUID the operation addressed
);
INSERT INTO outbox_new (id, cycle_id, seq, employee_id, op, payload, old_login_id, old_employee_id,
                        origin, state, attempts, last_error, updated_at)
    SELECT id, cycle_id, seq, employee_id, op, payload, old_login_id, old_employee_id,
           origin, state, attempts, last_error, updated_at
    FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_new RENAME TO outbox;
CREATE INDEX outbox_open ON outbox(state, cycle_id, seq);
CREATE INDEX outbox_provision ON outbox(provision_id) WHERE provision_id IS NOT NULL;
