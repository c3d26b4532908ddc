-- The Concur UUID of each user in the snapshot: what User Provisioning Service v4 PATCHes
-- address and Identity v4.1 lists. Filled by a v4 create's answer, a look-up or adoption; NULL
-- for users only User v1 (keyed by employee id) has written so far.
-- Applied once, in order, by src/store/migrate.rs; an applied file is never edited.

ALTER TABLE users ADD COLUMN concur_uuid TEXT;
CREATE UNIQUE INDEX users_concur_uuid ON users(concur_uuid) WHERE concur_uuid IS NOT NULL;
