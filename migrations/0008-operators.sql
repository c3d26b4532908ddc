-- What operators need to follow and steer each record: the changed fields of every planned
-- operation (`explain`), audit rows naming the user and who acted, parked records (`skip`), and
-- the snapshot generation a saved plan is checked against (`plan --out`, `apply`).
-- Applied once, in order, by src/store/migrate.rs; an applied file is never edited.

-- JSON [{field, old, new}] of the planned operation; NULL when it changes no field by name
-- (creates, passwords) and for entries written before this migration.
ALTER TABLE outbox ADD COLUMN changes TEXT;

-- Operator actions about one user (`retry`, `skip`) name it and who acted (user@host).
ALTER TABLE audit ADD COLUMN employee_id TEXT;
ALTER TABLE audit ADD COLUMN actor TEXT;
CREATE INDEX audit_employee ON audit(employee_id) WHERE employee_id IS NOT NULL;

-- Failed records an operator parked: not planned, and not counted as failed, while the source
-- still asks for exactly the record that failed (`hash`: content hash of that desired record,
-- `op`: its operation). A changed source row, an acknowledgement or `retry` ends it.
CREATE TABLE skips (
    employee_id   TEXT PRIMARY KEY NOT NULL,
    op            TEXT NOT NULL,
    hash          BLOB NOT NULL,
    reason        TEXT NOT NULL,
    actor         TEXT NOT NULL,
    at            TEXT NOT NULL,
    message       TEXT NOT NULL DEFAULT ''     -- Concur's message when it was parked
) WITHOUT ROWID;

-- One counter that every change of the snapshot (`users`: a row added, removed, or any column
-- a plan depends on) moves forward. A saved plan records it; `apply` refuses when it moved.
CREATE TABLE snapshot_generation (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    n             INTEGER NOT NULL
);
INSERT INTO snapshot_generation (id, n) VALUES (1, 0);
CREATE TRIGGER users_generation_insert AFTER INSERT ON users
BEGIN
    UPDATE snapshot_generation SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER users_generation_delete AFTER DELETE ON users
BEGIN
    UPDATE snapshot_generation SET n = n + 1 WHERE id = 1;
END;
CREATE TRIGGER users_generation_update
AFTER UPDATE OF employee_id, login_id, active, hash, fields, password_mac, ownership ON users
BEGIN
    UPDATE snapshot_generation SET n = n + 1 WHERE id = 1;
END;
