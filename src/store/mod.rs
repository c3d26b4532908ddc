//! The SQLite state database: the snapshot of what Concur acknowledged, the outbox of planned
//! operations, failures, rejections, cycle history, and secrets at rest (see `secrets`).
//!
//! Invariant: a user's snapshot row advances only in the transaction that closes the outbox
//! entry Concur acknowledged. Nothing here talks to the network.

pub mod files;
pub mod lock;
pub mod migrate;
pub mod readback;
pub mod secrets;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::model::{
    Op, OpKind, Rejection, RowIdentity, Secret, SnapshotEntry, SnapshotIndex, User,
};
pub use secrets::{Keys, PASSWORD_MAC_UNKNOWN};

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

/// The outcome Concur gave one outbox entry.
#[derive(Debug, Clone)]
pub enum EntryResult {
    Acknowledged,
    Failed(String),
}

/// One outbox entry as stored.
#[derive(Debug, Clone)]
pub struct OutboxEntry {
    pub id: i64,
    pub cycle_id: i64,
    pub seq: i64,
    pub op: Op,
    pub attempts: i64,
}

/// `status --json`.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub users: UserCounts,
    pub failed: Vec<FailedEntry>,
    pub rejected: Vec<Rejection>,
    pub last_cycle: Option<CycleInfo>,
    pub last_success: Option<CycleInfo>,
    pub outbox: OutboxCounts,
    pub retries: u64,
    pub throttled_seconds: f64,
    pub token: TokenInfo,
    /// Concur users that match no source user (sorted, at most 1000; `users.unmanaged` counts all).
    pub unmanaged_users: Vec<readback::UnmanagedUser>,
    /// Drifted users whose desired state Concur acknowledged again, over every reconcile.
    pub drift_repaired: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_reconcile: Option<readback::ReconcileInfo>,
    /// The Attendees v4 job, once it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attendees: Option<readback::AttendeeStatus>,
    /// Values the latest cycle that read its source changed to let a record through.
    pub warnings: Vec<Rejection>,
    /// Drop-folder problems of the last 24 hours, newest first.
    pub alerts: Vec<files::Alert>,
    /// The last file taken from a drop folder and processed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_file: Option<files::SourceFile>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct UserCounts {
    pub managed: u64,
    pub active: u64,
    pub inactive: u64,
    pub created: u64,
    pub adopted: u64,
    pub unmanaged: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailedEntry {
    pub employee_id: String,
    pub operation: String,
    pub message: String,
    pub attempts: i64,
    pub first_failed_at: String,
    pub last_failed_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CycleInfo {
    pub id: i64,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub outcome: String,
    pub source: String,
    pub message: Option<String>,
    pub counts: CycleCounts,
}

/// What a cycle did; stored as JSON in `cycles.counts`.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq)]
#[serde(default)]
pub struct CycleCounts {
    pub create: u64,
    pub update: u64,
    pub deactivate: u64,
    pub reactivate: u64,
    pub password: u64,
    pub failed: u64,
    pub rejected: u64,
    pub unchanged: u64,
    pub planned: u64,
    pub requests: u64,
    pub retries: u64,
    pub throttled_seconds: f64,
}

impl CycleCounts {
    /// Counts one acknowledged operation.
    pub fn count(&mut self, kind: OpKind) {
        match kind {
            OpKind::Create => self.create += 1,
            OpKind::Update => self.update += 1,
            OpKind::Deactivate => self.deactivate += 1,
            OpKind::Reactivate => self.reactivate += 1,
            OpKind::Password => self.password += 1,
        }
    }

    /// One line for people: what a cycle did.
    pub fn summary(&self) -> String {
        format!(
            "{} created, {} updated, {} reactivated, {} deactivated, {} passwords, {} failed, {} rejected, {} unchanged",
            self.create,
            self.update,
            self.reactivate,
            self.deactivate,
            self.password,
            self.failed,
            self.rejected,
            self.unchanged
        )
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct OutboxCounts {
    pub pending: u64,
    pub held: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TokenInfo {
    pub refresh_token_stored: bool,
    pub access_expires_at: Option<i64>,
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
}

/// The token part of the state DB on its own connection (see [`Store::token_store`]).
pub struct TokenDb {
    conn: std::sync::Mutex<Connection>,
    keys: Keys,
}

impl TokenDb {
    pub fn load(&self) -> Result<Option<(Secret, Option<String>)>, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        token_load(&conn, &self.keys)
    }
    pub fn save(
        &self,
        refresh_token: &Secret,
        geolocation: Option<&str>,
        access_expires_at: Option<i64>,
    ) -> Result<(), StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        token_save(
            &conn,
            &self.keys,
            refresh_token,
            geolocation,
            access_expires_at,
        )
    }

    /// The wall-clock end of the last throttle Concur served (any process), if recorded.
    pub fn load_not_before(&self) -> Result<Option<std::time::SystemTime>, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        Ok(kv_get(&conn, KV_NOT_BEFORE)?
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s.trim()).ok())
            .map(|t| std::time::SystemTime::from(t.with_timezone(&chrono::Utc))))
    }

    /// Records that Concur asked for no request before `until`; an earlier value never
    /// replaces a later one.
    pub fn save_not_before(&self, until: std::time::SystemTime) -> Result<(), StoreError> {
        if self.load_not_before()?.is_some_and(|t| t >= until) {
            return Ok(());
        }
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let text = chrono::DateTime::<chrono::Utc>::from(until)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        kv_set(&conn, KV_NOT_BEFORE, text.as_bytes())
    }
}

fn kv_get(conn: &Connection, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(conn
        .query_row("SELECT value FROM kv WHERE key = ?1", [key], |r| r.get(0))
        .optional()?)
}

fn kv_set(conn: &Connection, key: &str, value: &[u8]) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO kv (key, value, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        params![key, value, now()],
    )?;
    Ok(())
}

fn token_load(
    conn: &Connection,
    keys: &Keys,
) -> Result<Option<(Secret, Option<String>)>, StoreError> {
    let Some(ct) = kv_get(conn, KV_REFRESH_TOKEN)? else {
        return Ok(None);
    };
    let Some(token) = keys.decrypt(&ct) else {
        tracing::warn!(
            "the stored refresh token cannot be decrypted with the current key; requesting a new token"
        );
        return Ok(None);
    };
    let geo = kv_get(conn, KV_GEOLOCATION)?.and_then(|g| String::from_utf8(g).ok());
    Ok(Some((token, geo)))
}

fn token_save(
    conn: &Connection,
    keys: &Keys,
    refresh_token: &Secret,
    geolocation: Option<&str>,
    access_expires_at: Option<i64>,
) -> Result<(), StoreError> {
    kv_set(conn, KV_REFRESH_TOKEN, &keys.encrypt(refresh_token))?;
    match geolocation {
        Some(g) => kv_set(conn, KV_GEOLOCATION, g.as_bytes())?,
        None => {
            conn.execute("DELETE FROM kv WHERE key = ?1", [KV_GEOLOCATION])?;
        }
    }
    if let Some(at) = access_expires_at {
        kv_set(conn, KV_ACCESS_EXPIRES, at.to_string().as_bytes())?;
    }
    Ok(())
}

const KV_REFRESH_TOKEN: &str = "concur.refresh_token";
const KV_GEOLOCATION: &str = "concur.geolocation";
const KV_ACCESS_EXPIRES: &str = "concur.access_expires_at";
/// RFC 3339 UTC: no request to Concur before this (a served `Retry-After`).
const KV_NOT_BEFORE: &str = "concur.not_before";
/// A value derived from the state key when it was created (see [`Keys::check_value`]).
const KV_KEY_CHECK: &str = "state.key_check";

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
        configure(&conn)?;
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
            },
            unknown,
        ))
    }

    /// Opens an existing state DB for reading only (`status`): no migration, no key file, no
    /// journal-mode change, and no file created beside it, so a read-only copy in a read-only
    /// directory works. Without a `-wal` file no process has the database open (SQLite removes
    /// it when the last connection closes), so it is read as immutable, which creates no
    /// `-wal`/`-shm` files and takes no locks; with one, a writer may be active and the read
    /// goes through its WAL, read-only.
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        use rusqlite::OpenFlags;
        let open_err = |message: String| StoreError::Open {
            path: path.display().to_string(),
            message,
        };
        if !path.exists() {
            // Nothing has run yet: the status of an empty database, without creating one.
            tracing::warn!(state = %path.display(), "no state database yet: nothing has run");
            let mut conn = Connection::open_in_memory()?;
            migrate::migrate(&mut conn)?;
            return Ok(Store {
                conn,
                keys: Keys::ephemeral(),
                path: path.to_path_buf(),
                key_path: PathBuf::new(),
            });
        }
        if !path.is_file() {
            return Err(open_err("not a file (check state.path)".into()));
        }
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let immutable = !Path::new(&wal).exists();
        let absolute = std::path::absolute(path).map_err(|e| open_err(e.to_string()))?;
        let mut uri = String::from("file:");
        for c in absolute.to_string_lossy().chars() {
            match c {
                '%' => uri.push_str("%25"),
                '?' => uri.push_str("%3f"),
                '#' => uri.push_str("%23"),
                c => uri.push(c),
            }
        }
        uri.push_str(if immutable {
            "?mode=ro&immutable=1"
        } else {
            "?mode=ro"
        });
        let conn = Connection::open_with_flags(
            &uri,
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_URI
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| open_err(e.to_string()))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let version = conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
        if version != migrate::LATEST {
            return Err(StoreError::Schema(format!(
                "the state database has schema version {version}, this build reads {}; {}",
                migrate::LATEST,
                if version < migrate::LATEST {
                    "run any writing command (e.g. `concur-sync plan`) once to upgrade it"
                } else {
                    "run a newer concur-sync"
                }
            )));
        }
        Ok(Store {
            conn,
            keys: Keys::ephemeral(),
            path: path.to_path_buf(),
            key_path: PathBuf::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Keyed hash of a user's password.
    pub fn password_mac(&self, employee_id: &str, password: &Secret) -> [u8; 16] {
        self.keys.password_mac(employee_id, password)
    }

    // ---- snapshot ------------------------------------------------------------------------

    /// Every managed user's hash and active flag, for planning.
    pub fn snapshot_index(&self) -> Result<SnapshotIndex, StoreError> {
        let count: i64 = self.conn.query_row(
            "SELECT count(*) FROM users WHERE ownership != 'unmanaged'",
            [],
            |r| r.get(0),
        )?;
        let mut map = SnapshotIndex::with_capacity(count as usize);
        let mut stmt = self.conn.prepare(
            "SELECT employee_id, active, hash, password_mac FROM users WHERE ownership != 'unmanaged'",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let id: &str = row.get_ref(0)?.as_str()?;
            let active: bool = row.get(1)?;
            let hash = to16(row.get_ref(2)?.as_blob()?)
                .ok_or_else(|| StoreError::Corrupt(format!("user {id}: hash is not 16 bytes")))?;
            let password_mac = match row.get_ref(3)?.as_blob_or_null()? {
                Some(b) => to16(b),
                None => None,
            };
            map.insert(
                id,
                SnapshotEntry {
                    hash,
                    active,
                    password_mac,
                },
            );
        }
        Ok(map)
    }

    /// The last acknowledged record of the given users (absent ids are skipped).
    pub fn load_users<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a str>,
    ) -> Result<HashMap<String, User>, StoreError> {
        const CHUNK: usize = 256;
        let ids: Vec<&str> = ids.into_iter().collect();
        let mut out = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(CHUNK) {
            let marks = vec!["?"; chunk.len()].join(",");
            let mut stmt = self.conn.prepare_cached(&format!(
                "SELECT employee_id, fields FROM users WHERE employee_id IN ({marks})"
            ))?;
            let mut rows = stmt.query(rusqlite::params_from_iter(chunk.iter()))?;
            while let Some(r) = rows.next()? {
                let id: String = r.get(0)?;
                let fields = r.get_ref(1)?.as_str()?;
                let user: User = serde_json::from_str(fields)
                    .map_err(|e| StoreError::Corrupt(format!("user {id}: {e}")))?;
                out.insert(id, user);
            }
        }
        Ok(out)
    }

    /// Records the source passwords of users whose password was unknown (after a new state
    /// key) as what Concur holds, without sending them: a later change is then sent as usual.
    pub fn learn_password_macs(&mut self, macs: &[(String, [u8; 16])]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "UPDATE users SET password_mac = ?2 WHERE employee_id = ?1 AND password_mac = ?3",
            )?;
            for (id, mac) in macs {
                stmt.execute(params![id, &mac[..], &PASSWORD_MAC_UNKNOWN[..]])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Employee ids whose login is `login` (case-insensitive), for rename handling.
    pub fn user_count(&self) -> Result<u64, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM users", [], |r| r.get::<_, i64>(0))? as u64)
    }

    /// Records a user as already present in Concur without sending anything (`baseline`,
    /// adoption): the snapshot then says Concur holds exactly `user`.
    pub fn baseline_users(&mut self, users: &[User], ownership: &str) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO users (employee_id, login_id, active, hash, fields, ownership, acked_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT(employee_id) DO UPDATE SET login_id = excluded.login_id,
                   active = excluded.active, hash = excluded.hash, fields = excluded.fields,
                   ownership = excluded.ownership, acked_at = excluded.acked_at",
            )?;
            let at = now();
            for u in users {
                stmt.execute(params![
                    u.employee_id(),
                    u.login_id(),
                    u.is_active(),
                    &u.content_hash()[..],
                    user_json(u),
                    ownership,
                    at
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    // ---- cycles --------------------------------------------------------------------------

    /// Closes what a crash left open: running cycles become `interrupted` and their unsent or
    /// in-flight outbox entries `abandoned` (the next plan re-derives them from the snapshot,
    /// which only ever holds what Concur acknowledged). Returns the ids of interrupted cycles.
    pub fn recover(&mut self) -> Result<Vec<i64>, StoreError> {
        let tx = self.conn.transaction()?;
        let ids: Vec<i64> = {
            let mut stmt = tx.prepare("SELECT id FROM cycles WHERE outcome = 'running'")?;
            stmt.query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?
        };
        let at = now();
        for id in &ids {
            tx.execute(
                "UPDATE outbox SET state = 'abandoned', updated_at = ?2,
                   last_error = COALESCE(last_error, 'cycle interrupted before Concur answered; re-planned')
                 WHERE cycle_id = ?1 AND state IN ('pending', 'inflight')",
                params![id, at],
            )?;
            tx.execute(
                "UPDATE cycles SET outcome = 'interrupted', finished_at = ?2,
                   message = COALESCE(message, 'the process stopped before the cycle finished')
                 WHERE id = ?1",
                params![id, at],
            )?;
        }
        // A cycle that ended early (failed: Concur unreachable after its retries) leaves its
        // unsent entries open; they are re-planned just the same.
        tx.execute(
            "UPDATE outbox SET state = 'abandoned', updated_at = ?1,
               last_error = COALESCE(last_error, 'cycle ended before this was sent; re-planned')
             WHERE state IN ('pending', 'inflight')",
            params![at],
        )?;
        tx.commit()?;
        Ok(ids)
    }

    /// Held entries of earlier cycles are superseded by `cycle`'s plan: only the newest held
    /// plan can be approved.
    pub fn supersede_held(&self, cycle: i64) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE outbox SET state = 'abandoned', updated_at = ?2,
               last_error = 'superseded by the plan of cycle ' || ?1
             WHERE state = 'held' AND cycle_id < ?1",
            params![cycle, now()],
        )?;
        Ok(())
    }

    /// Closes a cycle's unsent entries as `abandoned` with a reason.
    pub fn abandon_open(&self, cycle: i64, reason: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE outbox SET state = 'abandoned', updated_at = ?2, last_error = ?3
             WHERE cycle_id = ?1 AND state IN ('pending', 'inflight')",
            params![cycle, now(), reason],
        )?;
        Ok(())
    }

    /// Turns a held plan's entries into pending ones (an operator approved it).
    pub fn release_held(&self, cycle: i64) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE outbox SET state = 'pending', updated_at = ?2 WHERE cycle_id = ?1 AND state = 'held'",
            params![cycle, now()],
        )?;
        Ok(())
    }

    /// Drops a held plan (an operator rejected it). Returns how many entries it held.
    pub fn reject_held(&self, cycle: i64) -> Result<usize, StoreError> {
        Ok(self.conn.execute(
            "UPDATE outbox SET state = 'abandoned', updated_at = ?2, last_error = 'rejected by an operator'
             WHERE cycle_id = ?1 AND state = 'held'",
            params![cycle, now()],
        )?)
    }

    /// One cycle's record.
    pub fn cycle(&self, id: i64) -> Result<Option<CycleInfo>, StoreError> {
        self.cycle_where(&format!("id = {id}"))
    }

    /// The source digest a cycle read, if it got that far.
    pub fn cycle_digest(&self, id: i64) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT source_digest FROM cycles WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
    }

    /// The digest of the newest cycle that read its source, for "already processed" checks.
    pub fn last_source_digest(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT source_digest FROM cycles WHERE source_digest IS NOT NULL ORDER BY id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Cycle ids whose held plan an operator asked to approve while a daemon held the lock.
    pub fn approval_requests(&self) -> Result<Vec<i64>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT key FROM kv WHERE key LIKE 'approve.%' ORDER BY key")?;
        let keys: Vec<String> = stmt
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(keys
            .iter()
            .filter_map(|k| k.strip_prefix("approve.")?.parse().ok())
            .collect())
    }

    pub fn request_approval(&self, cycle: i64) -> Result<(), StoreError> {
        self.kv_set(&format!("approve.{cycle}"), now().as_bytes())
    }

    pub fn clear_approval(&self, cycle: i64) -> Result<(), StoreError> {
        self.kv_delete(&format!("approve.{cycle}"))
    }

    pub fn begin_cycle(&self, source: &str) -> Result<i64, StoreError> {
        self.conn.execute(
            "INSERT INTO cycles (started_at, source) VALUES (?1, ?2)",
            params![now(), source],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn set_cycle_source_digest(&self, cycle: i64, digest: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE cycles SET source_digest = ?2 WHERE id = ?1",
            params![cycle, digest],
        )?;
        Ok(())
    }

    pub fn finish_cycle(
        &self,
        cycle: i64,
        outcome: &str,
        counts: &CycleCounts,
        message: Option<&str>,
    ) -> Result<(), StoreError> {
        let counts = serde_json::to_string(counts).unwrap_or_else(|_| "{}".into());
        self.conn.execute(
            "UPDATE cycles SET outcome = ?2, finished_at = ?3, counts = ?4, message = ?5 WHERE id = ?1",
            params![cycle, outcome, now(), counts, message],
        )?;
        Ok(())
    }

    // ---- rejections ----------------------------------------------------------------------

    /// Replaces the stored rejections with those of `cycle`.
    pub fn replace_rejections(
        &mut self,
        cycle: i64,
        rejections: &[Rejection],
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM rejections", [])?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO rejections (cycle_id, source, employee_id, field, message) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for r in rejections {
                stmt.execute(params![cycle, r.source, r.employee_id, r.field, r.message])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    // ---- outbox --------------------------------------------------------------------------

    /// Stores a cycle's plan; entries are `pending` (or `held`). Returns their ids in order.
    pub fn write_outbox(
        &mut self,
        cycle: i64,
        ops: &[Op],
        state: &str,
    ) -> Result<Vec<i64>, StoreError> {
        let tx = self.conn.transaction()?;
        let mut ids = Vec::with_capacity(ops.len());
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO outbox (cycle_id, seq, employee_id, op, payload, old_login_id, old_employee_id, origin, state, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?;
            let at = now();
            for (seq, op) in ops.iter().enumerate() {
                stmt.execute(params![
                    cycle,
                    seq as i64,
                    op.employee_id,
                    op.kind.as_str(),
                    user_json(&op.user),
                    op.old_login_id,
                    op.old_employee_id,
                    op.origin,
                    state,
                    at
                ])?;
                ids.push(tx.last_insert_rowid());
            }
        }
        tx.commit()?;
        Ok(ids)
    }

    /// Marks entries as sent (their attempt counter goes up) before the request leaves.
    pub fn mark_inflight(&mut self, ids: &[i64]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "UPDATE outbox SET state = 'inflight', attempts = attempts + 1, updated_at = ?2 WHERE id = ?1",
            )?;
            let at = now();
            for id in ids {
                stmt.execute(params![id, at])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Records Concur's answer for a batch in one transaction: acknowledged entries advance the
    /// snapshot and close; failed entries are kept with Concur's message.
    pub fn record_results(
        &mut self,
        cycle: i64,
        results: &[(i64, &Op, EntryResult)],
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        let at = now();
        {
            let mut done = tx.prepare_cached(
                "UPDATE outbox SET state = 'done', last_error = NULL, updated_at = ?2 WHERE id = ?1",
            )?;
            let mut failed = tx.prepare_cached(
                "UPDATE outbox SET state = 'failed', last_error = ?2, updated_at = ?3 WHERE id = ?1",
            )?;
            let mut upsert = tx.prepare_cached(
                "INSERT INTO users (employee_id, login_id, active, hash, fields, password_mac, ownership, acked_at, acked_cycle)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'created', ?7, ?8)
                 ON CONFLICT(employee_id) DO UPDATE SET login_id = excluded.login_id,
                   active = excluded.active, hash = excluded.hash, fields = excluded.fields,
                   password_mac = COALESCE(excluded.password_mac, users.password_mac),
                   ownership = CASE users.ownership WHEN 'unmanaged' THEN 'adopted' ELSE users.ownership END,
                   acked_at = excluded.acked_at, acked_cycle = excluded.acked_cycle",
            )?;
            let mut set_mac = tx.prepare_cached(
                "UPDATE users SET password_mac = ?2, acked_at = ?3, acked_cycle = ?4 WHERE employee_id = ?1",
            )?;
            let mut clear_failures =
                tx.prepare_cached("DELETE FROM failures WHERE employee_id = ?1")?;
            let mut clear_failure =
                tx.prepare_cached("DELETE FROM failures WHERE employee_id = ?1 AND op = ?2")?;
            let mut rename = tx.prepare_cached("DELETE FROM users WHERE employee_id = ?1")?;
            let mut add_failure = tx.prepare_cached(
                "INSERT INTO failures (employee_id, op, message, attempts, first_failed_at, last_failed_at, cycle_id)
                 VALUES (?1, ?2, ?3, 1, ?4, ?4, ?5)
                 ON CONFLICT(employee_id, op) DO UPDATE SET message = excluded.message,
                   attempts = failures.attempts + 1, last_failed_at = excluded.last_failed_at,
                   cycle_id = excluded.cycle_id",
            )?;
            for (id, op, result) in results {
                match result {
                    EntryResult::Acknowledged => {
                        done.execute(params![id, at])?;
                        let mac = op
                            .password
                            .as_ref()
                            .map(|p| self.keys.password_mac(&op.employee_id, p).to_vec());
                        if op.kind == OpKind::Password {
                            set_mac.execute(params![op.employee_id, mac, at, cycle])?;
                            clear_failure.execute(params![op.employee_id, op.kind.as_str()])?;
                            continue;
                        }
                        if let Some(old) = op.old_employee_id.as_deref()
                            && old != op.employee_id
                        {
                            rename.execute([old])?;
                            clear_failures.execute([old])?;
                        }
                        upsert.execute(params![
                            op.employee_id,
                            op.user.login_id(),
                            op.user.is_active(),
                            &op.user.content_hash()[..],
                            user_json(&op.user),
                            mac,
                            at,
                            cycle
                        ])?;
                        clear_failures.execute([&op.employee_id])?;
                    }
                    EntryResult::Failed(message) => {
                        failed.execute(params![id, message, at])?;
                        add_failure.execute(params![
                            op.employee_id,
                            op.kind.as_str(),
                            message,
                            at,
                            cycle
                        ])?;
                    }
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Open (pending or in-flight) entries of a cycle, in send order.
    pub fn open_entries(
        &self,
        cycle: i64,
        states: &[&str],
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, seq, employee_id, op, payload, old_login_id, old_employee_id, origin, attempts, state
             FROM outbox WHERE cycle_id = ?1 ORDER BY seq",
        )?;
        let mut out = Vec::new();
        let mut rows = stmt.query([cycle])?;
        while let Some(r) = rows.next()? {
            let state: String = r.get(9)?;
            if !states.contains(&state.as_str()) {
                continue;
            }
            let kind_s: String = r.get(3)?;
            let payload: String = r.get(4)?;
            let employee_id: String = r.get(2)?;
            let kind = OpKind::parse(&kind_s)
                .ok_or_else(|| StoreError::Corrupt(format!("outbox op {kind_s}")))?;
            let user: User = serde_json::from_str(&payload)
                .map_err(|e| StoreError::Corrupt(format!("outbox {employee_id}: {e}")))?;
            out.push(OutboxEntry {
                id: r.get(0)?,
                cycle_id: cycle,
                seq: r.get(1)?,
                op: Op {
                    kind,
                    employee_id,
                    user,
                    old_login_id: r.get(5)?,
                    old_employee_id: r.get(6)?,
                    changes: Vec::new(),
                    password: None,
                    origin: r.get(7)?,
                },
                attempts: r.get(8)?,
            });
        }
        Ok(out)
    }

    // ---- key/value and tokens ------------------------------------------------------------

    pub fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        kv_get(&self.conn, key)
    }

    pub fn kv_set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        kv_set(&self.conn, key, value)
    }

    pub fn kv_delete(&self, key: &str) -> Result<(), StoreError> {
        self.conn.execute("DELETE FROM kv WHERE key = ?1", [key])?;
        Ok(())
    }

    /// The persisted refresh token (decrypted) and its geolocation.
    pub fn load_token(&self) -> Result<Option<(Secret, Option<String>)>, StoreError> {
        token_load(&self.conn, &self.keys)
    }

    /// Persists the newest refresh token, encrypted.
    pub fn save_token(
        &self,
        refresh_token: &Secret,
        geolocation: Option<&str>,
        access_expires_at: Option<i64>,
    ) -> Result<(), StoreError> {
        token_save(
            &self.conn,
            &self.keys,
            refresh_token,
            geolocation,
            access_expires_at,
        )
    }

    /// A second handle on this database for the token lifecycle, usable from any thread.
    pub fn token_store(&self) -> Result<TokenDb, StoreError> {
        let conn = Connection::open(&self.path)?;
        configure(&conn)?;
        Ok(TokenDb {
            conn: std::sync::Mutex::new(conn),
            keys: Keys::read(&self.key_path)?.ok_or_else(|| StoreError::Key {
                path: self.key_path.display().to_string(),
                message: "the key file disappeared while the service was running".into(),
            })?,
        })
    }

    pub fn audit(&self, action: &str, detail: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO audit (at, action, detail) VALUES (?1, ?2, ?3)",
            params![now(), action, detail],
        )?;
        Ok(())
    }

    // ---- status --------------------------------------------------------------------------

    pub fn status(&self) -> Result<Status, StoreError> {
        let mut users = UserCounts::default();
        {
            let mut stmt = self.conn.prepare(
                "SELECT ownership, active, count(*) FROM users GROUP BY ownership, active",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let own: String = r.get(0)?;
                let active: bool = r.get(1)?;
                let n = r.get::<_, i64>(2)? as u64;
                match own.as_str() {
                    "unmanaged" => {
                        users.unmanaged += n;
                        continue;
                    }
                    "adopted" => users.adopted += n,
                    _ => users.created += n,
                }
                users.managed += n;
                if active {
                    users.active += n
                } else {
                    users.inactive += n
                }
            }
        }
        let failed = {
            let mut stmt = self.conn.prepare(
                "SELECT employee_id, op, message, attempts, first_failed_at, last_failed_at
                 FROM failures ORDER BY employee_id, op",
            )?;
            stmt.query_map([], |r| {
                Ok(FailedEntry {
                    employee_id: r.get(0)?,
                    operation: r.get(1)?,
                    message: r.get(2)?,
                    attempts: r.get(3)?,
                    first_failed_at: r.get(4)?,
                    last_failed_at: r.get(5)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?
        };
        let rejected = {
            let mut stmt = self.conn.prepare(
                "SELECT source, employee_id, field, message FROM rejections ORDER BY id",
            )?;
            stmt.query_map([], |r| {
                Ok(Rejection {
                    source: r.get(0)?,
                    employee_id: r.get(1)?,
                    field: r.get(2)?,
                    message: r.get(3)?,
                    identity: RowIdentity::default(),
                })
            })?
            .collect::<Result<Vec<_>, _>>()?
        };
        let last_cycle = self.cycle_where("1 = 1")?;
        let last_success = self.cycle_where("outcome IN ('success', 'partial', 'degraded')")?;
        let (pending, held): (i64, i64) = self.conn.query_row(
            "SELECT count(*) FILTER (WHERE state IN ('pending', 'inflight')),
                    count(*) FILTER (WHERE state = 'held') FROM outbox",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let (retries, throttled_seconds) = last_cycle
            .as_ref()
            .map(|c| (c.counts.retries, c.counts.throttled_seconds))
            .unwrap_or_default();
        let token = TokenInfo {
            refresh_token_stored: self.kv_get(KV_REFRESH_TOKEN)?.is_some(),
            access_expires_at: self
                .kv_get(KV_ACCESS_EXPIRES)?
                .and_then(|v| String::from_utf8(v).ok())
                .and_then(|s| s.parse().ok()),
        };
        Ok(Status {
            users,
            failed,
            rejected,
            last_cycle,
            last_success,
            outbox: OutboxCounts {
                pending: pending as u64,
                held: held as u64,
            },
            retries,
            throttled_seconds,
            token,
            unmanaged_users: self.unmanaged_users(1000)?,
            drift_repaired: self.drift_repaired_total()?,
            last_reconcile: self.last_reconcile()?,
            attendees: self.attendee_status()?,
            warnings: self.warnings()?,
            alerts: self.recent_alerts()?,
            last_file: self.last_processed_file()?,
        })
    }

    fn cycle_where(&self, cond: &str) -> Result<Option<CycleInfo>, StoreError> {
        let sql = format!(
            "SELECT id, started_at, finished_at, outcome, source, message, counts FROM cycles
             WHERE {cond} ORDER BY id DESC LIMIT 1"
        );
        Ok(self
            .conn
            .query_row(&sql, [], |r| {
                let counts: String = r.get(6)?;
                Ok(CycleInfo {
                    id: r.get(0)?,
                    started_at: r.get(1)?,
                    finished_at: r.get(2)?,
                    outcome: r.get(3)?,
                    source: r.get(4)?,
                    message: r.get(5)?,
                    counts: serde_json::from_str(&counts).unwrap_or_default(),
                })
            })
            .optional()?)
    }

    /// Direct access for read-only queries in tests and tools.
    pub fn connection(&self) -> &Connection {
        &self.conn
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
    let mut p = db.as_os_str().to_owned();
    p.push(".key");
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
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600));
    }
}

fn configure(conn: &Connection) -> Result<(), StoreError> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
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
    use crate::model::Field;

    fn user(id: &str, login: &str) -> User {
        let mut u = User::new();
        u.set(Field::EMPLOYEE_ID, id);
        u.set(Field::LOGIN_ID, login);
        u.set(Field::LAST_NAME, "Ünal & <Sons>");
        u
    }

    fn op(kind: OpKind, u: User) -> Op {
        Op {
            kind,
            employee_id: u.employee_id().to_owned(),
            user: u,
            old_login_id: None,
            old_employee_id: None,
            changes: vec![],
            password: None,
            origin: "t.csv:2".into(),
        }
    }

    #[test]
    fn ack_advances_snapshot_failure_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("s.db"), None).unwrap();
        let c = s.begin_cycle("t.csv").unwrap();
        let ops = vec![
            op(OpKind::Create, user("1", "a@x")),
            op(OpKind::Create, user("2", "b@x")),
        ];
        let ids = s.write_outbox(c, &ops, "pending").unwrap();
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
                .write_outbox(c, &[op(OpKind::Create, user("1", "a@x"))], "pending")
                .unwrap();
            s.mark_inflight(&ids).unwrap();
        }
        let mut s = Store::open(&path, None).unwrap();
        assert_eq!(s.recover().unwrap().len(), 1);
        assert_eq!(
            s.status().unwrap().last_cycle.unwrap().outcome,
            "interrupted"
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
