//! The CLI's commands as library functions: `main` parses arguments and calls these.
//! Each returns the process exit code (0 ok, 1 fatal, 2 partial, 3 held).

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::cycle;
use crate::cycle::input::{Input, Preview};
use crate::error::{EXIT_FATAL, SyncError};
use crate::escape::escape;
use crate::service::{Ran, apply_requested_approvals, cycle_once};
use crate::store::{CycleOutcome, Status, Store, lock::WriterLock};
use crate::wiring;

pub use crate::operators::commands::{apply, explain, failed, retry, skip};

fn open_store(cfg: &Config) -> Result<Store, SyncError> {
    Ok(Store::open(&cfg.state.path, cfg.state.key_file.as_deref())?)
}

/// `concur-sync sync [--full]`: one cycle now (with a drop folder: on the oldest complete new
/// file, else on the newest processed one). `full` makes a SCIM source read every user (other
/// sources always do). `cancel` (SIGTERM/SIGINT) ends every wait and request at once: the
/// cycle is recorded as interrupted and what Concur did not acknowledge is planned again.
pub async fn sync(cfg: &Config, cancel: &CancellationToken, full: bool) -> Result<u8, SyncError> {
    let _lock = WriterLock::acquire(&cfg.state.path)?;
    if full {
        crate::source::scim::request_full_read();
    }
    let mut store = open_store(cfg)?;
    let client = wiring::client_with(cfg, &store, cancel, wiring::Waits::OneShot)?;
    let mut input = Input::new(cfg);
    apply_requested_approvals(cfg, &mut store, &client, &mut input).await?;
    let report = match cycle_once(cfg, &mut store, &client, &mut input, cancel).await? {
        Ran::Cycle(r, _) => r,
        Ran::Duplicate(file) => {
            crate::outln!(
                "{}: same content as the last file processed; archived without a cycle",
                crate::escape::path(&file)
            );
            return Ok(0);
        }
        Ran::NoSource(why) => {
            crate::outln!("{why}");
            return Ok(0);
        }
    };
    if let Some(f) = input.folder() {
        let waiting = f.pending(std::time::SystemTime::now()).len();
        if waiting > 0 {
            crate::outln!(
                "{waiting} more file(s) waiting in the drop folder; run sync again or let `run` take them"
            );
        }
    }
    crate::outln!(
        "cycle {} {}: {}",
        report.cycle_id,
        report.outcome.as_str(),
        report.counts.summary()
    );
    if report.outcome == CycleOutcome::Held && cfg.sync.require_approved_plan {
        crate::outln!(
            "nothing sent: sync.require_approved_plan = true; save the plan with `concur-sync plan --out FILE`, review it, and send it with `concur-sync apply FILE`"
        );
    } else if report.outcome == CycleOutcome::Held {
        crate::outln!(
            "held for approval (deactivations or identity changes beyond the sync.max_* limits): `concur-sync approve {id}` applies them, `concur-sync reject {id}` drops them",
            id = report.cycle_id
        );
    }
    let mut code = cycle::exit_code(report.outcome);
    if let Some(attendees) = &cfg.attendees
        && !cancel.is_cancelled()
    {
        code = code.max(crate::attendees::command_run(attendees, &mut store, &client).await?);
    }
    Ok(code)
}

/// `sync --new-key` / `run --new-key`: when the state key file is missing or does not match the
/// database, starts a new key (stored passwords become unknown, the refresh token is dropped);
/// a matching key is kept as it is.
pub fn new_key(cfg: &Config) -> Result<(), SyncError> {
    let _lock = WriterLock::acquire(&cfg.state.path)?;
    let (_store, unknown) =
        Store::open_with_new_key(&cfg.state.path, cfg.state.key_file.as_deref())?;
    match unknown {
        Some(n) => {
            tracing::warn!(passwords_unknown = n, "started a new state key");
            println!(
                "new state key written; {n} stored passwords are now unknown (none is sent until the source changes it); a new refresh token is requested"
            );
        }
        None => println!("the state key matches the database: --new-key changed nothing"),
    }
    Ok(())
}

/// `concur-sync approve CYCLE_ID`: releases exactly that held plan if the source has not
/// changed since. With a running daemon holding the state, the daemon applies it promptly.
pub async fn approve(cfg: &Config, cycle: i64) -> Result<u8, SyncError> {
    match WriterLock::acquire(&cfg.state.path) {
        Ok(_lock) => {
            let mut store = open_store(cfg)?;
            let client = wiring::client(cfg, &store)?;
            let mut input = Input::new(cfg);
            let digest = cycle::input::current_source_digest(cfg, &store, &mut input);
            match cycle::apply_held(cfg, &mut store, &client, cycle, digest.as_deref()).await {
                Ok(r) => {
                    crate::outln!(
                        "cycle {cycle}: held plan applied: {} deactivated, {} updated, {} failed",
                        r.counts.deactivate,
                        r.counts.update,
                        r.counts.failed
                    );
                    Ok(if r.counts.failed > 0 { 2 } else { 0 })
                }
                Err(SyncError::Refused(why)) => {
                    eprintln!("concur-sync: not approved: {why}");
                    Ok(EXIT_FATAL)
                }
                Err(e) => Err(e),
            }
        }
        Err(crate::store::StoreError::Locked(holder)) => {
            let store = open_store(cfg)?;
            let info = store.cycle(cycle)?;
            match info {
                Some(c) if c.outcome == CycleOutcome::Held => {
                    store.request_approval(cycle)?;
                    store.audit("approve-requested", &format!("cycle {cycle}"))?;
                    crate::outln!(
                        "cycle {cycle}: approval recorded; the running service applies it shortly ({holder})"
                    );
                    Ok(0)
                }
                Some(c) => {
                    eprintln!(
                        "concur-sync: not approved: cycle {cycle} is {}, not held",
                        c.outcome
                    );
                    Ok(EXIT_FATAL)
                }
                None => {
                    eprintln!("concur-sync: not approved: there is no cycle {cycle}");
                    Ok(EXIT_FATAL)
                }
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// `concur-sync reject CYCLE_ID`: drops a held plan; nobody in it is deactivated.
pub fn reject(cfg: &Config, cycle: i64) -> Result<u8, SyncError> {
    let mut store = open_store(cfg)?;
    let n = store.in_one_transaction(|store| {
        let n = store.reject_held(cycle)?;
        if n > 0 {
            let counts = store.cycle(cycle)?.map(|c| c.counts).unwrap_or_default();
            let msg = format!(
                "held plan rejected by an operator at {}: its {n} operations were not sent",
                crate::store::now()
            );
            store.finish_cycle(cycle, CycleOutcome::Rejected, &counts, Some(&msg))?;
            store.clear_approval(cycle)?;
            store.audit("reject", &format!("cycle {cycle}: {msg}"))?;
        }
        Ok(n)
    })?;
    if n == 0 {
        eprintln!(
            "concur-sync: cycle {cycle} holds no plan (not held, already decided, or superseded)"
        );
        return Ok(EXIT_FATAL);
    }
    crate::outln!("cycle {cycle}: held plan dropped ({n} held operations not sent)");
    Ok(0)
}

/// `concur-sync plan [--json] [--out FILE]`: what a cycle would do; writes nothing to Concur.
/// `out` also saves the plan for `apply`.
pub async fn plan(cfg: &Config, json: bool, out: Option<&Path>) -> Result<u8, SyncError> {
    let store = open_store(cfg)?;
    // A drop folder: the file the next cycle would take (left where it is), else the current.
    let previewed;
    let cfg = match cycle::input::preview(cfg, &store)? {
        None => cfg,
        Some((preview, c)) => {
            let note = match &preview {
                Preview::Next(p) => format!(
                    "previewing {} (the next file in the drop folder; it is not moved)",
                    crate::escape::path(p)
                ),
                Preview::Current(p) => format!(
                    "no new file waiting in {}; previewing the current file {}",
                    crate::escape::path(&cfg.source.path),
                    crate::escape::path(p)
                ),
                Preview::Nothing => {
                    println!(
                        "no file waiting in the drop folder {}: nothing to preview",
                        crate::escape::path(&cfg.source.path)
                    );
                    return Ok(0);
                }
            };
            // JSON on stdout stays one document.
            if json {
                eprintln!("{note}");
            } else {
                println!("{note}");
            }
            previewed = c;
            &previewed
        }
    };
    let generation = store.snapshot_generation()?;
    let planned = cycle::preview_plan(cfg, &store).await?;
    let saved = match out {
        Some(file) => Some(crate::operators::commands::save_plan(
            &store, &planned, generation, file,
        )?),
        None => None,
    };
    let text = if json {
        planned.to_json()
    } else {
        planned.to_text()
    };
    crate::terminal::finish();
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.write_all(b"\n");
    if let Some(note) = saved {
        // JSON on stdout stays one document.
        if json {
            eprintln!("{note}");
        } else {
            let _ = writeln!(stdout, "{note}");
        }
    }
    Ok(0)
}

/// `concur-sync status [--json]`: reads the state database without writing to it (a read-only
/// copy or directory works; no migration, no key file, no file created beside it).
pub fn status(state: &Path, json: bool) -> Result<u8, SyncError> {
    let store = Store::open_read_only(state)?;
    let st = store.status()?;
    if json {
        crate::outln!("{}", serde_json::to_string_pretty(&st).unwrap_or_default());
    } else {
        crate::out!("{}", status_text(&st));
    }
    Ok(0)
}

/// The human form of `status`.
pub fn status_text(st: &Status) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let u = &st.users;
    let _ = writeln!(
        o,
        "users: {} managed ({} active, {} inactive; {} created, {} adopted), {} unmanaged",
        u.managed, u.active, u.inactive, u.created, u.adopted, u.unmanaged
    );
    match &st.last_cycle {
        Some(c) => {
            let k = &c.counts;
            let _ = writeln!(
                o,
                "last cycle {}: {} (started {}, finished {})",
                c.id,
                c.outcome,
                c.started_at,
                c.finished_at.as_deref().unwrap_or("-")
            );
            let _ = writeln!(
                o,
                "  {}; {} requests, {} retries, {:.1}s throttled",
                k.summary(),
                k.requests,
                k.retries,
                k.throttled_seconds
            );
            if let Some(m) = &c.message {
                let _ = writeln!(o, "  {}", escape(m));
            }
        }
        None => {
            let _ = writeln!(o, "no cycle has run yet");
        }
    }
    if st.outbox.pending > 0 || st.outbox.held > 0 {
        let _ = writeln!(
            o,
            "outbox: {} pending, {} held",
            st.outbox.pending, st.outbox.held
        );
    }
    if st.provisions.in_flight > 0 {
        let _ = writeln!(
            o,
            "provisions in flight: {} ({} operations), oldest accepted at {}",
            st.provisions.in_flight,
            st.provisions.operations,
            st.provisions.oldest_submitted_at.as_deref().unwrap_or("?")
        );
    }
    for line in crate::operators::status::superseded_lines(&st.superseded) {
        let _ = writeln!(o, "{line}");
    }
    if let Some(line) = crate::operators::status::token_line(&st.token) {
        let _ = writeln!(o, "{line}");
    }
    if !st.failed.is_empty() {
        let _ = writeln!(o, "failed ({}):", st.failed.len());
        for f in &st.failed {
            let _ = writeln!(
                o,
                "  {} {}: {} (attempts {}, last {})",
                escape(&f.employee_id),
                f.operation,
                escape(&f.message),
                f.attempts,
                f.last_failed_at
            );
        }
    }
    if !st.skipped.is_empty() {
        let _ = writeln!(
            o,
            "skipped ({}, not counted as failed; `concur-sync retry ID` plans one again):",
            st.skipped.len()
        );
        for s in &st.skipped {
            let _ = writeln!(o, "  {}", crate::operators::queue::skip_line(s));
        }
    }
    if !st.rejected.is_empty() {
        let _ = writeln!(o, "rejected ({}):", st.rejected.len());
        for r in &st.rejected {
            let _ = writeln!(o, "  {}", escape(&r.to_string()));
        }
    }
    if !st.warnings.is_empty() {
        let _ = writeln!(o, "warnings ({}):", st.warnings.len());
        for w in &st.warnings {
            let _ = writeln!(o, "  {}", escape(&w.to_string()));
        }
    }
    if let Some(f) = &st.last_file {
        let _ = writeln!(
            o,
            "last file processed: {} (modified {}, processed {})",
            escape(&f.name),
            f.modified_at.as_deref().unwrap_or("-"),
            f.at
        );
    }
    if !st.alerts.is_empty() {
        let _ = writeln!(o, "drop-folder alerts ({}):", st.alerts.len());
        for a in &st.alerts {
            let _ = writeln!(o, "  {} {}: {}", a.at, escape(&a.file), escape(&a.message));
        }
    }
    o.push_str(&readback_text(st));
    o
}

/// The part of the human `status` about reading Concur back (unmanaged users, the last
/// reconcile) and the attendee job.
fn readback_text(st: &Status) -> String {
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

/// `concur-sync check [--json]`: prints the report; exit 0 when there is no problem, else 1.
pub async fn check(cfg: &Config, json: bool) -> u8 {
    let report = crate::check::check(cfg).await;
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
pub async fn reconcile(cfg: &Config) -> Result<u8, SyncError> {
    let _lock = WriterLock::acquire(&cfg.state.path)?;
    let mut store = open_store(cfg)?;
    let client = wiring::client(cfg, &store)?;
    let recovered = store.recover()?;
    if !recovered.is_empty() {
        tracing::warn!(cycles = ?recovered, "closed cycles a previous process left unfinished");
    }
    let report = crate::service::reconcile(cfg, &mut store, &client).await?;
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

/// `concur-sync baseline`: record every valid source user as already present in Concur,
/// exactly as the source says, without sending anything. For taking over a company whose
/// Concur users were loaded by another tool; refused on a non-empty snapshot without `force`.
pub async fn baseline(cfg: &Config, force: bool) -> Result<u8, SyncError> {
    let _lock = WriterLock::acquire(&cfg.state.path)?;
    let mut store = open_store(cfg)?;
    if store.user_count()? > 0 && !force {
        eprintln!(
            "the state database already knows {} users; baseline only fills an empty snapshot (use --force to overwrite matching users)",
            store.user_count()?
        );
        return Ok(EXIT_FATAL);
    }
    // A drop folder: the file the next cycle would take, else the current one.
    let previewed;
    let cfg = match cycle::input::preview(cfg, &store)? {
        None => cfg,
        Some((Preview::Nothing, _)) => {
            eprintln!(
                "no file in the drop folder {}: nothing to record",
                crate::escape::path(&cfg.source.path)
            );
            return Ok(EXIT_FATAL);
        }
        Some((_, c)) => {
            previewed = c;
            &previewed
        }
    };
    // A CSV file into an empty snapshot is streamed; anything else is planned in full.
    let (users, rejected, label) = match cycle::baseline_csv(cfg, &mut store)? {
        Some(b) => (b.users, b.rejected, b.label),
        None => {
            let planned = cycle::read_and_plan(cfg, &store).await?;
            let users: Vec<_> = planned
                .ops
                .into_iter()
                .filter(|o| o.kind != crate::model::OpKind::Deactivate)
                .map(|o| o.user)
                .collect();
            store.baseline_stamped(
                &users,
                crate::store::Ownership::Adopted,
                planned.row_stamps.as_ref(),
            )?;
            (
                users.len() as u64,
                planned.rejections.len() as u64,
                planned.source_label,
            )
        }
    };
    store.refresh_row_index()?;
    store.audit(
        "baseline",
        &format!("{users} users recorded as present in Concur from {label}"),
    )?;
    crate::outln!("baseline: {users} users recorded as present in Concur; {rejected} rejected");
    Ok(0)
}

/// Resolves the config path: `--config`, else `CONCUR_SYNC_CONFIG` (clap handles both), else
/// the default.
pub fn config_path(arg: Option<PathBuf>) -> PathBuf {
    arg.unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_CONFIG_PATH))
}
