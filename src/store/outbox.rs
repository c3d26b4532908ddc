//! The outbox of planned operations: writing a cycle's plan, marking entries in flight,
//! reading open entries back, held plans (supersede, approve, reject, approval requests) and
//! crash recovery (`recover`).

use std::collections::HashMap;

use rusqlite::params;

use super::journal::USERS;
use super::{Atomic, OutboxState, Store, StoreError, now, user_json};
use crate::model::{Op, OpKind, User};

/// What an earlier attempt of a create left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsettled {
    /// Concur refused it (or it was never answered for another reason now settled).
    Refused,
    /// Its request left at this time and no answer said what became of it.
    Unanswered(chrono::DateTime<chrono::Utc>),
}

/// An operation's outbox entry as the send loops hold it: written (its id), or only planned
/// (its place in the cycle's plan), written as its request leaves ([`Store::mark_sending`]).
/// A cycle's plan is written entry by entry as it is sent, so the first request does not
/// wait for the whole plan to reach the disk; what never leaves has no entry and is planned
/// again by the next cycle (until then `status` counts it pending: `Store::set_cycle_to_send`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Entry {
    Written(i64),
    Planned { seq: i64 },
}

/// One outbox entry as stored.
#[derive(Debug, Clone)]
pub struct OutboxEntry {
    pub id: i64,
    pub cycle_id: i64,
    pub seq: i64,
    pub op: Op,
    pub attempts: i64,
}

/// An entry an asynchronous API accepted (`submitted`), waiting for its provision's outcome.
#[derive(Debug, Clone)]
pub struct SubmittedEntry {
    pub id: i64,
    pub cycle_id: i64,
    pub op: Op,
    pub bulk_id: String,
    /// The UUID the operation addressed (none for a create).
    pub uuid: Option<String>,
}

/// One provision in flight and the entries it carries.
#[derive(Debug, Clone)]
pub struct SubmittedProvision {
    pub provision_id: String,
    /// When Concur answered 202 (RFC 3339, UTC).
    pub submitted_at: String,
    pub entries: Vec<SubmittedEntry>,
}

/// Provisions in flight, for `status`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ProvisionsInFlight {
    pub in_flight: u64,
    pub oldest_submitted_at: Option<String>,
    pub operations: u64,
}

impl Store {
    /// Records an asynchronous API's acceptance (HTTP 202) of in-flight entries, in one
    /// transaction: each becomes `submitted` with the provision id, its operation's bulkId and
    /// the UUID it addressed. `recover` leaves such entries alone; their outcome is polled for.
    pub fn mark_submitted(
        &mut self,
        provision_id: &str,
        entries: &[(i64, &str, Option<&str>)],
    ) -> Result<(), StoreError> {
        // Its own transaction, or part of an enclosing one.
        let tx = Atomic::begin(&mut self.conn)?;
        {
            let mut stmt = tx.prepare_cached(
                "UPDATE outbox SET state = 'submitted', provision_id = ?2, bulk_id = ?3,
                   concur_uuid = ?4, submitted_at = ?5, updated_at = ?5
                 WHERE id = ?1",
            )?;
            let at = now();
            for (id, bulk_id, uuid) in entries {
                stmt.execute(params![id, provision_id, bulk_id, uuid, at])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Every provision with entries still `submitted`, oldest first.
    pub fn submitted_provisions(&self) -> Result<Vec<SubmittedProvision>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT o.id, o.cycle_id, o.employee_id, o.op, b.payload, o.old_login_id,
                    o.old_employee_id, o.origin, o.provision_id, o.bulk_id, o.concur_uuid,
                    o.submitted_at
             FROM outbox o JOIN outbox_bodies b ON b.outbox_id = o.id
             WHERE o.state = 'submitted' ORDER BY o.submitted_at, o.provision_id, o.seq",
        )?;
        let mut out: Vec<SubmittedProvision> = Vec::new();
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let provision_id: String = r.get::<_, Option<String>>(8)?.unwrap_or_default();
            let entry = SubmittedEntry {
                id: r.get(0)?,
                cycle_id: r.get(1)?,
                op: op_at(r)?,
                bulk_id: r.get::<_, Option<String>>(9)?.unwrap_or_default(),
                uuid: r.get(10)?,
            };
            match out.iter_mut().find(|p| p.provision_id == provision_id) {
                Some(p) => p.entries.push(entry),
                None => out.push(SubmittedProvision {
                    provision_id,
                    submitted_at: r.get::<_, Option<String>>(11)?.unwrap_or_default(),
                    entries: vec![entry],
                }),
            }
        }
        Ok(out)
    }

    /// Provisions in flight: how many, the oldest acceptance, how many operations.
    pub fn provisions_in_flight(&self) -> Result<ProvisionsInFlight, StoreError> {
        Ok(self.conn.query_row(
            "SELECT count(DISTINCT provision_id), min(submitted_at), count(*)
             FROM outbox WHERE state = 'submitted'",
            [],
            |r| {
                Ok(ProvisionsInFlight {
                    in_flight: r.get::<_, i64>(0)? as u64,
                    oldest_submitted_at: r.get(1)?,
                    operations: r.get::<_, i64>(2)? as u64,
                })
            },
        )?)
    }

    /// Of the creates of `ids`, those an earlier attempt may have applied: sent before and
    /// refused, or sent without an answer that says what became of them. The latter carry the
    /// time their request last left (UTC): until a provision accepted then would have timed
    /// out, Concur may still apply it, so a create Concur does not show yet is not sent again.
    pub fn creates_unsettled<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a str>,
    ) -> Result<HashMap<String, Unsettled>, StoreError> {
        let wanted: std::collections::HashSet<&str> = ids.into_iter().collect();
        let mut out: HashMap<String, Unsettled> = HashMap::new();
        if wanted.is_empty() {
            return Ok(out);
        }
        // One pass over every earlier create attempt (few: only creates that did not end
        // done), rather than a query per planned create.
        let mut stmt = self.conn.prepare_cached(
            "SELECT employee_id, state, COALESCE(sent_at, updated_at) FROM outbox
             WHERE op = 'create' AND attempts > 0 AND state IN ('inflight', 'failed', 'abandoned')",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let id: String = r.get(0)?;
            if !wanted.contains(id.as_str()) {
                continue;
            }
            let state: OutboxState = r.get(1)?;
            let at: String = r.get(2)?;
            let entry = out.entry(id).or_insert(Unsettled::Refused);
            if state != OutboxState::Failed {
                let at = chrono::DateTime::parse_from_rfc3339(&at)
                    .map(|t| t.with_timezone(&chrono::Utc))
                    .unwrap_or_else(|_| chrono::Utc::now());
                *entry = match *entry {
                    Unsettled::Unanswered(prev) if prev >= at => Unsettled::Unanswered(prev),
                    _ => Unsettled::Unanswered(at),
                };
            }
        }
        Ok(out)
    }

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
        let planned: Vec<(i64, &Op)> = (0..).zip(ops).collect();
        let ids = insert_entries(&tx, cycle, &planned, state, None)?;
        tx.commit()?;
        Ok(ids)
    }

    /// Marks entries in flight as their request leaves (their attempt counter goes up): a
    /// written entry is marked, a planned one written now, in flight. One transaction, or part
    /// of an enclosing one. Returns every entry's id, in order.
    pub fn mark_sending(
        &mut self,
        cycle: i64,
        entries: &[(Entry, &Op)],
    ) -> Result<Vec<i64>, StoreError> {
        let tx = Atomic::begin(&mut self.conn)?;
        let at = now();
        let planned: Vec<(i64, &Op)> = entries
            .iter()
            .filter_map(|&(e, op)| match e {
                Entry::Planned { seq } => Some((seq, op)),
                Entry::Written(_) => None,
            })
            .collect();
        let written: Vec<i64> = entries
            .iter()
            .filter_map(|(e, _)| match e {
                Entry::Written(id) => Some(*id),
                Entry::Planned { .. } => None,
            })
            .collect();
        set_inflight(&tx, &written, &at)?;
        let mut new_ids =
            insert_entries(&tx, cycle, &planned, OutboxState::Inflight, Some(&at))?.into_iter();
        let mut ids = Vec::with_capacity(entries.len());
        for (e, _) in entries {
            match *e {
                Entry::Written(id) => ids.push(id),
                Entry::Planned { .. } => ids.extend(new_ids.next()),
            }
        }
        tx.commit()?;
        Ok(ids)
    }

    /// Writes entries of `cycle`'s plan that settle without being sent (a look-up showed they
    /// cannot be), `pending` until their outcome is recorded: `(place in the plan, operation)`.
    /// One transaction, or part of an enclosing one. Returns their ids in order.
    pub fn write_unsent(
        &mut self,
        cycle: i64,
        entries: &[(i64, &Op)],
    ) -> Result<Vec<i64>, StoreError> {
        let tx = Atomic::begin(&mut self.conn)?;
        let ids = insert_entries(&tx, cycle, entries, OutboxState::Pending, None)?;
        tx.commit()?;
        Ok(ids)
    }

    /// Adds an operation to a cycle's plan after the others (a follow-up of one that was
    /// partly applied): `pending`. Returns its id.
    pub fn add_follow_up(&mut self, cycle: i64, op: &Op) -> Result<i64, StoreError> {
        let tx = Atomic::begin(&mut self.conn)?;
        tx.execute(
            "INSERT INTO outbox (cycle_id, seq, employee_id, op, old_login_id, old_employee_id, origin, state, updated_at)
             SELECT ?1, COALESCE(max(seq), -1) + 1, ?2, ?3, ?4, ?5, ?6, ?7, ?8 FROM outbox WHERE cycle_id = ?1",
            params![
                cycle,
                op.employee_id,
                op.kind.as_str(),
                op.old_login_id,
                op.old_employee_id,
                op.origin,
                OutboxState::Pending,
                now(),
            ],
        )?;
        let id = tx.last_insert_rowid();
        tx.execute(
            "INSERT INTO outbox_bodies (outbox_id, payload, changes) VALUES (?1, ?2, ?3)",
            params![id, user_json(&op.user), changes_json(op)],
        )?;
        tx.commit()?;
        Ok(id)
    }

    /// Marks written entries as sent (their attempt counter goes up, `sent_at` is now): what
    /// [`Store::mark_sending`] does to written entries, for tests that stage an outbox.
    #[cfg(test)]
    pub fn mark_inflight(&mut self, ids: &[i64]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        set_inflight(&tx, ids, &now())?;
        tx.commit()?;
        Ok(())
    }

    /// Open (pending or in-flight) entries of a cycle, in send order.
    pub fn open_entries(
        &self,
        cycle: i64,
        states: &[OutboxState],
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT o.id, o.seq, o.employee_id, o.op, b.payload, o.old_login_id, o.old_employee_id,
                    o.origin, o.attempts, o.state
             FROM outbox o JOIN outbox_bodies b ON b.outbox_id = o.id
             WHERE o.cycle_id = ?1 ORDER BY o.seq",
        )?;
        let mut out = Vec::new();
        let mut rows = stmt.query([cycle])?;
        while let Some(r) = rows.next()? {
            let state: OutboxState = r.get(9)?;
            if !states.contains(&state) {
                continue;
            }
            out.push(OutboxEntry {
                id: r.get(0)?,
                cycle_id: cycle,
                seq: r.get(1)?,
                op: op_at(r)?,
                attempts: r.get(8)?,
            });
        }
        Ok(out)
    }
}

/// The field changes kept beside an entry: none for a create, whose fields are all in its
/// payload (`explain` reads them from there).
fn changes_json(op: &Op) -> Option<String> {
    (op.kind != OpKind::Create && !op.changes.is_empty())
        .then(|| serde_json::to_string(&op.changes).unwrap_or_default())
}

/// The operation an outbox row holds, from the columns 2–7 every outbox query selects in this
/// order: `employee_id, op, payload, old_login_id, old_employee_id, origin`.
fn op_at(r: &rusqlite::Row<'_>) -> Result<Op, StoreError> {
    let kind_s: String = r.get(3)?;
    let payload: String = r.get(4)?;
    let employee_id: String = r.get(2)?;
    let kind =
        OpKind::parse(&kind_s).ok_or_else(|| StoreError::Corrupt(format!("outbox op {kind_s}")))?;
    let user: User = serde_json::from_str(&payload)
        .map_err(|e| StoreError::Corrupt(format!("outbox {employee_id}: {e}")))?;
    Ok(Op {
        kind,
        employee_id,
        user,
        old_login_id: r.get(5)?,
        old_employee_id: r.get(6)?,
        changes: Vec::new(),
        password: None,
        origin: r.get(7)?,
    })
}

/// Marks written entries `inflight`, sent at `at` (one more attempt).
fn set_inflight(tx: &rusqlite::Connection, ids: &[i64], at: &str) -> Result<(), StoreError> {
    let mut stmt = tx.prepare_cached(
        "UPDATE outbox SET state = ?3, attempts = attempts + 1, updated_at = ?2, sent_at = ?2
         WHERE id = ?1",
    )?;
    for id in ids {
        stmt.execute(params![id, at, OutboxState::Inflight])?;
    }
    Ok(())
}

/// Inserts `entries` (place in the plan, operation) of `cycle` in `state`, sent at `sent_at`
/// (one attempt) when given. Returns their ids in order.
fn insert_entries(
    tx: &rusqlite::Connection,
    cycle: i64,
    entries: &[(i64, &Op)],
    state: OutboxState,
    sent_at: Option<&str>,
) -> Result<Vec<i64>, StoreError> {
    let mut ids = Vec::with_capacity(entries.len());
    let mut entry = tx.prepare_cached(
        "INSERT INTO outbox (cycle_id, seq, employee_id, op, old_login_id, old_employee_id, origin, state, updated_at, attempts, sent_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;
    let mut body = tx.prepare_cached(
        "INSERT INTO outbox_bodies (outbox_id, payload, changes) VALUES (?1, ?2, ?3)",
    )?;
    let at = now();
    for &(seq, op) in entries {
        entry.execute(params![
            cycle,
            seq,
            op.employee_id,
            op.kind.as_str(),
            op.old_login_id,
            op.old_employee_id,
            op.origin,
            state,
            at,
            i64::from(sent_at.is_some()),
            sent_at,
        ])?;
        let id = tx.last_insert_rowid();
        body.execute(params![id, user_json(&op.user), changes_json(op)])?;
        ids.push(id);
    }
    Ok(ids)
}
