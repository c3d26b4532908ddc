//! The compact snapshot index the planner reads ([`RowIndex`]), kept in a file beside the
//! state database (`<state>.index`) so that a million users load in a few tens of
//! milliseconds instead of a scan of `users`, and the row stamps it carries.
//!
//! The database stays the source of truth. Every change of `users` that the index reflects
//! gives `snapshot_generation` a new random value (triggers, migration 0011), so a value never
//! comes back for other content, not even when an older copy of the database is restored; the
//! file records the generation it was built at and a checksum of its content. A file that is
//! missing, unreadable, corrupt, or built at another generation (a stale copy, a crash between
//! a commit and the rebuild) is ignored and rebuilt from `users`; it is written to a temporary
//! file and renamed into place, so a reader never sees half of one.
//!
//! Row stamps are written only where the row, normalized, has exactly the content hash the
//! snapshot holds: for rows found unchanged by a full comparison ([`Store::stamp_rows`]), and,
//! inside [`Store::record_results`]' transaction, for rows whose operation Concur acknowledged
//! whole ([`Store::expect_stamps`]). A failed, partial or rejected row never gets one.

use std::path::PathBuf;

use rusqlite::{Connection, OptionalExtension, params};

use super::index_file::{LoadedIndex, header_generation, map_index, write_index};
use super::{Store, StoreError, to16};
use crate::model::{KeyMap, id_key, login_key};
use crate::plan::RowStamps;
use crate::plan::index::{ACTIVE, APPROVER, IndexBuilder, RowIndex, login_bits, stamp};

/// Stamps expected from the operations of the cycle being delivered.
#[derive(Debug, Default)]
pub struct Expected {
    fingerprint: u128,
    /// By employee id key.
    rows: KeyMap<(u128, [u8; 16])>,
}

impl Expected {
    /// The stamps `stamps` says the rows it planned earn.
    pub(super) fn new(stamps: &RowStamps) -> Expected {
        Expected {
            fingerprint: stamps.fingerprint,
            rows: stamps
                .planned
                .iter()
                .map(|(key, d, h)| (*key, (*d, *h)))
                .collect(),
        }
    }

    /// The stamp `employee_id`'s row earns once Concur acknowledged it holding `hash` with
    /// password MAC `mac`: when the source row planned it holds that very record.
    pub(super) fn stamp_for(
        &self,
        employee_id: &str,
        hash: &[u8; 16],
        mac: Option<&[u8; 16]>,
    ) -> Option<u128> {
        let (digest, expected) = self.rows.get(&id_key(employee_id))?;
        (expected == hash).then(|| stamp(self.fingerprint, *digest, hash, mac))
    }
}

impl Store {
    /// The index file beside the state database.
    pub(super) fn index_path(&self) -> PathBuf {
        super::beside(&self.path, ".index")
    }

    fn generation(conn: &Connection) -> Result<i64, StoreError> {
        Ok(
            conn.query_row("SELECT n FROM snapshot_generation WHERE id = 1", [], |r| {
                r.get(0)
            })?,
        )
    }

    /// The planner's index: the file, mapped into memory, when it was built at the database's
    /// generation and holds together; else rebuilt from `users` (and the file rewritten, when
    /// the directory allows it).
    pub fn row_index(&self) -> Result<LoadedIndex, StoreError> {
        self.wait_for_index();
        let t0 = std::time::Instant::now();
        let generation = Self::generation(&self.conn)?;
        let path = self.index_path();
        match map_index(&path, generation) {
            Ok(Some(mapped)) => {
                tracing::debug!(
                    users = mapped.layout.entries,
                    ms = t0.elapsed().as_millis() as u64,
                    "snapshot index file mapped"
                );
                return Ok(LoadedIndex::Mapped(mapped));
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(file = %path.display(), error = %e, "snapshot index file not used");
            }
        }
        Ok(LoadedIndex::Built(rebuild_file(&self.conn, &path)?))
    }

    /// Rebuilds the index file if the snapshot changed since it was written, so that the next
    /// plan finds it ready. The rebuild runs on a thread of its own, reading through a
    /// connection of its own, while the caller goes on (recording the cycle's end, closing);
    /// [`Store::row_index`] and closing the store wait for it. It reads `users` and the
    /// generation in one transaction, so whatever the caller writes meanwhile can only leave
    /// the file stale, never wrong.
    pub fn refresh_row_index(&self) -> Result<(), StoreError> {
        self.wait_for_index();
        let generation = Self::generation(&self.conn)?;
        let path = self.index_path();
        if matches!(header_generation(&path), Ok(g) if g == generation) {
            return Ok(());
        }
        let flags =
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = match Connection::open_with_flags(&self.path, flags) {
            Ok(conn) => conn,
            Err(e) => {
                tracing::debug!(error = %e, "no second connection: the index file is rebuilt in line");
                return rebuild_file(&self.conn, &path).map(drop);
            }
        };
        conn.busy_timeout(super::BUSY_TIMEOUT)?;
        let in_thread = path.clone();
        let refresh = std::thread::Builder::new()
            .name("index-refresh".into())
            .spawn(move || {
                if let Err(e) = rebuild_file(&conn, &in_thread) {
                    tracing::warn!(error = %e, "the snapshot index file was not refreshed; the next plan rebuilds it");
                }
            });
        match refresh {
            Ok(refresh) => {
                if let Ok(mut slot) = self.index_refresh.lock() {
                    *slot = Some(refresh);
                }
                Ok(())
            }
            Err(e) => {
                tracing::debug!(error = %e, "no thread for the refresh: the index file is rebuilt in line");
                rebuild_file(&self.conn, &path).map(drop)
            }
        }
    }

    /// Waits for an index refresh under way ([`Store::refresh_row_index`]).
    pub(super) fn wait_for_index(&self) {
        let refresh = self.index_refresh.lock().ok().and_then(|mut r| r.take());
        if let Some(r) = refresh {
            let _ = r.join();
        }
    }

    /// Stamps rows found unchanged by a full comparison, in one transaction: `(employee id,
    /// row digest, the content hash the row normalizes to)`; a user whose snapshot holds
    /// another hash now is left alone. Returns how many stamps were written.
    pub fn stamp_rows(
        &mut self,
        fingerprint: u128,
        rows: &[(String, u128, [u8; 16])],
    ) -> Result<u64, StoreError> {
        if rows.is_empty() {
            return Ok(0);
        }
        let tx = self.conn.transaction()?;
        let n = stamp_in(
            &tx,
            fingerprint,
            rows.iter().map(|(id, d, h)| (id.as_str(), *d, h)),
        )?;
        tx.commit()?;
        Ok(n)
    }

    /// The stamps the operations about to be delivered earn once Concur acknowledges them:
    /// [`Store::record_results`] writes each in the transaction that records its
    /// acknowledgement, if the acknowledged record is exactly the row's.
    pub fn expect_stamps(&mut self, stamps: &RowStamps) {
        self.expected = Expected::new(stamps);
    }

    /// Inside `record_results`: the stamps earned by the acknowledged `ids`.
    pub(super) fn stamp_acknowledged<'a>(
        expected: &Expected,
        conn: &Connection,
        ids: impl Iterator<Item = &'a str>,
    ) -> Result<(), StoreError> {
        if expected.rows.is_empty() {
            return Ok(());
        }
        let rows = ids.filter_map(|id| expected.rows.get(&id_key(id)).map(|(d, h)| (id, *d, h)));
        stamp_in(conn, expected.fingerprint, rows)?;
        Ok(())
    }
}

/// Every managed user from `users`, with the generation read in the same transaction.
fn build_index(conn: &Connection) -> Result<(RowIndex<'static>, i64), StoreError> {
    let tx = conn.unchecked_transaction()?;
    let generation = Store::generation(&tx)?;
    let count: i64 = tx.query_row(
        "SELECT count(*) FROM users WHERE ownership != 'unmanaged'",
        [],
        |r| r.get(0),
    )?;
    let mut ix = IndexBuilder::with_capacity(usize::try_from(count).unwrap_or(0));
    {
        let mut stmt = tx.prepare(
            "SELECT employee_id, login_id, active, hash, password_mac, row_stamp, approver
             FROM users WHERE ownership != 'unmanaged'",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let id: &str = row.get_ref(0)?.as_str()?;
            let hash = to16(row.get_ref(3)?.as_blob()?)
                .ok_or_else(|| StoreError::Corrupt(format!("user {id}: hash is not 16 bytes")))?;
            let login = login_bits(login_key(row.get_ref(1)?.as_str()?));
            let mut flags = 0;
            if row.get::<_, bool>(2)? {
                flags |= ACTIVE;
            }
            if row.get::<_, bool>(6)? {
                flags |= APPROVER;
            }
            let mac = row.get_ref(4)?.as_blob_or_null()?.and_then(to16);
            let stamp = row
                .get_ref(5)?
                .as_blob_or_null()?
                .and_then(to16)
                .map_or(0, u128::from_le_bytes);
            ix.push(id, login, hash, flags, mac, stamp);
        }
    }
    tx.commit()?;
    Ok((ix.finish(), generation))
}

/// Rebuilds the index from `users` through `conn` and writes it to `path` (a file that cannot
/// be written is left for the next rebuild).
fn rebuild_file(
    conn: &Connection,
    path: &std::path::Path,
) -> Result<RowIndex<'static>, StoreError> {
    let (ix, generation) = build_index(conn)?;
    if let Err(e) = write_index(path, generation, &ix) {
        tracing::debug!(file = %path.display(), error = %e, "snapshot index file not written");
    }
    Ok(ix)
}

/// Writes the stamp of each row whose user holds exactly the row's content hash now.
fn stamp_in<'a>(
    conn: &Connection,
    fingerprint: u128,
    rows: impl Iterator<Item = (&'a str, u128, &'a [u8; 16])>,
) -> Result<u64, StoreError> {
    let mut get = conn.prepare_cached(
        "SELECT hash, password_mac, row_stamp FROM users
         WHERE employee_id = ?1 AND ownership != 'unmanaged'",
    )?;
    let mut set = conn.prepare_cached("UPDATE users SET row_stamp = ?2 WHERE employee_id = ?1")?;
    let mut n = 0;
    for (id, digest, hash) in rows {
        let now = get
            .query_row([id], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, Option<Vec<u8>>>(1)?,
                    r.get::<_, Option<Vec<u8>>>(2)?,
                ))
            })
            .optional()?;
        let Some((held, mac, old)) = now else {
            continue;
        };
        if held.as_slice() != hash.as_slice() {
            continue;
        }
        let mac = mac.as_deref().and_then(to16);
        let s = stamp(fingerprint, digest, hash, mac.as_ref()).to_le_bytes();
        if old.as_deref() == Some(&s[..]) {
            continue;
        }
        set.execute(params![id, &s[..]])?;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::Store;
    use crate::store::Ownership;

    fn user(id: &str) -> crate::model::User {
        crate::test_support::user_named(id, "Ames")
    }

    #[test]
    fn a_restored_older_database_never_takes_the_index_of_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.db");
        let backup = dir.path().join("backup.db");
        let mut store = Store::open(&db, None).unwrap();
        store
            .baseline_users(&[user("A1")], Ownership::Adopted)
            .unwrap();
        drop(store);
        std::fs::copy(&db, &backup).unwrap();

        let mut store = Store::open(&db, None).unwrap();
        store
            .baseline_users(&[user("B1")], Ownership::Adopted)
            .unwrap();
        assert!(store.row_index().unwrap().index().contains("B1"));
        let newer = store.snapshot_generation().unwrap();
        drop(store);

        // The backup comes back and takes the same number of writes, of other content.
        std::fs::copy(&backup, &db).unwrap();
        let mut store = Store::open(&db, None).unwrap();
        store
            .baseline_users(&[user("C1")], Ownership::Adopted)
            .unwrap();
        assert_ne!(store.snapshot_generation().unwrap(), newer);
        let loaded = store.row_index().unwrap();
        let ix = loaded.index();
        assert!(ix.contains("A1") && ix.contains("C1") && !ix.contains("B1"));
    }

    #[test]
    fn every_write_of_a_record_keeps_the_index_approver_flag_in_step() {
        use crate::model::{Field, OpKind};
        use crate::plan::index::APPROVER;
        use crate::store::{EntryResult, OutboxState};
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.db"), None).unwrap();
        let approving = |id: &str, yes: bool| {
            let mut u = user(id);
            u.set(Field::EXPENSE_APPROVER, if yes { "Y" } else { "N" });
            u
        };
        let flag = |store: &Store, id: &str| {
            let loaded = store.row_index().unwrap();
            let ix = loaded.index();
            let i = ix.find(crate::model::id_key(id)).expect("indexed");
            ix.entry(i).flags & APPROVER != 0
        };
        // baseline, then baseline again with the flag turned off
        store
            .baseline_users(&[approving("A1", true)], Ownership::Adopted)
            .unwrap();
        assert!(flag(&store, "A1"));
        store
            .baseline_users(&[approving("A1", false)], Ownership::Adopted)
            .unwrap();
        assert!(!flag(&store, "A1"));
        // a streamed baseline
        store
            .baseline_stream(Ownership::Adopted, |put| {
                put(&crate::store::BaselineRow::new(
                    &approving("B1", true),
                    1,
                    2,
                ))
            })
            .unwrap();
        assert!(flag(&store, "B1"));
        // an acknowledged create, then an acknowledged update that takes the role away
        for (kind, yes) in [(OpKind::Create, true), (OpKind::Update, false)] {
            let op = crate::test_support::op(kind, approving("C1", yes), "t.csv:2");
            let cycle = store.begin_cycle("t.csv").unwrap();
            let ids = store
                .write_outbox(cycle, std::slice::from_ref(&op), OutboxState::Pending)
                .unwrap();
            store
                .record_results(cycle, &[(ids[0], &op, EntryResult::Acknowledged)])
                .unwrap();
            assert_eq!(flag(&store, "C1"), yes);
        }
        // a Concur user recorded as unmanaged, then adopted
        let listed = ["D1".to_owned()].into_iter().collect();
        store
            .record_unmanaged(&[approving("D1", true)], &listed)
            .unwrap();
        store.set_ownership(&["D1"], Ownership::Adopted).unwrap();
        assert!(flag(&store, "D1"));
    }

    /// The stamp stored for `id`, if any.
    fn stored_stamp(store: &Store, id: &str) -> Option<u128> {
        let raw: Option<Vec<u8>> = store
            .conn
            .query_row(
                "SELECT row_stamp FROM users WHERE employee_id = ?1",
                [id],
                |r| r.get(0),
            )
            .unwrap();
        raw.map(|b| u128::from_le_bytes(b.try_into().unwrap()))
    }

    #[test]
    fn an_acknowledged_row_is_stamped_with_the_password_mac_it_ends_with() {
        use crate::model::id_key;
        use crate::model::{Op, OpKind, Secret};
        use crate::plan::RowStamps;
        use crate::plan::index::stamp;
        use crate::store::{EntryResult, OutboxState};
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.db"), None).unwrap();
        let fingerprint = 0xf1;
        let op = |kind, u: &crate::model::User, password: Option<&str>| Op {
            kind,
            employee_id: u.employee_id().to_owned(),
            user: u.clone(),
            old_login_id: None,
            old_employee_id: None,
            changes: Vec::new(),
            password: password.map(Secret::new),
            origin: "hr.csv:2".into(),
        };
        // A1 is created without a password, B1 with one.
        let (a, b) = (user("A1"), user("B1"));
        let ops = [
            op(OpKind::Create, &a, None),
            op(OpKind::Create, &b, Some("Secret-1!")),
        ];
        store.expect_stamps(&RowStamps {
            fingerprint,
            unchanged: Vec::new(),
            planned: vec![
                (id_key("A1"), 11, a.content_hash()),
                (id_key("B1"), 12, b.content_hash()),
            ],
        });
        let cycle = store.begin_cycle("hr.csv").unwrap();
        let ids = store
            .write_outbox(cycle, &ops, OutboxState::Pending)
            .unwrap();
        let acked: Vec<_> = ids
            .iter()
            .zip(&ops)
            .map(|(id, o)| (*id, o, EntryResult::Acknowledged))
            .collect();
        store.record_results(cycle, &acked).unwrap();
        let mac = |id: &str, pw: &str| store.password_mac(id, &Secret::new(pw));
        assert_eq!(
            stored_stamp(&store, "A1"),
            Some(stamp(fingerprint, 11, &a.content_hash(), None))
        );
        let b_mac = mac("B1", "Secret-1!");
        assert_eq!(
            stored_stamp(&store, "B1"),
            Some(stamp(fingerprint, 12, &b.content_hash(), Some(&b_mac)))
        );

        // B1 changes without a password: its row keeps the MAC, and so does its stamp.
        let b2 = crate::test_support::user_named("B1", "Berg");
        let update = [op(OpKind::Update, &b2, None)];
        store.expect_stamps(&RowStamps {
            fingerprint,
            unchanged: Vec::new(),
            planned: vec![(id_key("B1"), 13, b2.content_hash())],
        });
        let cycle = store.begin_cycle("hr.csv").unwrap();
        let ids = store
            .write_outbox(cycle, &update, OutboxState::Pending)
            .unwrap();
        store
            .record_results(cycle, &[(ids[0], &update[0], EntryResult::Acknowledged)])
            .unwrap();
        assert_eq!(
            stored_stamp(&store, "B1"),
            Some(stamp(fingerprint, 13, &b2.content_hash(), Some(&b_mac)))
        );
    }
}
