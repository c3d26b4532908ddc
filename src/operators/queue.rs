//! The retry queue: `failed` lists the failed records (the set `status` counts as failed) with
//! Concur's reasons and the parked ones; `retry` plans records again at the next cycle (a
//! parked one included, though its source row did not change); `skip` parks a failed record
//! so that it no longer counts as failed and is not planned until its source row changes.
//! Every action is audited with who acted.
//!
//! A failed record that is not parked is planned again by every cycle anyway: the snapshot
//! still lacks what Concur refused.

use std::fmt::Write;

use serde::Serialize;

use crate::escape::escape;
use crate::store::{FailedRecord, Skip, Store, StoreError};

/// `failed --json`.
#[derive(Debug, Clone, Serialize)]
pub struct Queue {
    pub failed: Vec<FailedRecord>,
    pub skipped: Vec<Skip>,
}

/// The failed and the parked records.
pub fn queue(store: &Store) -> Result<Queue, StoreError> {
    Ok(Queue {
        failed: store.failed_records()?,
        skipped: store.skips()?,
    })
}

/// The queue for people.
pub fn to_text(q: &Queue) -> String {
    let mut o = String::new();
    if q.failed.is_empty() {
        o.push_str("no failed records\n");
    } else {
        let _ = writeln!(o, "failed ({}):", q.failed.len());
        for r in &q.failed {
            let f = &r.failure;
            let _ = write!(
                o,
                "  {} {}: {} (attempts {}, first {}, last {}, cycle {})",
                escape(&f.employee_id),
                f.operation,
                escape(&f.message),
                f.attempts,
                f.first_failed_at,
                f.last_failed_at,
                r.cycle_id
            );
            if !r.origin.is_empty() {
                let _ = write!(o, " from {}", escape(&r.origin));
            }
            o.push('\n');
        }
    }
    if !q.skipped.is_empty() {
        let _ = writeln!(o, "skipped ({}):", q.skipped.len());
        for s in &q.skipped {
            let _ = writeln!(o, "  {}", skip_line(s));
        }
    }
    if !q.failed.is_empty() || !q.skipped.is_empty() {
        o.push_str(
            "every cycle plans failed records again; `concur-sync retry ID|--all` plans parked ones again too, `concur-sync skip ID --reason TEXT` parks one until its source row changes\n",
        );
    }
    o
}

/// One parked record, as `failed` and `status` show it.
pub fn skip_line(s: &Skip) -> String {
    format!(
        "{} {} parked by {} at {}: {} (Concur: {})",
        escape(&s.employee_id),
        s.operation,
        escape(&s.by),
        s.at,
        escape(&s.reason),
        escape(&s.message)
    )
}

/// What `retry` did for one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retried {
    /// It was parked; it is planned again at the next cycle.
    Unparked,
    /// It failed and was not parked: the next cycle plans it again as every cycle does.
    Failed,
    /// Nothing failed or was parked for it.
    Nothing,
}

/// `retry EMPLOYEE_ID`: ends a skip, or confirms a failed record is planned again; audited.
pub fn retry(store: &Store, employee_id: &str, actor: &str) -> Result<Retried, StoreError> {
    let detail = "planned again from the next cycle on, even if its source row did not change";
    if store.unskip(employee_id, actor, detail)? {
        return Ok(Retried::Unparked);
    }
    if store
        .failed_entries()?
        .iter()
        .any(|f| f.employee_id == employee_id)
    {
        store.audit_user("retry", employee_id, actor, detail)?;
        return Ok(Retried::Failed);
    }
    Ok(Retried::Nothing)
}

/// `retry --all`: every failed and every parked record. Returns the employee ids, sorted.
pub fn retry_all(store: &Store, actor: &str) -> Result<Vec<String>, StoreError> {
    let mut ids: Vec<String> = store
        .failed_entries()?
        .into_iter()
        .map(|f| f.employee_id)
        .chain(store.skips()?.into_iter().map(|s| s.employee_id))
        .collect();
    ids.sort();
    ids.dedup();
    for id in &ids {
        retry(store, id, actor)?;
    }
    Ok(ids)
}
