//! The `kv` table: plain key/value access, the encrypted refresh token and its geolocation,
//! the end of a served throttle (`TokenDb`, a second connection for the token lifecycle), the
//! state key's check value, and the `audit` log.

use rusqlite::{Connection, OptionalExtension, params};

use super::{Keys, Store, StoreError, configure, now};
use crate::model::Secret;

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

pub(super) fn kv_get(conn: &Connection, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(conn
        .query_row("SELECT value FROM kv WHERE key = ?1", [key], |r| r.get(0))
        .optional()?)
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
/// RFC 3339 UTC: no request to Concur before this (a served `Retry-After`).
pub(super) const KV_NOT_BEFORE: &str = "concur.not_before";
/// A value derived from the state key when it was created (see [`Keys::check_value`]).
pub(super) const KV_KEY_CHECK: &str = "state.key_check";

impl Store {
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
}
