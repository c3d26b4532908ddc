//! Numbered SQL migrations from `migrations/`, embedded at build time and applied at start-up.
//! `PRAGMA user_version` records how many have been applied; an applied file is never edited.

use rusqlite::Connection;

use super::StoreError;

/// Every migration, in order. Append only.
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001-initial.sql",
        include_str!("../../migrations/0001-initial.sql"),
    ),
    (
        "0002-readback-attendees.sql",
        include_str!("../../migrations/0002-readback-attendees.sql"),
    ),
    (
        "0003-source-files-warnings.sql",
        include_str!("../../migrations/0003-source-files-warnings.sql"),
    ),
    (
        "0004-attendee-files.sql",
        include_str!("../../migrations/0004-attendee-files.sql"),
    ),
    (
        "0005-concur-uuid.sql",
        include_str!("../../migrations/0005-concur-uuid.sql"),
    ),
    (
        "0006-outbox-provisions.sql",
        include_str!("../../migrations/0006-outbox-provisions.sql"),
    ),
    (
        "0007-outbox-sent-at.sql",
        include_str!("../../migrations/0007-outbox-sent-at.sql"),
    ),
    (
        "0008-operators.sql",
        include_str!("../../migrations/0008-operators.sql"),
    ),
    (
        "0009-outbox-requests.sql",
        include_str!("../../migrations/0009-outbox-requests.sql"),
    ),
    (
        "0010-scim-push.sql",
        include_str!("../../migrations/0010-scim-push.sql"),
    ),
    (
        "0011-row-stamps.sql",
        include_str!("../../migrations/0011-row-stamps.sql"),
    ),
];

/// The schema version this build writes.
pub const LATEST: usize = MIGRATIONS.len();

/// Applies the migrations the database has not seen yet, each in its own transaction.
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let current: usize =
        conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
    if current > LATEST {
        return Err(StoreError::Schema(format!(
            "the state database has schema version {current}, newer than this build knows ({LATEST}); \
             run a newer concur-sync or restore a backup"
        )));
    }
    for (i, (name, sql)) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)
            .map_err(|e| StoreError::Schema(format!("migration {name} failed: {e}")))?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
        tracing::info!(migration = name, "applied state database migration");
    }
    Ok(())
}
