//! One sync cycle, wiring the edges to the core: read the source, validate, plan against the
//! snapshot, guard, send the plan in batches (each entry written to the outbox as its batch
//! leaves), record every outcome.
//!
//! - `input.rs`: what a cycle reads (the configured source, or a drop folder's file);
//! - `read.rs`: read + plan (`read_and_plan`, the CSV thread, the source digest, the company's
//!   form rules);
//! - `guard.rs`: the safety guards on the whole plan (pure);
//! - `deliver.rs`: the outbox sent through the shared send loops; held plans (`apply_held`);
//! - `render.rs`: `plan` and `plan --json`;
//! - `saved.rs`: saved plans (`plan --out`, `apply`): their file and the check that a fresh
//!   plan still holds exactly them.
//!
//! Crash safety rests on two rules: the snapshot only advances in the transaction that records
//! Concur's acknowledgement, and a cycle that did not finish is closed as `interrupted` by the
//! next start, which re-plans from the source (see ARCHITECTURE.md). What runs before a cycle
//! (the FormFields refresh, adoption of Concur's existing users) is the driver's business: it
//! hands that step to [`run_cycle`].

mod deliver;
mod guard;
pub mod input;
mod read;
mod render;
pub mod saved;

use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::concur::{ClientStats, ConcurClient, ConcurError};
use crate::config::Config;
use crate::error::{EXIT_FATAL, EXIT_HELD, EXIT_PARTIAL, EXIT_SUCCESS, SyncError};
use crate::model::{Op, OpKind};
use crate::store::{CycleCounts, CycleOutcome, Entry, OutboxState, Store};

pub use deliver::apply_held;
pub use guard::{Verdict, changes_identity, guard};
use read::read_and_plan_unruled;
pub use read::{Baselined, PlannedCycle, baseline_csv, read_and_plan};
pub use saved::SavedPlan;

/// What a finished cycle reports.
#[derive(Debug, Clone, Serialize)]
pub struct CycleReport {
    pub cycle_id: i64,
    /// Never `running`; `failed` cycles end in an error instead of a report.
    pub outcome: CycleOutcome,
    pub counts: CycleCounts,
}

/// The exit code of a command whose cycle ended so: 0 success, 2 partial (records rejected or
/// failed), 3 held or degraded, 1 interrupted or failed.
pub fn exit_code(outcome: CycleOutcome) -> u8 {
    match outcome {
        CycleOutcome::Success => EXIT_SUCCESS,
        CycleOutcome::Partial => EXIT_PARTIAL,
        // A rejected cycle was held: only `reject` ends one so.
        CycleOutcome::Held | CycleOutcome::Rejected | CycleOutcome::Degraded => EXIT_HELD,
        CycleOutcome::Running | CycleOutcome::Failed | CycleOutcome::Interrupted => EXIT_FATAL,
    }
}

/// What a cycle would plan now (`plan`, `plan --out`): the source read and planned, less the
/// operations of parked records, as [`run_cycle`] leaves them out (counted as `skipped`).
/// Writes nothing.
pub async fn preview_plan(cfg: &Config, store: &Store) -> Result<PlannedCycle, SyncError> {
    let mut planned = read_and_plan(cfg, store).await?;
    planned.skipped = store.leave_out_parked(&mut planned.ops)?.len() as u64;
    Ok(planned)
}

/// Runs one full cycle: recover, token, the driver's step before the cycle, plan, guard, store
/// the plan, apply it, record everything. That step comes in two halves: `fetch` is its
/// requests (the FormFields refresh, adoption's list of Concur's users), which touch no store,
/// and `record` records what they got once the plan is made (the FormFields cache, adoption,
/// which records its own repairs as a cycle of its own), answering whether the snapshot may
/// have changed; its error fails this cycle before any write. `cancel` stops the cycle at once,
/// also inside a batch (what finished is committed; the rest is re-planned by the next cycle).
pub async fn run_cycle<F: Send + 'static>(
    cfg: &Config,
    store: &mut Store,
    client: &ConcurClient,
    cancel: &CancellationToken,
    fetch: impl Future<Output = F> + Send + 'static,
    record: impl AsyncFnOnce(&mut Store, F) -> Result<bool, SyncError>,
) -> Result<CycleReport, SyncError> {
    run_cycle_with(cfg, store, client, cancel, None, fetch, record).await
}

/// [`run_cycle`], applying exactly `saved` when given (`apply FILE`): the source is read and
/// planned as usual, and the cycle goes on only if that plan still holds every saved operation
/// unchanged, against the same source and snapshot (else it fails with the reason, nothing
/// sent); then only the saved operations are guarded and sent. Without `saved`, under
/// `sync.require_approved_plan` the cycle plans and reports but writes nothing (`held`).
///
/// No rate-limited second waits for the plan: the token request and `fetch` leave while the
/// source is read and planned, and the form rules are applied once FormFields are cached. The
/// plan made meanwhile is kept unless what came before it changed the snapshot (adoption found
/// users in Concur, or provisions a previous process left in flight settled): then the cycle
/// plans again. With provisions left in flight, nothing is fetched before they have settled.
pub async fn run_cycle_with<F: Send + 'static>(
    cfg: &Config,
    store: &mut Store,
    client: &ConcurClient,
    cancel: &CancellationToken,
    saved: Option<&SavedPlan>,
    fetch: impl Future<Output = F> + Send + 'static,
    record: impl AsyncFnOnce(&mut Store, F) -> Result<bool, SyncError>,
) -> Result<CycleReport, SyncError> {
    let interrupted = store.recover()?;
    if !interrupted.is_empty() {
        tracing::warn!(cycles = ?interrupted, "closed cycles a previous process left unfinished; their unacknowledged operations are re-planned");
    }
    let before = client.stats();
    // A token first: a rejected credential fails here, once. Then the provisions a previous
    // process left in flight are polled to their end (nothing is sent again) before anything
    // is planned or fetched.
    let (prepared, early) = if store.submitted_provisions()?.is_empty() {
        let requests = {
            let client = client.clone();
            tokio::spawn(async move {
                client.authenticate().await?;
                Ok::<F, ConcurError>(fetch.await)
            })
        };
        let early = read_and_plan_unruled(cfg, store).await;
        let prepared = match requests.await {
            Ok(Ok(fetched)) => match resume(cfg, store, client).await {
                Ok(resumed) => record(store, fetched)
                    .await
                    .map(|changed| changed || resumed),
                Err(e) => Err(e),
            },
            Ok(Err(e)) => Err(e.into()),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        (prepared, Some(early))
    } else {
        let prepared = match client.authenticate().await {
            Ok(()) => match resume(cfg, store, client).await {
                Ok(_) => record(store, fetch.await).await,
                Err(e) => Err(e),
            },
            Err(e) => Err(e.into()),
        };
        (prepared, None)
    };
    // A plan made before the snapshot changed is made again.
    let prepared = prepared.map(|changed| early.filter(|_| !changed));
    let cycle = store.begin_cycle(&crate::source::history_label(&cfg.source))?;
    let span = tracing::info_span!("cycle", id = cycle);
    run_begun(cfg, store, client, cancel, cycle, &before, prepared, saved)
        .instrument(span)
        .await
}

/// Polls the provisions a previous process left submitted (an asynchronous target only) and
/// records their outcomes; answers whether any settled.
async fn resume(cfg: &Config, store: &mut Store, client: &ConcurClient) -> Result<bool, SyncError> {
    let target = crate::wiring::user_target(cfg, client);
    let mut counts = CycleCounts::default();
    let resumed = crate::writer::resume_provisions(&target, store, &mut counts).await?;
    if resumed > 0 {
        tracing::info!(
            provisions = resumed,
            ?counts,
            "provisions left in flight settled"
        );
    }
    Ok(resumed > 0)
}

/// The cycle `cycle`, recorded as begun, after its preparation ended with `prepared`: a plan
/// made meanwhile (without the form rules) when it still holds, or `None` to plan now.
#[allow(clippy::too_many_arguments)]
async fn run_begun(
    cfg: &Config,
    store: &mut Store,
    client: &ConcurClient,
    cancel: &CancellationToken,
    cycle: i64,
    before: &ClientStats,
    prepared: Result<Option<Result<PlannedCycle, SyncError>>, SyncError>,
    saved: Option<&SavedPlan>,
) -> Result<CycleReport, SyncError> {
    let early = match prepared {
        Ok(early) => early,
        Err(e) => return fail_prepared(store, client, cycle, before, e),
    };
    let planned = match early {
        Some(planned) => {
            planned.and_then(|mut p| read::apply_form_rules(cfg, store, &mut p).map(|()| p))
        }
        None => read_and_plan(cfg, store).await,
    };
    let planned = match planned {
        Ok(p) => p,
        Err(e) => {
            let msg = e.to_string();
            tracing::error!(error = %msg, "cycle failed before any write");
            store.finish_cycle(
                cycle,
                CycleOutcome::Failed,
                &CycleCounts::default(),
                Some(&msg),
            )?;
            return Err(e);
        }
    };
    deliver_planned(cfg, store, client, cancel, cycle, before, planned, saved).await
}

/// Closes `cycle`, whose preparation failed with `e`, before any write: interrupted by
/// shutdown, else failed with the error.
fn fail_prepared(
    store: &mut Store,
    client: &ConcurClient,
    cycle: i64,
    before: &ClientStats,
    e: SyncError,
) -> Result<CycleReport, SyncError> {
    {
        if matches!(&e, SyncError::Concur(c) if c.is_cancelled()) {
            let counts = CycleCounts {
                requests: client.stats().requests.saturating_sub(before.requests),
                ..CycleCounts::default()
            };
            store.finish_cycle(
                cycle,
                CycleOutcome::Interrupted,
                &counts,
                Some("stopped by shutdown before any write; the next cycle plans everything again"),
            )?;
            tracing::warn!("cycle stopped by shutdown before any write");
            return Ok(CycleReport {
                cycle_id: cycle,
                outcome: CycleOutcome::Interrupted,
                counts,
            });
        }
        let msg = e.to_string();
        tracing::error!(error = %msg, "cycle failed before any write");
        let mut counts = CycleCounts::default();
        let after = client.stats();
        counts.requests = after.requests.saturating_sub(before.requests);
        counts.retries = after.retries.saturating_sub(before.retries);
        store.finish_cycle(cycle, CycleOutcome::Failed, &counts, Some(&msg))?;
        Err(e)
    }
}

/// Records, guards and sends the plan of `cycle`.
#[allow(clippy::too_many_arguments)]
async fn deliver_planned(
    cfg: &Config,
    store: &mut Store,
    client: &ConcurClient,
    cancel: &CancellationToken,
    cycle: i64,
    before: &ClientStats,
    mut planned: PlannedCycle,
    saved: Option<&SavedPlan>,
) -> Result<CycleReport, SyncError> {
    if let Some(saved) = saved {
        match saved::check(saved, &planned, store.snapshot_generation()?) {
            Ok(ops) => planned.ops = ops,
            Err(why) => {
                tracing::error!(reason = %why, "saved plan not applied; nothing was sent");
                store.finish_cycle(
                    cycle,
                    CycleOutcome::Failed,
                    &CycleCounts::default(),
                    Some(&format!("saved plan not applied: {why}")),
                )?;
                return Err(SyncError::Refused(why));
            }
        }
    }
    record_plan(store, cycle, &planned)?;
    if saved.is_none() {
        let skips = store.follow_skips(cycle, &mut planned.ops, planned.complete)?;
        planned.skipped = skips.suppressed.len() as u64;
        if !skips.suppressed.is_empty() {
            tracing::info!(users = ?skips.suppressed, "parked records not planned (`concur-sync retry` plans them again)");
        }
        if !skips.released.is_empty() {
            tracing::info!(users = ?skips.released, "parked records whose source row changed are planned again");
        }
    }
    let mut counts = CycleCounts {
        rejected: planned.rejections.len() as u64,
        unchanged: planned.unchanged,
        planned: planned.ops.len() as u64,
        ..CycleCounts::default()
    };
    tracing::info!(
        source = %planned.source_label,
        records = planned.source_records,
        operations = planned.ops.len(),
        unchanged = planned.unchanged,
        rejected = planned.rejections.len(),
        "planned"
    );
    if saved.is_none() && cfg.sync.require_approved_plan && !planned.ops.is_empty() {
        let message = format!(
            "sync.require_approved_plan: {} operations planned and none sent; save them with `concur-sync plan --out FILE` and send them with `concur-sync apply FILE`",
            planned.ops.len()
        );
        tracing::warn!(operations = planned.ops.len(), "{message}");
        counts.requests = client.stats().requests.saturating_sub(before.requests);
        store.finish_cycle(cycle, CycleOutcome::Held, &counts, Some(&message))?;
        return Ok(CycleReport {
            cycle_id: cycle,
            outcome: CycleOutcome::Held,
            counts,
        });
    }
    // Row stamps only from a cycle that goes on to deliver: a plan held for approval changes
    // nothing a saved plan is checked against.
    match &planned.row_stamps {
        Some(stamps) => {
            store.stamp_rows(stamps.fingerprint, &stamps.unchanged)?;
            store.expect_stamps(stamps);
        }
        None => store.expect_stamps(&crate::plan::RowStamps::default()),
    }
    let managed_active = store.user_counts()?.active;
    let verdict = guard(&cfg.sync, &planned, managed_active);
    let (mut ops, held, message) = follow(&verdict, planned.ops, cycle);
    deliver::set_create_passwords(cfg, &mut ops);
    if !held.is_empty() {
        store.write_outbox(cycle, &held, OutboxState::Held)?;
    }
    // Each entry is written as its request leaves: the first one waits for no more than
    // its own batch to reach the disk. Until then `status` counts it from `to_send`.
    store.set_cycle_to_send(cycle, ops.len())?;
    let planned: Vec<Entry> = (0..ops.len() as i64)
        .map(|seq| Entry::Planned { seq })
        .collect();
    let target = crate::wiring::user_target(cfg, client);
    let result = deliver::apply(
        cfg,
        store,
        &target,
        cycle,
        &ops,
        &planned,
        &mut counts,
        cancel,
    )
    .await;
    if let Err(e) = store.refresh_row_index() {
        tracing::warn!(error = %e, "the snapshot index file was not refreshed; the next plan rebuilds it");
    }
    let after = client.stats();
    counts.requests = after.requests.saturating_sub(before.requests);
    counts.retries = after.retries.saturating_sub(before.retries);
    counts.throttled_seconds = (after.throttled_seconds - before.throttled_seconds).max(0.0);
    match result {
        Ok(true) => {
            let outcome = if verdict.hold_reason().is_some() {
                CycleOutcome::Held
            } else if verdict.degraded.is_some() {
                CycleOutcome::Degraded
            } else if counts.failed > 0 || counts.rejected > 0 {
                CycleOutcome::Partial
            } else {
                CycleOutcome::Success
            };
            store.finish_cycle(cycle, outcome, &counts, message.as_deref())?;
            tracing::info!(outcome = outcome.as_str(), ?counts, "cycle finished");
            Ok(CycleReport {
                cycle_id: cycle,
                outcome,
                counts,
            })
        }
        Ok(false) => {
            store.abandon_open(
                cycle,
                "stopped by shutdown before it was sent; re-planned next cycle",
            )?;
            store.finish_cycle(
                cycle,
                CycleOutcome::Interrupted,
                &counts,
                Some("stopped by shutdown; operations Concur had not acknowledged are re-planned next cycle"),
            )?;
            tracing::warn!(?counts, "cycle stopped by shutdown");
            Ok(CycleReport {
                cycle_id: cycle,
                outcome: CycleOutcome::Interrupted,
                counts,
            })
        }
        Err(e) => {
            let msg = e.to_string();
            tracing::error!(error = %msg, "cycle failed; unsent operations are re-planned next cycle");
            store.abandon_open(cycle, "not sent: the cycle failed; re-planned next cycle")?;
            store.finish_cycle(cycle, CycleOutcome::Failed, &counts, Some(&msg))?;
            Err(e)
        }
    }
}

/// Records what the plan of `cycle` found before anything is sent: the source's digest, the
/// passwords learned, rejections and warnings; a held plan of an earlier cycle is superseded.
fn record_plan(store: &mut Store, cycle: i64, planned: &PlannedCycle) -> Result<(), SyncError> {
    store.set_cycle_source_digest(cycle, &planned.source_digest)?;
    if let Some(read) = &planned.watermark {
        store.record_scim_read(cycle, read)?;
    }
    if !planned.learned_password_macs.is_empty() {
        store.learn_password_macs(&planned.learned_password_macs)?;
        tracing::info!(
            users = planned.learned_password_macs.len(),
            "recorded source passwords of users whose password was unknown after a new state key; none was sent"
        );
    }
    store.replace_findings(cycle, &planned.rejections, &planned.warnings)?;
    store.supersede_held(cycle)?;
    for r in &planned.rejections {
        tracing::warn!(rejection = %r, "record rejected");
    }
    for w in &planned.warnings {
        tracing::warn!(warning = %w, "value changed to let the record through");
    }
    Ok(())
}

/// Follows the guards' verdict on the plan of `cycle`: a degraded read drops every
/// deactivation, a hold keeps back what it holds. Returns the operations to send, those held
/// for approval, and the note the cycle history keeps about it.
fn follow(verdict: &Verdict, mut ops: Vec<Op>, cycle: i64) -> (Vec<Op>, Vec<Op>, Option<String>) {
    let mut held: Vec<Op> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    if let Some(why) = &verdict.degraded {
        let dropped = ops.iter().filter(|o| o.kind == OpKind::Deactivate).count();
        ops.retain(|o| o.kind != OpKind::Deactivate);
        tracing::warn!(reason = %why, deactivations_skipped = dropped, "source read looks incomplete: nobody is deactivated this cycle");
        notes.push(format!("degraded: {why}; {dropped} deactivations skipped"));
    }
    if let Some(why) = verdict.hold_reason() {
        let (h, rest): (Vec<Op>, Vec<Op>) = ops.into_iter().partition(|o| verdict.holds(o));
        held = h;
        ops = rest;
        tracing::warn!(reason = %why, held = held.len(), cycle, "operations held for approval: run `concur-sync approve {cycle}` or `concur-sync reject {cycle}`");
        notes.push(format!(
            "held: {why}; approve with `concur-sync approve {cycle}` or drop with `concur-sync reject {cycle}`"
        ));
    }
    (ops, held, (!notes.is_empty()).then(|| notes.join("; ")))
}
