-- A cycle's outbox entries are written as their batch leaves, so while a cycle runs the outbox
-- holds only what it sent so far. `to_send` is how many operations the cycle set out to send:
-- `status` counts those not written yet as pending. NULL for cycles before this column and for
-- cycles that send nothing.
-- Applied once, in order, by src/store/migrate.rs; an applied file is never edited.

ALTER TABLE cycles ADD COLUMN to_send INTEGER;
