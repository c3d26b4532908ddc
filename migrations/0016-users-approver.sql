-- `users.approver`: 1 when the user's record (`fields`) makes them an expense approver
-- (`expense_approver` = Y). Every statement that writes `fields` writes it too, from the same
-- record, so that the planner's compact index (src/store/row_index.rs) is built from columns
-- alone: extracting the flag from each user's JSON took most of a rebuild's time.
-- Applied once, in order, by src/store/migrate.rs; an applied file is never edited.

ALTER TABLE users ADD COLUMN approver INTEGER NOT NULL DEFAULT 0;

UPDATE users SET approver = 1 WHERE json_extract(fields, '$.expense_approver') = 'Y';
