//! The SQLite state database: opening, configuring and migrating it, the state key check, and
//! `StoreError`. `Store`'s methods live beside it by concept: `snapshot` (users, the snapshot
//! index, `record_results`), `outbox` (plans, held plans, recovery), `cycles` (cycle history,
//! rejections), `status`, `kv` (key/value, tokens, throttle end, audit), `readback`, `files`,
//! `attendees`, `operators` (one user's story, the snapshot generation), `queue` (failed and
//! parked records), and secrets at rest in `secrets`; `journal` is the run lifecycle (outbox
//! states, recovery, rejections) the user cycle and the attendee job share.
//!
//! Invariant: a user's snapshot row advances only in the transaction that closes the outbox
//! entry Concur acknowledged. Nothing here talks to the network.

mod atomic;
pub mod attendees;
mod baseline;
mod cycles;
pub mod files;
mod index_file;
mod journal;
mod kv;
pub mod lock;
pub mod migrate;
mod operators;
mod outbox;
mod queue;
mod read_only;
pub mod readback;
mod row_index;
pub mod secrets;
mod snapshot;
mod states;
mod status;

use rusqlite::{Connection, params};
use std::path::{Path, PathBuf};

use crate::model::{Secret, User};
pub(crate) use atomic::Atomic;
pub use baseline::BaselineRow;
pub use cycles::{CycleCounts, CycleInfo};
pub use index_file::LoadedIndex;
pub use journal::RunInfo;
pub use kv::TokenDb;
use kv::{KV_ACCESS_EXPIRES, KV_KEY_CHECK, KV_REFRESH_TOKEN, kv_get, kv_set};
pub use operators::{AuditRow, HistoryEntry, SentRequest, SnapshotRow};
pub use outbox::{
    Entry, OutboxEntry, ProvisionsInFlight, SubmittedEntry, SubmittedProvision, Unsettled,
};
pub use queue::{FailedRecord, Skip, SkipsFollowed};
pub use secrets::{Keys, PASSWORD_MAC_UNKNOWN};
pub use snapshot::EntryResult;
pub use states::{CycleOutcome, OutboxState, Ownership, ReconcileOutcome};
pub use status::{
    FailedEntry, HELD_SAMPLE, HeldEntry, HeldPlan, OutboxCounts, Overview, ProvisionRow, Status,
    Superseded, TokenInfo, UserCounts,
};

/// Errors of the state database boundary.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("state database schema: {0}")]
    Schema(String),
    #[error("state key file {path}: {message}")]
    Key { path: String, message: String },
    #[error("state database {path}: {message}")]
    Open { path: String, message: String },
    #[error("{0}")]
    Locked(String),
    #[error("state database holds damaged data: {0}")]
    Corrupt(String),
}

impl From<rusqlite::types::FromSqlError> for StoreError {
    fn from(e: rusqlite::types::FromSqlError) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The state database.
pub struct Store {
    conn: Connection,
    keys: Keys,
    path: PathBuf,
    key_path: PathBuf,
    /// Row stamps the operations being delivered earn when acknowledged.
    expected: row_index::Expected,
    /// The rebuild of the index file under way ([`Store::refresh_row_index`]).
    index_refresh: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for Store {
    /// The index file a refresh is writing is finished before the database closes. Meanwhile
    /// the log is copied into the database, so that closing, which does that too, has little
    /// left to do.
    fn drop(&mut self) {
        if self.index_refresh.lock().is_ok_and(|r| r.is_some()) {
            let _ = self
                .conn
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        }
        self.wait_for_index();
    }
}

/// What to do about the state key when opening the database.
#[derive(Clone, Copy, PartialEq, Eq)]
enum KeyMode {
    /// Use the key file; create it only for a database that holds no secrets yet.
    Existing,
    /// `--new-key`: if the key file is missing or does not match, start a new key.
    New,
}

/// Why the key file cannot be used with this database, and what the operator can do.
fn key_refusal(key_path: &Path, db: &Path, problem: &str) -> StoreError {
    StoreError::Key {
        path: key_path.display().to_string(),
        message: format!(
            "{problem}, but the state database {} holds secrets made with it (password hashes, \
             the refresh token). Restore this key file from the backup taken with the database; \
             or start a new key with `concur-sync sync --new-key` (or `run --new-key`): every \
             stored password is then unknown and none is sent until the source changes it, and \
             a new refresh token is obtained from the configured credentials",
            db.display()
        ),
    }
}

/// Whether the database already holds anything protected by a state key.
fn holds_secrets(conn: &Connection) -> Result<bool, StoreError> {
    Ok(kv_get(conn, KV_KEY_CHECK)?.is_some()
        || kv_get(conn, KV_REFRESH_TOKEN)?.is_some()
        || conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM users WHERE password_mac IS NOT NULL)",
            [],
            |r| r.get::<_, bool>(0),
        )?)
}

/// Whether `keys` is the key the database's secrets were made with. A database from before
/// key checks has none: its refresh token, if any, tells.
fn key_matches(conn: &Connection, keys: &Keys) -> Result<bool, StoreError> {
    match kv_get(conn, KV_KEY_CHECK)? {
        Some(check) => Ok(check == keys.check_value()),
        None => Ok(match kv_get(conn, KV_REFRESH_TOKEN)? {
            Some(ct) => keys.decrypt(&ct).is_some(),
            None => true,
        }),
    }
}

impl Store {
    /// Opens (creating if needed) the state DB at `path`, applies migrations, loads the keys
    /// from `key_file` (default: `<path>.key`).
    ///
    /// A missing key file is created only for a database that holds no secrets yet; a missing
    /// or different key for a database that does is refused with what to restore (see
    /// [`Store::open_with_new_key`]).
    pub fn open(path: &Path, key_file: Option<&Path>) -> Result<Store, StoreError> {
        Self::open_mode(path, key_file, KeyMode::Existing).map(|(s, _)| s)
    }

    /// `--new-key`: opens the database like [`Store::open`], but when the key file is missing
    /// or cannot decrypt what the database holds, starts a new key instead of refusing: every
    /// stored password hash becomes unknown ([`PASSWORD_MAC_UNKNOWN`]: the next source password
    /// is recorded, not sent) and the undecryptable refresh token is dropped. A key file that
    /// does not match is kept aside as `<key>.replaced-<time>`, never deleted. Returns how many
    /// stored passwords became unknown, or `None` when the key matched and nothing changed.
    pub fn open_with_new_key(
        path: &Path,
        key_file: Option<&Path>,
    ) -> Result<(Store, Option<u64>), StoreError> {
        Self::open_mode(path, key_file, KeyMode::New)
    }

    fn open_mode(
        path: &Path,
        key_file: Option<&Path>,
        mode: KeyMode,
    ) -> Result<(Store, Option<u64>), StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Open {
                path: path.display().to_string(),
                message: format!("cannot create directory {}: {e}", dir.display()),
            })?;
        }
        let key_path = key_file
            .map(Path::to_path_buf)
            .unwrap_or_else(|| default_key_path(path));
        let created = create_private(path).map_err(|e| StoreError::Open {
            path: path.display().to_string(),
            message: format!("cannot create: {e}"),
        })?;
        let mut conn = Connection::open(path).map_err(|e| StoreError::Open {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        configure(&conn).map_err(|e| busy_or(path, e))?;
        if created {
            restrict_side_files(path);
        }
        migrate::migrate(&mut conn)?;
        let (keys, unknown) = match (Keys::read(&key_path)?, mode) {
            (Some(keys), _) if key_matches(&conn, &keys)? => (keys, None),
            (Some(_), KeyMode::Existing) => {
                return Err(key_refusal(
                    &key_path,
                    path,
                    "this key cannot decrypt what the database holds (it is not the key the database was used with)",
                ));
            }
            (None, KeyMode::Existing) if holds_secrets(&conn)? => {
                return Err(key_refusal(&key_path, path, "the key file is missing"));
            }
            (None, KeyMode::Existing) => (Keys::create(&key_path)?, None),
            (old, KeyMode::New) => {
                if old.is_some() {
                    let mut aside = key_path.as_os_str().to_owned();
                    aside.push(format!(
                        ".replaced-{}",
                        chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
                    ));
                    std::fs::rename(&key_path, &aside).map_err(|e| StoreError::Key {
                        path: key_path.display().to_string(),
                        message: format!("cannot move the old key aside: {e}"),
                    })?;
                }
                let keys = Keys::create(&key_path)?;
                let n = forget_secrets(&mut conn)?;
                (keys, Some(n))
            }
        };
        let check = keys.check_value();
        if kv_get(&conn, KV_KEY_CHECK)?.as_deref() != Some(&check[..]) {
            kv_set(&conn, KV_KEY_CHECK, &check)?;
        }
        Ok((
            Store {
                conn,
                keys,
                path: path.to_path_buf(),
                key_path,
                expected: row_index::Expected::default(),
                index_refresh: Default::default(),
            },
            unknown,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `writes` as one transaction: every write method it calls that begins an [`Atomic`]
    /// write becomes part of it, and all of it is committed (one sync to disk) or nothing is.
    pub fn in_one_transaction<R>(
        &mut self,
        writes: impl FnOnce(&mut Store) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        match writes(self) {
            Ok(r) => {
                if let Err(e) = self.conn.execute_batch("COMMIT") {
                    let _ = self.conn.execute_batch("ROLLBACK");
                    return Err(e.into());
                }
                Ok(r)
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Keyed hash of a user's password.
    pub fn password_mac(&self, employee_id: &str, password: &Secret) -> [u8; 16] {
        self.keys.password_mac(employee_id, password)
    }

    /// Whether the database still answers a query (readiness).
    pub fn ping(&self) -> Result<(), StoreError> {
        self.conn
            .query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?;
        Ok(())
    }
}

/// After a new state key: every stored password hash becomes unknown and the refresh token
/// (encrypted with the lost key) is dropped. Returns how many passwords became unknown.
fn forget_secrets(conn: &mut Connection) -> Result<u64, StoreError> {
    let tx = conn.transaction()?;
    let n = tx.execute(
        "UPDATE users SET password_mac = ?1 WHERE password_mac IS NOT NULL",
        [&PASSWORD_MAC_UNKNOWN[..]],
    )?;
    tx.execute(
        "DELETE FROM kv WHERE key IN (?1, ?2)",
        [KV_REFRESH_TOKEN, KV_ACCESS_EXPIRES],
    )?;
    tx.execute(
        "INSERT INTO audit (at, action, detail) VALUES (?1, 'new-key', ?2)",
        params![
            now(),
            format!("new state key: {n} stored passwords now unknown, refresh token dropped")
        ],
    )?;
    tx.commit()?;
    Ok(n as u64)
}

/// `<state>.key` beside the database.
pub fn default_key_path(db: &Path) -> PathBuf {
    beside(db, ".key")
}

/// The file beside the state database `db` named by `suffix` (`-wal`, `-journal`, `.lock`, …).
pub fn beside(db: &Path, suffix: &str) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// Creates an empty state DB file readable by its owner only (whatever the umask), so that
/// SQLite, which gives its `-wal` and `-shm` files the database's mode, never widens them.
/// Returns whether the file was created.
fn create_private(path: &Path) -> std::io::Result<bool> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(f) => {
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Sets the `-wal` and `-shm` files of a database this process created to mode 0600.
fn restrict_side_files(db: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for suffix in ["-wal", "-shm"] {
        let _ =
            std::fs::set_permissions(beside(db, suffix), std::fs::Permissions::from_mode(0o600));
    }
}

/// How long a connection waits for another one's lock before it reports the database busy.
pub(crate) const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What a connection refused by another one's write lock says, after [`BUSY_TIMEOUT`].
const HELD_FOR_WRITING: &str = "another process holds it for writing (a `baseline` holds it until it ends); try again when it is done";

/// `e`, saying so when another process's write lock refused it.
fn busy_or(path: &Path, e: rusqlite::Error) -> StoreError {
    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) {
        StoreError::Open {
            path: path.display().to_string(),
            message: HELD_FOR_WRITING.into(),
        }
    } else {
        StoreError::from(e)
    }
}

fn configure(conn: &Connection) -> Result<(), rusqlite::Error> {
    // First, so that the switch to the log below waits for a writer too.
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // A page cache that holds what a large sync keeps changing (the open outbox entries, the
    // snapshot's indexes) instead of the default 2 MiB; pages are only cached as they are read.
    conn.pragma_update(None, "cache_size", -32_768)?;
    // Checkpoints every 32 MiB of log rather than 4 MiB: a page changed by many transactions
    // is copied into the database once per checkpoint. The log is cut back after it.
    conn.pragma_update(None, "wal_autocheckpoint", 8_192)?;
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    // Statement and savepoint journals (a ledger transaction holds several) stay in memory:
    // spilled to temporary files they cost a system call per page.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(())
}

fn to16(b: &[u8]) -> Option<[u8; 16]> {
    b.try_into().ok()
}

fn user_json(u: &User) -> String {
    serde_json::to_string(u).unwrap_or_else(|_| "{}".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Field, Op, OpKind};

    fn user(id: &str, login: &str) -> User {
        let mut u = User::new();
        u.set(Field::EMPLOYEE_ID, id);
        u.set(Field::LOGIN_ID, login);
        u.set(Field::LAST_NAME, "Ünal & <Sons>");
        u
    }

    fn op(kind: OpKind, u: User) -> Op {
        crate::test_support::op(kind, u, "t.csv:2")
    }

    /// A fresh store with one cycle whose outbox holds two pending creates (employees 1, 2).
    fn two_creates_pending() -> (tempfile::TempDir, Store, i64, Vec<Op>, Vec<i64>) {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("s.db"), None).unwrap();
        let c = s.begin_cycle("t.csv").unwrap();
        let ops = vec![
            op(OpKind::Create, user("1", "a@x")),
            op(OpKind::Create, user("2", "b@x")),
        ];
        let ids = s.write_outbox(c, &ops, OutboxState::Pending).unwrap();
        (dir, s, c, ops, ids)
    }

    #[test]
    fn a_concur_uuid_follows_its_user_through_a_change_of_employee_id() {
        let (_dir, mut s, c, ops, ids) = two_creates_pending();
        let acked: Vec<_> = ids
            .iter()
            .zip(&ops)
            .map(|(id, op)| (*id, op, EntryResult::Acknowledged))
            .collect();
        s.record_results(c, &acked).unwrap();
        s.set_concur_uuids(&[("1", "u-1"), ("3", "u-3")]).unwrap();
        assert_eq!(
            s.concur_uuids(["1", "2", "3"]).unwrap(),
            [("1".to_owned(), "u-1".to_owned())].into()
        );
        // Employee 1 becomes 9: the same Concur user.
        let mut renamed = op(OpKind::Update, user("9", "a@x"));
        renamed.old_employee_id = Some("1".into());
        let id = s
            .write_outbox(c, std::slice::from_ref(&renamed), OutboxState::Pending)
            .unwrap();
        s.record_results(c, &[(id[0], &renamed, EntryResult::Acknowledged)])
            .unwrap();
        assert_eq!(
            s.concur_uuids(["1", "9"]).unwrap(),
            [("9".to_owned(), "u-1".to_owned())].into()
        );
        // Concur says the UUID is employee 2's: it moves, never held twice.
        s.set_concur_uuids(&[("2", "u-1")]).unwrap();
        assert_eq!(
            s.concur_uuids(["2", "9"]).unwrap(),
            [("2".to_owned(), "u-1".to_owned())].into()
        );
    }

    #[test]
    fn ack_advances_snapshot_failure_does_not() {
        let (_dir, mut s, c, ops, ids) = two_creates_pending();
        s.mark_inflight(&ids).unwrap();
        s.record_results(
            c,
            &[
                (ids[0], &ops[0], EntryResult::Acknowledged),
                (
                    ids[1],
                    &ops[1],
                    EntryResult::Failed("Missing Required Field: Password".into()),
                ),
            ],
        )
        .unwrap();
        let idx = s.snapshot_index().unwrap();
        assert_eq!(idx.len(), 1);
        assert_eq!(idx.get("1").unwrap().hash, ops[0].user.content_hash());
        let loaded = s.load_users(["1"]).unwrap();
        assert_eq!(loaded["1"], ops[0].user);
        let st = s.status().unwrap();
        assert_eq!(st.users.managed, 1);
        assert_eq!(st.failed.len(), 1);
        assert_eq!(st.failed[0].message, "Missing Required Field: Password");
    }

    #[test]
    fn recover_abandons_open_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        {
            let mut s = Store::open(&path, None).unwrap();
            let c = s.begin_cycle("t.csv").unwrap();
            let ids = s
                .write_outbox(
                    c,
                    &[op(OpKind::Create, user("1", "a@x"))],
                    OutboxState::Pending,
                )
                .unwrap();
            s.mark_inflight(&ids).unwrap();
        }
        let mut s = Store::open(&path, None).unwrap();
        assert_eq!(s.recover().unwrap().len(), 1);
        assert_eq!(
            s.status().unwrap().last_cycle.unwrap().outcome,
            CycleOutcome::Interrupted
        );
        assert_eq!(s.status().unwrap().outbox.pending, 0);
        assert!(s.snapshot_index().unwrap().is_empty());
    }

    #[test]
    fn token_is_encrypted_at_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let s = Store::open(&path, None).unwrap();
        s.save_token(
            &Secret::new("refresh-abcdef-123456"),
            Some("http://x"),
            Some(5),
        )
        .unwrap();
        let (t, g) = s.load_token().unwrap().unwrap();
        assert_eq!(t.expose(), "refresh-abcdef-123456");
        assert_eq!(g.as_deref(), Some("http://x"));
        drop(s);
        let bytes = std::fs::read(&path).unwrap();
        let wal = std::fs::read(dir.path().join("s.db-wal")).unwrap_or_default();
        for b in [bytes, wal] {
            assert!(!b.windows(12).any(|w| w == b"refresh-abcd"));
        }
    }
}
