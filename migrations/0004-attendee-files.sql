-- The attendee list's drop folder keeps its file history beside the user source's: each file
-- row names the job it was taken for.
-- Applied once, in order, by src/store/migrate.rs; an applied file is never edited.

ALTER TABLE source_files ADD COLUMN job TEXT NOT NULL DEFAULT 'users'
    CHECK (job IN ('users', 'attendees'));
