-- When the request carrying an outbox entry last left (`inflight`). A create whose request got
-- no answer (a crash in flight, a timeout, a reset, a 5xx that may have come after the work)
-- may still be applied by Concur later: UPS v4 processes a Bulk asynchronously and its reads
-- lag behind. Such a create is looked up before it is sent again, and while Concur does not
-- show the user it is sent again only once a provision accepted at `sent_at` would have
-- timed out (concur.provision_timeout_minutes): a create is never attempted twice.
-- Applied once, in order, by src/store/migrate.rs; an applied file is never edited.

ALTER TABLE outbox ADD COLUMN sent_at TEXT;
UPDATE outbox SET sent_at = COALESCE(submitted_at, updated_at) WHERE attempts > 0;
