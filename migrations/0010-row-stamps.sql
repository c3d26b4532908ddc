-- Row stamps and the snapshot generation.
--
-- `users.row_stamp`: what says that one raw source row (its bytes, under one configuration)
-- means exactly what this snapshot row holds, so that a plan counts the row as unchanged
-- without validating or normalizing it (src/plan/index.rs). It binds the row's digest to the
-- row's content hash and password hash: any other write of those makes it stop matching.
--
-- `snapshot_generation`: changes (to a new random value) with every write to `users`, so that
-- the compact index file beside the database (`<state>.index`, src/store/row_index.rs) is used
-- only while it was built from exactly this content; otherwise it is rebuilt from `users`.
-- Applied once, in order, by src/store/migrate.rs; an applied file is never edited.

ALTER TABLE users ADD COLUMN row_stamp BLOB;

CREATE TABLE snapshot_generation (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    generation INTEGER NOT NULL
);
INSERT INTO snapshot_generation (id, generation) VALUES (1, random());

CREATE TRIGGER users_generation_insert AFTER INSERT ON users
BEGIN
    UPDATE snapshot_generation SET generation = random() WHERE id = 1;
END;
CREATE TRIGGER users_generation_update AFTER UPDATE ON users
BEGIN
    UPDATE snapshot_generation SET generation = random() WHERE id = 1;
END;
CREATE TRIGGER users_generation_delete AFTER DELETE ON users
BEGIN
    UPDATE snapshot_generation SET generation = random() WHERE id = 1;
END;
