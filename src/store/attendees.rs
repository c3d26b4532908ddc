//! State of the Attendees v4 job: the attendee snapshot, outbox, failures, rejections and
//! run history (tables of `migrations/0002-readback-attendees.sql`), and the files its drop
//! folder handed over (`source_files` rows of the `attendees` job).
//!
//! The run lifecycle, the outbox states, the recovery rule and the rejections are the users'
//! (`journal`); the tables are the attendee job's own because an attendee is keyed by its
//! external id and type and a write carries a v4 body. Same invariant as users: an attendee's
//! snapshot row advances only in the transaction that closes the outbox entry Concur
//! acknowledged.

use std::collections::{BTreeMap, HashMap, HashSet};

use rusqlite::params;
use serde::{Deserialize, Serialize, Serializer};

use super::files::{FileJob, SourceFile};
use super::journal::{ATTENDEES, RunInfo};
use super::{CycleOutcome, OutboxState, Store, StoreError, now};
use crate::model::{OpKind, Rejection};

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

/// One attendee run's record.
pub type AttendeeRunInfo = RunInfo<AttendeeCounts>;

/// The `attendees` key of `status --json`.
#[derive(Debug, Clone, Serialize)]
pub struct AttendeeStatus {
    pub known: u64,
    pub missing_from_source: Vec<AttendeeKey>,
    pub failed: Vec<AttendeeFailure>,
    /// The rejections of the latest run that read its source; `Rejection::employee_id` holds
    /// the attendee's external id, shown as `external_id`.
    #[serde(serialize_with = "rejections_by_external_id")]
    pub rejected: Vec<Rejection>,
    pub pending: u64,
    pub last_run: Option<AttendeeRunInfo>,
    /// The last file taken from the attendee drop folder and processed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_file: Option<SourceFile>,
}

/// Attendee rejections as `status --json` has always shown them:
/// `{source, external_id, field, message}`.
fn rejections_by_external_id<S: Serializer>(list: &[Rejection], s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Shown<'a> {
        source: &'a str,
        external_id: Option<&'a str>,
        field: &'a str,
        message: &'a str,
    }
    s.collect_seq(list.iter().map(|r| Shown {
        source: &r.source,
        external_id: r.employee_id.as_deref(),
        field: &r.field,
        message: &r.message,
    }))
}

/// An attendee rejection as `status` and the logs show it:
/// `file:line: attendee EXTERNAL_ID: field F: message`.
pub fn rejection_text(r: &Rejection) -> String {
    match &r.employee_id {
        Some(id) => format!(
            "{}: attendee {id}: field {}: {}",
            r.source, r.field, r.message
        ),
        None => format!("{}: field {}: {}", r.source, r.field, r.message),
    }
}

/// One planned attendee write as the outbox keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttendeeEntry<'a> {
    pub key: &'a AttendeeId,
    /// `Create` or `Update`.
    pub op: OpKind,
    /// The JSON body sent (create: every field; update: the changed fields).
    pub payload: String,
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
    /// Closes attendee runs a crash left open and abandons every open outbox entry (the next
    /// run re-plans them from the source and Concur's lookup). Returns the interrupted runs.
    pub fn recover_attendees(&mut self) -> Result<Vec<i64>, StoreError> {
        ATTENDEES.recover(&mut self.conn)
    }

    pub fn begin_attendee_run(&self, source: &str) -> Result<i64, StoreError> {
        ATTENDEES.begin(&self.conn, source)
    }

    pub fn finish_attendee_run(
        &self,
        run: i64,
        outcome: CycleOutcome,
        counts: &AttendeeCounts,
        message: Option<&str>,
    ) -> Result<(), StoreError> {
        ATTENDEES.finish(&self.conn, run, outcome, counts, message)
    }

    /// Closes a run's unsent writes as `abandoned` with a reason.
    pub fn abandon_attendee_writes(&self, run: i64, reason: &str) -> Result<(), StoreError> {
        ATTENDEES.abandon_open(&self.conn, run, reason)
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
        entries: &[AttendeeEntry<'_>],
    ) -> Result<Vec<i64>, StoreError> {
        let tx = self.conn.transaction()?;
        let mut ids = Vec::with_capacity(entries.len());
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO attendee_outbox (run_id, seq, external_id, type_code, op, payload, state, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            let at = now();
            for (seq, e) in entries.iter().enumerate() {
                stmt.execute(params![
                    run,
                    seq as i64,
                    e.key.0,
                    e.key.1,
                    e.op.as_str(),
                    e.payload,
                    OutboxState::Pending,
                    at
                ])?;
                ids.push(tx.last_insert_rowid());
            }
        }
        tx.commit()?;
        Ok(ids)
    }

    /// Marks a write as sent (its attempt counter goes up) before the request leaves.
    pub fn mark_attendee_inflight(&mut self, id: i64) -> Result<(), StoreError> {
        ATTENDEES.mark_inflight(&mut self.conn, &[id])
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
            ATTENDEES.close(&tx, id, None)?;
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
        op: OpKind,
        error: &AttendeeWriteError,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        let at = now();
        ATTENDEES.close(&tx, outbox_id, Some(&error.summary))?;
        tx.execute(
            "INSERT INTO attendee_failures (external_id, type_code, op, message, validation_errors, attempts, first_failed_at, last_failed_at, run_id)
             VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?6, ?7)
             ON CONFLICT(external_id, type_code, op) DO UPDATE SET message = excluded.message,
               validation_errors = excluded.validation_errors, attempts = attendee_failures.attempts + 1,
               last_failed_at = excluded.last_failed_at, run_id = excluded.run_id",
            params![
                key.0,
                key.1,
                op.as_str(),
                error.message,
                serde_json::to_string(&error.validation_errors).unwrap_or_else(|_| "[]".into()),
                at,
                run
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Replaces the stored attendee rejections with those of `run`.
    pub fn replace_attendee_rejections(
        &mut self,
        run: i64,
        rejections: &[Rejection],
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        ATTENDEES.replace_findings(&tx, ATTENDEES.rejections(), run, rejections)?;
        tx.commit()?;
        Ok(())
    }

    /// Marks the known attendees the source no longer lists (keeping the first time each was
    /// seen missing) and clears the mark of every other one. Returns how many are missing.
    pub fn mark_attendees_gone(&mut self, gone: &[AttendeeId]) -> Result<u64, StoreError> {
        let gone: HashSet<&AttendeeId> = gone.iter().collect();
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
                if gone.contains(k) {
                    set.execute(params![k.0, k.1, at])?;
                    missing += 1;
                } else {
                    clear.execute(params![k.0, k.1])?;
                }
            }
        }
        tx.commit()?;
        Ok(missing)
    }

    /// Records what became of a file taken from the attendee drop folder.
    pub fn record_attendee_file(&self, f: &SourceFile) -> Result<(), StoreError> {
        self.record_file(FileJob::Attendees, f)
    }

    /// The last attendee file processed (applied and archived), if any.
    pub fn last_processed_attendee_file(&self) -> Result<Option<SourceFile>, StoreError> {
        self.last_file(FileJob::Attendees)
    }

    /// The `attendees` part of `status`, or `None` when no attendee run ever happened.
    pub fn attendee_status(&self) -> Result<Option<AttendeeStatus>, StoreError> {
        let last_run: Option<AttendeeRunInfo> = ATTENDEES.last_run(&self.conn, "1")?;
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
        let rejected = ATTENDEES.findings(&self.conn, ATTENDEES.rejections())?;
        let pending = self.conn.query_row(
            "SELECT count(*) FROM attendee_outbox WHERE state IN (?1, ?2)",
            [OutboxState::Pending, OutboxState::Inflight],
            |r| r.get::<_, i64>(0),
        )? as u64;
        Ok(Some(AttendeeStatus {
            known,
            missing_from_source,
            failed,
            rejected,
            pending,
            last_run: Some(last_run),
            last_file: self.last_processed_attendee_file()?,
        }))
    }
}
