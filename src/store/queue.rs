//! The retry queue in the state database: failed records (`failures`, less the parked ones:
//! the set `status` counts as failed) and parked records (`skips`). A parked record keeps its
//! `failures` row (its history) but no longer counts as failed: a cycle does not plan it while
//! the source asks for exactly the record that failed ([`Store::follow_skips`]); a changed
//! source row, a complete read that plans nothing for it, or `retry` ends it. Every change is
//! audited with who acted.

use std::collections::{BTreeSet, HashMap};

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{FailedEntry, OutboxState, Store, StoreError, now};
use crate::model::{Op, User};

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

/// What [`Store::follow_skips`] did to a plan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SkipsFollowed {
    /// Operations left out: their record is parked and the source still asks for it as it was.
    pub suppressed: Vec<String>,
    /// Parked records the source changed (or that need nothing any more): planned normally.
    pub released: Vec<String>,
}

impl Store {
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
    pub(super) fn failure_rows(
        &self,
        unparked: bool,
    ) -> Result<Vec<(FailedEntry, i64)>, StoreError> {
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
                "SELECT b.payload, o.origin FROM outbox o JOIN outbox_bodies b ON b.outbox_id = o.id
                 WHERE o.state IN (?4, ?5) AND o.cycle_id = ?1 AND o.employee_id = ?2 AND o.op = ?3
                 ORDER BY o.seq DESC LIMIT 1",
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
        let parked = self.parked()?;
        let mut done = SkipsFollowed::default();
        if parked.is_empty() {
            return Ok(done);
        }
        let planned: BTreeSet<String> = ops
            .iter()
            .filter(|op| parked.contains_key(&op.employee_id))
            .map(|op| op.employee_id.clone())
            .collect();
        done.suppressed = leave_out(&parked, ops);
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
        Ok(done)
    }

    /// What a plan preview (`plan`, `plan --out`) leaves out as a cycle would: the operations
    /// whose record is parked and that ask for exactly the record that failed. Returns their
    /// employee ids, sorted; nothing is written (a cycle also ends the skips the source moved
    /// past: [`Store::follow_skips`]).
    pub fn leave_out_parked(&self, ops: &mut Vec<Op>) -> Result<Vec<String>, StoreError> {
        let parked = self.parked()?;
        if parked.is_empty() {
            return Ok(Vec::new());
        }
        Ok(leave_out(&parked, ops))
    }

    /// Parked records: employee id → (operation, content hash of the record that failed).
    fn parked(&self) -> Result<HashMap<String, (String, Vec<u8>)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT employee_id, op, hash FROM skips")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// Removes from `ops` each operation whose record is parked and that asks for exactly the
/// record that failed (same operation, same content); returns their employee ids, sorted.
fn leave_out(parked: &HashMap<String, (String, Vec<u8>)>, ops: &mut Vec<Op>) -> Vec<String> {
    let mut left_out = Vec::new();
    ops.retain(|op| {
        let same = parked.get(&op.employee_id).is_some_and(|(kind, hash)| {
            kind == op.kind.as_str() && hash[..] == op.user.content_hash()[..]
        });
        if same {
            left_out.push(op.employee_id.clone());
        }
        !same
    });
    left_out.sort();
    left_out.dedup();
    left_out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::OpKind;
    use crate::store::{CycleCounts, CycleOutcome, EntryResult};

    fn user(id: &str, last: &str) -> User {
        crate::test_support::user_named(id, last)
    }

    fn op(kind: OpKind, u: &User) -> Op {
        crate::test_support::op(
            kind,
            u.clone(),
            &format!("hr.csv:{}", u.employee_id().len()),
        )
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
}
