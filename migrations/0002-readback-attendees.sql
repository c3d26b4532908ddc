-- Reading Concur back (FormFields cache, reconcile history) and the Attendees v4 job.
-- Applied once, in order, by src/store/migrate.rs; an applied file is never edited.

-- The company's Global employee form as `GET /api/user/v1.0/FormFields` last returned it.
-- Replaced whole on every refresh; `kv` key `readback.form_fields_at` says when.
CREATE TABLE form_fields (
    id            TEXT PRIMARY KEY NOT NULL,   -- the UserProfile element, e.g. LedgerKey, Custom21
    label         TEXT NOT NULL DEFAULT '',
    control_type  TEXT NOT NULL DEFAULT '',
    data_type     TEXT NOT NULL DEFAULT '',
    max_length    INTEGER,                     -- NULL when Concur gives none
    required      INTEGER NOT NULL,            -- 1 when Required=Y
    custom        INTEGER NOT NULL DEFAULT 0,
    sequence      INTEGER
) WITHOUT ROWID;

-- One row per reconcile run (adoption + drift repair).
CREATE TABLE reconciles (
    id            INTEGER PRIMARY KEY,
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    outcome       TEXT NOT NULL DEFAULT 'running'
                  CHECK (outcome IN ('running', 'success', 'partial', 'failed', 'interrupted')),
    trigger       TEXT NOT NULL DEFAULT 'reconcile',   -- 'first-cycle' or 'reconcile'
    counts        TEXT NOT NULL DEFAULT '{}',          -- JSON ReconcileCounts
    message       TEXT
);

-- What Concur acknowledged per attendee, keyed by the source's external id and type.
CREATE TABLE attendees (
    external_id   TEXT NOT NULL,
    type_code     TEXT NOT NULL,               -- upper case
    concur_id     TEXT NOT NULL,               -- the v4 id Concur returned (or the lookup found)
    fields        TEXT NOT NULL,               -- JSON object, v4 field name -> value, as acknowledged
    hash          BLOB NOT NULL,               -- content hash of `fields`
    acked_at      TEXT NOT NULL,
    acked_run     INTEGER,
    missing_since TEXT,                        -- set while the source no longer lists it (v4 has no delete)
    PRIMARY KEY (external_id, type_code)
) WITHOUT ROWID;

-- One row per attendee job run.
CREATE TABLE attendee_runs (
    id            INTEGER PRIMARY KEY,
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    outcome       TEXT NOT NULL DEFAULT 'running'
                  CHECK (outcome IN ('running', 'success', 'partial', 'failed', 'interrupted')),
    source        TEXT NOT NULL DEFAULT '',
    counts        TEXT NOT NULL DEFAULT '{}',
    message       TEXT
);

-- Planned attendee writes. Closed ('done') in the transaction that advances `attendees`.
CREATE TABLE attendee_outbox (
    id            INTEGER PRIMARY KEY,
    run_id        INTEGER NOT NULL REFERENCES attendee_runs(id),
    seq           INTEGER NOT NULL,
    external_id   TEXT NOT NULL,
    type_code     TEXT NOT NULL,
    op            TEXT NOT NULL CHECK (op IN ('create', 'update')),
    payload       TEXT NOT NULL,               -- JSON body sent (create: every field; update: changed fields)
    state         TEXT NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'inflight', 'done', 'failed', 'abandoned')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT,
    updated_at    TEXT NOT NULL
);
CREATE INDEX attendee_outbox_open ON attendee_outbox(state, run_id, seq);

-- The latest failure per attendee, with Concur's v4 error, until the attendee is acknowledged.
CREATE TABLE attendee_failures (
    external_id   TEXT NOT NULL,
    type_code     TEXT NOT NULL,
    op            TEXT NOT NULL,
    message       TEXT NOT NULL,               -- errorMessage
    validation_errors TEXT NOT NULL DEFAULT '[]', -- JSON [{id, message, source}]
    attempts      INTEGER NOT NULL DEFAULT 1,
    first_failed_at TEXT NOT NULL,
    last_failed_at  TEXT NOT NULL,
    run_id        INTEGER NOT NULL,
    PRIMARY KEY (external_id, type_code, op)
) WITHOUT ROWID;

-- Rejections of the latest attendee run that read its source (replaced each such run).
CREATE TABLE attendee_rejections (
    id            INTEGER PRIMARY KEY,
    run_id        INTEGER NOT NULL,
    source        TEXT NOT NULL,
    external_id   TEXT,
    field         TEXT NOT NULL,
    message       TEXT NOT NULL
);
