//! Reading Concur back: `check` (config, connection, company form), adoption of users Concur
//! already has, drift repair (`reconcile`), and the FormFields cache that sharpens validation.
//!
//! Adoption pages through Bulk User v3.1 and matches Concur users to source users by employee
//! id, then login id. Matched users enter the snapshot as `adopted` with what Concur reported
//! (so the next cycle sends each the source's full record once); a login match under another
//! employee id is renamed in Concur (`NewEmployeeID`) and adopted when Concur acknowledges it.
//! Users matching nobody are `unmanaged`: listed by `status`, never written, unless
//! `sync.manage_unmatched` makes them managed (then departures are deactivated as usual).
//!
//! Drift repair compares, for every managed user Concur lists, `Active`, names, email and login
//! with what was last acknowledged; drifted users get the source's desired state re-sent
//! through an ordinary cycle (outbox, batches, acknowledgement), counted as `drift_repaired`.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::Serialize;

use crate::concur::ConcurClient;
use crate::concur::readback::{self as wire, ConcurUser, FormField};
use crate::config::{Config, ConfigError, SourceKind};
use crate::error::{EXIT_FATAL, SyncError};
use crate::model::{Field, Op, OpKind, SourceRecord, User};
use crate::source::SourceItem;
use crate::source::csv::{Column, CsvOptions, CsvReader, RowIssue};
use crate::store::readback::{FormFieldRow, ReconcileCounts};
use crate::store::{CycleCounts, CycleOutcome, OutboxState, Ownership, Store};
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
    match cfg.source.kind {
        SourceKind::Csv => {
            let opts = CsvOptions::from_config(cfg)?;
            for item in CsvReader::open(&cfg.source.path, &opts)? {
                match item {
                    Ok(raw) => out.extend(normalizer.normalize(raw).ok()),
                    Err(RowIssue::Rejected(_)) => {}
                    Err(RowIssue::Fatal(e)) => return Err(e.into()),
                }
            }
        }
        _ => {
            for item in crate::source::read(cfg, store).await?.items {
                if let SourceItem::Record(raw) = item {
                    out.extend(normalizer.normalize(raw).ok());
                }
            }
        }
    }
    Ok(out)
}

/// What Concur reports of a user, as a canonical user.
fn observed(cu: &ConcurUser, employee_id: &str) -> User {
    let mut u = User::new();
    u.set(Field::EMPLOYEE_ID, employee_id);
    u.set(Field::LOGIN_ID, cu.login_id.as_str());
    u.set(Field::ACTIVE, if cu.active { "Y" } else { "N" });
    u.set(Field::FIRST_NAME, cu.first_name.as_str());
    u.set(Field::LAST_NAME, cu.last_name.as_str());
    u.set(Field::MIDDLE_INITIAL, initial(&cu.middle_name));
    u.set(Field::EMAIL, cu.email.as_str());
    u
}

fn initial(s: &str) -> String {
    s.trim()
        .chars()
        .next()
        .map(String::from)
        .unwrap_or_default()
}

/// The drift-checked fields where Concur differs from what was last acknowledged.
fn drift(known: &User, cu: &ConcurUser) -> Vec<&'static str> {
    let mut out = Vec::new();
    let k = |f: Field| known.get(f).unwrap_or("");
    if known.is_active() != cu.active {
        out.push("active");
    }
    if k(Field::FIRST_NAME) != cu.first_name {
        out.push("first_name");
    }
    if k(Field::LAST_NAME) != cu.last_name {
        out.push("last_name");
    }
    if !cu.middle_name.trim().is_empty() && k(Field::MIDDLE_INITIAL) != initial(&cu.middle_name) {
        out.push("middle_initial");
    }
    if !k(Field::EMAIL).eq_ignore_ascii_case(&cu.email) {
        out.push("email");
    }
    if !k(Field::LOGIN_ID).eq_ignore_ascii_case(&cu.login_id) {
        out.push("login_id");
    }
    out
}

/// A FormFields answer as the store caches it.
fn form_field_row(f: &FormField) -> FormFieldRow {
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
            tracing::warn!(error = %e, "cannot read FormFields; validating with the cached form, if any")
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

/// `concur-sync reconcile`: adoption and drift repair at once.
pub async fn reconcile(
    cfg: &Config,
    store: &mut Store,
    client: &ConcurClient,
) -> Result<ReconcileReport, SyncError> {
    refresh_form_fields(store, client, false).await;
    // A drop folder: its current (last processed) file.
    let cfg = crate::service::with_current_file(cfg, store)?;
    run(&cfg, store, client, "reconcile", true).await
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
                "partial"
            } else {
                "success"
            };
            store.finish_reconcile(id, outcome, &counts, None)?;
            store.mark_adoption_ran()?;
            tracing::info!(?counts, outcome, "reconcile finished");
            Ok(ReconcileReport {
                id,
                outcome,
                counts,
            })
        }
        Err(e) => {
            let msg = e.to_string();
            tracing::error!(error = %msg, "reconcile failed");
            store.finish_reconcile(id, "failed", &counts, Some(&msg))?;
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
    let mut by_emp: HashMap<&str, &SourceRecord> = HashMap::new();
    let mut by_login: HashMap<String, &SourceRecord> = HashMap::new();
    for r in &source {
        by_emp.entry(r.user.employee_id()).or_insert(r);
        by_login
            .entry(r.user.login_id().to_lowercase())
            .or_insert(r);
    }
    let in_concur: HashSet<&str> = concur.iter().map(|c| c.employee_id.as_str()).collect();
    let owners = store.ownerships()?;
    let managed = |id: &str| owners.get(id).is_some_and(|o| *o != Ownership::Unmanaged);
    let known: HashMap<String, User> = store
        .managed_users()?
        .into_iter()
        .map(|u| (u.employee_id().to_owned(), u))
        .collect();

    let mut adopt = Vec::new();
    let mut unmanaged = Vec::new();
    let mut ops: Vec<Op> = Vec::new();
    let mut renamed: HashSet<String> = HashSet::new();
    let mut drift_ids: HashSet<String> = HashSet::new();
    for cu in &concur {
        if cu.employee_id.is_empty() {
            continue;
        }
        if managed(&cu.employee_id) {
            let Some(last) = known.get(&cu.employee_id) else {
                continue;
            };
            let drifted = drift(last, cu);
            if drifted.is_empty() {
                continue;
            }
            counts.drifted += 1;
            tracing::warn!(employee_id = %cu.employee_id, fields = ?drifted, repair, "Concur differs from what was last sent");
            if !repair {
                continue;
            }
            let desired = by_emp
                .get(cu.employee_id.as_str())
                .map(|r| r.user.clone())
                .unwrap_or_else(|| last.clone());
            let seen = {
                let mut s = last.clone();
                for (f, v) in observed(cu, &cu.employee_id).iter() {
                    s.set(f, v);
                }
                s
            };
            let kind = match (cu.active, desired.is_active()) {
                (true, false) => OpKind::Deactivate,
                (false, true) => OpKind::Reactivate,
                _ => OpKind::Update,
            };
            let old_login_id = (!cu.login_id.eq_ignore_ascii_case(desired.login_id())
                && !cu.login_id.is_empty())
            .then(|| cu.login_id.clone());
            drift_ids.insert(cu.employee_id.clone());
            ops.push(Op {
                kind,
                employee_id: cu.employee_id.clone(),
                changes: desired.changes_from(&seen),
                user: desired,
                old_login_id,
                old_employee_id: None,
                password: None,
                origin: "reconcile: drift repair".into(),
            });
            continue;
        }
        if let Some(r) = by_emp.get(cu.employee_id.as_str()) {
            adopt.push(observed(cu, r.user.employee_id()));
            continue;
        }
        if let Some(r) = by_login.get(&cu.login_id.to_lowercase())
            && !managed(r.user.employee_id())
            && !in_concur.contains(r.user.employee_id())
        {
            // The same person under another employee id: rename in Concur, then adopt.
            renamed.insert(r.user.employee_id().to_owned());
            ops.push(Op {
                kind: OpKind::Update,
                employee_id: r.user.employee_id().to_owned(),
                changes: r.user.changes_from(&observed(cu, &cu.employee_id)),
                user: r.user.clone(),
                old_login_id: None,
                old_employee_id: Some(cu.employee_id.clone()),
                password: None,
                origin: format!("adoption: {} renamed from {}", r.origin, cu.employee_id),
            });
            continue;
        }
        let user = observed(cu, &cu.employee_id);
        if cfg.sync.manage_unmatched {
            adopt.push(user);
        } else {
            unmanaged.push(user);
        }
    }
    counts.adopted = adopt.len() as u64;
    counts.unmanaged = unmanaged.len() as u64;
    store.baseline_users(&adopt, Ownership::Adopted)?;
    let listed: HashSet<String> = concur.iter().map(|c| c.employee_id.clone()).collect();
    store.record_unmanaged(&unmanaged, &listed)?;
    if !adopt.is_empty() || !unmanaged.is_empty() {
        store.audit(
            "adoption",
            &format!(
                "{} Concur users adopted, {} unmanaged, of {} listed",
                adopt.len(),
                unmanaged.len(),
                concur.len()
            ),
        )?;
    }
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
            if drift_ids.contains(&op.employee_id) {
                counts.drift_repaired += 1;
            } else if renamed.contains(&op.employee_id) {
                counts.adopted += 1;
            }
        } else {
            counts.failed += 1;
        }
    })
    .await;
    let adopted_renames: Vec<&str> = renamed.iter().map(String::as_str).collect();
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
        result.as_ref().err().map(|e| e.to_string()).as_deref(),
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
        cfg.concur.batch_size,
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

// ---- check -------------------------------------------------------------------------------

/// The outcome of `check`, printed as a report.
#[derive(Debug, Default, Serialize)]
pub struct CheckReport {
    pub ok: Vec<String>,
    pub notes: Vec<String>,
    pub problems: Vec<String>,
    pub principal: Option<wire::Principal>,
    pub form_fields: Vec<FormField>,
}

impl CheckReport {
    pub fn to_text(&self) -> String {
        let mut o = String::new();
        use crate::escape::escape;
        for l in &self.ok {
            o.push_str(&format!("ok       {}\n", escape(l)));
        }
        for l in &self.notes {
            o.push_str(&format!("note     {}\n", escape(l)));
        }
        for l in &self.problems {
            o.push_str(&format!("PROBLEM  {}\n", escape(l)));
        }
        if self.problems.is_empty() {
            o.push_str("check passed\n");
        } else {
            o.push_str(&format!(
                "check failed: {} problem(s)\n",
                self.problems.len()
            ));
        }
        o
    }
}

fn readable(path: &Path) -> Result<(), String> {
    if path.is_dir() {
        return std::fs::read_dir(path)
            .map(|_| ())
            .map_err(|e| format!("{}: cannot list: {e}", path.display()));
    }
    std::fs::File::open(path)
        .map(|_| ())
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))
}

/// `concur-sync check`: configuration, files, token, Profile v1, FormFields and whether the
/// mapping fills every field the company requires.
pub async fn check(cfg: &Config) -> CheckReport {
    let mut r = CheckReport::default();
    r.ok.push("configuration: every key known and valid".into());
    // Files.
    let c = &cfg.concur;
    for (key, path) in [
        ("concur.client_secret_file", &c.client_secret_file),
        ("concur.request_token_file", &c.request_token_file),
    ] {
        if let Some(p) = path {
            match readable(p) {
                Ok(()) => r.ok.push(format!("{key}: {} readable", p.display())),
                Err(e) => r.problems.push(format!("{key}: {e}")),
            }
        }
    }
    if let Err(e) = cfg.secrets() {
        r.problems.push(e.to_string());
    }
    if let Some(k) = &cfg.state.key_file
        && k.exists()
        && let Err(e) = readable(k)
    {
        r.problems.push(format!("state.key_file: {e}"));
    }
    if let Some(a) = &cfg.attendees {
        match readable(&a.source.path) {
            Ok(()) => r.ok.push(format!(
                "attendees.source.path: {} readable",
                a.source.path.display()
            )),
            Err(e) => r.problems.push(format!("attendees.source.path: {e}")),
        }
    }
    // A drop folder: check the file the next cycle would take, else the current one.
    let previewed;
    let mut cfg = cfg;
    let mut nothing_waiting = false;
    if let Ok(store) = Store::open(&cfg.state.path, cfg.state.key_file.as_deref()) {
        match crate::service::preview(cfg, &store) {
            Ok(None) => {}
            Ok(Some((preview, c))) => {
                match &preview {
                    crate::service::Preview::Next(p) => r.notes.push(format!(
                        "source.path: drop folder {}; checking the next file {} (not moved)",
                        cfg.source.path.display(),
                        p.display()
                    )),
                    crate::service::Preview::Current(p) => r.notes.push(format!(
                        "source.path: drop folder {}; no new file waiting; checking the current file {}",
                        cfg.source.path.display(),
                        p.display()
                    )),
                    crate::service::Preview::Nothing => {
                        nothing_waiting = true;
                        r.ok.push(format!(
                            "source.path: drop folder {}: no file waiting",
                            cfg.source.path.display()
                        ));
                    }
                }
                previewed = c;
                cfg = &previewed;
            }
            Err(e) => r.problems.push(format!("source.path: {e}")),
        }
    }
    // What the source fills.
    let mut filled: Option<HashSet<Field>> = None;
    if cfg.source.kind == SourceKind::Csv && !nothing_waiting {
        let opts = CsvOptions::from_config(cfg).unwrap_or_default();
        match CsvReader::open(&cfg.source.path, &opts) {
            Ok(reader) => {
                r.ok.push(format!(
                    "source.path: {} readable, header has employee_id and login_id",
                    cfg.source.path.display()
                ));
                filled = Some(
                    reader
                        .columns()
                        .iter()
                        .filter_map(|c| match c {
                            Column::Field(f) => Some(*f),
                            _ => None,
                        })
                        .collect(),
                );
            }
            Err(e) => r.problems.push(format!("source.path: {e}")),
        }
    } else if matches!(cfg.source.kind, SourceKind::Ldif)
        && let Err(e) = readable(&cfg.source.path)
    {
        r.problems.push(format!("source.path: {e}"));
    }
    // Connection.
    let store = match Store::open(&cfg.state.path, cfg.state.key_file.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            r.problems.push(format!("state.path: {e}"));
            return r;
        }
    };
    let mut store = store;
    let client = match crate::sync::client(cfg, &store) {
        Ok(c) => c,
        Err(e) => {
            r.problems.push(e.to_string());
            return r;
        }
    };
    if let Err(e) = client.authenticate().await {
        r.problems.push(format!("token: {e}"));
        return r;
    }
    r.ok.push(format!("token: obtained from {}", c.base_url));
    match wire::profile_me(&client).await {
        Ok(p) => {
            r.ok.push(format!(
                "profile: signed in as {} {:?} (id {}, company {})",
                if p.user_type.is_empty() {
                    "principal"
                } else {
                    p.user_type.as_str()
                },
                p.display_name,
                p.id,
                if p.company_uuid.is_empty() {
                    "?"
                } else {
                    p.company_uuid.as_str()
                }
            ));
            r.principal = Some(p);
        }
        Err(e) => r
            .problems
            .push(format!("profile: GET {}: {e}", wire::PROFILE_PATH)),
    }
    let fields = match wire::form_fields(&client).await {
        Ok(f) => f,
        Err(e) => {
            r.problems
                .push(format!("FormFields: GET {}: {e}", wire::FORM_FIELDS_PATH));
            return r;
        }
    };
    let rows: Vec<FormFieldRow> = fields.iter().map(form_field_row).collect();
    if let Err(e) = store.replace_form_fields(&rows) {
        r.notes.push(format!("FormFields: not cached: {e}"));
    }
    let required: Vec<&FormField> = fields.iter().filter(|f| f.required).collect();
    r.ok.push(format!(
        "FormFields: {} fields, {} required ({}), {} custom",
        fields.len(),
        required.len(),
        required
            .iter()
            .map(|f| f.id.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        fields.iter().filter(|f| f.custom).count()
    ));
    let normalizer = Normalizer::new(&cfg.defaults).ok();
    for f in &required {
        if f.id.eq_ignore_ascii_case("Password") {
            continue; // the source's password column or a generated one
        }
        let Some(field) = Field::from_element(&f.id) else {
            r.problems.push(format!(
                "FormFields: the company requires {} ({:?}), which concur-sync does not send",
                f.id, f.label
            ));
            continue;
        };
        if matches!(field, Field::EMPLOYEE_ID | Field::LOGIN_ID | Field::ACTIVE) {
            continue;
        }
        let default = normalizer.as_ref().and_then(|n| n.default_for(field));
        match (&filled, default) {
            (_, Some(d)) => r.ok.push(format!(
                "required {} ({}): [defaults] {} = {d:?}",
                f.id,
                field.name(),
                field.name()
            )),
            (Some(cols), None) if cols.contains(&field) => r.ok.push(format!(
                "required {} ({}): a source column",
                f.id,
                field.name()
            )),
            (Some(_), None) => r.problems.push(format!(
                "required field {} ({:?}) is not filled: no source column maps to {} and [defaults] has no {}; records would be rejected",
                f.id,
                f.label,
                field.name(),
                field.name()
            )),
            (None, None) => r.notes.push(format!(
                "required {} ({}): cannot tell whether the {:?} source fills it; records lacking it are rejected",
                f.id,
                field.name(),
                cfg.source.kind
            )),
        }
    }
    // Defaults longer than the company allows.
    for (field, max) in crate::rules::company_rules(rows.iter().map(FormFieldRow::rule)).max_len {
        if let Some(d) = normalizer.as_ref().and_then(|n| n.default_for(field))
            && d.chars().count() > max
        {
            r.problems.push(format!(
                "[defaults] {}: {d:?} is longer than the company's {} MaxLength {max}",
                field.name(),
                field.element()
            ));
        }
    }
    r.form_fields = fields;
    r
}

// ---- commands ----------------------------------------------------------------------------

/// `concur-sync check [--json]`: prints the report; exit 0 when there is no problem, else 1.
pub async fn command_check(cfg: &Config, json: bool) -> u8 {
    let report = check(cfg).await;
    if json {
        crate::outln!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        crate::out!("{}", report.to_text());
    }
    if report.problems.is_empty() {
        0
    } else {
        EXIT_FATAL
    }
}

/// `concur-sync reconcile`: adoption and drift repair now, under the writer lock.
pub async fn command_reconcile(cfg: &Config) -> Result<u8, SyncError> {
    let _lock = crate::store::lock::WriterLock::acquire(&cfg.state.path)?;
    let mut store = Store::open(&cfg.state.path, cfg.state.key_file.as_deref())?;
    let client = crate::sync::client(cfg, &store)?;
    let recovered = store.recover()?;
    if !recovered.is_empty() {
        tracing::warn!(cycles = ?recovered, "closed cycles a previous process left unfinished");
    }
    let report = reconcile(cfg, &mut store, &client).await?;
    let c = &report.counts;
    crate::outln!(
        "reconcile {} {}: {} Concur users, {} adopted, {} unmanaged, {} drifted, {} drift repaired, {} failed",
        report.id,
        report.outcome,
        c.concur_users,
        c.adopted,
        c.unmanaged,
        c.drifted,
        c.drift_repaired,
        c.failed
    );
    Ok(if c.failed > 0 { 2 } else { 0 })
}

/// The part of the human `status` this module adds: unmanaged users, reconcile, attendees.
pub fn status_text(st: &crate::store::Status) -> String {
    use crate::escape::escape;
    use std::fmt::Write;
    let mut o = String::new();
    if !st.unmanaged_users.is_empty() {
        let _ = writeln!(
            o,
            "unmanaged ({}, never touched; sync.manage_unmatched = true manages them):",
            st.users.unmanaged
        );
        for u in &st.unmanaged_users {
            let _ = writeln!(
                o,
                "  {} {}{}",
                escape(&u.employee_id),
                escape(&u.login_id),
                if u.active { "" } else { " (inactive)" }
            );
        }
    }
    if let Some(r) = &st.last_reconcile {
        let c = &r.counts;
        let _ = writeln!(
            o,
            "last reconcile {} ({}): {} (started {}); {} Concur users, {} adopted, {} unmanaged, {} drifted, {} repaired; {} drift repaired in all",
            r.id,
            r.trigger,
            r.outcome,
            r.started_at,
            c.concur_users,
            c.adopted,
            c.unmanaged,
            c.drifted,
            c.drift_repaired,
            st.drift_repaired
        );
    }
    if let Some(a) = &st.attendees {
        let _ = writeln!(
            o,
            "attendees: {} known, {} gone from the source, {} failed, {} rejected, {} pending",
            a.known,
            a.missing_from_source.len(),
            a.failed.len(),
            a.rejected.len(),
            a.pending
        );
        if let Some(r) = &a.last_run {
            let c = &r.counts;
            let _ = writeln!(
                o,
                "  last run {}: {} ({} created, {} updated, {} adopted, {} unchanged)",
                r.id, r.outcome, c.created, c.updated, c.adopted, c.unchanged
            );
        }
        for f in &a.failed {
            let _ = writeln!(
                o,
                "  failed {} {} {}: {}",
                escape(&f.external_id),
                f.attendee_type_code,
                f.operation,
                escape(&f.message)
            );
            for v in &f.validation_errors {
                let _ = writeln!(o, "    {}: {}", escape(&v.id), escape(&v.message));
            }
        }
        for r in &a.rejected {
            let _ = writeln!(
                o,
                "  rejected {}",
                escape(&crate::store::attendees::rejection_text(r))
            );
        }
        for m in &a.missing_from_source {
            let _ = writeln!(
                o,
                "  gone from the source (v4 cannot delete): {} {} since {}",
                m.external_id, m.attendee_type_code, m.missing_since
            );
        }
    }
    o
}

/// Rejects the planned creates and updates that break the company's cached form rules
/// (FormFields `Required=Y`, `MaxLength`): Concur would refuse them. Deactivations go through.
pub fn apply_company_rules(
    store: &Store,
    ops: Vec<Op>,
    mut rejections: Vec<crate::model::Rejection>,
) -> Result<(Vec<Op>, Vec<crate::model::Rejection>), crate::store::StoreError> {
    let fields = store.form_fields()?;
    if fields.is_empty() {
        return Ok((ops, rejections));
    }
    let rules = crate::rules::company_rules(fields.iter().map(FormFieldRow::rule));
    let mut kept = Vec::with_capacity(ops.len());
    for op in ops {
        let broken = match op.kind {
            OpKind::Create | OpKind::Update | OpKind::Reactivate => {
                rules.rejections(&op.origin, &op.user)
            }
            OpKind::Deactivate | OpKind::Password => Vec::new(),
        };
        if broken.is_empty() {
            kept.push(op);
        } else {
            rejections.extend(broken);
        }
    }
    Ok((kept, rejections))
}
