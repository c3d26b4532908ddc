//! The `kv` table: plain key/value access, the encrypted refresh token, its expiry and its
//! geolocation, the end of a served throttle (`TokenDb`, a second connection for the token lifecycle), the
//! state key's check value, the SCIM watermarks, and the `audit` log.

use std::sync::PoisonError;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::{CycleOutcome, Keys, Store, StoreError, configure, now};
use crate::model::{ScimReadMark, ScimWatermarks, Secret};

/// The token part of the state DB on its own connection (see [`Store::token_store`]).
pub struct TokenDb {
    conn: std::sync::Mutex<Connection>,
    keys: Keys,
}

impl TokenDb {
    pub fn load(&self) -> Result<Option<(Secret, Option<String>)>, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        token_load(&conn, &self.keys)
    }
    /// Saves the newest refresh token (encrypted), its geolocation, when the access token
    /// obtained with it expires and when it expires itself (unix seconds; `None`: unknown).
    pub fn save(
        &self,
        refresh_token: &Secret,
        geolocation: Option<&str>,
        access_expires_at: Option<i64>,
        refresh_expires_at: Option<i64>,
    ) -> Result<(), StoreError> {
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        token_save(
            &conn,
            &self.keys,
            refresh_token,
            geolocation,
            access_expires_at,
        )?;
        match refresh_expires_at {
            Some(at) => kv_set(&conn, KV_REFRESH_EXPIRES, at.to_string().as_bytes()),
            None => kv_delete(&conn, KV_REFRESH_EXPIRES),
        }
    }

    /// When the stored refresh token expires (unix seconds), if Concur said.
    pub fn refresh_expires_at(&self) -> Result<Option<i64>, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        unix_seconds(&conn, KV_REFRESH_EXPIRES)
    }

    /// The wall-clock end of the last throttle Concur served (any process), if recorded.
    pub fn load_not_before(&self) -> Result<Option<std::time::SystemTime>, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
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
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let text = chrono::DateTime::<chrono::Utc>::from(until)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        kv_set(&conn, KV_NOT_BEFORE, text.as_bytes())
    }
}

pub(super) fn kv_get(conn: &Connection, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(conn
        .query_row("SELECT value FROM kv WHERE key = ?1", [key], |r| r.get(0))
        .optional()?)
}

pub(super) fn kv_delete(conn: &Connection, key: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM kv WHERE key = ?1", [key])?;
    Ok(())
}

/// A value of `key` written as unix seconds.
pub(super) fn unix_seconds(conn: &Connection, key: &str) -> Result<Option<i64>, StoreError> {
    Ok(kv_get(conn, key)?
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|s| s.trim().parse().ok()))
}

pub(super) fn kv_set(conn: &Connection, key: &str, value: &[u8]) -> Result<(), StoreError> {
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

pub(super) const KV_REFRESH_TOKEN: &str = "concur.refresh_token";
pub(super) const KV_GEOLOCATION: &str = "concur.geolocation";
pub(super) const KV_ACCESS_EXPIRES: &str = "concur.access_expires_at";
/// Unix seconds: when the stored refresh token expires, as Concur's token answer said.
pub(super) const KV_REFRESH_EXPIRES: &str = "concur.refresh_expires_at";
/// RFC 3339 UTC: no request to Concur before this (a served `Retry-After`).
pub(super) const KV_NOT_BEFORE: &str = "concur.not_before";
/// A value derived from the state key when it was created (see [`Keys::check_value`]).
pub(super) const KV_KEY_CHECK: &str = "state.key_check";

const SCIM_LAST_FULL: &str = "scim.last_full";
const SCIM_DELTA_SINCE: &str = "scim.delta_since";
const SCIM_DIGEST: &str = "scim.config_digest";
const SCIM_PENDING: &str = "scim.pending";

/// A SCIM read waiting for its cycle's outcome (JSON under `scim.pending`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PendingRead {
    cycle: i64,
    /// RFC 3339 UTC: the watermark this read stands for.
    start: String,
    /// A complete full read.
    full: bool,
    digest: String,
}

impl Store {
    /// The SCIM watermarks in force for the next read (keys `scim.*`). The read recorded for a
    /// cycle ([`Store::record_scim_read`]) becomes a watermark here, once that cycle has closed
    /// with
    /// - `success`: the delta watermark moves to the read's start; a full read also moves the
    ///   last full read time (and the settings digest);
    /// - `partial` after a full read: the same (failed and rejected users are read again by the
    ///   next full read); `partial` after a delta read: nothing moves, so the next delta reads
    ///   the same changed users again and retries what Concur refused;
    /// - anything else (`failed`, `held`, `interrupted`): nothing moves.
    ///
    /// A held cycle approved before the next read counts with its final outcome.
    pub fn scim_watermarks(&self) -> Result<ScimWatermarks, StoreError> {
        if let Some(raw) = self.kv_get(SCIM_PENDING)? {
            match serde_json::from_slice::<PendingRead>(&raw) {
                Ok(p) => {
                    let outcome = self.cycle_outcome(p.cycle)?;
                    let advance = match outcome {
                        Some(CycleOutcome::Running) => None,
                        Some(CycleOutcome::Success) => Some(true),
                        Some(CycleOutcome::Partial) => Some(p.full),
                        _ => Some(false),
                    };
                    if let Some(adv) = advance {
                        if adv {
                            self.kv_set(SCIM_DELTA_SINCE, p.start.as_bytes())?;
                            if p.full {
                                self.kv_set(SCIM_LAST_FULL, p.start.as_bytes())?;
                                self.kv_set(SCIM_DIGEST, p.digest.as_bytes())?;
                            }
                        }
                        tracing::debug!(cycle = p.cycle, outcome = ?outcome.map(CycleOutcome::as_str), advanced = adv, full = p.full, start = %p.start, "settled the previous SCIM read");
                        self.kv_delete(SCIM_PENDING)?;
                    }
                }
                Err(_) => self.kv_delete(SCIM_PENDING)?,
            }
        }
        let text = |key: &str| -> Result<Option<String>, StoreError> {
            Ok(self
                .kv_get(key)?
                .and_then(|v| String::from_utf8(v).ok())
                .filter(|s| !s.is_empty()))
        };
        Ok(ScimWatermarks {
            last_full: text(SCIM_LAST_FULL)?,
            delta_since: text(SCIM_DELTA_SINCE)?,
            digest: text(SCIM_DIGEST)?,
        })
    }

    /// Records the SCIM read `cycle` planned from, to become the watermark when that cycle
    /// ends well (see [`Store::scim_watermarks`]). Two reads in one cycle keep the earlier start
    /// and count as full only if both were, with the same settings.
    pub fn record_scim_read(&self, cycle: i64, read: &ScimReadMark) -> Result<(), StoreError> {
        let mut p = PendingRead {
            cycle,
            start: read.start.clone(),
            full: read.full,
            digest: read.digest.clone(),
        };
        if let Some(raw) = self.kv_get(SCIM_PENDING)?
            && let Ok(old) = serde_json::from_slice::<PendingRead>(&raw)
            && old.cycle == cycle
        {
            p.start = p.start.min(old.start);
            p.full = p.full && old.full && p.digest == old.digest;
        }
        let json = serde_json::to_vec(&p).unwrap_or_default();
        self.kv_set(SCIM_PENDING, &json)
    }

    pub fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        kv_get(&self.conn, key)
    }

    pub fn kv_set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        kv_set(&self.conn, key, value)
    }

    pub fn kv_delete(&self, key: &str) -> Result<(), StoreError> {
        kv_delete(&self.conn, key)
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::CycleCounts;

    /// One cycle that read SCIM at `start`: the watermarks it read with.
    fn cycle(store: &Store, start: &str, full: bool, outcome: CycleOutcome) -> ScimWatermarks {
        let marks = store.scim_watermarks().unwrap();
        let id = store.begin_cycle("scim").unwrap();
        let read = ScimReadMark {
            start: start.into(),
            full,
            digest: "d1".into(),
        };
        store.record_scim_read(id, &read).unwrap();
        store
            .finish_cycle(id, outcome, &CycleCounts::default(), None)
            .unwrap();
        marks
    }

    #[test]
    fn scim_watermarks_move_only_after_acknowledged_cycles() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db"), None).unwrap();
        assert_eq!(store.scim_watermarks().unwrap(), ScimWatermarks::default());
        // A failed full read leaves nothing behind.
        cycle(&store, "2026-01-01T00:00:00Z", true, CycleOutcome::Failed);
        assert_eq!(store.scim_watermarks().unwrap(), ScimWatermarks::default());
        cycle(&store, "2026-01-01T01:00:00Z", true, CycleOutcome::Partial);
        let m = cycle(&store, "2026-01-01T02:00:00Z", false, CycleOutcome::Success);
        assert_eq!(m.last_full.as_deref(), Some("2026-01-01T01:00:00Z"));
        assert_eq!(m.delta_since.as_deref(), Some("2026-01-01T01:00:00Z"));
        assert_eq!(m.digest.as_deref(), Some("d1"));
        // A successful delta moves only the delta watermark; partial, held and interrupted
        // deltas move nothing, so their users are read again.
        for outcome in [
            CycleOutcome::Partial,
            CycleOutcome::Held,
            CycleOutcome::Interrupted,
        ] {
            let m = cycle(&store, "2026-01-01T03:00:00Z", false, outcome);
            assert_eq!(
                m.delta_since.as_deref(),
                Some("2026-01-01T02:00:00Z"),
                "{outcome}"
            );
        }
        let m = store.scim_watermarks().unwrap();
        assert_eq!(m.delta_since.as_deref(), Some("2026-01-01T02:00:00Z"));
        assert_eq!(m.last_full.as_deref(), Some("2026-01-01T01:00:00Z"));
    }

    #[test]
    fn a_running_cycle_keeps_its_scim_read_and_two_reads_merge() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db"), None).unwrap();
        let id = store.begin_cycle("scim").unwrap();
        let read = |start: &str, full: bool| ScimReadMark {
            start: start.into(),
            full,
            digest: "d1".into(),
        };
        store
            .record_scim_read(id, &read("2026-01-01T02:00:00Z", true))
            .unwrap();
        store
            .record_scim_read(id, &read("2026-01-01T01:00:00Z", false))
            .unwrap();
        // Still running: nothing settles, the read stays pending.
        assert_eq!(store.scim_watermarks().unwrap(), ScimWatermarks::default());
        store
            .finish_cycle(id, CycleOutcome::Success, &CycleCounts::default(), None)
            .unwrap();
        let m = store.scim_watermarks().unwrap();
        assert_eq!(m.delta_since.as_deref(), Some("2026-01-01T01:00:00Z"));
        assert_eq!(m.last_full, None, "one of the two reads was a delta");
    }
}
