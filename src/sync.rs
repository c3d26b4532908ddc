//! One sync cycle, wiring the edges to the core: read the source, validate, plan against the
//! snapshot, store the plan in the outbox, send it in batches, record every outcome.
//!
//! Crash safety rests on two rules: the snapshot only advances in the transaction that records
//! Concur's acknowledgement, and a cycle that did not finish is closed as `interrupted` by the
//! next start, which re-plans from the source (see ARCHITECTURE.md).

use std::sync::Arc;

use rand::Rng;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::concur::{self, ConcurClient, RecordOutcome, UserTarget};
use crate::config::{Config, PasswordOnCreate};
use crate::error::{EXIT_FATAL, EXIT_HELD, EXIT_PARTIAL, EXIT_SUCCESS, SyncError};
use crate::model::{FieldChange, Op, OpKind, Rejection, Secret};
use crate::plan::{self, PlanOptions, Planner};
use crate::source::csv::{CsvReader, RowIssue};
use crate::source::{Records, SourceError, SourceItem};
use crate::store::{CycleCounts, CycleOutcome, EntryResult, OutboxState, Store};
use crate::validate::Normalizer;
use crate::writer::{self, Settled};

/// How a cycle ended; maps onto the CLI exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Everything applied, or nothing to do (exit 0).
    Success,
    /// Finished, but some records were rejected or failed (exit 2).
    Partial,
    /// Deactivations held for an operator's approval (exit 3).
    Held,
    /// The read looked incomplete, so nobody was deactivated (exit 3).
    Degraded,
    /// Stopped by shutdown (SIGTERM/SIGINT) before it finished (exit 1).
    Interrupted,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Partial => "partial",
            Outcome::Held => "held",
            Outcome::Degraded => "degraded",
            Outcome::Interrupted => "interrupted",
        }
    }
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Success => EXIT_SUCCESS,
            Outcome::Partial => EXIT_PARTIAL,
            Outcome::Held | Outcome::Degraded => EXIT_HELD,
            Outcome::Interrupted => EXIT_FATAL,
        }
    }
}

impl From<Outcome> for CycleOutcome {
    fn from(o: Outcome) -> CycleOutcome {
        match o {
            Outcome::Success => CycleOutcome::Success,
            Outcome::Partial => CycleOutcome::Partial,
            Outcome::Held => CycleOutcome::Held,
            Outcome::Degraded => CycleOutcome::Degraded,
            Outcome::Interrupted => CycleOutcome::Interrupted,
        }
    }
}

/// A computed plan, ready to print or to apply.
#[derive(Debug)]
pub struct PlannedCycle {
    pub ops: Vec<Op>,
    pub rejections: Vec<Rejection>,
    /// Values changed to let a record through (a line break collapsed to a space).
    pub warnings: Vec<Rejection>,
    pub unchanged: u64,
    pub skipped_inactive: u64,
    pub source_records: u64,
    pub source_label: String,
    pub source_digest: String,
    /// The SCIM read's watermark, recorded for the cycle that applies this plan.
    pub watermark: Option<crate::model::ScimReadMark>,
    /// False for partial (delta) reads, which never deactivate anyone.
    pub complete: bool,
    /// Distinct employee ids the source named (valid or rejected).
    pub source_ids: u64,
    /// Why the read looks cut short (e.g. a truncated last row); such a read deactivates nobody.
    pub suspicious: Option<String>,
    /// Users whose password was unknown (after a new state key): the keyed hash of the source
    /// password now seen, recorded by the cycle without sending anything.
    pub learned_password_macs: Vec<(String, [u8; 16])>,
}

/// What a finished cycle reports.
#[derive(Debug, Clone, Serialize)]
pub struct CycleReport {
    pub cycle_id: i64,
    pub outcome: Outcome,
    pub counts: CycleCounts,
}

/// Reads the configured source and plans against the snapshot. No writes anywhere.
///
/// A CSV file is parsed and validated on a second thread while this one loads the snapshot
/// and plans, through a small bounded channel: the two cores share the work and memory stays
/// bounded by the channel, not by the file.
pub async fn read_and_plan(cfg: &Config, store: &Store) -> Result<PlannedCycle, SyncError> {
    let normalizer =
        Normalizer::new(&cfg.defaults).map_err(|m| crate::config::ConfigError::Invalid {
            key: "defaults".into(),
            message: m,
        })?;
    let options = PlanOptions {
        source_passwords: cfg.sync.password_on_create == PasswordOnCreate::Source,
    };
    let mac = |id: &str, pw: &Secret| store.password_mac(id, pw);
    let t0 = std::time::Instant::now();
    let mut records = 0u64;
    let mut suspicious = None;
    let mut warnings = Vec::new();
    let prior = crate::source::Prior {
        watermarks: store.scim_watermarks()?,
        snapshot_empty: store.user_count()? == 0,
    };
    let opened = crate::source::open(&cfg.source, &prior).await?;
    let (mut draft, snapshot_users) = match opened.records {
        Records::Csv(reader) => {
            let path = &cfg.source.path;
            for col in reader.unknown_columns() {
                tracing::warn!(file = %path.display(), column = %col, "ignoring a column that maps to no canonical field");
            }
            let normalizer = &normalizer;
            let (draft, snapshot_users, last_row_short) =
                std::thread::scope(|scope| -> Result<_, SyncError> {
                    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Validated>>(16);
                    let warnings = &mut warnings;
                    let producer =
                        scope.spawn(move || validate_csv(*reader, normalizer, tx, warnings));
                    let snapshot = store.snapshot_index();
                    let snapshot = match snapshot {
                        Ok(s) => s,
                        Err(e) => {
                            drop(rx);
                            let _ = producer.join();
                            return Err(e.into());
                        }
                    };
                    let mut planner = Planner::new(&snapshot, &mac, options);
                    for batch in rx {
                        for item in batch {
                            records += 1;
                            match item {
                                Ok(rec) => planner.push(rec),
                                Err(rejections) => planner.push_rejected(rejections),
                            }
                        }
                    }
                    let (last_row_short, fatal) = producer.join().map_err(|_| {
                        SyncError::Refused(format!(
                            "{}: the reader stopped unexpectedly; nothing was changed",
                            path.display()
                        ))
                    })?;
                    if let Some(e) = fatal {
                        return Err(e.into());
                    }
                    Ok((planner.finish(true), snapshot.len(), last_row_short))
                })?;
            if let Some(at) = last_row_short {
                suspicious = Some(format!(
                    "the last row ({at}) has too few fields: the file looks truncated"
                ));
            }
            (draft, snapshot_users)
        }
        Records::Items(items) => {
            let snapshot = store.snapshot_index()?;
            let mut planner = Planner::new(&snapshot, &mac, options);
            for item in items {
                records += 1;
                let validated = match item {
                    SourceItem::Record(raw) => normalizer.normalize_noting(raw, &mut warnings),
                    SourceItem::Rejected(r) => Err(vec![r]),
                };
                match validated {
                    Ok(rec) => planner.push(rec),
                    Err(rejections) => planner.push_rejected(rejections),
                }
            }
            (planner.finish(opened.complete), snapshot.len())
        }
    };
    let t_read = t0.elapsed();
    let source_ids = draft.source_ids;
    let skipped_inactive = draft.skipped_inactive;
    let learned_password_macs = std::mem::take(&mut draft.learned_macs);
    let old = store.load_users(draft.ids_needing_old())?;
    let (ops, rejections, unchanged) = plan::complete(draft, &old);
    // The company's own form rules (cached FormFields): what Concur would refuse is rejected here.
    let (ops, rejections) = crate::readback::apply_company_rules(store, ops, rejections)?;
    tracing::debug!(
        read_and_plan_ms = t_read.as_millis() as u64,
        complete_ms = (t0.elapsed() - t_read).as_millis() as u64,
        snapshot_users,
        "plan timings"
    );
    Ok(PlannedCycle {
        ops,
        rejections,
        warnings,
        unchanged,
        skipped_inactive,
        source_records: records,
        source_label: opened.label,
        source_digest: opened.digest,
        complete: opened.complete,
        watermark: opened.watermark,
        source_ids,
        suspicious,
        learned_password_macs,
    })
}

/// One source row after validation.
type Validated = Result<crate::model::SourceRecord, Vec<Rejection>>;

/// The CSV half of [`read_and_plan`]: reads and validates rows, sending them in batches.
/// Returns where the last row was short (a truncated file), and the error that made the file
/// unusable, if any (then the cycle changes nothing).
fn validate_csv(
    reader: CsvReader,
    normalizer: &Normalizer,
    tx: std::sync::mpsc::SyncSender<Vec<Validated>>,
    warnings: &mut Vec<Rejection>,
) -> (Option<String>, Option<SourceError>) {
    const BATCH: usize = 1024;
    let mut batch = Vec::with_capacity(BATCH);
    let mut last_row_short = None;
    for item in reader {
        let validated = match item {
            Ok(raw) => {
                last_row_short = None;
                normalizer.normalize_noting(raw, warnings)
            }
            Err(RowIssue::Rejected(r)) => {
                last_row_short =
                    (r.field == crate::source::csv::ROW_FIELD).then(|| r.source.clone());
                Err(vec![r])
            }
            Err(RowIssue::Fatal(e)) => return (last_row_short, Some(e)),
        };
        batch.push(validated);
        if batch.len() == BATCH
            && tx
                .send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))
                .is_err()
        {
            return (last_row_short, None);
        }
    }
    if !batch.is_empty() {
        let _ = tx.send(batch);
    }
    (last_row_short, None)
}

/// How long a client built for a command may wait on Concur.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waits {
    /// A one-shot command: a served throttle longer than `concur.max_wait_seconds` fails it.
    OneShot,
    /// The service: waits however long Concur asks (cancellable by shutdown).
    Service,
}

/// Builds the Concur client for a one-shot command, wiring its token persistence to the state
/// DB; nothing cancels it.
pub fn client(cfg: &Config, store: &Store) -> Result<ConcurClient, SyncError> {
    client_with(cfg, store, &CancellationToken::new(), Waits::OneShot)
}

/// Builds the Concur client: token and served throttle persisted in the state DB, every wait
/// and request ended by `cancel`.
pub fn client_with(
    cfg: &Config,
    store: &Store,
    cancel: &CancellationToken,
    waits: Waits,
) -> Result<ConcurClient, SyncError> {
    let secrets = cfg.secrets()?;
    let tokens = Arc::new(TokenBridge(store.token_store()?));
    let c = &cfg.concur;
    let mut config = concur::ClientConfig::new(
        c.base_url.clone(),
        c.client_id.clone(),
        secrets.client_secret,
        c.company_id.clone(),
        secrets.request_token,
    );
    config.requests_per_second = c.requests_per_second;
    config.timeout = std::time::Duration::from_secs_f64(c.timeout_seconds);
    config.max_attempts = c.max_attempts;
    config.max_response_bytes = c.max_response_bytes;
    config.max_wait = match waits {
        Waits::OneShot => Some(std::time::Duration::from_secs_f64(c.max_wait_seconds)),
        Waits::Service => None,
    };
    config.cancel = cancel.clone();
    let client = ConcurClient::new(config, Some(tokens))?;
    Ok(client)
}

struct TokenBridge(crate::store::TokenDb);

impl concur::TokenStore for TokenBridge {
    fn load(&self) -> Option<concur::StoredToken> {
        match self.0.load() {
            Ok(Some((refresh_token, geolocation))) => Some(concur::StoredToken {
                refresh_token,
                geolocation,
                access_expires_at: None,
            }),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the stored refresh token");
                None
            }
        }
    }
    fn load_not_before(&self) -> Option<std::time::SystemTime> {
        self.0.load_not_before().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the stored Concur throttle");
            None
        })
    }
    fn save_not_before(&self, until: std::time::SystemTime) {
        if let Err(e) = self.0.save_not_before(until) {
            tracing::error!(error = %e, "cannot persist the throttle Concur served");
        }
    }
    fn save(&self, token: &concur::StoredToken) {
        if let Err(e) = self.0.save(
            &token.refresh_token,
            token.geolocation.as_deref(),
            token.access_expires_at,
        ) {
            tracing::error!(error = %e, "cannot persist the newest refresh token");
        }
    }
}

/// A random password that satisfies common Concur password policies. Never stored or logged.
pub fn random_password() -> Secret {
    const LOWER: &[u8] = b"abcdefghijkmnopqrstuvwxyz";
    const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
    const DIGIT: &[u8] = b"23456789";
    const SYMBOL: &[u8] = b"!#%+-=?@^_";
    let mut rng = rand::rng();
    let mut chars: Vec<u8> = Vec::with_capacity(24);
    for set in [LOWER, UPPER, DIGIT, SYMBOL] {
        chars.push(set[rng.random_range(0..set.len())]);
    }
    let all: Vec<u8> = [LOWER, UPPER, DIGIT, SYMBOL].concat();
    while chars.len() < 24 {
        chars.push(all[rng.random_range(0..all.len())]);
    }
    for i in (1..chars.len()).rev() {
        let j = rng.random_range(0..=i);
        chars.swap(i, j);
    }
    Secret::new(String::from_utf8(chars).unwrap_or_default())
}

/// Runs one full cycle: recover, plan, guard, store the plan, apply it, record everything.
/// `cancel` stops the cycle at once, also inside a batch (what finished is committed; the rest is
/// re-planned by the next cycle).
pub async fn run_cycle(
    cfg: &Config,
    store: &mut Store,
    client: &ConcurClient,
    cancel: &CancellationToken,
) -> Result<CycleReport, SyncError> {
    let interrupted = store.recover()?;
    if !interrupted.is_empty() {
        tracing::warn!(cycles = ?interrupted, "closed cycles a previous process left unfinished; their unacknowledged operations are re-planned");
    }
    let before = client.stats();
    // A token first (a rejected credential fails here, once), then the FormFields refresh
    // (daily) and, before the very first cycle, adoption of Concur's existing users (which
    // records its own repairs as a cycle of its own, before this one).
    let prepared = match client.authenticate().await {
        Ok(()) => crate::readback::before_cycle(cfg, store, client).await,
        Err(e) => Err(e.into()),
    };
    let cycle = store.begin_cycle(&crate::source::history_label(&cfg.source))?;
    let span = tracing::info_span!("cycle", id = cycle);
    let _guard = span.enter();
    if let Err(e) = prepared {
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
                outcome: Outcome::Interrupted,
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
        return Err(e);
    }
    let planned = match read_and_plan(cfg, store).await {
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
    let managed_active = store.status()?.users.active;
    let verdict = guard(cfg, &planned, managed_active);
    let mut ops = planned.ops;
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
    let message = (!notes.is_empty()).then(|| notes.join("; "));
    for op in &mut ops {
        if op.kind == OpKind::Create
            && (op.password.is_none() || cfg.sync.password_on_create == PasswordOnCreate::Random)
        {
            op.password = Some(random_password());
        }
    }
    if !held.is_empty() {
        store.write_outbox(cycle, &held, OutboxState::Held)?;
    }
    let ids = store.write_outbox(cycle, &ops, OutboxState::Pending)?;
    let result = apply(cfg, store, client, cycle, &ops, &ids, &mut counts, cancel).await;
    let after = client.stats();
    counts.requests = after.requests.saturating_sub(before.requests);
    counts.retries = after.retries.saturating_sub(before.retries);
    counts.throttled_seconds = (after.throttled_seconds - before.throttled_seconds).max(0.0);
    match result {
        Ok(true) => {
            let outcome = if verdict.hold_reason().is_some() {
                Outcome::Held
            } else if verdict.degraded.is_some() {
                Outcome::Degraded
            } else if counts.failed > 0 || counts.rejected > 0 {
                Outcome::Partial
            } else {
                Outcome::Success
            };
            store.finish_cycle(cycle, outcome.into(), &counts, message.as_deref())?;
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
                outcome: Outcome::Interrupted,
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

/// What the safety guards say about a whole plan, before any write. The default proceeds.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Verdict {
    /// The read looks incomplete: apply everything but deactivations.
    pub degraded: Option<String>,
    /// Too many deactivations: hold them all for an operator.
    pub hold_deactivations: Option<String>,
    /// Too many login, e-mail, name or employee id changes: hold them all for an operator.
    pub hold_identity_changes: Option<String>,
}

impl Verdict {
    /// Why part of the plan is held, if it is.
    pub fn hold_reason(&self) -> Option<String> {
        let reasons: Vec<&str> = [&self.hold_deactivations, &self.hold_identity_changes]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }

    /// Whether `op` waits for an operator's approval.
    pub fn holds(&self, op: &Op) -> bool {
        (self.hold_deactivations.is_some() && op.kind == OpKind::Deactivate)
            || (self.hold_identity_changes.is_some() && changes_identity(op))
    }
}

/// Whether an operation changes who a user is: a rename of the employee id, or a new login,
/// e-mail, first or last name of an existing user.
pub fn changes_identity(op: &Op) -> bool {
    use crate::model::Field;
    matches!(op.kind, OpKind::Update | OpKind::Reactivate)
        && (op.old_employee_id.is_some()
            || op.changes.iter().any(|c| {
                matches!(
                    c.field,
                    Field::LOGIN_ID | Field::EMAIL | Field::FIRST_NAME | Field::LAST_NAME
                )
            }))
}

/// The safety guards, evaluated on the whole plan.
pub fn guard(cfg: &Config, planned: &PlannedCycle, managed_active: u64) -> Verdict {
    let mut verdict = Verdict::default();
    let deactivations = planned
        .ops
        .iter()
        .filter(|o| o.kind == OpKind::Deactivate)
        .count() as u64;
    let ratio = cfg.sync.min_source_ratio;
    let deactivation_limit = cfg.sync.max_deactivations.allowed(managed_active);
    if deactivations > 0 {
        if let Some(why) = &planned.suspicious {
            verdict.degraded = Some(why.clone());
        } else if planned.complete && (planned.source_ids as f64) < ratio * managed_active as f64 {
            verdict.degraded = Some(format!(
                "the source named {} users, fewer than sync.min_source_ratio = {ratio} of the {managed_active} managed active users",
                planned.source_ids
            ));
        } else if deactivations > deactivation_limit {
            verdict.hold_deactivations = Some(format!(
                "{deactivations} deactivations exceed sync.max_deactivations = {} ({deactivation_limit} of {managed_active} managed active users)",
                cfg.sync.max_deactivations
            ));
        }
    }
    // A user counts once, however many of its identifying fields change.
    let identity_changes = planned.ops.iter().filter(|o| changes_identity(o)).count() as u64;
    let identity_limit = cfg.sync.max_identity_changes.allowed(managed_active);
    if identity_changes > identity_limit {
        verdict.hold_identity_changes = Some(format!(
            "{identity_changes} users with a changed login, e-mail, name or employee id exceed sync.max_identity_changes = {} ({identity_limit} of {managed_active} managed active users)",
            cfg.sync.max_identity_changes
        ));
    }
    verdict
}

/// Sends the deactivations a held cycle kept back, after an operator approved them. Refused
/// when the cycle is not the current held plan or the source changed since.
pub async fn apply_held(
    cfg: &Config,
    store: &mut Store,
    client: &ConcurClient,
    cycle: i64,
    current_digest: Option<&str>,
) -> Result<CycleReport, SyncError> {
    let info = store
        .cycle(cycle)?
        .ok_or_else(|| SyncError::Refused(format!("there is no cycle {cycle}")))?;
    if info.outcome != CycleOutcome::Held {
        return Err(SyncError::Refused(format!(
            "cycle {cycle} is {}, not held: nothing to approve",
            info.outcome
        )));
    }
    let entries = store.open_entries(cycle, &[OutboxState::Held])?;
    if entries.is_empty() {
        return Err(SyncError::Refused(format!(
            "cycle {cycle} holds no plan any more (a later cycle superseded it, or it was rejected); approve the newest held cycle shown by `concur-sync status`"
        )));
    }
    let digest = store.cycle_digest(cycle)?;
    if let (Some(now), Some(then)) = (current_digest, digest.as_deref())
        && now != then
    {
        return Err(SyncError::Refused(format!(
            "the source changed since cycle {cycle} was planned; let the next cycle re-plan and approve that one"
        )));
    }
    // Only deactivations of users still active in the snapshot, and changes of users it
    // still holds under the id they were planned for: anything else changed since.
    let snapshot = store.snapshot_index()?;
    let (ops, ids): (Vec<Op>, Vec<i64>) = entries
        .into_iter()
        .filter(|e| match e.op.kind {
            OpKind::Deactivate => snapshot.get(&e.op.employee_id).is_some_and(|s| s.active),
            _ => snapshot.contains(e.op.old_employee_id.as_deref().unwrap_or(&e.op.employee_id)),
        })
        .map(|e| (e.op, e.id))
        .unzip();
    store.release_held(cycle)?;
    let mut counts = info.counts.clone();
    let before = client.stats();
    let done = apply(
        cfg,
        store,
        client,
        cycle,
        &ops,
        &ids,
        &mut counts,
        &CancellationToken::new(),
    )
    .await;
    let after = client.stats();
    counts.requests += after.requests.saturating_sub(before.requests);
    counts.retries += after.retries.saturating_sub(before.retries);
    let outcome = if counts.failed > 0 || counts.rejected > 0 {
        Outcome::Partial
    } else {
        Outcome::Success
    };
    let deactivations = ops.iter().filter(|o| o.kind == OpKind::Deactivate).count();
    let msg = format!(
        "held plan approved by an operator at {}: {} deactivations and {} identity changes sent",
        crate::store::now(),
        deactivations,
        ops.len() - deactivations
    );
    match done {
        Ok(_) => {
            store.finish_cycle(cycle, outcome.into(), &counts, Some(&msg))?;
            store.audit("approve", &format!("cycle {cycle}: {msg}"))?;
            Ok(CycleReport {
                cycle_id: cycle,
                outcome,
                counts,
            })
        }
        Err(e) => {
            store.abandon_open(
                cycle,
                "not sent: Concur could not be reached; re-planned next cycle",
            )?;
            store.finish_cycle(cycle, CycleOutcome::Failed, &counts, Some(&e.to_string()))?;
            Err(e)
        }
    }
}

/// Sends `ops` in batches and records every outcome. Returns `Ok(false)` when `cancel` stopped
/// it (between batches, or inside one: the client drops the request and that batch stays
/// unacknowledged).
#[allow(clippy::too_many_arguments)]
async fn apply(
    cfg: &Config,
    store: &mut Store,
    target: &impl UserTarget,
    cycle: i64,
    ops: &[Op],
    ids: &[i64],
    counts: &mut CycleCounts,
    cancel: &CancellationToken,
) -> Result<bool, SyncError> {
    let (pw_idx, user_idx): (Vec<usize>, Vec<usize>) =
        (0..ops.len()).partition(|&i| ops[i].kind == OpKind::Password);
    let entries: Vec<(i64, &Op)> = user_idx.iter().map(|&i| (ids[i], &ops[i])).collect();
    let finished = writer::send_user_ops(
        target,
        store,
        cycle,
        &entries,
        cfg.concur.batch_size,
        Some(cancel),
        counts,
        |op, settled| {
            if let Settled::Refused(m) = settled {
                tracing::warn!(employee_id = %op.employee_id, operation = %op.kind, message = %m, "Concur rejected the record");
            }
        },
    )
    .await?;
    if !finished {
        return Ok(false);
    }
    for chunk in pw_idx.chunks(cfg.concur.batch_size.min(target.max_batch())) {
        if cancel.is_cancelled() {
            return Ok(false);
        }
        let batch_ids: Vec<i64> = chunk.iter().map(|&i| ids[i]).collect();
        store.mark_inflight(&batch_ids)?;
        let mut items: Vec<(&str, &Secret)> = Vec::with_capacity(chunk.len());
        let mut missing = Vec::new();
        for &i in chunk {
            match ops[i].password.as_ref() {
                Some(p) => items.push((ops[i].user.login_id(), p)),
                None => missing.push(i),
            }
        }
        let outcomes = match target.set_passwords(&items).await {
            Ok(o) => o,
            Err(e) if e.is_cancelled() => return Ok(false),
            Err(e) => {
                record_unsent(store, cycle, chunk, ops, ids, counts, &e)?;
                return Err(e.into());
            }
        };
        let with_pw: Vec<usize> = chunk
            .iter()
            .copied()
            .filter(|i| !missing.contains(i))
            .collect();
        let results: Vec<(i64, &Op, EntryResult)> = with_pw
            .iter()
            .zip(outcomes)
            .map(|(&i, o)| {
                let r = match o.outcome {
                    RecordOutcome::Acknowledged => {
                        counts.password += 1;
                        EntryResult::Acknowledged
                    }
                    RecordOutcome::Failed(m) => {
                        counts.failed += 1;
                        tracing::warn!(employee_id = %ops[i].employee_id, message = %m, "Concur refused the password");
                        EntryResult::Failed(m)
                    }
                };
                (ids[i], &ops[i], r)
            })
            .collect();
        store.record_results(cycle, &results)?;
    }
    Ok(true)
}

/// Records every entry of a batch Concur could not be reached for as failed.
fn record_unsent(
    store: &mut Store,
    cycle: i64,
    chunk: &[usize],
    ops: &[Op],
    ids: &[i64],
    counts: &mut CycleCounts,
    error: &concur::ConcurError,
) -> Result<(), SyncError> {
    let msg = format!("not applied: {error}");
    let results: Vec<(i64, &Op, EntryResult)> = chunk
        .iter()
        .map(|&i| (ids[i], &ops[i], EntryResult::Failed(msg.clone())))
        .collect();
    store.record_results(cycle, &results)?;
    counts.failed += results.len() as u64;
    Ok(())
}

// ---- plan rendering ------------------------------------------------------------------------

#[derive(Serialize)]
struct PlanJson<'a> {
    summary: PlanSummary,
    operations: Vec<OpJson<'a>>,
    rejected: &'a [Rejection],
    warnings: &'a [Rejection],
}

#[derive(Serialize, Default)]
struct PlanSummary {
    create: u64,
    update: u64,
    reactivate: u64,
    deactivate: u64,
    password: u64,
    unchanged: u64,
    rejected: u64,
    source_records: u64,
}

#[derive(Serialize)]
struct OpJson<'a> {
    operation: OpKind,
    employee_id: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    origin: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    old_login_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    old_employee_id: Option<&'a str>,
    changes: &'a [FieldChange],
}

impl PlannedCycle {
    fn summary(&self) -> PlanSummary {
        let mut s = PlanSummary {
            unchanged: self.unchanged,
            rejected: self.rejections.len() as u64,
            source_records: self.source_records,
            ..PlanSummary::default()
        };
        for op in &self.ops {
            match op.kind {
                OpKind::Create => s.create += 1,
                OpKind::Update => s.update += 1,
                OpKind::Reactivate => s.reactivate += 1,
                OpKind::Deactivate => s.deactivate += 1,
                OpKind::Password => s.password += 1,
            }
        }
        s
    }

    /// The plan as JSON (`plan --json`). Passwords never appear.
    pub fn to_json(&self) -> String {
        let j = PlanJson {
            summary: self.summary(),
            operations: self
                .ops
                .iter()
                .map(|o| OpJson {
                    operation: o.kind,
                    employee_id: &o.employee_id,
                    origin: &o.origin,
                    old_login_id: o.old_login_id.as_deref(),
                    old_employee_id: o.old_employee_id.as_deref(),
                    changes: &o.changes,
                })
                .collect(),
            rejected: &self.rejections,
            warnings: &self.warnings,
        };
        serde_json::to_string_pretty(&j).unwrap_or_default()
    }

    /// The plan for people (`plan`).
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        for op in &self.ops {
            let _ = write!(
                out,
                "{:<10} {}",
                op.kind.as_str(),
                crate::escape::escape(&op.employee_id)
            );
            if !op.origin.is_empty() {
                let _ = write!(out, "  ({})", crate::escape::escape(&op.origin));
            } else if op.kind == OpKind::Deactivate {
                out.push_str("  (no longer in the source)");
            }
            out.push('\n');
            if op.kind == OpKind::Create {
                let fields: Vec<String> = op
                    .user
                    .iter()
                    .filter(|(f, _)| *f != crate::model::Field::EMPLOYEE_ID)
                    .map(|(f, v)| crate::escape::escape(&format!("{f}={v:?}")).into_owned())
                    .collect();
                let _ = writeln!(out, "    {}", fields.join(" "));
                continue;
            }
            if let Some(old) = &op.old_employee_id {
                let _ = writeln!(
                    out,
                    "    employee_id renamed from {}",
                    crate::escape::escape(&format!("{old:?}"))
                );
            }
            if op.kind == OpKind::Password {
                let _ = writeln!(out, "    password: changed (not shown)");
            }
            for c in &op.changes {
                let _ = writeln!(
                    out,
                    "    {}: {} → {}",
                    c.field,
                    show(c.old.as_deref()),
                    show(c.new.as_deref())
                );
            }
        }
        for r in &self.rejections {
            let _ = writeln!(out, "rejected   {}", crate::escape::escape(&r.to_string()));
        }
        for w in &self.warnings {
            let _ = writeln!(out, "warning    {}", crate::escape::escape(&w.to_string()));
        }
        let s = self.summary();
        let _ = writeln!(
            out,
            "plan: {} create, {} update, {} reactivate, {} deactivate, {} password, {} unchanged, {} rejected ({} source records)",
            s.create,
            s.update,
            s.reactivate,
            s.deactivate,
            s.password,
            s.unchanged,
            s.rejected,
            s.source_records
        );
        out
    }
}

fn show(v: Option<&str>) -> String {
    match v {
        Some(s) => crate::escape::escape(&format!("{s:?}")).into_owned(),
        None => "∅".into(),
    }
}
