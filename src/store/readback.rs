//! State for reading Concur back: the FormFields cache, adoption and ownership of Concur
//! users, and reconcile history (tables of `migrations/0002-readback-attendees.sql`).

use std::collections::{HashMap, HashSet};

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::{Ownership, ReconcileOutcome, Store, StoreError, now, user_json};
use crate::model::User;

const KV_FORM_FIELDS_AT: &str = "readback.form_fields_at";
const KV_ADOPTED_AT: &str = "readback.adopted_at";

/// One field of the company's Concur employee form, as the FormFields cache holds it.
pub use crate::rules::FormField as FormFieldRow;

/// A Concur user no source user matched, as `status` lists it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct UnmanagedUser {
    pub employee_id: String,
    pub login_id: String,
    pub active: bool,
}

/// What one reconcile (adoption + drift repair) did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct ReconcileCounts {
    /// Users Bulk User v3.1 listed.
    pub concur_users: u64,
    /// Newly adopted (matched a source user by employee id, then login id).
    pub adopted: u64,
    /// Matching no source user (left untouched unless `sync.manage_unmatched`).
    pub unmanaged: u64,
    /// Managed users whose Active, names, email or login differ from what was last sent.
    pub drifted: u64,
    /// Drifted users Concur acknowledged the re-sent desired state for.
    pub drift_repaired: u64,
    /// Re-sends (drift or adoption renames) Concur refused.
    pub failed: u64,
    /// The user cycle that carried the repairs, if any.
    pub cycle_id: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReconcileInfo {
    pub id: i64,
    pub trigger: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub outcome: ReconcileOutcome,
    pub message: Option<String>,
    pub counts: ReconcileCounts,
}

impl Store {
    // ---- FormFields cache ----------------------------------------------------------------

    /// Replaces the cached FormFields and stamps the time.
    pub fn replace_form_fields(&mut self, fields: &[FormFieldRow]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM form_fields", [])?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT OR REPLACE INTO form_fields (id, label, control_type, data_type, max_length, required, custom, sequence)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for f in fields {
                stmt.execute(params![
                    f.id,
                    f.label,
                    f.control_type,
                    f.data_type,
                    f.max_length,
                    f.required,
                    f.custom,
                    f.sequence
                ])?;
            }
        }
        super::kv_set(&tx, KV_FORM_FIELDS_AT, now().as_bytes())?;
        tx.commit()?;
        Ok(())
    }

    /// The cached FormFields, in form order.
    pub fn form_fields(&self) -> Result<Vec<FormFieldRow>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, label, control_type, data_type, max_length, required, custom, sequence
             FROM form_fields ORDER BY sequence, id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(FormFieldRow {
                id: r.get(0)?,
                label: r.get(1)?,
                control_type: r.get(2)?,
                data_type: r.get(3)?,
                max_length: r.get(4)?,
                required: r.get(5)?,
                custom: r.get(6)?,
                sequence: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// When the FormFields cache was last refreshed.
    pub fn form_fields_fetched_at(
        &self,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, StoreError> {
        Ok(self
            .kv_get(KV_FORM_FIELDS_AT)?
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(&s).ok())
            .map(|d| d.with_timezone(&chrono::Utc)))
    }

    // ---- adoption and ownership ----------------------------------------------------------

    /// Whether adoption ran once (before the first cycle or by `reconcile`).
    pub fn adoption_ran(&self) -> Result<bool, StoreError> {
        Ok(self.kv_get(KV_ADOPTED_AT)?.is_some())
    }

    pub fn mark_adoption_ran(&self) -> Result<(), StoreError> {
        self.kv_set(KV_ADOPTED_AT, now().as_bytes())
    }

    /// Number of managed (created or adopted) users.
    pub fn managed_count(&self) -> Result<u64, StoreError> {
        Ok(self.conn.query_row(
            "SELECT count(*) FROM users WHERE ownership != 'unmanaged'",
            [],
            |r| r.get::<_, i64>(0),
        )? as u64)
    }

    /// Ownership of every user the state DB knows: employee id → ownership.
    pub fn ownerships(&self) -> Result<HashMap<String, Ownership>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT employee_id, ownership FROM users")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records Concur users matching nobody as unmanaged (never overwriting a managed row) and
    /// forgets unmanaged rows Concur no longer lists.
    pub fn record_unmanaged(
        &mut self,
        users: &[User],
        listed: &HashSet<String>,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO users (employee_id, login_id, active, hash, fields, ownership, acked_at, approver)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'unmanaged', ?6, ?7)
                 ON CONFLICT(employee_id) DO UPDATE SET login_id = excluded.login_id,
                   active = excluded.active, hash = excluded.hash, fields = excluded.fields,
                   acked_at = excluded.acked_at, approver = excluded.approver
                 WHERE users.ownership = 'unmanaged'",
            )?;
            let at = now();
            for u in users {
                stmt.execute(params![
                    u.employee_id(),
                    u.login_id(),
                    u.is_active(),
                    &u.content_hash()[..],
                    user_json(u),
                    at,
                    u.is_approver()
                ])?;
            }
            let stale: Vec<String> = {
                let mut q =
                    tx.prepare("SELECT employee_id FROM users WHERE ownership = 'unmanaged'")?;
                q.query_map([], |r| r.get::<_, String>(0))?
                    .collect::<Result<Vec<_>, _>>()?
                    .into_iter()
                    .filter(|id| !listed.contains(id))
                    .collect()
            };
            let mut del = tx.prepare_cached(
                "DELETE FROM users WHERE employee_id = ?1 AND ownership = 'unmanaged'",
            )?;
            for id in stale {
                del.execute([id])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Sets the ownership of known users (e.g. `adopted` after an adoption rename).
    pub fn set_ownership(&self, ids: &[&str], ownership: Ownership) -> Result<(), StoreError> {
        for id in ids {
            self.conn.execute(
                "UPDATE users SET ownership = ?2 WHERE employee_id = ?1",
                params![id, ownership],
            )?;
        }
        Ok(())
    }

    /// Every managed user's last acknowledged record, sorted by employee id.
    pub fn managed_users(&self) -> Result<Vec<User>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT employee_id, fields FROM users WHERE ownership != 'unmanaged' ORDER BY employee_id",
        )?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let id: String = r.get(0)?;
            let f: String = r.get(1)?;
            out.push(
                serde_json::from_str(&f)
                    .map_err(|e| StoreError::Corrupt(format!("user {id}: {e}")))?,
            );
        }
        Ok(out)
    }

    /// Unmanaged users, sorted by employee id, at most `cap`.
    pub fn unmanaged_users(&self, cap: usize) -> Result<Vec<UnmanagedUser>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT employee_id, login_id, active FROM users WHERE ownership = 'unmanaged'
             ORDER BY employee_id LIMIT ?1",
        )?;
        let rows = stmt.query_map([cap as i64], |r| {
            Ok(UnmanagedUser {
                employee_id: r.get(0)?,
                login_id: r.get(1)?,
                active: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    // ---- reconcile history ---------------------------------------------------------------

    pub fn begin_reconcile(&mut self, trigger: &str) -> Result<i64, StoreError> {
        let at = now();
        self.conn.execute(
            "UPDATE reconciles SET outcome = ?2, finished_at = ?1 WHERE outcome = ?3",
            params![at, ReconcileOutcome::Interrupted, ReconcileOutcome::Running],
        )?;
        self.conn.execute(
            "INSERT INTO reconciles (started_at, trigger) VALUES (?1, ?2)",
            params![at, trigger],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn finish_reconcile(
        &self,
        id: i64,
        outcome: ReconcileOutcome,
        counts: &ReconcileCounts,
        message: Option<&str>,
    ) -> Result<(), StoreError> {
        let counts = serde_json::to_string(counts).unwrap_or_else(|_| "{}".into());
        self.conn.execute(
            "UPDATE reconciles SET outcome = ?2, finished_at = ?3, counts = ?4, message = ?5 WHERE id = ?1",
            params![id, outcome, now(), counts, message],
        )?;
        Ok(())
    }

    /// Drift repairs Concur acknowledged, over every reconcile.
    pub fn drift_repaired_total(&self) -> Result<u64, StoreError> {
        Ok(self.conn.query_row(
            "SELECT COALESCE(SUM(json_extract(counts, '$.drift_repaired')), 0) FROM reconciles",
            [],
            |r| r.get::<_, i64>(0),
        )? as u64)
    }

    pub fn last_reconcile(&self) -> Result<Option<ReconcileInfo>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT id, trigger, started_at, finished_at, outcome, message, counts
                 FROM reconciles ORDER BY id DESC LIMIT 1",
                [],
                |r| {
                    let counts: String = r.get(6)?;
                    Ok(ReconcileInfo {
                        id: r.get(0)?,
                        trigger: r.get(1)?,
                        started_at: r.get(2)?,
                        finished_at: r.get(3)?,
                        outcome: r.get(4)?,
                        message: r.get(5)?,
                        counts: serde_json::from_str(&counts).unwrap_or_default(),
                    })
                },
            )
            .optional()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Field;
    use crate::rules::company_rules;

    #[test]
    fn a_database_of_the_first_schema_is_upgraded_and_keeps_its_users() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(include_str!("../../migrations/0001-initial.sql"))
                .unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute(
                "INSERT INTO users (employee_id, login_id, active, hash, fields, acked_at)
                 VALUES ('1', 'a@x', 1, x'00000000000000000000000000000000', '{}', 'now')",
                [],
            )
            .unwrap();
        }
        let mut s = Store::open(&path, None).unwrap();
        assert_eq!(s.managed_count().unwrap(), 1);
        assert!(s.form_fields().unwrap().is_empty());
        s.replace_form_fields(&[
            FormFieldRow {
                id: "LedgerKey".into(),
                required: true,
                max_length: Some(20),
                ..FormFieldRow::default()
            },
            FormFieldRow {
                id: "OrgUnit1".into(),
                max_length: Some(10),
                ..FormFieldRow::default()
            },
            FormFieldRow {
                id: "PmtMethodCode".into(),
                required: true,
                ..FormFieldRow::default()
            },
        ])
        .unwrap();
        // The form's ids as Concur's User v1 names them; the mapping is the API's, not the store's.
        let field_of = |id: &str| match id {
            "LedgerKey" => Some(Field::LEDGER),
            "OrgUnit1" => Some(Field::ORG_UNIT1),
            _ => None,
        };
        let rows = s.form_fields().unwrap();
        let rules = company_rules(rows.iter().map(FormFieldRow::rule), field_of);
        assert_eq!(rules.required, [(Field::LEDGER, "LedgerKey".to_owned())]);
        assert_eq!(
            rules.max_len,
            [(Field::ORG_UNIT1, 10, "OrgUnit1".to_owned())]
        );
        assert!(s.form_fields_fetched_at().unwrap().is_some());
        drop(s);
        // Opening again applies nothing twice.
        let s = Store::open(&path, None).unwrap();
        assert_eq!(s.form_fields().unwrap().len(), 3);
    }
}
