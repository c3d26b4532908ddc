//! The outbox of planned operations: writing a cycle's plan, marking entries in flight,
//! reading open entries back, held plans (supersede, approve, reject, approval requests) and
//! crash recovery (`recover`).

use rusqlite::params;

use super::journal::USERS;
use super::{OutboxState, Store, StoreError, now, user_json};
use crate::model::{Op, OpKind, User};

/// One outbox entry as stored.
#[derive(Debug, Clone)]
pub struct OutboxEntry {
    pub id: i64,
    pub cycle_id: i64,
    pub seq: i64,
    pub op: Op,
    pub attempts: i64,
}

impl Store {
    /// Closes what a crash left open: running cycles become `interrupted` and their unsent or
    /// in-flight outbox entries `abandoned` (the next plan re-derives them from the snapshot,
    /// which only ever holds what Concur acknowledged). Returns the ids of interrupted cycles.
    pub fn recover(&mut self) -> Result<Vec<i64>, StoreError> {
        USERS.recover(&mut self.conn)
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
        USERS.abandon_open(&self.conn, cycle, reason)
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

    /// Stores a cycle's plan; entries are `pending` (or `held`). Returns their ids in order.
    pub fn write_outbox(
        &mut self,
        cycle: i64,
        ops: &[Op],
        state: OutboxState,
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
        USERS.mark_inflight(&mut self.conn, ids)
    }

    /// Open (pending or in-flight) entries of a cycle, in send order.
    pub fn open_entries(
        &self,
        cycle: i64,
        states: &[OutboxState],
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, seq, employee_id, op, payload, old_login_id, old_employee_id, origin, attempts, state
             FROM outbox WHERE cycle_id = ?1 ORDER BY seq",
        )?;
        let mut out = Vec::new();
        let mut rows = stmt.query([cycle])?;
        while let Some(r) = rows.next()? {
            let state: OutboxState = r.get(9)?;
            if !states.contains(&state) {
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
}
