//! Reading Concur back outside the cycle: the FormFields cache that sharpens validation,
//! adoption of the users Concur already has (once, before the first cycle), and `reconcile`
//! (adoption and drift repair at once). The decisions are [`matcher`]'s; this module does the
//! IO around them: it lists Concur's users, reads the source, records what was decided and
//! sends the writes through the shared send loop (`writer::send_user_ops`), as a cycle of their
//! own (outbox, batches, acknowledgement).
//!
//! Adopted users enter the snapshot as `adopted` with what Concur reported (so the next cycle
//! sends each the source's full record once); a login match under another employee id is
//! renamed in Concur (`NewEmployeeID`) and adopted when Concur acknowledges it. Unmanaged users
//! are listed by `status`, never written, unless `sync.manage_unmatched` makes them managed.
//! Drifted users get the source's desired state re-sent, counted as `drift_repaired`.

pub mod matcher;

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::concur::ConcurClient;
use crate::concur::readback::{self as wire, FormField};
use crate::config::{Config, ConfigError};
use crate::error::SyncError;
use crate::model::{Op, SourceRecord, User};
use crate::source::SourceItem;
use crate::store::readback::{FormFieldRow, ReconcileCounts};
use crate::store::{CycleCounts, CycleOutcome, OutboxState, Ownership, ReconcileOutcome, Store};
use crate::validate::Normalizer;
use crate::writer::{self, Settled};

/// The FormFields cache is refreshed when older than this.
pub const FORM_FIELDS_MAX_AGE: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// What `reconcile` (or the adoption before the first cycle) did.
#[derive(Debug, Clone, Serialize)]
pub struct ReconcileReport {
    pub id: i64,
    pub outcome: &'static str,
    pub counts: ReconcileCounts,
}

/// Reads and normalizes every valid source user (rejected rows are left out: they are
/// reported by the cycle).
async fn read_source(cfg: &Config, store: &Store) -> Result<Vec<SourceRecord>, SyncError> {
    let normalizer =
        Normalizer::new(&cfg.defaults).map_err(|m| ConfigError::invalid("defaults", m))?;
    let mut out = Vec::new();
    let prior = crate::source::Prior {
        watermarks: store.scim_watermarks()?,
        snapshot_empty: store.user_count()? == 0,
    };
    for item in crate::source::open(&cfg.source, &prior).await?.records {
        if let SourceItem::Record(raw) = item? {
            out.extend(normalizer.normalize(raw).ok());
        }
    }
    Ok(out)
}

/// A FormFields answer as the store caches it.
pub fn form_field_row(f: &FormField) -> FormFieldRow {
    FormFieldRow {
        id: f.id.clone(),
        label: f.label.clone(),
        control_type: f.control_type.clone(),
        data_type: f.data_type.clone(),
        max_length: f.max_length,
        required: f.required,
        custom: f.custom,
        sequence: f.sequence,
    }
}

/// Refreshes the FormFields cache when it is older than a day. A failure is logged and the
/// cached rules (if any) stay in use.
pub async fn refresh_form_fields(store: &mut Store, client: &ConcurClient, force: bool) {
    let fresh = store
        .form_fields_fetched_at()
        .ok()
        .flatten()
        .is_some_and(|at| chrono::Utc::now() - at < FORM_FIELDS_MAX_AGE);
    if fresh && !force {
        return;
    }
    match wire::form_fields(client).await {
        Ok(fields) => match store
            .replace_form_fields(&fields.iter().map(form_field_row).collect::<Vec<_>>())
        {
            Ok(()) => tracing::info!(fields = fields.len(), "refreshed the company's FormFields"),
            Err(e) => tracing::warn!(error = %e, "cannot cache FormFields"),
        },
        Err(e) => {
            tracing::warn!(error = %e, "cannot read FormFields; validating with the cached form, if any");
        }
    }
}

/// Runs before every user cycle: refreshes FormFields daily, and adopts Concur's existing users
/// once, before the first cycle (empty snapshot, adoption never ran).
pub async fn before_cycle(
    cfg: &Config,
    store: &mut Store,
    client: &ConcurClient,
) -> Result<(), SyncError> {
    refresh_form_fields(store, client, false).await;
    if store.managed_count()? == 0 && !store.adoption_ran()? {
        match run(cfg, store, client, "first-cycle", false).await {
            Ok(report) => tracing::info!(
                adopted = report.counts.adopted,
                unmanaged = report.counts.unmanaged,
                concur_users = report.counts.concur_users,
                "adopted the users Concur already had"
            ),
            // Bulk User v3.1 is decommissioned in some data centres: without it nothing can be
            // adopted, but User v1 upserts by employee id, so the cycle still creates no
            // duplicate of a user Concur holds under the same id.
            Err(SyncError::Concur(e)) if matches!(e.status(), Some(404 | 405 | 410 | 501)) => {
                tracing::error!(error = %e, "cannot list Concur's users (Bulk User v3.1 unavailable); continuing without adoption");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `concur-sync reconcile`: adoption and drift repair at once, on the source `cfg` names (the
/// caller resolves a drop folder to its current file).
pub async fn reconcile(
    cfg: &Config,
    store: &mut Store,
    client: &ConcurClient,
) -> Result<ReconcileReport, SyncError> {
    run(cfg, store, client, "reconcile", true).await
}

async fn run(
    cfg: &Config,
    store: &mut Store,
    client: &ConcurClient,
    trigger: &str,
    repair: bool,
) -> Result<ReconcileReport, SyncError> {
    let id = store.begin_reconcile(trigger)?;
    let mut counts = ReconcileCounts::default();
    match run_inner(cfg, store, client, repair, &mut counts).await {
        Ok(()) => {
            let outcome = if counts.failed > 0 {
                ReconcileOutcome::Partial
            } else {
                ReconcileOutcome::Success
            };
            store.finish_reconcile(id, outcome, &counts, None)?;
            store.mark_adoption_ran()?;
            tracing::info!(?counts, %outcome, "reconcile finished");
            Ok(ReconcileReport {
                id,
                outcome: outcome.as_str(),
                counts,
            })
        }
        Err(e) => {
            let msg = e.to_string();
            tracing::error!(error = %msg, "reconcile failed");
            store.finish_reconcile(id, ReconcileOutcome::Failed, &counts, Some(&msg))?;
            Err(e)
        }
    }
}

async fn run_inner(
    cfg: &Config,
    store: &mut Store,
    client: &ConcurClient,
    repair: bool,
    counts: &mut ReconcileCounts,
) -> Result<(), SyncError> {
    let concur = wire::all_users(client).await?;
    counts.concur_users = concur.len() as u64;
    let source = read_source(cfg, store).await?;
    let owners = store.ownerships()?;
    let known: HashMap<String, User> = store
        .managed_users()?
        .into_iter()
        .map(|u| (u.employee_id().to_owned(), u))
        .collect();
    let matched = matcher::match_users(
        &concur,
        &source,
        &owners,
        &known,
        cfg.sync.manage_unmatched,
        repair,
    );
    for (employee_id, fields) in &matched.drifted {
        tracing::warn!(employee_id = %employee_id, fields = ?fields, repair, "Concur differs from what was last sent");
    }
    counts.drifted = matched.drifted.len() as u64;
    counts.adopted = matched.adopt.len() as u64;
    counts.unmanaged = matched.unmanaged.len() as u64;
    store.baseline_users(&matched.adopt, Ownership::Adopted)?;
    let listed: HashSet<String> = concur.iter().map(|c| c.employee_id.clone()).collect();
    store.record_unmanaged(&matched.unmanaged, &listed)?;
    if !matched.adopt.is_empty() || !matched.unmanaged.is_empty() {
        store.audit(
            "adoption",
            &format!(
                "{} Concur users adopted, {} unmanaged, of {} listed",
                matched.adopt.len(),
                matched.unmanaged.len(),
                concur.len()
            ),
        )?;
    }
    let ops = matched.ops;
    if ops.is_empty() {
        return Ok(());
    }
    let cycle = store.begin_cycle("reconcile")?;
    counts.cycle_id = Some(cycle);
    let mut cc = CycleCounts {
        planned: ops.len() as u64,
        ..CycleCounts::default()
    };
    let ids = store.write_outbox(cycle, &ops, OutboxState::Pending)?;
    let result = send(cfg, store, client, cycle, &ops, &ids, &mut cc, |op, ok| {
        if ok {
            if matched.repairs.contains(&op.employee_id) {
                counts.drift_repaired += 1;
            } else if matched.renamed.contains(&op.employee_id) {
                counts.adopted += 1;
            }
        } else {
            counts.failed += 1;
        }
    })
    .await;
    let adopted_renames: Vec<&str> = matched.renamed.iter().map(String::as_str).collect();
    store.set_ownership(&adopted_renames, Ownership::Adopted)?;
    let outcome = match (&result, cc.failed) {
        (Err(_), _) => CycleOutcome::Failed,
        (Ok(()), 0) => CycleOutcome::Success,
        _ => CycleOutcome::Partial,
    };
    store.finish_cycle(
        cycle,
        outcome,
        &cc,
        result.as_ref().err().map(ToString::to_string).as_deref(),
    )?;
    result
}

/// Sends `ops` in batches and records every outcome (the same loop a cycle takes).
#[allow(clippy::too_many_arguments)]
async fn send(
    cfg: &Config,
    store: &mut Store,
    client: &ConcurClient,
    cycle: i64,
    ops: &[Op],
    ids: &[i64],
    cc: &mut CycleCounts,
    mut tally: impl FnMut(&Op, bool),
) -> Result<(), SyncError> {
    let entries: Vec<(i64, &Op)> = ids.iter().copied().zip(ops).collect();
    writer::send_user_ops(
        client,
        store,
        cycle,
        &entries,
        cfg.concur.batch_size(),
        None,
        cc,
        |op, settled| match settled {
            Settled::Acknowledged => tally(op, true),
            Settled::Refused(m) => {
                tally(op, false);
                tracing::warn!(employee_id = %op.employee_id, message = %m, "Concur refused a reconcile write");
            }
            Settled::Unsent => tally(op, false),
        },
    )
    .await?;
    Ok(())
}
