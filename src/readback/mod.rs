//! Reading Concur back outside the cycle: the FormFields cache that sharpens validation,
//! adoption of the users Concur already has (once, before the first cycle), and `reconcile`
//! (adoption and drift repair at once). The decisions are [`matcher`]'s; this module does the
//! IO around them: it lists Concur's users (through [`directory`], which hides which API lists
//! them), reads the source, records what was decided and sends the writes through the shared
//! send loop (`writer::send_user_ops`), as a cycle of their own (outbox, batches,
//! acknowledgement).
//!
//! Under `concur.api = "v4"` adoption also records every listed user's Concur UUID in the
//! snapshot: a state database kept from User v1 is adopted by employee number once, before its
//! first v4 cycle, so nobody is created twice. User v1's FormFields are gone with User v1: the
//! cache is not refreshed under v4 (and the cycle applies no company form rules).
//!
//! Adopted users enter the snapshot as `adopted` with what Concur reported (so the next cycle
//! sends each the source's full record once); a login match under another employee id is
//! renamed in Concur (`NewEmployeeID`) and adopted when Concur acknowledges it. Unmanaged users
//! are listed by `status`, never written, unless `sync.manage_unmatched` makes them managed.
//! Drifted users get the source's desired state re-sent, counted as `drift_repaired`.

pub mod directory;
pub mod matcher;

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::concur::readback::{self as wire, FormField};
use crate::concur::{ConcurClient, ConcurError};
use crate::config::{ConcurApi, Config, ConfigError};
use crate::error::SyncError;
use crate::model::{Op, SourceRecord, User};
use crate::source::SourceItem;
use crate::store::readback::{FormFieldRow, ReconcileCounts};
use crate::store::{CycleCounts, CycleOutcome, Entry, Ownership, ReconcileOutcome, Store};
use crate::validate::Normalizer;
use crate::writer::{self, Settled};

/// The FormFields cache is refreshed when older than this.
pub const FORM_FIELDS_MAX_AGE: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// Set in `kv` once adoption has run under v4 (and recorded the UUIDs it found).
const V4_ADOPTION_KEY: &str = "readback.v4_adoption_ran";

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
    let mut records = 0u64;
    for item in crate::source::open(&cfg.source, &prior).await?.records {
        records += 1;
        if records.is_multiple_of(1024) {
            crate::progress::read(records);
        }
        if let SourceItem::Record(raw) = item? {
            out.extend(normalizer.normalize(raw).ok());
        }
    }
    crate::progress::read(records);
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

/// Refreshes the FormFields cache when it is older than a day (or always, with `force`). A
/// failure is logged and the cached rules (if any) stay in use. Under v4 there is nothing to
/// refresh: User v1's FormFields endpoint went with User v1.
pub async fn refresh_form_fields(
    api: ConcurApi,
    store: &mut Store,
    client: &ConcurClient,
    force: bool,
) {
    let fetched = (api == ConcurApi::V1 && (force || form_fields_stale(store)))
        .then_some(wire::form_fields(client).await);
    record_form_fields(api, store, fetched);
}

/// Whether the FormFields cache is empty or older than [`FORM_FIELDS_MAX_AGE`].
fn form_fields_stale(store: &Store) -> bool {
    store
        .form_fields_fetched_at()
        .ok()
        .flatten()
        .is_none_or(|at| chrono::Utc::now() - at >= FORM_FIELDS_MAX_AGE)
}

/// Caches the FormFields answer `fetched` (`None`: not asked for).
fn record_form_fields(
    api: ConcurApi,
    store: &mut Store,
    fetched: Option<Result<Vec<FormField>, ConcurError>>,
) {
    if api == ConcurApi::V4 {
        tracing::info!(
            "FormFields not refreshed: User v1's FormFields endpoint is gone under concur.api = \"v4\"; no company form rules are applied"
        );
        return;
    }
    match fetched {
        None => {}
        Some(Ok(fields)) => match store
            .replace_form_fields(&fields.iter().map(form_field_row).collect::<Vec<_>>())
        {
            Ok(()) => tracing::info!(fields = fields.len(), "refreshed the company's FormFields"),
            Err(e) => tracing::warn!(error = %e, "cannot cache FormFields"),
        },
        Some(Err(e)) => {
            tracing::warn!(error = %e, "cannot read FormFields; validating with the cached form, if any");
        }
    }
}

/// What runs before every user cycle, decided from the store before any request: the
/// FormFields refresh (User v1, a cache empty or older than a day) and, once, before the first
/// cycle, adoption of the users Concur already has (under v4: before the first v4 cycle, which
/// also learns every UUID). Its requests ([`BeforeCycle::fetch`]) touch no store, so the cycle
/// sends them while it reads and plans the source; [`Fetched::record`] then records them.
///
/// Adoption lists Concur's users on every first cycle, whatever the source says: only that list
/// tells whether a user the source names is already in Concur (adopted, or renamed by login,
/// rather than created twice). When Concur lists nobody there is nothing to match: the source
/// is not read for adoption, nothing is recorded in the snapshot, and a plan made meanwhile
/// stands; otherwise adoption runs in full and the cycle plans again.
#[derive(Clone, Copy, Debug)]
pub struct BeforeCycle {
    api: ConcurApi,
    form_fields: bool,
    /// The reconcile trigger, when adoption is due.
    adoption: Option<&'static str>,
}

/// What [`BeforeCycle::fetch`] got from Concur.
pub struct Fetched {
    api: ConcurApi,
    form_fields: Option<Result<Vec<FormField>, ConcurError>>,
    adoption: Option<(
        &'static str,
        Result<Vec<directory::ListedUser>, ConcurError>,
    )>,
}

impl BeforeCycle {
    pub fn due(cfg: &Config, store: &Store) -> Result<BeforeCycle, SyncError> {
        let api = cfg.concur.api;
        let adoption = if api == ConcurApi::V4 {
            // The first v4 cycle, on a new state database or one kept from User v1: adopt by
            // employee number and learn every UUID before anything is written through v4.
            store
                .kv_get(V4_ADOPTION_KEY)?
                .is_none()
                .then_some("first-v4-cycle")
        } else {
            (store.managed_count()? == 0 && !store.adoption_ran()?).then_some("first-cycle")
        };
        Ok(BeforeCycle {
            api,
            form_fields: api == ConcurApi::V1 && form_fields_stale(store),
            adoption,
        })
    }

    /// Sends what is due, in order (FormFields, then Concur's users), recording nothing.
    pub async fn fetch(self, client: ConcurClient) -> Fetched {
        let form_fields = if self.form_fields {
            Some(wire::form_fields(&client).await)
        } else {
            None
        };
        let adoption = match self.adoption {
            Some(trigger) => Some((trigger, directory::read_all_users(self.api, &client).await)),
            None => None,
        };
        Fetched {
            api: self.api,
            form_fields,
            adoption,
        }
    }
}

impl Fetched {
    /// Records what was fetched: the FormFields cache, then adoption. Returns whether the
    /// snapshot may have changed (Concur listed users), in which case a plan made before must
    /// be made again. A failed listing fails the cycle, except under User v1 when Bulk User
    /// v3.1 is gone: User v1 upserts by employee id, so the cycle still creates no duplicate.
    pub async fn record(
        self,
        cfg: &Config,
        store: &mut Store,
        client: &ConcurClient,
    ) -> Result<bool, SyncError> {
        record_form_fields(self.api, store, self.form_fields);
        let Some((trigger, listed)) = self.adoption else {
            return Ok(false);
        };
        let listed_users = listed.as_ref().map_or(0, Vec::len);
        match run(cfg, store, client, trigger, false, Some(listed)).await {
            Ok(report) if self.api == ConcurApi::V4 => tracing::info!(
                adopted = report.counts.adopted,
                unmanaged = report.counts.unmanaged,
                concur_users = report.counts.concur_users,
                "adopted the users Concur already had and recorded their UUIDs"
            ),
            Ok(report) => tracing::info!(
                adopted = report.counts.adopted,
                unmanaged = report.counts.unmanaged,
                concur_users = report.counts.concur_users,
                "adopted the users Concur already had"
            ),
            // Bulk User v3.1 is decommissioned in some data centres: without it nothing can be
            // adopted, but User v1 upserts by employee id, so the cycle still creates no
            // duplicate of a user Concur holds under the same id.
            Err(SyncError::Concur(e))
                if self.api == ConcurApi::V1
                    && matches!(e.status(), Some(404 | 405 | 410 | 501)) =>
            {
                tracing::error!(error = %e, "cannot list Concur's users (Bulk User v3.1 unavailable); continuing without adoption");
            }
            Err(e) => return Err(e),
        }
        Ok(listed_users > 0)
    }
}

/// `concur-sync reconcile`: adoption and drift repair at once, on the source `cfg` names (the
/// caller resolves a drop folder to its current file).
pub async fn reconcile(
    cfg: &Config,
    store: &mut Store,
    client: &ConcurClient,
) -> Result<ReconcileReport, SyncError> {
    run(cfg, store, client, "reconcile", true, None).await
}

async fn run(
    cfg: &Config,
    store: &mut Store,
    client: &ConcurClient,
    trigger: &str,
    repair: bool,
    listed: Option<Result<Vec<directory::ListedUser>, ConcurError>>,
) -> Result<ReconcileReport, SyncError> {
    let id = store.begin_reconcile(trigger)?;
    let mut counts = ReconcileCounts::default();
    match run_inner(cfg, store, client, repair, listed, &mut counts).await {
        Ok(()) => {
            let outcome = if counts.failed > 0 {
                ReconcileOutcome::Partial
            } else {
                ReconcileOutcome::Success
            };
            store.finish_reconcile(id, outcome, &counts, None)?;
            store.mark_adoption_ran()?;
            if cfg.concur.api == ConcurApi::V4 {
                store.kv_set(V4_ADOPTION_KEY, b"1")?;
            }
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
    listed: Option<Result<Vec<directory::ListedUser>, ConcurError>>,
    counts: &mut ReconcileCounts,
) -> Result<(), SyncError> {
    let concur = match listed {
        Some(listed) => listed?,
        None => directory::read_all_users(cfg.concur.api, client).await?,
    };
    counts.concur_users = concur.len() as u64;
    // Adoption matches Concur's users to the source's: with nobody listed there is nothing to
    // match, and the source is not read.
    let source = if concur.is_empty() && !repair {
        Vec::new()
    } else {
        read_source(cfg, store).await?
    };
    // Nobody listed matches nobody: the snapshot is not loaded (a first cycle plans while this
    // runs, and a million users' records would sit beside its plan).
    let (owners, known): (_, HashMap<String, User>) = if concur.is_empty() {
        (HashMap::new(), HashMap::new())
    } else {
        let known = store
            .managed_users()?
            .into_iter()
            .map(|u| (u.employee_id().to_owned(), u))
            .collect();
        (store.ownerships()?, known)
    };
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
    let listed: HashSet<String> = concur.iter().map(|c| c.employee_id().to_owned()).collect();
    store.record_unmanaged(&matched.unmanaged, &listed)?;
    // Every listed user the snapshot holds (adopted now, managed before, unmanaged) keeps the
    // UUID Concur reports; the v4 writer addresses users by it.
    let uuids: Vec<(&str, &str)> = concur
        .iter()
        .filter(|c| !c.employee_id().is_empty())
        .filter_map(|c| Some((c.employee_id(), c.uuid.as_deref()?)))
        .collect();
    if !uuids.is_empty() {
        store.set_concur_uuids(&uuids)?;
        tracing::info!(users = uuids.len(), "recorded Concur UUIDs");
    }
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
    store.set_cycle_to_send(cycle, ops.len())?;
    let result = send(cfg, store, client, cycle, &ops, &mut cc, |op, ok| {
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
    if result.is_err() {
        store.abandon_open(
            cycle,
            "not sent: the repair failed; planned again by the next reconcile",
        )?;
    }
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
    cc: &mut CycleCounts,
    mut tally: impl FnMut(&Op, bool),
) -> Result<(), SyncError> {
    // Each entry is written as its request leaves.
    let entries: Vec<(Entry, &Op)> = (0..).map(|seq| Entry::Planned { seq }).zip(ops).collect();
    writer::send_user_ops(
        &crate::wiring::user_target(cfg, client),
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
            Settled::Unanswered(m) => {
                tally(op, false);
                tracing::warn!(employee_id = %op.employee_id, message = %m, "a reconcile write got no answer");
            }
        },
    )
    .await?;
    Ok(())
}
