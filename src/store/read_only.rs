//! Opening the state database for reading only, as `status` does: nothing written, nothing
//! created beside it, and no lock taken when no process is writing it.

use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::{BUSY_TIMEOUT, Keys, Store, StoreError, busy_or, migrate, row_index};

impl Store {
    /// Opens an existing state DB for reading only (`status`): no migration, no key file, no
    /// journal-mode change, and no file created beside it, so a read-only copy in a read-only
    /// directory works. Without a `-wal` or `-journal` file no process is writing the database
    /// (SQLite removes them when the last connection closes or the transaction ends), so it is
    /// read as immutable, which creates no `-wal`/`-shm` files and takes no locks; with one, a
    /// writer may be active and the read goes through SQLite's locks, read-only. A `-journal`
    /// left by a process killed in a bulk `baseline` is rolled back by the next writing
    /// command; until then this refuses, saying so, rather than read what it cut off.
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
            return Ok(reader(conn, path));
        }
        if !path.is_file() {
            return Err(open_err("not a file (check state.path)".into()));
        }
        let writing = |suffix: &str| super::beside(path, suffix).exists();
        let immutable = !writing("-wal") && !writing("-journal");
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
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let version = conn
            .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
            .map_err(|e| match e.sqlite_error() {
                Some(f) if f.extended_code == rusqlite::ffi::SQLITE_READONLY_ROLLBACK => open_err(
                    format!(
                        "a write to it was cut off and its journal {}-journal remains; the next writing command (e.g. `concur-sync plan`) rolls it back, which a read-only status cannot",
                        path.display()
                    ),
                ),
                _ => busy_or(path, e),
            })? as usize;
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
        Ok(reader(conn, path))
    }
}

/// A store reading `conn` for the database at `path`, with no key.
fn reader(conn: Connection, path: &Path) -> Store {
    Store {
        conn,
        keys: Keys::ephemeral(),
        path: path.to_path_buf(),
        key_path: PathBuf::new(),
        expected: row_index::Expected::default(),
        index_refresh: Default::default(),
    }
}
