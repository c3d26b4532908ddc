-- Initial schema of the concur-sync state database.
-- Applied once, in order, by src/store/migrate.rs; an applied file is never edited.

-- What Concur last acknowledged, per user. `fields` is the JSON of the canonical user as sent.
CREATE TABLE users (
    employee_id   TEXT PRIMARY KEY NOT NULL,
    login_id      TEXT NOT NULL,
    active        INTEGER NOT NULL,            -- 1 active, 0 inactive
    hash          BLOB NOT NULL,               -- 16-byte content hash of `fields`
    fields        TEXT NOT NULL,               -- JSON object, canonical field name -> value
    password_mac  BLOB,                        -- keyed hash (HMAC-SHA256, 16 bytes) of the last password set, never the password
    ownership     TEXT NOT NULL DEFAULT 'created' CHECK (ownership IN ('created', 'adopted', 'unmanaged')),
    acked_at      TEXT NOT NULL,               -- RFC 3339, when Concur acknowledged the last change
    acked_cycle   INTEGER                      -- the cycle that made that change
) WITHOUT ROWID;

-- One row per cycle (sync, plan runs are not recorded).
CREATE TABLE cycles (
    id            INTEGER PRIMARY KEY,
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    outcome       TEXT NOT NULL DEFAULT 'running'
                  CHECK (outcome IN ('running', 'success', 'partial', 'held', 'degraded', 'failed', 'interrupted')),
    source        TEXT NOT NULL DEFAULT '',    -- what was read, e.g. the file path
    source_digest TEXT,                        -- content digest of the source read
    message       TEXT,                        -- fatal error or summary
    counts        TEXT NOT NULL DEFAULT '{}'   -- JSON: planned and applied counts per operation
);

-- Planned operations. An entry is closed ('done') in the same transaction that advances `users`.
CREATE TABLE outbox (
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
                  CHECK (state IN ('pending', 'inflight', 'done', 'failed', 'abandoned', 'held')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT,
    updated_at    TEXT NOT NULL
);
CREATE INDEX outbox_open ON outbox(state, cycle_id, seq);

-- The last failure per user and operation, kept until the user's record is acknowledged.
CREATE TABLE failures (
    employee_id   TEXT NOT NULL,
    op            TEXT NOT NULL,
    message       TEXT NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 1,
    first_failed_at TEXT NOT NULL,
    last_failed_at  TEXT NOT NULL,
    cycle_id      INTEGER NOT NULL,
    PRIMARY KEY (employee_id, op)
) WITHOUT ROWID;

-- Rejections of the latest cycle that read its source (replaced each such cycle).
CREATE TABLE rejections (
    id            INTEGER PRIMARY KEY,
    cycle_id      INTEGER NOT NULL,
    source        TEXT NOT NULL,
    employee_id   TEXT,
    field         TEXT NOT NULL,
    message       TEXT NOT NULL
);

-- Small named values: encrypted refresh token, token expiry, single-writer lock, …
CREATE TABLE kv (
    key           TEXT PRIMARY KEY NOT NULL,
    value         BLOB NOT NULL,
    updated_at    TEXT NOT NULL
) WITHOUT ROWID;

-- Audit of one-off actions (password resets by file, approvals), without secrets.
CREATE TABLE audit (
    id            INTEGER PRIMARY KEY,
    at            TEXT NOT NULL,
    action        TEXT NOT NULL,
    detail        TEXT NOT NULL
);
