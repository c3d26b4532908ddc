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
    (
        "0012-cycle-rejected.sql",
        include_str!("../../migrations/0012-cycle-rejected.sql"),
    ),
    (
        "0013-outbox-bodies.sql",
        include_str!("../../migrations/0013-outbox-bodies.sql"),
    ),
    (
        "0014-cycle-to-send.sql",
        include_str!("../../migrations/0014-cycle-to-send.sql"),
    ),
    (
        "0015-users-ownership-active.sql",
        include_str!("../../migrations/0015-users-ownership-active.sql"),
    ),
    (
        "0016-users-approver.sql",
        include_str!("../../migrations/0016-users-approver.sql"),
    ),
];

/// The schema version this build writes.
pub const LATEST: usize = MIGRATIONS.len();

/// Applies the migrations the database has not seen yet, all in one transaction: a database
/// is upgraded whole or not at all. Foreign keys are off while they run, so that a migration
/// may rebuild a table others refer to (SQLite's documented procedure); they are checked after
/// each migration.
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let current: usize =
        conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
    if current > LATEST {
        return Err(StoreError::Schema(format!(
            "the state database has schema version {current}, newer than this build knows ({LATEST}); \
             run a newer concur-sync or restore a backup"
        )));
    }
    if current == LATEST {
        return Ok(());
    }
    let enforced: bool = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?;
    conn.pragma_update(None, "foreign_keys", false)?;
    let applied = apply(conn, current);
    conn.pragma_update(None, "foreign_keys", enforced)?;
    applied
}

fn apply(conn: &mut Connection, current: usize) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    for (i, (name, sql)) in MIGRATIONS.iter().enumerate().skip(current) {
        tx.execute_batch(sql)
            .map_err(|e| StoreError::Schema(format!("migration {name} failed: {e}")))?;
        let violations: i64 =
            tx.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })?;
        if violations > 0 {
            return Err(StoreError::Schema(format!(
                "migration {name} failed: it leaves {violations} rows whose foreign key points nowhere"
            )));
        }
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
    }
    tx.commit()?;
    for (name, _) in MIGRATIONS.iter().skip(current) {
        tracing::info!(migration = name, "applied state database migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Applies the first `n` migrations only, as an older build left the database.
    fn migrated_to(conn: &mut Connection, n: usize) {
        for (i, (_, sql)) in MIGRATIONS.iter().enumerate().take(n) {
            conn.execute_batch(sql).unwrap();
            conn.pragma_update(None, "user_version", (i + 1) as i64)
                .unwrap();
        }
    }

    #[test]
    fn the_approver_column_is_filled_from_each_users_record() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrated_to(&mut conn, 15);
        conn.execute_batch(
            r#"INSERT INTO users (employee_id, login_id, active, hash, fields, acked_at) VALUES
                 ('A', 'a@x', 1, x'00', '{"employee_id":"A","expense_approver":"Y"}', 't'),
                 ('B', 'b@x', 1, x'00', '{"employee_id":"B","expense_approver":"N"}', 't'),
                 ('C', 'c@x', 1, x'00', '{"employee_id":"C","last_name":"\"expense_approver\":\"Y\""}', 't');"#,
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let approvers: Vec<String> = conn
            .prepare("SELECT employee_id FROM users WHERE approver = 1")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(approvers, ["A"]);
    }

    #[test]
    fn rebuilding_the_cycles_table_keeps_every_cycle_and_the_outbox_pointing_at_it() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", true).unwrap();
        migrated_to(&mut conn, 11);
        conn.execute_batch(
            "INSERT INTO cycles (id, started_at, outcome, message) VALUES (7, 't', 'held', 'held: 9 deactivations');
             INSERT INTO outbox (cycle_id, seq, employee_id, op, payload, state, updated_at)
             VALUES (7, 1, 'E1', 'deactivate', '{}', 'held', 't');",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let row: (String, String) = conn
            .query_row(
                "SELECT outcome, message FROM cycles WHERE id = 7",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(row, ("held".into(), "held: 9 deactivations".into()));
        conn.execute("UPDATE cycles SET outcome = 'rejected' WHERE id = 7", [])
            .unwrap();
        // The entry's payload moved beside it (0013).
        let payload: String = conn
            .query_row("SELECT payload FROM outbox_bodies", [], |r| r.get(0))
            .unwrap();
        assert_eq!(payload, "{}");
        // Foreign keys are enforced again, against the rebuilt table.
        let fk: bool = conn
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        assert!(fk);
        assert!(
            conn.execute(
                "INSERT INTO outbox (cycle_id, seq, employee_id, op, state, updated_at)
                 VALUES (8, 1, 'E2', 'create', 'pending', 't')",
                [],
            )
            .is_err()
        );
        assert!(
            conn.execute("UPDATE cycles SET outcome = 'bogus' WHERE id = 7", [])
                .is_err()
        );
    }
}
