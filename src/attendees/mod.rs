//! The Attendees v4 job: a second kind of job beside users, run by the same `sync`, on the
//! users' rails.
//!
//! Each run: recover what a crash left open (the users' rule: abandon and re-plan, never
//! replay); take the file to read (`folder`: a file, or the drop-folder protocol); read and
//! check it (`read`: the user source's CSV reader over the attendee columns; rejected rows are
//! `model::Rejection`s); look attendees the snapshot does not know up with
//! `GET /v4/attendees?externalId=…` (ten per call, every page); plan (`plan`, pure): a `POST`
//! for new ones, a `PUT` with only the changed fields for changed ones, adoption of those found,
//! the ones gone from the source; store the plan in the outbox; send; record each outcome (the
//! snapshot advances in the transaction that closes the outbox entry; Concur's v4 error is kept
//! per attendee). v4 has no delete: attendees gone from the source are listed by `status`.
//!
//! A create is not idempotent, so it is sent once; when its outcome is unknown (no answer, 429,
//! 5xx) the attendee is looked up by external id before it is sent again. A crash between a
//! create and its acknowledgement is healed the same way: the next run finds it by lookup.

pub(crate) mod folder;
pub mod plan;
pub mod read;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::Value;
use tracing::Instrument;

use crate::concur::ConcurClient;
use crate::concur::attendees::{self as wire, RemoteAttendee, V4Error};
use crate::config::AttendeesConfig;
use crate::error::SyncError;
use crate::store::attendees::{
    AttendeeCounts, AttendeeEntry, AttendeeId, AttendeeValidationError, AttendeeWriteError,
    KnownAttendee, rejection_text,
};
use crate::store::{CycleOutcome, Store};
use folder::{Input, Taken};
use plan::{Write, WriteKind};

/// Attendee types Concur refuses to create or update through v4.
pub const REFUSED_TYPES: [&str; 2] = ["NOSHOWS", "SYSEMP"];

/// What an attendee run reports.
#[derive(Debug, Clone, Serialize)]
pub struct AttendeeReport {
    pub run_id: i64,
    pub outcome: CycleOutcome,
    pub counts: AttendeeCounts,
}

impl AttendeeReport {
    pub fn exit_code(&self) -> u8 {
        if self.outcome == CycleOutcome::Success {
            0
        } else {
            2
        }
    }
}

/// Runs the attendee job once.
pub async fn run(
    cfg: &AttendeesConfig,
    store: &mut Store,
    client: &ConcurClient,
) -> Result<AttendeeReport, SyncError> {
    let interrupted = store.recover_attendees()?;
    if !interrupted.is_empty() {
        tracing::warn!(runs = ?interrupted, "closed attendee runs a previous process left unfinished");
    }
    let run_id = store.begin_attendee_run(&cfg.source.path.display().to_string())?;
    let span = tracing::info_span!("attendees", run = run_id);
    let mut counts = AttendeeCounts::default();
    let before = client.stats();
    let mut input = Input::new(&cfg.source);
    let result = async {
        let taken = input.take(store)?;
        let result = run_on(cfg, store, client, run_id, &taken, &mut counts).await;
        input.put_away(store, &taken, &result)?;
        result
    }
    .instrument(span.clone())
    .await;
    counts.requests = client.stats().requests.saturating_sub(before.requests);
    let _guard = span.enter();
    match result {
        Ok(()) => {
            let outcome = if counts.failed > 0 || counts.rejected > 0 {
                CycleOutcome::Partial
            } else {
                CycleOutcome::Success
            };
            store.finish_attendee_run(run_id, outcome, &counts, None)?;
            tracing::info!(outcome = outcome.as_str(), ?counts, "attendee run finished");
            Ok(AttendeeReport {
                run_id,
                outcome,
                counts,
            })
        }
        Err(e) => {
            let msg = e.to_string();
            tracing::error!(error = %msg, "attendee run failed; unsent writes are re-planned next run");
            store
                .abandon_attendee_writes(run_id, "not sent: the run failed; re-planned next run")?;
            store.finish_attendee_run(run_id, CycleOutcome::Failed, &counts, Some(&msg))?;
            Err(e)
        }
    }
}

/// One run on the file taken: read, look up, plan, store the plan, send, record.
async fn run_on(
    cfg: &AttendeesConfig,
    store: &mut Store,
    client: &ConcurClient,
    run_id: i64,
    taken: &Taken,
    counts: &mut AttendeeCounts,
) -> Result<(), SyncError> {
    let read = read::read_file(&taken.path, cfg, taken.no_follow)?;
    counts.source_records = (read.records.len() + read.rejections.len()) as u64;
    counts.rejected = read.rejections.len() as u64;
    for r in &read.rejections {
        tracing::warn!(rejection = %rejection_text(r), "attendee rejected");
    }
    store.replace_attendee_rejections(run_id, &read.rejections)?;
    let snapshot = store.attendee_snapshot()?;
    let unknown = plan::lookups(&read.records, &snapshot);
    let found = index(wire::lookup_by_external_ids(client, &unknown, cfg.page_size).await?);
    let plan = plan::plan(
        &read.records,
        &read.columns,
        &read.rejections,
        &snapshot,
        &found,
    );
    counts.unchanged = plan.unchanged;
    counts.adopted = plan.adopted;
    for (key, known) in &plan.adopt {
        store.record_attendee_ack(run_id, None, key, known)?;
    }
    let entries: Vec<AttendeeEntry<'_>> = plan
        .writes
        .iter()
        .map(|w| AttendeeEntry {
            key: &w.key,
            op: w.op(),
            payload: body(w.body()).to_string(),
        })
        .collect();
    let ids = store.write_attendee_outbox(run_id, &entries)?;
    let creates = plan
        .writes
        .iter()
        .filter(|w| matches!(w.kind, WriteKind::Create { .. }))
        .count();
    tracing::info!(
        creates,
        updates = plan.writes.len() - creates,
        unchanged = counts.unchanged,
        rejected = counts.rejected,
        "planned attendees"
    );
    for (w, outbox_id) in plan.writes.iter().zip(ids) {
        send(cfg, store, client, run_id, w, outbox_id, counts).await?;
    }
    counts.missing_from_source = store.mark_attendees_gone(&plan.gone)?;
    Ok(())
}

/// Sends one write and records its outcome. A refusal is recorded and the run goes on; an
/// unknown outcome is recorded and ends the run (the rest is re-planned next run).
async fn send(
    cfg: &AttendeesConfig,
    store: &mut Store,
    client: &ConcurClient,
    run_id: i64,
    w: &Write,
    outbox_id: i64,
    counts: &mut AttendeeCounts,
) -> Result<(), SyncError> {
    store.mark_attendee_inflight(outbox_id)?;
    let answer = match &w.kind {
        WriteKind::Create { body: fields } => create(cfg, client, &w.key, fields)
            .await
            .map_err(|e| (0, format!("not confirmed: {e}"), e)),
        WriteKind::Update { concur_id, changes } => {
            match wire::update(client, concur_id, &body(changes)).await {
                Ok(answer) => Ok(answer.map(|()| concur_id.clone())),
                Err(e) => Err((
                    e.status().unwrap_or(0),
                    format!("not applied: {e}"),
                    e.into(),
                )),
            }
        }
    };
    let op = w.op();
    match answer {
        Ok(Ok(concur_id)) => {
            match op {
                crate::model::OpKind::Create => counts.created += 1,
                _ => counts.updated += 1,
            }
            let known = KnownAttendee {
                concur_id,
                fields: w.want.clone(),
            };
            store.record_attendee_ack(run_id, Some(outbox_id), &w.key, &known)?;
        }
        Ok(Err(refused)) => {
            counts.failed += 1;
            tracing::warn!(external_id = %w.key.0, attendee_type_code = %w.key.1, operation = op.as_str(), error = %refused, "Concur refused the attendee");
            store.record_attendee_failure(run_id, outbox_id, &w.key, op, &write_error(&refused))?;
        }
        Err((status, message, e)) => {
            let unknown = V4Error {
                status,
                message,
                validation_errors: Vec::new(),
            };
            store.record_attendee_failure(run_id, outbox_id, &w.key, op, &write_error(&unknown))?;
            counts.failed += 1;
            return Err(e);
        }
    }
    Ok(())
}

/// Lookup results by (external id, upper-case type); the lowest id wins among duplicates.
fn index(list: Vec<RemoteAttendee>) -> HashMap<AttendeeId, KnownAttendee> {
    let mut out: HashMap<AttendeeId, KnownAttendee> = HashMap::new();
    for a in list {
        let key = (
            a.get("externalId").to_owned(),
            a.get("attendeeTypeCode").to_ascii_uppercase(),
        );
        match out.get(&key) {
            Some(prev) if prev.concur_id <= a.id => {}
            _ => {
                out.insert(
                    key,
                    KnownAttendee {
                        concur_id: a.id,
                        fields: a.fields,
                    },
                );
            }
        }
    }
    out
}

/// Creates one attendee. An unknown outcome is resolved by looking it up before sending again.
async fn create(
    cfg: &AttendeesConfig,
    client: &ConcurClient,
    key: &AttendeeId,
    fields: &BTreeMap<String, String>,
) -> Result<Result<String, V4Error>, SyncError> {
    let attempts = 6;
    let mut last = None;
    for attempt in 1..=attempts {
        if attempt > 1 {
            let found = index(
                wire::lookup_by_external_ids(client, &[key.0.as_str()], cfg.page_size).await?,
            );
            if let Some(a) = found.get(key) {
                tracing::info!(external_id = %key.0, "an unconfirmed create had been applied; found by lookup");
                return Ok(Ok(a.concur_id.clone()));
            }
        }
        match wire::create(client, &body(fields)).await {
            Ok(result) => return Ok(result),
            Err(e) if e.is_retryable() => {
                tracing::info!(external_id = %key.0, attempt, error = %e, "attendee create unconfirmed; looking it up before sending again");
                last = Some(e);
            }
            Err(e) => return Err(e.into()),
        }
    }
    match last {
        Some(e) => Err(e.into()),
        None => Ok(Err(V4Error::default())),
    }
}

fn body(fields: &BTreeMap<String, String>) -> Value {
    Value::Object(
        fields
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

/// The attendee job as `sync` runs it after the user cycle: prints a line, returns the exit code.
pub async fn command_run(
    cfg: &AttendeesConfig,
    store: &mut Store,
    client: &ConcurClient,
) -> Result<u8, SyncError> {
    let report = run(cfg, store, client).await?;
    let c = &report.counts;
    crate::outln!(
        "attendees {} {}: {} created, {} updated, {} adopted, {} failed, {} rejected, {} unchanged, {} gone from the source",
        report.run_id,
        report.outcome,
        c.created,
        c.updated,
        c.adopted,
        c.failed,
        c.rejected,
        c.unchanged,
        c.missing_from_source
    );
    Ok(report.exit_code())
}

/// A refused v4 write as the store records it.
fn write_error(e: &V4Error) -> AttendeeWriteError {
    AttendeeWriteError {
        summary: e.to_string(),
        message: e.message.clone(),
        validation_errors: e
            .validation_errors
            .iter()
            .map(|v| AttendeeValidationError {
                id: v.id.clone(),
                message: v.message.clone(),
                source: v.source.clone(),
            })
            .collect(),
    }
}
