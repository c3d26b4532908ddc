//! The pushed directory in the state database (`scim_push_resources`, migration 0010): each
//! resource as it was accepted, with `meta` (version, created, lastModified) kept in its JSON
//! so that a GET returns what was stored. Every change is one IMMEDIATE transaction, committed
//! (synchronous = FULL) before the caller answers: a push that was answered survives a crash.
//! Uniqueness (userName ignoring case, externalId) is checked inside that transaction.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde_json::Value;

use super::filter::get_ci;
use super::resource::{Kind, Problem, key_ci};

/// One stored resource.
#[derive(Debug, Clone)]
pub struct Stored {
    pub id: String,
    pub version: i64,
    /// The resource with `id` and `meta` (without `meta.location`, which depends on the URL
    /// the client used).
    pub resource: Value,
}

impl Stored {
    /// The ETag of this version.
    pub fn etag(&self) -> String {
        format!("W/\"{}\"", self.version)
    }
}

/// A connection to the state database for the pushed directory.
pub struct PushStore {
    conn: Connection,
}

fn internal(e: &rusqlite::Error) -> Problem {
    tracing::error!(error = %e, "SCIM push: the state database failed");
    Problem::new(500, "the state database failed; nothing was stored")
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl PushStore {
    /// Opens the state database (its migrations already applied by `Store::open`).
    pub fn open(path: &Path) -> Result<PushStore, rusqlite::Error> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        Ok(PushStore { conn })
    }

    /// Opens the state database read-only, for a cycle's read.
    pub fn open_read_only(path: &Path) -> Result<PushStore, rusqlite::Error> {
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        Ok(PushStore { conn })
    }

    pub fn get(&self, kind: Kind, id: &str) -> Result<Option<Stored>, Problem> {
        get(&self.conn, kind, id).map_err(|e| internal(&e))
    }

    /// Every resource of `kind` in creation order; with `lookup` only those whose `userName`
    /// (ignoring case), `externalId` or `id` equals the value (the caller filters further).
    pub fn list(&self, kind: Kind, lookup: Option<(&str, &str)>) -> Result<Vec<Stored>, Problem> {
        let base =
            "SELECT id, version, resource FROM scim_push_resources WHERE kind = ?1 AND deleted = 0";
        let order = " ORDER BY created, id";
        let run = || -> Result<Vec<Stored>, rusqlite::Error> {
            let rows = match lookup {
                Some((col, v)) => {
                    let (clause, value) = match col {
                        "userName" | "displayName" => (" AND name_key = ?2", v.to_lowercase()),
                        "externalId" => (" AND external_id = ?2", v.to_owned()),
                        _ => (" AND id = ?2", v.to_owned()),
                    };
                    let mut st = self.conn.prepare(&format!("{base}{clause}{order}"))?;
                    st.query_map(params![kind.as_str(), value], row)?
                        .collect::<Result<Vec<_>, _>>()?
                }
                None => {
                    let mut st = self.conn.prepare(&format!("{base}{order}"))?;
                    st.query_map(params![kind.as_str()], row)?
                        .collect::<Result<Vec<_>, _>>()?
                }
            };
            Ok(rows.into_iter().flatten().collect())
        };
        run().map_err(|e| internal(&e))
    }

    /// Stores a new resource (already normalized and checked); answers it with `id` and `meta`.
    pub fn create(&mut self, kind: Kind, mut resource: Value) -> Result<Stored, Problem> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| internal(&e))?;
        let id = uuid::Uuid::new_v4().to_string();
        unique(&tx, kind, &resource, None)?;
        if kind == Kind::User {
            // A deleted user with this userName or externalId gives way to the new one.
            tx.execute(
                "DELETE FROM scim_push_resources WHERE kind = 'User' AND deleted = 1
                 AND (name_key = ?1 OR external_id = ?2)",
                params![
                    text(&resource, "userName").unwrap_or("").to_lowercase(),
                    text(&resource, "externalId")
                ],
            )
            .map_err(|e| internal(&e))?;
        }
        let at = now();
        set_meta(kind, &mut resource, &id, 1, &at, &at);
        write(&tx, kind, &id, &resource, 1, &at, &at, true).map_err(|e| internal(&e))?;
        tx.commit().map_err(|e| internal(&e))?;
        Ok(Stored {
            id,
            version: 1,
            resource,
        })
    }

    /// Replaces (PUT) or modifies (PATCH, through `change`) a stored resource in one
    /// transaction. `if_match`, when given, must name the current version (else 412).
    pub fn update(
        &mut self,
        kind: Kind,
        id: &str,
        if_match: Option<&str>,
        change: impl FnOnce(&Value) -> Result<Value, Problem>,
    ) -> Result<Stored, Problem> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| internal(&e))?;
        let current = get(&tx, kind, id)
            .map_err(|e| internal(&e))?
            .ok_or_else(|| Problem::not_found(kind, id))?;
        if let Some(want) = if_match
            && want.trim() != "*"
            && !want.split(',').any(|t| t.trim() == current.etag())
        {
            return Err(Problem::new(
                412,
                format!(
                    "If-Match {want} does not name the current version {}",
                    current.etag()
                ),
            ));
        }
        let mut next = change(&current.resource)?;
        unique(&tx, kind, &next, Some(id))?;
        let created = current
            .resource
            .pointer("/meta/created")
            .and_then(Value::as_str)
            .map_or_else(now, str::to_owned);
        let version = current.version + 1;
        let at = now();
        set_meta(kind, &mut next, id, version, &created, &at);
        write(&tx, kind, id, &next, version, &created, &at, false).map_err(|e| internal(&e))?;
        tx.commit().map_err(|e| internal(&e))?;
        Ok(Stored {
            id: id.to_owned(),
            version,
            resource: next,
        })
    }

    /// Deletes a resource; `false` when there was none. A user stays as a tombstone, inactive,
    /// for the source to deactivate it ([`PushStore::directory`]).
    pub fn delete(&mut self, kind: Kind, id: &str) -> Result<bool, Problem> {
        let sql = match kind {
            Kind::User => {
                "UPDATE scim_push_resources SET deleted = 1, active = 0, version = version + 1,
                 last_modified = ?3 WHERE kind = ?1 AND id = ?2 AND deleted = 0"
            }
            Kind::Group => {
                "DELETE FROM scim_push_resources WHERE kind = ?1 AND id = ?2 AND ?3 = ?3"
            }
        };
        self.conn
            .execute(sql, params![kind.as_str(), id, now()])
            .map(|n| n > 0)
            .map_err(|e| internal(&e))
    }

    /// Whether any user was ever pushed (deleted ones included).
    pub fn has_users(&self) -> Result<bool, rusqlite::Error> {
        self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM scim_push_resources WHERE kind = 'User')",
            [],
            |r| r.get(0),
        )
    }

    /// Every user, deleted ones included (with whether they were deleted), by id.
    pub fn directory(&self) -> Result<Vec<(Stored, bool)>, rusqlite::Error> {
        let mut st = self.conn.prepare(
            "SELECT id, version, resource, deleted FROM scim_push_resources WHERE kind = 'User' ORDER BY id",
        )?;
        let rows = st.query_map([], |r| Ok((row(r)?, r.get::<_, bool>(3)?)))?;
        let mut out = Vec::new();
        for r in rows {
            if let (Some(stored), deleted) = r? {
                out.push((stored, deleted));
            }
        }
        Ok(out)
    }
}

fn row(r: &rusqlite::Row<'_>) -> Result<Option<Stored>, rusqlite::Error> {
    let id: String = r.get(0)?;
    let version: i64 = r.get(1)?;
    let text: String = r.get(2)?;
    Ok(serde_json::from_str(&text).ok().map(|resource| Stored {
        id,
        version,
        resource,
    }))
}

fn get(conn: &Connection, kind: Kind, id: &str) -> Result<Option<Stored>, rusqlite::Error> {
    Ok(conn
        .query_row(
            "SELECT id, version, resource FROM scim_push_resources WHERE kind = ?1 AND id = ?2 AND deleted = 0",
            params![kind.as_str(), id],
            row,
        )
        .optional()?
        .flatten())
}

fn text<'a>(resource: &'a Value, attr: &str) -> Option<&'a str> {
    get_ci(resource, attr).and_then(Value::as_str)
}

/// 409 `uniqueness` when another user has this userName (ignoring case) or externalId.
fn unique(
    conn: &Connection,
    kind: Kind,
    resource: &Value,
    except: Option<&str>,
) -> Result<(), Problem> {
    if kind != Kind::User {
        return Ok(());
    }
    let except = except.unwrap_or("");
    let taken = |sql: &str, value: &str| -> Result<bool, Problem> {
        conn.query_row(sql, params![value, except], |_| Ok(()))
            .optional()
            .map(|o| o.is_some())
            .map_err(|e| internal(&e))
    };
    if let Some(name) = text(resource, "userName")
        && taken(
            "SELECT 1 FROM scim_push_resources WHERE kind = 'User' AND deleted = 0 AND name_key = ?1 AND id != ?2",
            &name.to_lowercase(),
        )?
    {
        return Err(Problem {
            status: 409,
            scim_type: Some("uniqueness"),
            detail: format!(
                "userName {name:?} is already taken (userName is unique, ignoring case)"
            ),
        });
    }
    if let Some(ext) = text(resource, "externalId")
        && taken(
            "SELECT 1 FROM scim_push_resources WHERE kind = 'User' AND deleted = 0 AND external_id = ?1 AND id != ?2",
            ext,
        )?
    {
        return Err(Problem {
            status: 409,
            scim_type: Some("uniqueness"),
            detail: format!("externalId {ext:?} is already taken by another user"),
        });
    }
    Ok(())
}

fn set_meta(
    kind: Kind,
    resource: &mut Value,
    id: &str,
    version: i64,
    created: &str,
    modified: &str,
) {
    if let Value::Object(m) = resource {
        for owned in ["id", "meta"] {
            let k = key_ci(m, owned);
            m.remove(&k);
        }
        m.insert("id".into(), Value::from(id));
        m.insert(
            "meta".into(),
            serde_json::json!({
                "resourceType": kind.as_str(),
                "created": created,
                "lastModified": modified,
                "version": format!("W/\"{version}\""),
            }),
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn write(
    conn: &Connection,
    kind: Kind,
    id: &str,
    resource: &Value,
    version: i64,
    created: &str,
    modified: &str,
    new: bool,
) -> Result<(), rusqlite::Error> {
    let name = text(resource, kind.name_attr())
        .unwrap_or("")
        .to_lowercase();
    let external = text(resource, "externalId");
    let active = get_ci(resource, "active")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let json = resource.to_string();
    if new {
        conn.execute(
            "INSERT INTO scim_push_resources (id, kind, name_key, external_id, active, version, created, last_modified, resource)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![id, kind.as_str(), name, external, active, version, created, modified, json],
        )?;
    } else {
        conn.execute(
            "UPDATE scim_push_resources SET name_key = ?3, external_id = ?4, active = ?5, version = ?6,
             last_modified = ?7, resource = ?8 WHERE kind = ?2 AND id = ?1",
            params![id, kind.as_str(), name, external, active, version, modified, json],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn store() -> (tempfile::TempDir, PushStore) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        crate::store::Store::open(&path, None).unwrap();
        let s = PushStore::open(&path).unwrap();
        (dir, s)
    }

    #[test]
    fn resources_round_trip_with_versions_and_uniqueness() {
        let (dir, mut s) = store();
        let a = s
            .create(Kind::User, json!({"userName": "Ann@X", "externalId": "e1"}))
            .unwrap();
        assert_eq!(a.resource["meta"]["version"], json!("W/\"1\""));
        let e = s
            .create(Kind::User, json!({"userName": "ann@x"}))
            .unwrap_err();
        assert_eq!((e.status, e.scim_type), (409, Some("uniqueness")));
        let e = s
            .create(Kind::User, json!({"userName": "b", "externalId": "e1"}))
            .unwrap_err();
        assert!(e.detail.contains("externalId"), "{e:?}");
        // Groups may share a display name with a user.
        s.create(Kind::Group, json!({"displayName": "ann@x"}))
            .unwrap();
        assert_eq!(
            s.list(Kind::User, Some(("userName", "ANN@x")))
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            s.list(Kind::User, Some(("externalId", "E1")))
                .unwrap()
                .len(),
            0
        );
        let b = s
            .update(Kind::User, &a.id, Some("W/\"1\""), |r| {
                let mut r = r.clone();
                r["active"] = json!(false);
                Ok(r)
            })
            .unwrap();
        assert_eq!(
            (b.version, b.resource["meta"]["created"].clone()),
            (2, a.resource["meta"]["created"].clone())
        );
        let e = s
            .update(Kind::User, &a.id, Some("W/\"1\""), |r| Ok(r.clone()))
            .unwrap_err();
        assert_eq!(e.status, 412);
        // A failed change stores nothing.
        let e = s
            .update(Kind::User, &a.id, None, |_| {
                Err(Problem::bad("invalidValue", "no"))
            })
            .unwrap_err();
        assert_eq!(e.status, 400);
        let reader = PushStore::open_read_only(&dir.path().join("state.db")).unwrap();
        assert_eq!(reader.get(Kind::User, &a.id).unwrap().unwrap().version, 2);
        assert!(s.delete(Kind::User, &a.id).unwrap());
        assert!(!s.delete(Kind::User, &a.id).unwrap());
        assert!(reader.get(Kind::User, &a.id).unwrap().is_none());
        assert_eq!(
            s.update(Kind::User, &a.id, None, |r| Ok(r.clone()))
                .unwrap_err()
                .status,
            404
        );
    }
}
