-- The directory identity providers push over SCIM (source.kind = "scim_push"): each resource
-- as it was accepted (the JSON a GET returns, meta included), with the values lookups and
-- uniqueness need in columns of their own.
CREATE TABLE scim_push_resources (
    id            TEXT PRIMARY KEY,
    kind          TEXT NOT NULL CHECK (kind IN ('User', 'Group')),
    -- userName (users) or displayName (groups), lower-cased: userName is case-insensitive.
    name_key      TEXT NOT NULL,
    external_id   TEXT,
    active        INTEGER NOT NULL DEFAULT 1,
    -- A user deleted over SCIM stays as a tombstone: the source reads it as inactive, so Concur
    -- deactivates it (never deletes); a new user with its userName or externalId replaces it.
    deleted       INTEGER NOT NULL DEFAULT 0,
    version       INTEGER NOT NULL,
    created       TEXT NOT NULL,
    last_modified TEXT NOT NULL,
    resource      TEXT NOT NULL
);
CREATE UNIQUE INDEX scim_push_user_name ON scim_push_resources (name_key)
    WHERE kind = 'User' AND deleted = 0;
CREATE UNIQUE INDEX scim_push_user_external_id ON scim_push_resources (external_id)
    WHERE kind = 'User' AND deleted = 0 AND external_id IS NOT NULL;
CREATE INDEX scim_push_kind ON scim_push_resources (kind, created, id);
