//! What operators read and steer per record: one user's story for `explain` (snapshot row,
//! every outbox entry with its cycle, failures, rejections, held plans, audit), the retry queue
//! (`failed`, `skip`, `retry`: parked records in `skips`, audited with who acted), and the
//! snapshot generation a saved plan is checked against.
//!
//! A parked record keeps its `failures` row (the history) but no longer counts as failed: a
//! cycle does not plan it while the source asks for exactly the record that failed
//! ([`Store::follow_skips`]); a changed source row, an acknowledgement or `retry` ends it.

use std::collections::{BTreeSet, HashMap};

use rusqlite::{OptionalExtension, params, params_from_iter};
use serde::Serialize;

use super::{CycleOutcome, FailedEntry, OutboxState, Ownership, Store, StoreError, now};
use crate::model::{FieldChange, Op, User};

/// A failed record an operator parked.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Skip {
    pub employee_id: String,
    /// The operation that failed.
    pub operation: String,
    pub reason: String,
    /// Who parked it (`user@host`).
    pub by: String,
    pub at: String,
    /// Concur's message when it was parked.
    pub message: String,
}

/// One failed record as `failed` lists it: the failure, and where its record came from.
#[derive(Debug, Clone, Serialize)]
pub struct FailedRecord {
    #[serde(flatten)]
    pub failure: FailedEntry,
    /// The cycle of the last failure.
    pub cycle_id: i64,
    /// The login of the record that failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login_id: Option<String>,
    /// Where the record came from (`file:line`, a DN, a SCIM id); empty for deactivations.
    pub origin: String,
}

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
}

/// What [`Store::follow_skips`] did to a plan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SkipsFollowed {
    /// Operations left out: their record is parked and the source still asks for it as it was.
    pub suppressed: Vec<String>,
    /// Parked records the source changed (or that need nothing any more): planned normally.
    pub released: Vec<String>,
}

impl Store {
    /// The snapshot generation: moves forward with every change of the snapshot.
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
                "SELECT DISTINCT employee_id FROM outbox
                 WHERE json_extract(payload, '$.login_id') = ?1 COLLATE NOCASE",
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
                    o.old_employee_id, o.old_login_id, json_extract(o.payload, '$.login_id'),
                    o.origin, o.changes, o.state, o.attempts, o.last_error, o.sent_at,
                    o.updated_at, o.provision_id, o.bulk_id, o.concur_uuid
             FROM outbox o JOIN cycles c ON c.id = o.cycle_id
             WHERE o.employee_id IN ({marks}) OR o.old_employee_id IN ({marks})
             ORDER BY o.cycle_id DESC, o.seq DESC"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(params_from_iter(ids.iter().chain(ids.iter())), |r| {
            let changes: Option<String> = r.get(10)?;
            let state: OutboxState = r.get(11)?;
            let last_error: Option<String> = r.get(13)?;
            Ok(HistoryEntry {
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
                changes: changes
                    .and_then(|c| serde_json::from_str(&c).ok())
                    .unwrap_or_default(),
                state,
                attempts: r.get(12)?,
                message: last_error,
                sent_at: r.get(14)?,
                updated_at: r.get(15)?,
                provision_id: r.get(16)?,
                bulk_id: r.get(17)?,
                concur_uuid: r.get(18)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
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

    /// Every parked record, by employee id.
    pub fn skips(&self) -> Result<Vec<Skip>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT employee_id, op, reason, actor, at, message FROM skips ORDER BY employee_id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(Skip {
                employee_id: r.get(0)?,
                operation: r.get(1)?,
                reason: r.get(2)?,
                by: r.get(3)?,
                at: r.get(4)?,
                message: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The failed records (`status` counts them as failed): every failure of a record that is
    /// not parked, by employee id and operation.
    pub fn failed_entries(&self) -> Result<Vec<FailedEntry>, StoreError> {
        Ok(self
            .failure_rows(true)?
            .into_iter()
            .map(|(f, _)| f)
            .collect())
    }

    /// [`Store::failed_entries`] with the cycle, login and origin of each failed record.
    pub fn failed_records(&self) -> Result<Vec<FailedRecord>, StoreError> {
        let mut out = Vec::new();
        for (failure, cycle_id) in self.failure_rows(true)? {
            let (login_id, origin) = self
                .failed_entry(cycle_id, &failure.employee_id, &failure.operation)?
                .map(|(user, origin)| (Some(user.login_id().to_owned()), origin))
                .unwrap_or_default();
            out.push(FailedRecord {
                failure,
                cycle_id,
                login_id: login_id.filter(|l| !l.is_empty()),
                origin,
            });
        }
        Ok(out)
    }

    /// Failures with the cycle of each; `unparked` leaves parked records out.
    fn failure_rows(&self, unparked: bool) -> Result<Vec<(FailedEntry, i64)>, StoreError> {
        let filter = if unparked {
            "WHERE NOT EXISTS (SELECT 1 FROM skips s WHERE s.employee_id = f.employee_id)"
        } else {
            ""
        };
        let mut stmt = self.conn.prepare(&format!(
            "SELECT f.employee_id, f.op, f.message, f.attempts, f.first_failed_at,
                    f.last_failed_at, f.cycle_id
             FROM failures f {filter} ORDER BY f.employee_id, f.op"
        ))?;
        let rows = stmt.query_map([], |r| {
            Ok((
                FailedEntry {
                    employee_id: r.get(0)?,
                    operation: r.get(1)?,
                    message: r.get(2)?,
                    attempts: r.get(3)?,
                    first_failed_at: r.get(4)?,
                    last_failed_at: r.get(5)?,
                },
                r.get(6)?,
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The record (desired user) and origin of the outbox entry that last failed for this
    /// user and operation in `cycle`.
    fn failed_entry(
        &self,
        cycle: i64,
        employee_id: &str,
        op: &str,
    ) -> Result<Option<(User, String)>, StoreError> {
        let row: Option<(String, String)> = self
            .conn
            .query_row(
                "SELECT payload, origin FROM outbox
                 WHERE state IN (?4, ?5) AND cycle_id = ?1 AND employee_id = ?2 AND op = ?3
                 ORDER BY seq DESC LIMIT 1",
                params![
                    cycle,
                    employee_id,
                    op,
                    OutboxState::Failed,
                    OutboxState::Abandoned
                ],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        row.map(|(payload, origin)| {
            let user: User = serde_json::from_str(&payload)
                .map_err(|e| StoreError::Corrupt(format!("outbox {employee_id}: {e}")))?;
            Ok((user, origin))
        })
        .transpose()
    }

    /// Parks a failed record: the next cycles do not plan it while the source asks for the
    /// same record, and it no longer counts as failed. Returns `None` when the user has no
    /// failure to park (or is parked already).
    pub fn skip(
        &self,
        employee_id: &str,
        reason: &str,
        actor: &str,
    ) -> Result<Option<Skip>, StoreError> {
        let Some((failure, cycle)) = self
            .failure_rows(true)?
            .into_iter()
            .filter(|(f, _)| f.employee_id == employee_id)
            .max_by(|a, b| a.0.last_failed_at.cmp(&b.0.last_failed_at))
        else {
            return Ok(None);
        };
        // The record that failed: an unknown one parks nothing a cycle could match, so the
        // next cycle plans it normally.
        let hash = self
            .failed_entry(cycle, employee_id, &failure.operation)?
            .map(|(user, _)| user.content_hash())
            .unwrap_or_default();
        let skip = Skip {
            employee_id: employee_id.to_owned(),
            operation: failure.operation.clone(),
            reason: reason.to_owned(),
            by: actor.to_owned(),
            at: now(),
            message: failure.message.clone(),
        };
        self.conn.execute(
            "INSERT INTO skips (employee_id, op, hash, reason, actor, at, message)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                skip.employee_id,
                skip.operation,
                &hash[..],
                skip.reason,
                skip.by,
                skip.at,
                skip.message
            ],
        )?;
        self.audit_user(
            "skip",
            employee_id,
            actor,
            &format!(
                "parked the failed {} ({}): {reason}",
                failure.operation, failure.message
            ),
        )?;
        Ok(Some(skip))
    }

    /// Ends a parked record's skip (`retry`): the next cycle plans it again. Returns whether
    /// it was parked.
    pub fn unskip(&self, employee_id: &str, actor: &str, detail: &str) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute("DELETE FROM skips WHERE employee_id = ?1", [employee_id])?;
        if n > 0 {
            self.audit_user("retry", employee_id, actor, detail)?;
        }
        Ok(n > 0)
    }

    /// Follows the parked records in `cycle`'s plan: an operation whose record is parked and
    /// that asks for exactly the record that failed is left out; a parked record whose source
    /// row changed (another record, another operation) is released and planned normally, as is
    /// one a complete read plans nothing for any more (`complete`: a delta read does not see
    /// every user).
    pub fn follow_skips(
        &self,
        cycle: i64,
        ops: &mut Vec<Op>,
        complete: bool,
    ) -> Result<SkipsFollowed, StoreError> {
        let parked: HashMap<String, (String, Vec<u8>)> = {
            let mut stmt = self
                .conn
                .prepare("SELECT employee_id, op, hash FROM skips")?;
            stmt.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))?
                .collect::<Result<_, _>>()?
        };
        let mut done = SkipsFollowed::default();
        if parked.is_empty() {
            return Ok(done);
        }
        let mut planned: BTreeSet<String> = BTreeSet::new();
        ops.retain(|op| {
            let Some((kind, hash)) = parked.get(&op.employee_id) else {
                return true;
            };
            planned.insert(op.employee_id.clone());
            let same = kind == op.kind.as_str() && hash[..] == op.user.content_hash()[..];
            if same {
                done.suppressed.push(op.employee_id.clone());
            }
            !same
        });
        let mut released: BTreeSet<String> = BTreeSet::new();
        for id in parked.keys() {
            let suppressed = done.suppressed.contains(id);
            let changed = planned.contains(id) && !suppressed;
            if changed || (!planned.contains(id) && complete) {
                released.insert(id.clone());
            }
        }
        for id in &released {
            let why = if planned.contains(id) {
                "the source changed: planned normally again"
            } else {
                "the source asks for nothing more of this user"
            };
            self.conn
                .execute("DELETE FROM skips WHERE employee_id = ?1", [id])?;
            self.audit_user(
                "skip-ended",
                id,
                &format!("cycle {cycle}"),
                &format!("no longer parked: {why}"),
            )?;
        }
        done.released = released.into_iter().collect();
        done.suppressed.sort();
        done.suppressed.dedup();
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Field, OpKind};
    use crate::store::{CycleCounts, EntryResult};

    fn user(id: &str, last: &str) -> User {
        let mut u = User::new();
        u.set(Field::EMPLOYEE_ID, id);
        u.set(Field::LOGIN_ID, format!("{id}@example.com"));
        u.set(Field::LAST_NAME, last);
        u
    }

    fn op(kind: OpKind, u: &User) -> Op {
        Op {
            kind,
            employee_id: u.employee_id().to_owned(),
            user: u.clone(),
            old_login_id: None,
            old_employee_id: None,
            changes: Vec::new(),
            password: None,
            origin: format!("hr.csv:{}", u.employee_id().len()),
        }
    }

    /// A cycle in which `ops` fail with `message`.
    fn failing_cycle(store: &mut Store, ops: &[Op], message: &str) -> i64 {
        let cycle = store.begin_cycle("hr.csv").unwrap();
        let ids = store
            .write_outbox(cycle, ops, OutboxState::Pending)
            .unwrap();
        store.mark_inflight(&ids).unwrap();
        let results: Vec<(i64, &Op, EntryResult)> = ids
            .iter()
            .zip(ops)
            .map(|(id, op)| (*id, op, EntryResult::Failed(message.into())))
            .collect();
        store.record_results(cycle, &results).unwrap();
        store
            .finish_cycle(cycle, CycleOutcome::Partial, &CycleCounts::default(), None)
            .unwrap();
        cycle
    }

    #[test]
    fn a_parked_record_is_left_out_until_its_source_row_changes() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.db"), None).unwrap();
        let (a, b) = (user("A1", "Ames"), user("B2", "Bell"));
        failing_cycle(
            &mut store,
            &[op(OpKind::Create, &a), op(OpKind::Create, &b)],
            "no",
        );
        assert_eq!(store.failed_entries().unwrap().len(), 2);
        assert!(store.skip("Z9", "why", "ops@host").unwrap().is_none());
        let skip = store
            .skip("A1", "waits for HR", "ops@host")
            .unwrap()
            .unwrap();
        assert_eq!(skip.operation, "create");
        assert!(store.skip("A1", "again", "ops@host").unwrap().is_none());
        let failed: Vec<String> = store
            .failed_entries()
            .unwrap()
            .into_iter()
            .map(|f| f.employee_id)
            .collect();
        assert_eq!(failed, ["B2"]);
        assert_eq!(store.failures_of(&["A1".into()]).unwrap().len(), 1);

        // The same record again: left out; the other one is planned.
        let mut ops = vec![op(OpKind::Create, &a), op(OpKind::Create, &b)];
        let done = store.follow_skips(7, &mut ops, true).unwrap();
        assert_eq!(done.suppressed, ["A1"]);
        assert!(done.released.is_empty());
        assert_eq!(ops.len(), 1);
        // A delta read that does not name it keeps it parked.
        let done = store.follow_skips(8, &mut Vec::new(), false).unwrap();
        assert_eq!(done, SkipsFollowed::default());
        // The source row changed: planned normally, no longer parked.
        let mut ops = vec![op(OpKind::Create, &user("A1", "Ames-Berg"))];
        let done = store.follow_skips(9, &mut ops, true).unwrap();
        assert_eq!(done.released, ["A1"]);
        assert_eq!(ops.len(), 1);
        assert!(store.skips().unwrap().is_empty());
        let audit = store.audit_of(&["A1".into()]).unwrap();
        let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
        assert_eq!(actions, ["skip-ended", "skip"]);
        assert_eq!(audit[1].by.as_deref(), Some("ops@host"));
    }

    #[test]
    fn retry_ends_a_skip_and_a_complete_read_without_the_user_releases_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.db"), None).unwrap();
        let a = user("A1", "Ames");
        failing_cycle(&mut store, &[op(OpKind::Create, &a)], "no");
        store.skip("A1", "later", "ops@host").unwrap().unwrap();
        assert!(store.unskip("A1", "ops@host", "retry").unwrap());
        assert!(!store.unskip("A1", "ops@host", "retry").unwrap());
        assert_eq!(store.failed_entries().unwrap().len(), 1);
        store.skip("A1", "later", "ops@host").unwrap().unwrap();
        let done = store.follow_skips(5, &mut Vec::new(), true).unwrap();
        assert_eq!(done.released, ["A1"]);
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
        assert!(g1 > g0);
        // A failure changes no snapshot row.
        failing_cycle(&mut store, &[op(OpKind::Update, &user("A1", "X"))], "no");
        assert_eq!(store.snapshot_generation().unwrap(), g1);
        let cycle = store.begin_cycle("hr.csv").unwrap();
        let o = op(OpKind::Update, &user("A1", "Ames-Berg"));
        let ids = store
            .write_outbox(cycle, std::slice::from_ref(&o), OutboxState::Pending)
            .unwrap();
        store
            .record_results(cycle, &[(ids[0], &o, EntryResult::Acknowledged)])
            .unwrap();
        assert!(store.snapshot_generation().unwrap() > g1);
    }
}
