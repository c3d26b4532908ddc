//! What operators read about one user for `explain` (the snapshot row, every outbox entry with
//! its cycle and each request that carried it, failures, rejections, audit rows naming the
//! user), audit rows written with who acted, and the snapshot generation a saved plan is
//! checked against. The retry queue is `queue.rs`.

use std::collections::BTreeSet;

use rusqlite::{OptionalExtension, params, params_from_iter};
use serde::Serialize;

use super::{CycleOutcome, FailedEntry, OutboxState, Ownership, Store, StoreError, now};
use crate::model::{FieldChange, User};

/// A saved plan waiting for the process that holds the state (JSON: `file`, `plan`).
const KV_APPLY_REQUEST: &str = "apply.request";

/// One audit row about a user.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRow {
    pub at: String,
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    pub detail: String,
}

/// A user's row in the snapshot: what Concur last acknowledged.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotRow {
    pub employee_id: String,
    pub login_id: String,
    pub active: bool,
    pub ownership: Ownership,
    pub acknowledged_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acknowledged_cycle: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concur_uuid: Option<String>,
    pub fields: User,
}

/// One outbox entry about a user, with the cycle that planned it.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    pub cycle_id: i64,
    pub cycle_outcome: CycleOutcome,
    /// What the cycle read (a file path, a directory's label).
    pub cycle_source: String,
    pub cycle_started_at: String,
    pub operation: String,
    pub employee_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_employee_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_login_id: Option<String>,
    /// The login of the record planned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login_id: Option<String>,
    pub origin: String,
    pub changes: Vec<FieldChange>,
    pub state: OutboxState,
    /// Requests that carried it.
    pub attempts: i64,
    /// Concur's message (or why it was not sent), when it did not end acknowledged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<String>,
    pub updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provision_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bulk_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concur_uuid: Option<String>,
    /// Each request that carried it and what its answer left, newest first (the first line
    /// repeats the entry's own request, state and message); empty when it was never sent.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub requests: Vec<SentRequest>,
}

/// One request that carried an outbox entry, and what its answer left on the entry.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SentRequest {
    /// Which request: 1 is the first.
    pub attempt: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<String>,
    /// What the entry was after its answer: `done`, `failed`, `abandoned` (not applied),
    /// `submitted` (accepted, its provision polled), `inflight` (no answer recorded).
    pub state: OutboxState,
    /// Concur's message, or why it was not applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provision_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bulk_id: Option<String>,
    /// When the entry last changed after this request (its answer, or the next request).
    pub at: String,
}

impl Store {
    /// The snapshot generation: a new random value with every change of the snapshot.
    pub fn snapshot_generation(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT n FROM snapshot_generation WHERE id = 1", [], |r| {
                r.get(0)
            })?)
    }

    /// The employee ids `key` names: itself when the state database knows it, else the users
    /// whose login is `key` (case-insensitive) in the snapshot or in any planned record.
    pub fn find_user(&self, key: &str) -> Result<Vec<String>, StoreError> {
        let known: bool = self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM users WHERE employee_id = ?1)
                 OR EXISTS (SELECT 1 FROM outbox WHERE employee_id = ?1 OR old_employee_id = ?1)
                 OR EXISTS (SELECT 1 FROM failures WHERE employee_id = ?1)
                 OR EXISTS (SELECT 1 FROM rejections WHERE employee_id = ?1)",
            [key],
            |r| r.get(0),
        )?;
        if known {
            return Ok(vec![key.to_owned()]);
        }
        let mut ids = BTreeSet::new();
        let mut stmt = self
            .conn
            .prepare("SELECT employee_id FROM users WHERE login_id = ?1 COLLATE NOCASE")?;
        for id in stmt.query_map([key], |r| r.get::<_, String>(0))? {
            ids.insert(id?);
        }
        if ids.is_empty() {
            let mut stmt = self.conn.prepare(
                "SELECT DISTINCT o.employee_id FROM outbox o JOIN outbox_bodies b ON b.outbox_id = o.id
                 WHERE json_extract(b.payload, '$.login_id') = ?1 COLLATE NOCASE",
            )?;
            for id in stmt.query_map([key], |r| r.get::<_, String>(0))? {
                ids.insert(id?);
            }
        }
        Ok(ids.into_iter().collect())
    }

    /// Every employee id this user had, as renames recorded them (both ways from `id`).
    pub fn rename_chain(&self, id: &str) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT DISTINCT employee_id, old_employee_id FROM outbox
             WHERE old_employee_id IS NOT NULL AND old_employee_id != employee_id",
        )?;
        let edges: Vec<(String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let mut ids = vec![id.to_owned()];
        let mut i = 0;
        while i < ids.len() {
            let at = ids[i].clone();
            for (new, old) in &edges {
                let other = if *new == at {
                    old
                } else if *old == at {
                    new
                } else {
                    continue;
                };
                if !ids.contains(other) {
                    ids.push(other.clone());
                }
            }
            i += 1;
        }
        Ok(ids)
    }

    /// The snapshot row of a user, if any.
    pub fn snapshot_row(&self, id: &str) -> Result<Option<SnapshotRow>, StoreError> {
        let row = self
            .conn
            .query_row(
                "SELECT employee_id, login_id, active, ownership, acked_at, acked_cycle,
                        concur_uuid, fields
                 FROM users WHERE employee_id = ?1",
                [id],
                |r| {
                    Ok((
                        SnapshotRow {
                            employee_id: r.get(0)?,
                            login_id: r.get(1)?,
                            active: r.get(2)?,
                            ownership: r.get(3)?,
                            acknowledged_at: r.get(4)?,
                            acknowledged_cycle: r.get(5)?,
                            concur_uuid: r.get(6)?,
                            fields: User::new(),
                        },
                        r.get::<_, String>(7)?,
                    ))
                },
            )
            .optional()?;
        row.map(|(mut row, fields)| {
            row.fields = serde_json::from_str(&fields)
                .map_err(|e| StoreError::Corrupt(format!("user {id}: {e}")))?;
            Ok(row)
        })
        .transpose()
    }

    /// Every outbox entry about these employee ids (as planned, or as renamed from), newest
    /// first, with its cycle.
    pub fn history(&self, ids: &[String]) -> Result<Vec<HistoryEntry>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let marks = vec!["?"; ids.len()].join(",");
        let sql = format!(
            "SELECT o.cycle_id, c.outcome, c.source, c.started_at, o.op, o.employee_id,
                    o.old_employee_id, o.old_login_id, json_extract(b.payload, '$.login_id'),
                    o.origin, b.changes, o.state, o.attempts, o.last_error, o.sent_at,
                    o.updated_at, o.provision_id, o.bulk_id, o.concur_uuid, o.id,
                    CASE WHEN b.changes IS NULL AND o.op = 'create' THEN b.payload END
             FROM outbox o JOIN cycles c ON c.id = o.cycle_id
                  JOIN outbox_bodies b ON b.outbox_id = o.id
             WHERE o.employee_id IN ({marks}) OR o.old_employee_id IN ({marks})
             ORDER BY o.cycle_id DESC, o.seq DESC"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(params_from_iter(ids.iter().chain(ids.iter())), |r| {
            let changes: Option<String> = r.get(10)?;
            let created: Option<String> = r.get(20)?;
            let state: OutboxState = r.get(11)?;
            let last_error: Option<String> = r.get(13)?;
            let attempts: i64 = r.get(12)?;
            let latest = SentRequest {
                attempt: attempts,
                sent_at: r.get(14)?,
                state,
                message: last_error.clone(),
                provision_id: r.get(16)?,
                bulk_id: r.get(17)?,
                at: r.get(15)?,
            };
            Ok((
                r.get::<_, i64>(19)?,
                HistoryEntry {
                    cycle_id: r.get(0)?,
                    cycle_outcome: r.get(1)?,
                    cycle_source: r.get(2)?,
                    cycle_started_at: r.get(3)?,
                    operation: r.get(4)?,
                    employee_id: r.get(5)?,
                    old_employee_id: r.get(6)?,
                    old_login_id: r.get(7)?,
                    login_id: r.get(8)?,
                    origin: r.get(9)?,
                    changes: match (changes, created) {
                        (Some(c), _) => serde_json::from_str(&c).unwrap_or_default(),
                        // A create's fields: its payload, every one new.
                        (None, Some(p)) => serde_json::from_str::<User>(&p)
                            .map(|u| u.changes_from(&User::new()))
                            .unwrap_or_default(),
                        (None, None) => Vec::new(),
                    },
                    state,
                    attempts: r.get(12)?,
                    message: last_error,
                    sent_at: r.get(14)?,
                    updated_at: r.get(15)?,
                    provision_id: r.get(16)?,
                    bulk_id: r.get(17)?,
                    concur_uuid: r.get(18)?,
                    requests: if attempts > 0 {
                        vec![latest]
                    } else {
                        Vec::new()
                    },
                },
            ))
        })?;
        let mut out = Vec::new();
        let mut earlier = self.conn.prepare(
            "SELECT attempt, sent_at, state, message, provision_id, bulk_id, answered_at
             FROM outbox_requests WHERE outbox_id = ?1 ORDER BY attempt DESC, id DESC",
        )?;
        for row in rows {
            let (id, mut entry) = row?;
            if entry.attempts > 1 {
                let rows = earlier.query_map([id], |r| {
                    Ok(SentRequest {
                        attempt: r.get(0)?,
                        sent_at: r.get(1)?,
                        state: r.get(2)?,
                        message: r.get(3)?,
                        provision_id: r.get(4)?,
                        bulk_id: r.get(5)?,
                        at: r.get(6)?,
                    })
                })?;
                for request in rows {
                    entry.requests.push(request?);
                }
            }
            out.push(entry);
        }
        Ok(out)
    }

    /// The failures recorded for these employee ids (parked or not).
    pub fn failures_of(&self, ids: &[String]) -> Result<Vec<FailedEntry>, StoreError> {
        Ok(self
            .failure_rows(false)?
            .into_iter()
            .filter(|(f, _)| ids.contains(&f.employee_id))
            .map(|(f, _)| f)
            .collect())
    }

    /// The rejections of the latest cycle that read its source naming these employee ids.
    pub fn rejections_of(
        &self,
        ids: &[String],
    ) -> Result<Vec<(i64, crate::model::Rejection)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT cycle_id, source, employee_id, field, message FROM rejections ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                crate::model::Rejection {
                    source: r.get(1)?,
                    employee_id: r.get(2)?,
                    field: r.get(3)?,
                    message: r.get(4)?,
                    identity: Default::default(),
                },
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (cycle, r) = row?;
            if r.employee_id.as_ref().is_some_and(|id| ids.contains(id)) {
                out.push((cycle, r));
            }
        }
        Ok(out)
    }

    /// The audit rows naming these employee ids, newest first.
    pub fn audit_of(&self, ids: &[String]) -> Result<Vec<AuditRow>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let marks = vec!["?"; ids.len()].join(",");
        let mut stmt = self.conn.prepare(&format!(
            "SELECT at, action, actor, detail FROM audit WHERE employee_id IN ({marks})
             ORDER BY id DESC"
        ))?;
        let rows = stmt.query_map(params_from_iter(ids.iter()), |r| {
            Ok(AuditRow {
                at: r.get(0)?,
                action: r.get(1)?,
                by: r.get(2)?,
                detail: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records a saved plan (the file's name and text) for the process holding the state to
    /// apply (`apply` while the service runs); a later request replaces an earlier one.
    pub fn request_saved_plan(&self, file: &str, text: &str) -> Result<(), StoreError> {
        let request = serde_json::json!({ "file": file, "plan": text }).to_string();
        self.kv_set(KV_APPLY_REQUEST, request.as_bytes())
    }

    /// Takes the saved plan an operator asked to apply, if any: `(file, text)`.
    pub fn take_saved_plan_request(&self) -> Result<Option<(String, String)>, StoreError> {
        let Some(raw) = self.kv_get(KV_APPLY_REQUEST)? else {
            return Ok(None);
        };
        self.kv_delete(KV_APPLY_REQUEST)?;
        let v: serde_json::Value = serde_json::from_slice(&raw).unwrap_or_default();
        let text = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
        Ok(Some((text("file"), text("plan"))))
    }

    /// Records an operator's action about one user: what, about whom, by whom, now.
    pub fn audit_user(
        &self,
        action: &str,
        employee_id: &str,
        actor: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO audit (at, action, detail, employee_id, actor) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![now(), action, detail, employee_id, actor],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Op, OpKind};
    use crate::store::{CycleCounts, EntryResult};

    fn user(id: &str, last: &str) -> User {
        crate::test_support::user_named(id, last)
    }

    fn op(kind: OpKind, u: &User) -> Op {
        crate::test_support::op(kind, u.clone(), "hr.csv:2")
    }

    #[test]
    fn every_change_of_the_snapshot_moves_the_generation() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.db"), None).unwrap();
        let g0 = store.snapshot_generation().unwrap();
        store
            .baseline_users(&[user("A1", "Ames")], Ownership::Adopted)
            .unwrap();
        let g1 = store.snapshot_generation().unwrap();
        assert_ne!(g1, g0);
        // A failure changes no snapshot row.
        let cycle = store.begin_cycle("hr.csv").unwrap();
        let failing = op(OpKind::Update, &user("A1", "X"));
        let ids = store
            .write_outbox(cycle, std::slice::from_ref(&failing), OutboxState::Pending)
            .unwrap();
        store
            .record_results(
                cycle,
                &[(ids[0], &failing, EntryResult::Failed("no".into()))],
            )
            .unwrap();
        store
            .finish_cycle(cycle, CycleOutcome::Partial, &CycleCounts::default(), None)
            .unwrap();
        assert_eq!(store.snapshot_generation().unwrap(), g1);
        let cycle = store.begin_cycle("hr.csv").unwrap();
        let o = op(OpKind::Update, &user("A1", "Ames-Berg"));
        let ids = store
            .write_outbox(cycle, std::slice::from_ref(&o), OutboxState::Pending)
            .unwrap();
        store
            .record_results(cycle, &[(ids[0], &o, EntryResult::Acknowledged)])
            .unwrap();
        assert_ne!(store.snapshot_generation().unwrap(), g1);
    }
}
