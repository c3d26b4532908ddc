-- Counting users by ownership and state (`status`, and the guards before every cycle's writes)
-- read the whole `users` table, whose rows carry each user's fields: about a second for a
-- million users. This index holds just the two columns, so the count reads only it.
-- Applied once, in order, by src/store/migrate.rs; an applied file is never edited.

CREATE INDEX users_ownership_active ON users(ownership, active);
