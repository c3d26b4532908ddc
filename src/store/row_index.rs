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

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;

use rusqlite::{Connection, OptionalExtension, params};

use super::{Ownership, Store, StoreError, now, to16, user_json};
use crate::model::{User, login_key};
use crate::plan::RowStamps;
use crate::plan::index::{ACTIVE, APPROVER, HAS_MAC, RowIndex, login_bits, stamp};

const MAGIC: &[u8; 8] = b"CSYNCIX1";

/// Stamps expected from the operations of the cycle being delivered.
#[derive(Debug, Default)]
pub struct Expected {
    fingerprint: u128,
    rows: HashMap<String, (u128, [u8; 16])>,
}

impl Expected {
    /// The stamp `employee_id`'s row earns once Concur acknowledged it holding `hash` with
    /// password MAC `mac`: when the source row planned it holds that very record.
    pub(super) fn stamp_for(
        &self,
        employee_id: &str,
        hash: &[u8; 16],
        mac: Option<&[u8; 16]>,
    ) -> Option<u128> {
        let (digest, expected) = self.rows.get(employee_id)?;
        (expected == hash).then(|| stamp(self.fingerprint, *digest, hash, mac))
    }
}

impl Store {
    /// The index file beside the state database.
    fn index_path(&self) -> PathBuf {
        let mut p = self.path.as_os_str().to_owned();
        p.push(".index");
        PathBuf::from(p)
    }

    fn generation(conn: &Connection) -> Result<i64, StoreError> {
        Ok(
            conn.query_row("SELECT n FROM snapshot_generation WHERE id = 1", [], |r| {
                r.get(0)
            })?,
        )
    }

    /// The planner's index: from the file when it was built at the database's generation,
    /// else rebuilt from `users` (and the file rewritten, when the directory allows it).
    pub fn row_index(&self) -> Result<RowIndex, StoreError> {
        let generation = Self::generation(&self.conn)?;
        let path = self.index_path();
        match read_index(&path, generation) {
            Ok(Some(ix)) => return Ok(ix),
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(file = %path.display(), error = %e, "snapshot index file not used");
            }
        }
        let (ix, generation) = self.build_index()?;
        if let Err(e) = write_index(&path, generation, &ix) {
            tracing::debug!(file = %path.display(), error = %e, "snapshot index file not written");
        }
        Ok(ix)
    }

    /// Rebuilds the index file if the snapshot changed since it was written, so that the next
    /// plan finds it ready.
    pub fn refresh_row_index(&self) -> Result<(), StoreError> {
        let generation = Self::generation(&self.conn)?;
        let path = self.index_path();
        if matches!(header_generation(&path), Ok(g) if g == generation) {
            return Ok(());
        }
        let (ix, generation) = self.build_index()?;
        if let Err(e) = write_index(&path, generation, &ix) {
            tracing::debug!(file = %path.display(), error = %e, "snapshot index file not written");
        }
        Ok(())
    }

    /// Every managed user from `users`, with the generation read in the same transaction.
    fn build_index(&self) -> Result<(RowIndex, i64), StoreError> {
        let tx = self.conn.unchecked_transaction()?;
        let generation = Self::generation(&tx)?;
        let count: i64 = tx.query_row(
            "SELECT count(*) FROM users WHERE ownership != 'unmanaged'",
            [],
            |r| r.get(0),
        )?;
        let mut ix = RowIndex::with_capacity(usize::try_from(count).unwrap_or(0));
        {
            let mut stmt = tx.prepare(
                "SELECT employee_id, login_id, active, hash, password_mac, row_stamp,
                        json_extract(fields, '$.expense_approver') = 'Y'
                 FROM users WHERE ownership != 'unmanaged'",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let id: &str = row.get_ref(0)?.as_str()?;
                let hash = to16(row.get_ref(3)?.as_blob()?).ok_or_else(|| {
                    StoreError::Corrupt(format!("user {id}: hash is not 16 bytes"))
                })?;
                let login = login_bits(login_key(row.get_ref(1)?.as_str()?));
                let mut flags = 0;
                if row.get::<_, bool>(2)? {
                    flags |= ACTIVE;
                }
                if row.get::<_, Option<bool>>(6)?.unwrap_or(false) {
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
        self.expected = Expected {
            fingerprint: stamps.fingerprint,
            rows: stamps
                .planned
                .iter()
                .map(|(id, d, h)| (id.clone(), (*d, *h)))
                .collect(),
        };
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
        let rows = ids.filter_map(|id| expected.rows.get(id).map(|(d, h)| (id, *d, h)));
        stamp_in(conn, expected.fingerprint, rows)?;
        Ok(())
    }
}

/// A user as [`Store::baseline_stream`] records it, made ready where its row was parsed (its
/// record's JSON, content hash and row stamp), so that the writing thread only writes.
pub struct BaselineRow {
    employee_id: String,
    login_id: String,
    active: bool,
    hash: [u8; 16],
    fields: String,
    stamp: [u8; 16],
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
        }
    }
}

impl Store {
    /// `baseline` of a large source, streamed: `fill` hands each user to record to `put`. One
    /// transaction and one prepared statement for all of them; nothing is recorded when `fill`
    /// fails. Returns what `fill` returned.
    pub fn baseline_stream<T, E: From<StoreError>>(
        &mut self,
        ownership: Ownership,
        fill: impl FnOnce(&mut dyn FnMut(&BaselineRow) -> Result<(), StoreError>) -> Result<T, E>,
    ) -> Result<T, E> {
        let tx = self.conn.transaction().map_err(StoreError::from)?;
        let out = {
            // As `baseline_stamped` writes each user.
            let mut stmt = tx
                .prepare(
                    "INSERT INTO users (employee_id, login_id, active, hash, fields, ownership, acked_at, row_stamp)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT(employee_id) DO UPDATE SET login_id = excluded.login_id,
                       active = excluded.active, hash = excluded.hash, fields = excluded.fields,
                       ownership = excluded.ownership, acked_at = excluded.acked_at,
                       row_stamp = CASE WHEN users.password_mac IS NULL THEN excluded.row_stamp END",
                )
                .map_err(StoreError::from)?;
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
                    &u.stamp[..]
                ])?;
                Ok(())
            };
            fill(&mut put)?
        };
        tx.commit().map_err(StoreError::from)?;
        Ok(out)
    }
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

/// The generation a file records, reading only its header.
fn header_generation(path: &std::path::Path) -> io::Result<i64> {
    let mut f = File::open(path)?;
    let mut head = [0u8; 16];
    f.read_exact(&mut head)?;
    if &head[..8] != MAGIC {
        return Err(io::Error::other("not an index file"));
    }
    Ok(i64::from_le_bytes(
        head[8..16].try_into().unwrap_or_default(),
    ))
}

/// Reads the file if it was built at `generation` and its checksum holds; `None` when stale.
fn read_index(path: &std::path::Path, generation: i64) -> io::Result<Option<RowIndex>> {
    let mut f = File::open(path)?;
    let size = f.metadata()?.len();
    let mut head = [0u8; 32];
    f.read_exact(&mut head)?;
    if &head[..8] != MAGIC || size < 48 {
        return Err(io::Error::other("not an index file"));
    }
    let at = i64::from_le_bytes(head[8..16].try_into().unwrap_or_default());
    if at != generation {
        return Ok(None);
    }
    let count = u64::from_le_bytes(head[16..24].try_into().unwrap_or_default());
    let ids = u64::from_le_bytes(head[24..32].try_into().unwrap_or_default());
    let body = size - 48;
    let mut hashing = Hashing {
        inner: (&mut f).take(body),
        hasher: xxhash_rust::xxh3::Xxh3::new(),
    };
    hashing.hasher.update(&head);
    let mut r = BufReader::with_capacity(1 << 20, &mut hashing);
    let n = usize::try_from(count).map_err(io::Error::other)?;
    if (n as u64).saturating_mul(43) > body || ids > body {
        return Err(io::Error::other("index file too short for its count"));
    }
    let mut ix = RowIndex::with_capacity(n);
    let mut rec = [0u8; 43];
    let mut id = Vec::with_capacity(64);
    let mut macb = [0u8; 16];
    for _ in 0..n {
        r.read_exact(&mut rec)?;
        let id_len = usize::from(u16::from_le_bytes([rec[0], rec[1]]));
        let flags = rec[2];
        let login = u64::from_le_bytes(rec[3..11].try_into().unwrap_or_default());
        let hash: [u8; 16] = rec[11..27].try_into().unwrap_or_default();
        let stamp = u128::from_le_bytes(rec[27..43].try_into().unwrap_or_default());
        let mac = if flags & HAS_MAC != 0 {
            r.read_exact(&mut macb)?;
            Some(macb)
        } else {
            None
        };
        id.resize(id_len, 0);
        r.read_exact(&mut id)?;
        let id = std::str::from_utf8(&id).map_err(io::Error::other)?;
        ix.push(id, login, hash, flags, mac, stamp);
    }
    let mut rest = Vec::new();
    r.read_to_end(&mut rest)?;
    drop(r);
    if !rest.is_empty() {
        return Err(io::Error::other("index file longer than its count"));
    }
    let sum = hashing.hasher.digest128().to_le_bytes();
    let mut trailer = [0u8; 16];
    f.read_exact(&mut trailer)?;
    if sum != trailer {
        return Err(io::Error::other("index file checksum does not match"));
    }
    Ok(Some(ix.finish()))
}

/// Writes the index atomically: a temporary file beside it, renamed into place.
fn write_index(path: &std::path::Path, generation: i64, ix: &RowIndex) -> io::Result<()> {
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir)?;
    let mut hashing = HashingWrite {
        inner: BufWriter::with_capacity(1 << 20, tmp.as_file().try_clone()?),
        hasher: xxhash_rust::xxh3::Xxh3::new(),
    };
    let ids: u64 = ix.entries().map(|(i, _)| ix.id(i).len() as u64).sum();
    let mut head = Vec::with_capacity(32);
    head.extend_from_slice(MAGIC);
    head.extend_from_slice(&generation.to_le_bytes());
    head.extend_from_slice(&(ix.len() as u64).to_le_bytes());
    head.extend_from_slice(&ids.to_le_bytes());
    hashing.write_all(&head)?;
    let mut rec = [0u8; 43];
    for (i, e) in ix.entries() {
        let id = ix.id(i).as_bytes();
        rec[..2].copy_from_slice(&(id.len() as u16).to_le_bytes());
        rec[2] = e.flags & (ACTIVE | APPROVER | HAS_MAC);
        rec[3..11].copy_from_slice(&e.login.to_le_bytes());
        rec[11..27].copy_from_slice(&e.hash);
        rec[27..43].copy_from_slice(&e.stamp.to_le_bytes());
        hashing.write_all(&rec)?;
        if let Some(m) = ix.mac(i) {
            hashing.write_all(m)?;
        }
        hashing.write_all(id)?;
    }
    let sum = hashing.hasher.digest128().to_le_bytes();
    let HashingWrite { inner: mut w, .. } = hashing;
    w.write_all(&sum)?;
    w.flush()?;
    drop(w);
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

struct Hashing<R> {
    inner: R,
    hasher: xxhash_rust::xxh3::Xxh3,
}

impl<R: Read> Read for &mut Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

struct HashingWrite<W> {
    inner: W,
    hasher: xxhash_rust::xxh3::Xxh3,
}

impl<W: Write> Write for HashingWrite<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
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
        assert!(store.row_index().unwrap().contains("B1"));
        let newer = store.snapshot_generation().unwrap();
        drop(store);

        // The backup comes back and takes the same number of writes, of other content.
        std::fs::copy(&backup, &db).unwrap();
        let mut store = Store::open(&db, None).unwrap();
        store
            .baseline_users(&[user("C1")], Ownership::Adopted)
            .unwrap();
        assert_ne!(store.snapshot_generation().unwrap(), newer);
        let ix = store.row_index().unwrap();
        assert!(ix.contains("A1") && ix.contains("C1") && !ix.contains("B1"));
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
                ("A1".into(), 11, a.content_hash()),
                ("B1".into(), 12, b.content_hash()),
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
            planned: vec![("B1".into(), 13, b2.content_hash())],
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
