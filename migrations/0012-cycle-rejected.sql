-- A held plan an operator rejected (`concur-sync reject`) ends its cycle as `rejected`, so that
-- status no longer offers to approve it. SQLite cannot change a CHECK constraint in place: the
-- table is rebuilt (SQLite's documented procedure; migrations run with foreign keys off and
-- each is checked for violations before it commits).
-- Applied once, in order, by src/store/migrate.rs; an applied file is never edited.

CREATE TABLE cycles_new (
    id            INTEGER PRIMARY KEY,
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    outcome       TEXT NOT NULL DEFAULT 'running'
                  CHECK (outcome IN ('running', 'success', 'partial', 'held', 'rejected',
                                     'degraded', 'failed', 'interrupted')),
    source        TEXT NOT NULL DEFAULT '',    -- what was read, e.g. the file path
    source_digest TEXT,                        -- content digest of the source read
    message       TEXT,                        -- fatal error or summary
    counts        TEXT NOT NULL DEFAULT '{}'   -- JSON: planned and applied counts per operation
);
INSERT INTO cycles_new (id, started_at, finished_at, outcome, source, source_digest, message, counts)
    SELECT id, started_at, finished_at, outcome, source, source_digest, message, counts FROM cycles;
DROP TABLE cycles;
ALTER TABLE cycles_new RENAME TO cycles;
