-- Warnings, the drop folder's file history and its alerts.
-- Applied once, in order, by src/store/migrate.rs; an applied file is never edited.

-- Values a cycle changed to let a record through (a line break or tab collapsed to a space).
-- Like `rejections`: those of the latest cycle that read its source.
CREATE TABLE warnings (
    id            INTEGER PRIMARY KEY,
    cycle_id      INTEGER NOT NULL,
    source        TEXT NOT NULL,               -- file:line or record
    employee_id   TEXT,
    field         TEXT NOT NULL,
    message       TEXT NOT NULL
);

-- Every file the drop folder handed over and what became of it, newest last. The last
-- `processed` row is "the last processed file": what the source says while no new file waits.
CREATE TABLE source_files (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL,               -- the name it was dropped under
    digest        TEXT,                        -- BLAKE3 of its content
    modified_at   TEXT,                        -- its modification time when taken (RFC 3339)
    outcome       TEXT NOT NULL
                  CHECK (outcome IN ('processed', 'duplicate', 'rejected', 'skipped')),
    moved_to      TEXT,                        -- its path under archive/ or rejected/
    at            TEXT NOT NULL,
    message       TEXT
);

-- Drop-folder problems an operator must see (a file that could not be read, archived or
-- rejected, a symbolic link, an older file): one row per file and message, latest time kept.
CREATE TABLE alerts (
    id            INTEGER PRIMARY KEY,
    at            TEXT NOT NULL,
    file          TEXT NOT NULL,
    message       TEXT NOT NULL,
    UNIQUE (file, message)
);
