//! Recording a first load (`baseline` of a large source): each user made ready where its row
//! was parsed ([`BaselineRow`]), then written in one transaction ([`Store::baseline_stream`]).
//! Into a database no other connection has open, that transaction goes through SQLite's
//! rollback journal instead of the log, so every new page is written once.

use rusqlite::{Connection, params};

use super::snapshot::BASELINE_INSERT;
use super::{Ownership, Store, StoreError, now, user_json};
use crate::model::User;
use crate::plan::index::stamp;

/// A user as [`Store::baseline_stream`] records it, made ready where its row was parsed (its
/// record's JSON, content hash and row stamp), so that the writing thread only writes.
pub struct BaselineRow {
    employee_id: String,
    login_id: String,
    active: bool,
    hash: [u8; 16],
    fields: String,
    stamp: [u8; 16],
    approver: bool,
}

impl BaselineRow {
    /// `user`, from a raw row with digest `digest`, stamped under `fingerprint`.
    pub fn new(user: &User, fingerprint: u128, digest: u128) -> BaselineRow {
        let hash = user.content_hash();
        BaselineRow {
            employee_id: user.employee_id().to_owned(),
            login_id: user.login_id().to_owned(),
            active: user.is_active(),
            hash,
            fields: user_json(user),
            stamp: stamp(fingerprint, digest, &hash, None).to_le_bytes(),
            approver: user.is_approver(),
        }
    }
}

impl Store {
    /// `baseline` of a large source, streamed: `fill` hands each user to record to `put`. One
    /// transaction and one prepared statement for all of them; nothing is recorded when `fill`
    /// fails. Returns what `fill` returned.
    ///
    /// Into a database no other connection has open, the transaction goes through the rollback
    /// journal instead of the log (see [`bulk_journal`]); a cut-off baseline is rolled back
    /// either way.
    pub fn baseline_stream<T, E: From<StoreError>>(
        &mut self,
        ownership: Ownership,
        fill: impl FnOnce(&mut dyn FnMut(&BaselineRow) -> Result<(), StoreError>) -> Result<T, E>,
    ) -> Result<T, E> {
        // This connection's own index refresh, if one runs, would keep the database open.
        self.wait_for_index();
        let bulk = bulk_journal(&self.conn);
        let out = self.baseline_transaction(ownership, fill);
        if bulk {
            back_to_log(&self.conn);
        }
        out
    }

    fn baseline_transaction<T, E: From<StoreError>>(
        &mut self,
        ownership: Ownership,
        fill: impl FnOnce(&mut dyn FnMut(&BaselineRow) -> Result<(), StoreError>) -> Result<T, E>,
    ) -> Result<T, E> {
        let t0 = std::time::Instant::now();
        let tx = self.conn.transaction().map_err(StoreError::from)?;
        let out = {
            let mut stmt = tx.prepare(BASELINE_INSERT).map_err(StoreError::from)?;
            let at = now();
            let mut put = |u: &BaselineRow| -> Result<(), StoreError> {
                stmt.execute(params![
                    u.employee_id,
                    u.login_id,
                    u.active,
                    &u.hash[..],
                    u.fields,
                    ownership,
                    at,
                    &u.stamp[..],
                    u.approver
                ])?;
                Ok(())
            };
            fill(&mut put)?
        };
        let written = t0.elapsed();
        tx.commit().map_err(StoreError::from)?;
        tracing::debug!(
            write_ms = written.as_millis() as u64,
            commit_ms = (t0.elapsed() - written).as_millis() as u64,
            "baseline recorded"
        );
        Ok(out)
    }
}

/// Puts `conn` on the rollback journal for one bulk transaction into an empty snapshot, when
/// no other connection has the database open (leaving the log needs the database alone).
/// Through the log every page of the new users is written twice, into the log and then, at
/// the checkpoint, into the database: 4 GB of writes for 4 million users where the journal
/// writes 2 GB (it keeps only the few pages that existed before; new pages go straight into
/// the database file, and a rollback cuts them off). False, and nothing changed, when the
/// switch is refused: the transaction then goes through the log like any other.
fn bulk_journal(conn: &Connection) -> bool {
    // Asked once, not waited for: the log serves as well, only slower.
    let asked = conn.busy_timeout(std::time::Duration::ZERO).and_then(|()| {
        conn.query_row("PRAGMA journal_mode = DELETE", [], |r| {
            r.get::<_, String>(0)
        })
    });
    if let Err(e) = conn.busy_timeout(super::BUSY_TIMEOUT) {
        tracing::debug!(error = %e, "busy timeout not restored");
    }
    match asked {
        Ok(mode) if mode.eq_ignore_ascii_case("delete") => true,
        Ok(mode) => {
            tracing::debug!(
                mode,
                "baseline stays in the log: the journal mode did not change"
            );
            false
        }
        Err(e) => {
            tracing::debug!(error = %e, "baseline stays in the log: another connection has the database open");
            false
        }
    }
}

/// Returns `conn` to the log after [`bulk_journal`]. Should that fail, the next open does it
/// (every writing connection sets the log mode).
fn back_to_log(conn: &Connection) {
    if let Err(e) = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0)) {
        tracing::warn!(error = %e, "the state database stays on its rollback journal until it is next opened");
    }
}

#[cfg(test)]
mod tests {
    use super::Store;
    use crate::store::Ownership;

    fn user(id: &str) -> crate::model::User {
        crate::test_support::user_named(id, "Ames")
    }

    #[test]
    fn a_streamed_baseline_writes_through_the_rollback_journal_only_with_the_database_alone() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.db");
        let beside = |suffix: &str| crate::store::beside(&db, suffix).exists();
        let mut store = Store::open(&db, None).unwrap();
        let mode = |store: &Store| -> String {
            store
                .conn
                .query_row("PRAGMA journal_mode", [], |r| r.get(0))
                .unwrap()
        };
        // Records `id`; whether a rollback journal and a log were beside the database meanwhile.
        let record = |store: &mut Store, id: &str| -> (bool, bool) {
            store
                .baseline_stream(Ownership::Adopted, |put| -> Result<_, super::StoreError> {
                    put(&super::BaselineRow::new(&user(id), 1, 2))?;
                    Ok((beside("-journal"), beside("-wal")))
                })
                .unwrap()
        };
        // Alone: the rows go through the rollback journal, and the database is back on its log.
        assert_eq!(record(&mut store, "A1"), (true, false));
        assert_eq!(mode(&store), "wal");
        assert!(!beside("-journal"));

        // With a reader in the middle of a read, the log: the reader keeps its view throughout.
        let reader = rusqlite::Connection::open(&db).unwrap();
        reader.execute_batch("BEGIN").unwrap();
        let count = |c: &rusqlite::Connection| -> i64 {
            c.query_row("SELECT count(*) FROM users", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(count(&reader), 1);
        assert_eq!(record(&mut store, "B1"), (false, true));
        assert_eq!(count(&reader), 1);
        reader.execute_batch("COMMIT").unwrap();
        assert_eq!(count(&reader), 2);
        assert_eq!(mode(&store), "wal");
    }
}
