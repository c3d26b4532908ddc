-- Row stamps, and a snapshot generation that never repeats.
--
-- `users.row_stamp`: what says that one raw source row (its bytes, under one configuration)
-- means exactly what this snapshot row holds, so that a plan counts the row as unchanged
-- without validating or normalizing it (src/plan/index.rs). It binds the row's digest to the
-- row's content hash and password hash: any other write of those makes it stop matching.
--
-- `snapshot_generation.n` (migration 0008): a counter until now. From here on every change of
-- the snapshot gives it a new random 64-bit value instead, so that a value is never seen again
-- for other content, not even after an older copy of the database is restored. Two readers
-- compare it for equality: a saved plan (`plan --out`, `apply`: refused when it changed) and the
-- compact index file beside the database (`<state>.index`, src/store/row_index.rs: used only
-- when built at the same value, else rebuilt from `users`). A stamp written counts as a change.
-- Applied once, in order, by src/store/migrate.rs; an applied file is never edited.

ALTER TABLE users ADD COLUMN row_stamp BLOB;

DROP TRIGGER users_generation_insert;
DROP TRIGGER users_generation_delete;
DROP TRIGGER users_generation_update;

UPDATE snapshot_generation SET n = random() WHERE id = 1;

CREATE TRIGGER users_generation_insert AFTER INSERT ON users
BEGIN
    UPDATE snapshot_generation SET n = random() WHERE id = 1;
END;
CREATE TRIGGER users_generation_delete AFTER DELETE ON users
BEGIN
    UPDATE snapshot_generation SET n = random() WHERE id = 1;
END;
CREATE TRIGGER users_generation_update
AFTER UPDATE OF employee_id, login_id, active, hash, fields, password_mac, ownership, row_stamp
ON users
BEGIN
    UPDATE snapshot_generation SET n = random() WHERE id = 1;
END;
