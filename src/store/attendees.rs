//! State of the Attendees v4 job: the attendee snapshot, outbox, failures, rejections and
//! run history (tables of `migrations/0002-readback-attendees.sql`).
//!
//! Same invariant as users: an attendee's snapshot row advances only in the transaction that
//! closes the outbox entry Concur acknowledged.

use std::collections::{BTreeMap, HashMap, HashSet};

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError, now};

/// One field-level complaint of a refused attendee write, as the failures table keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttendeeValidationError {
    pub id: String,
    pub message: String,
    pub source: String,
}

/// A refused attendee write as the store records it: the one-line summary kept on the outbox
/// entry, Concur's message and its validation errors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttendeeWriteError {
    pub summary: String,
    pub message: String,
    pub validation_errors: Vec<AttendeeValidationError>,
}

/// What one attendee run did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct AttendeeCounts {
    pub source_records: u64,
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    /// Found in Concur by external id and taken into the snapshot.
    pub adopted: u64,
    pub failed: u64,
    pub rejected: u64,
    /// In the snapshot but no longer in the source (v4 cannot delete them).
    pub missing_from_source: u64,
    pub requests: u64,
}

/// A source attendee row that failed validation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AttendeeRejection {
    pub source: String,
    pub external_id: Option<String>,
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for AttendeeRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: ", self.source)?;
        if let Some(id) = &self.external_id {
            write!(f, "attendee {id}: ")?;
        }
        write!(f, "field {}: {}", self.field, self.message)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AttendeeFailure {
    pub external_id: String,
    pub attendee_type_code: String,
    pub operation: String,
    pub message: String,
    pub validation_errors: Vec<AttendeeValidationError>,
    pub attempts: i64,
    pub last_failed_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct AttendeeKey {
    pub external_id: String,
    pub attendee_type_code: String,
    pub missing_since: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct AttendeeRunInfo {
    pub id: i64,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub outcome: String,
    pub source: String,
    pub message: Option<String>,
    pub counts: AttendeeCounts,
}

/// The `attendees` key of `status --json`.
#[derive(Debug, Clone, Serialize)]
pub struct AttendeeStatus {
    pub known: u64,
    pub missing_from_source: Vec<AttendeeKey>,
    pub failed: Vec<AttendeeFailure>,
    pub rejected: Vec<AttendeeRejection>,
    pub pending: u64,
    pub last_run: Option<AttendeeRunInfo>,
}

/// One attendee as the snapshot holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownAttendee {
    pub concur_id: String,
    /// v4 field name → value, as acknowledged.
    pub fields: BTreeMap<String, String>,
}

/// Attendee snapshot key: (external id, upper-case type code).
pub type AttendeeId = (String, String);

fn fields_hash(fields: &BTreeMap<String, String>) -> Vec<u8> {
    let mut h = blake3::Hasher::new();
    for (k, v) in fields {
        h.update(&(k.len() as u32).to_le_bytes());
        h.update(k.as_bytes());
        h.update(&(v.len() as u32).to_le_bytes());
        h.update(v.as_bytes());
    }
    h.finalize().as_bytes()[..16].to_vec()
}

impl Store {
    /// Closes attendee runs a crash left open; their open outbox entries become `abandoned`
    /// (the next run re-plans them from the source and Concur's lookup).
    pub fn recover_attendees(&mut self) -> Result<Vec<i64>, StoreError> {
        let tx = self.conn.transaction()?;
        let ids: Vec<i64> = {
            let mut stmt = tx.prepare("SELECT id FROM attendee_runs WHERE outcome = 'running'")?;
            stmt.query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?
        };
        let at = now();
        for id in &ids {
            tx.execute(
                "UPDATE attendee_outbox SET state = 'abandoned', updated_at = ?2,
                   last_error = COALESCE(last_error, 'run interrupted before Concur answered; re-planned')
                 WHERE run_id = ?1 AND state IN ('pending', 'inflight')",
                params![id, at],
            )?;
            tx.execute(
                "UPDATE attendee_runs SET outcome = 'interrupted', finished_at = ?2,
                   message = COALESCE(message, 'the process stopped before the run finished')
                 WHERE id = ?1",
                params![id, at],
            )?;
        }
        tx.commit()?;
        Ok(ids)
    }

    pub fn begin_attendee_run(&self, source: &str) -> Result<i64, StoreError> {
        self.conn.execute(
            "INSERT INTO attendee_runs (started_at, source) VALUES (?1, ?2)",
            params![now(), source],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn finish_attendee_run(
        &self,
        run: i64,
        outcome: &str,
        counts: &AttendeeCounts,
        message: Option<&str>,
    ) -> Result<(), StoreError> {
        let counts = serde_json::to_string(counts).unwrap_or_else(|_| "{}".into());
        self.conn.execute(
            "UPDATE attendee_runs SET outcome = ?2, finished_at = ?3, counts = ?4, message = ?5 WHERE id = ?1",
            params![run, outcome, now(), counts, message],
        )?;
        Ok(())
    }

    /// Every attendee Concur acknowledged.
    pub fn attendee_snapshot(&self) -> Result<HashMap<AttendeeId, KnownAttendee>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT external_id, type_code, concur_id, fields FROM attendees")?;
        let mut rows = stmt.query([])?;
        let mut out = HashMap::new();
        while let Some(r) = rows.next()? {
            let ext: String = r.get(0)?;
            let f: String = r.get(3)?;
            let fields = serde_json::from_str(&f)
                .map_err(|e| StoreError::Corrupt(format!("attendee {ext}: {e}")))?;
            out.insert(
                (ext, r.get(1)?),
                KnownAttendee {
                    concur_id: r.get(2)?,
                    fields,
                },
            );
        }
        Ok(out)
    }

    /// Stores a run's planned writes as `pending`; returns their ids in order.
    pub fn write_attendee_outbox(
        &mut self,
        run: i64,
        entries: &[(&AttendeeId, &str, String)],
    ) -> Result<Vec<i64>, StoreError> {
        let tx = self.conn.transaction()?;
        let mut ids = Vec::with_capacity(entries.len());
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO attendee_outbox (run_id, seq, external_id, type_code, op, payload, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            let at = now();
            for (seq, (key, op, payload)) in entries.iter().enumerate() {
                stmt.execute(params![run, seq as i64, key.0, key.1, op, payload, at])?;
                ids.push(tx.last_insert_rowid());
            }
        }
        tx.commit()?;
        Ok(ids)
    }

    pub fn mark_attendee_inflight(&self, id: i64) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE attendee_outbox SET state = 'inflight', attempts = attempts + 1, updated_at = ?2 WHERE id = ?1",
            params![id, now()],
        )?;
        Ok(())
    }

    /// Records an acknowledged attendee: the outbox entry (if any) closes and the snapshot
    /// advances in one transaction.
    pub fn record_attendee_ack(
        &mut self,
        run: i64,
        outbox_id: Option<i64>,
        key: &AttendeeId,
        known: &KnownAttendee,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        let at = now();
        if let Some(id) = outbox_id {
            tx.execute(
                "UPDATE attendee_outbox SET state = 'done', last_error = NULL, updated_at = ?2 WHERE id = ?1",
                params![id, at],
            )?;
        }
        tx.execute(
            "INSERT INTO attendees (external_id, type_code, concur_id, fields, hash, acked_at, acked_run)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT(external_id, type_code) DO UPDATE SET concur_id = excluded.concur_id,
               fields = excluded.fields, hash = excluded.hash, acked_at = excluded.acked_at,
               acked_run = excluded.acked_run, missing_since = NULL",
            params![
                key.0,
                key.1,
                known.concur_id,
                serde_json::to_string(&known.fields).unwrap_or_else(|_| "{}".into()),
                fields_hash(&known.fields),
                at,
                run
            ],
        )?;
        tx.execute(
            "DELETE FROM attendee_failures WHERE external_id = ?1 AND type_code = ?2",
            params![key.0, key.1],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Records Concur's refusal (or an unresolved outcome) of one attendee write.
    pub fn record_attendee_failure(
        &mut self,
        run: i64,
        outbox_id: i64,
        key: &AttendeeId,
        op: &str,
        error: &AttendeeWriteError,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        let at = now();
        tx.execute(
            "UPDATE attendee_outbox SET state = 'failed', last_error = ?2, updated_at = ?3 WHERE id = ?1",
            params![outbox_id, error.summary, at],
        )?;
        tx.execute(
            "INSERT INTO attendee_failures (external_id, type_code, op, message, validation_errors, attempts, first_failed_at, last_failed_at, run_id)
             VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?6, ?7)
             ON CONFLICT(external_id, type_code, op) DO UPDATE SET message = excluded.message,
               validation_errors = excluded.validation_errors, attempts = attendee_failures.attempts + 1,
               last_failed_at = excluded.last_failed_at, run_id = excluded.run_id",
            params![
                key.0,
                key.1,
                op,
                error.message,
                serde_json::to_string(&error.validation_errors).unwrap_or_else(|_| "[]".into()),
                at,
                run
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    pub fn replace_attendee_rejections(
        &mut self,
        run: i64,
        rejections: &[AttendeeRejection],
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM attendee_rejections", [])?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO attendee_rejections (run_id, source, external_id, field, message) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for r in rejections {
                stmt.execute(params![run, r.source, r.external_id, r.field, r.message])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Marks known attendees the source no longer lists (keeping the first time it was seen
    /// missing) and clears the mark of those it lists again. Returns how many are missing.
    pub fn mark_attendees_missing(
        &mut self,
        present: &HashSet<AttendeeId>,
    ) -> Result<u64, StoreError> {
        let tx = self.conn.transaction()?;
        let keys: Vec<AttendeeId> = {
            let mut stmt = tx.prepare("SELECT external_id, type_code FROM attendees")?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?
        };
        let at = now();
        let mut missing = 0;
        {
            let mut set = tx.prepare_cached(
                "UPDATE attendees SET missing_since = COALESCE(missing_since, ?3) WHERE external_id = ?1 AND type_code = ?2",
            )?;
            let mut clear = tx.prepare_cached(
                "UPDATE attendees SET missing_since = NULL WHERE external_id = ?1 AND type_code = ?2",
            )?;
            for k in &keys {
                if present.contains(k) {
                    clear.execute(params![k.0, k.1])?;
                } else {
                    set.execute(params![k.0, k.1, at])?;
                    missing += 1;
                }
            }
        }
        tx.commit()?;
        Ok(missing)
    }

    /// The `attendees` part of `status`, or `None` when no attendee run ever happened.
    pub fn attendee_status(&self) -> Result<Option<AttendeeStatus>, StoreError> {
        let last_run = self
            .conn
            .query_row(
                "SELECT id, started_at, finished_at, outcome, source, message, counts
                 FROM attendee_runs ORDER BY id DESC LIMIT 1",
                [],
                |r| {
                    let counts: String = r.get(6)?;
                    Ok(AttendeeRunInfo {
                        id: r.get(0)?,
                        started_at: r.get(1)?,
                        finished_at: r.get(2)?,
                        outcome: r.get(3)?,
                        source: r.get(4)?,
                        message: r.get(5)?,
                        counts: serde_json::from_str(&counts).unwrap_or_default(),
                    })
                },
            )
            .optional()?;
        let Some(last_run) = last_run else {
            return Ok(None);
        };
        let known = self
            .conn
            .query_row("SELECT count(*) FROM attendees", [], |r| r.get::<_, i64>(0))?
            as u64;
        let missing_from_source = {
            let mut stmt = self.conn.prepare(
                "SELECT external_id, type_code, missing_since FROM attendees
                 WHERE missing_since IS NOT NULL ORDER BY external_id, type_code LIMIT 1000",
            )?;
            stmt.query_map([], |r| {
                Ok(AttendeeKey {
                    external_id: r.get(0)?,
                    attendee_type_code: r.get(1)?,
                    missing_since: r.get(2)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?
        };
        let failed = {
            let mut stmt = self.conn.prepare(
                "SELECT external_id, type_code, op, message, validation_errors, attempts, last_failed_at
                 FROM attendee_failures ORDER BY external_id, type_code, op",
            )?;
            stmt.query_map([], |r| {
                let v: String = r.get(4)?;
                Ok(AttendeeFailure {
                    external_id: r.get(0)?,
                    attendee_type_code: r.get(1)?,
                    operation: r.get(2)?,
                    message: r.get(3)?,
                    validation_errors: serde_json::from_str(&v).unwrap_or_default(),
                    attempts: r.get(5)?,
                    last_failed_at: r.get(6)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?
        };
        let rejected = {
            let mut stmt = self.conn.prepare(
                "SELECT source, external_id, field, message FROM attendee_rejections ORDER BY id",
            )?;
            stmt.query_map([], |r| {
                Ok(AttendeeRejection {
                    source: r.get(0)?,
                    external_id: r.get(1)?,
                    field: r.get(2)?,
                    message: r.get(3)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?
        };
        let pending = self.conn.query_row(
            "SELECT count(*) FROM attendee_outbox WHERE state IN ('pending', 'inflight')",
            [],
            |r| r.get::<_, i64>(0),
        )? as u64;
        Ok(Some(AttendeeStatus {
            known,
            missing_from_source,
            failed,
            rejected,
            pending,
            last_run: Some(last_run),
        }))
    }
}
