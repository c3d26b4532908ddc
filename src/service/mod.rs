//! Driving cycles: what runs before a cycle (adoption), taking a drop folder's file and what
//! happens to it afterwards (archived, set aside), held-plan approvals, `reconcile` on the
//! current source, and the long-running `run` daemon with its scheduler, folder watcher, admin
//! HTTP endpoint and systemd integration. Which file a cycle reads is `cycle::input`'s.

pub mod admin;
pub mod daemon;
pub mod metrics;
mod page;
pub mod probe;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use tokio_util::sync::CancellationToken;

use crate::attendees::folder::{put_away_recorded, set_aside_recorded};
use crate::concur::ConcurClient;
use crate::config::Config;
use crate::cycle::input::{self, Input, current_file, with_file};
use crate::cycle::{self, CycleReport, SavedPlan};
use crate::error::SyncError;
use crate::readback::{self, ReconcileReport};
use crate::source::dropfolder::{self, DropFolder};
use crate::store::{CycleOutcome, Store};

/// What one trigger of the cycle driver did.
#[derive(Debug)]
pub enum Ran {
    /// A cycle ran (on `file` when the source is a drop folder).
    Cycle(CycleReport, Option<PathBuf>),
    /// A new file had the same content as the last one processed: archived, no cycle.
    Duplicate(PathBuf),
    /// Nothing to read yet (a drop folder with no file, a SCIM endpoint nobody pushed to):
    /// nothing to do, for the reason given.
    NoSource(String),
}

/// Runs one cycle on the source `cfg` names; before it, once the token is there, the FormFields
/// cache is refreshed (daily) and, before the very first cycle, Concur's existing users are
/// adopted.
pub async fn run_cycle(
    cfg: &Config,
    store: &mut Store,
    client: &ConcurClient,
    cancel: &CancellationToken,
) -> Result<CycleReport, SyncError> {
    run_cycle_with(cfg, store, client, cancel, None).await
}

/// [`run_cycle`], applying exactly `saved` when given (`apply FILE`).
async fn run_cycle_with(
    cfg: &Config,
    store: &mut Store,
    client: &ConcurClient,
    cancel: &CancellationToken,
    saved: Option<&SavedPlan>,
) -> Result<CycleReport, SyncError> {
    let before = readback::BeforeCycle::due(cfg, store)?;
    cycle::run_cycle_with(
        cfg,
        store,
        client,
        cancel,
        saved,
        before.fetch(client.clone()),
        async |store: &mut Store, fetched: readback::Fetched| {
            fetched.record(cfg, store, client).await
        },
    )
    .await
}

/// `reconcile` (adoption and drift repair) on what the source says now, without taking a new
/// file: with a drop folder, its current (last processed) file.
pub async fn reconcile(
    cfg: &Config,
    store: &mut Store,
    client: &ConcurClient,
) -> Result<ReconcileReport, SyncError> {
    readback::refresh_form_fields(cfg.concur.api, store, client, false).await;
    let cfg = input::with_current_file(cfg, store)?;
    readback::reconcile(&cfg, store, client).await
}

/// Records a file set aside (`rejected`, or `skipped` when it could not even be moved), raises
/// the alert and logs it.
fn set_aside(
    store: &Store,
    folder: &mut DropFolder,
    file: &Path,
    reason: &str,
    digest: Option<String>,
) -> Result<(), SyncError> {
    let save = Store::record_source_file;
    let handled = set_aside_recorded(store, save, folder, file, reason, digest)?;
    match &handled.moved_to {
        Some(to) => {
            tracing::error!(file = %file.display(), moved_to = %to.display(), reason = %reason, "file not applied: moved to rejected/");
        }
        None => {
            tracing::error!(file = %file.display(), reason = %reason, alert = ?handled.alert, "file not applied and cannot be moved to rejected/: passed over until it changes");
        }
    }
    Ok(())
}

/// Archives a file that was applied (or had the content of the last one) and records it;
/// when it cannot be archived it is passed over with an alert.
fn archive_and_record(
    store: &Store,
    folder: &mut DropFolder,
    file: &Path,
    digest: &str,
    outcome: &'static str,
) -> Result<Option<PathBuf>, SyncError> {
    let save = Store::record_source_file;
    let handled = put_away_recorded(store, save, folder, file, digest, outcome)?;
    if handled.moved_to.is_none() {
        tracing::error!(file = %file.display(), alert = ?handled.alert, "file applied but cannot be archived: passed over until it changes");
    }
    Ok(handled.moved_to)
}

/// Moves symbolic links and other entries that are not regular files to `rejected/` (they are
/// never followed or read), with an alert; the daemon does this on every wake-up.
pub fn set_aside_strays(store: &Store, folder: &mut DropFolder) -> Result<(), SyncError> {
    for stray in folder.strays() {
        let reason = dropfolder::stray_reason(&stray);
        set_aside(store, folder, &stray, &reason, None)?;
    }
    Ok(())
}

/// Why `file` must not be applied after `last`: it is older (by modification time).
fn older_than_last(store: &Store, file: &Path) -> Result<Option<String>, SyncError> {
    let Some(last) = store.last_processed_file()? else {
        return Ok(None);
    };
    let (Some(this), Some(then)) = (
        crate::source::dropfolder::modified_at(file),
        last.modified_at.as_deref(),
    ) else {
        return Ok(None);
    };
    let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
    match (parse(&this), parse(then)) {
        (Some(a), Some(b)) if a < b => Ok(Some(format!(
            "modified {this}, older than the last processed file {} (modified {then}, processed {}): not applied; to apply it anyway, give it a fresh modification time (touch it) and drop it again",
            last.name, last.at
        ))),
        _ => Ok(None),
    }
}

/// Runs one cycle on what the source says now: the oldest complete new file of a drop folder
/// (archived afterwards, or moved to `rejected/` when unusable), else the current (last
/// processed) file, else the configured file or directory service.
pub async fn cycle_once(
    cfg: &Config,
    store: &mut Store,
    client: &ConcurClient,
    input: &mut Input,
    cancel: &CancellationToken,
) -> Result<Ran, SyncError> {
    cycle_once_with(cfg, store, client, input, cancel, None).await
}

/// [`cycle_once`], applying exactly `saved` when given (`apply FILE`).
pub async fn cycle_once_with(
    cfg: &Config,
    store: &mut Store,
    client: &ConcurClient,
    input: &mut Input,
    cancel: &CancellationToken,
    saved: Option<&SavedPlan>,
) -> Result<Ran, SyncError> {
    let Input::Folder(folder) = input else {
        if let Some(why) = crate::source::nothing_to_read_yet(&cfg.source)? {
            return Ok(Ran::NoSource(why));
        }
        return run_cycle_with(cfg, store, client, cancel, saved)
            .await
            .map(|r| Ran::Cycle(r, None));
    };
    if let Err(e) = folder.prepare() {
        let m = format!("{e}");
        store.alert(&dropfolder::display_name(folder.dir()), &m)?;
        tracing::error!(folder = %folder.dir().display(), error = %m, "drop folder unusable: nothing is taken");
        return Err(SyncError::Source(crate::source::SourceError::SetAside {
            file: folder.dir().display().to_string(),
            reason: m,
        }));
    }
    set_aside_strays(store, folder)?;
    let now = SystemTime::now();
    if let Some(file) = folder.next_ready(now) {
        let shown = dropfolder::display_name(&file);
        if let Some(reason) = older_than_last(store, &file)? {
            set_aside(store, folder, &file, &reason, None)?;
            return Err(SyncError::Source(crate::source::SourceError::SetAside {
                file: shown,
                reason,
            }));
        }
        let digest = match crate::source::file_digest(&file, true).map_err(SyncError::from) {
            Ok(d) => d,
            Err(e) => {
                set_aside(store, folder, &file, &e.to_string(), None)?;
                return Err(e);
            }
        };
        if store.last_source_digest()?.as_deref() == Some(digest.as_str()) {
            if let Some(to) = archive_and_record(store, folder, &file, &digest, "duplicate")? {
                tracing::info!(file = %file.display(), archived = %to.display(), "file content was already processed: archived without a cycle");
            }
            return Ok(Ran::Duplicate(file));
        }
        tracing::info!(file = %file.display(), "taking file from the drop folder");
        let result = run_cycle_with(&with_file(cfg, &file), store, client, cancel, saved).await;
        match &result {
            Err(SyncError::Source(e)) => {
                set_aside(store, folder, &file, &e.to_string(), Some(digest))?;
            }
            Ok(r) if r.outcome != CycleOutcome::Interrupted => {
                let archived = archive_and_record(store, folder, &file, &digest, "processed")?;
                if let Some(to) = &archived {
                    tracing::info!(file = %file.display(), archived = %to.display(), "file processed");
                }
                let pruned = folder.prune(SystemTime::now(), archived.as_deref());
                if pruned > 0 {
                    tracing::info!(
                        removed = pruned,
                        "removed archived files past source.archive_days"
                    );
                }
            }
            // Concur unreachable, shutdown: the file stays for the next cycle.
            _ => {}
        }
        return result.map(|r| Ran::Cycle(r, Some(file)));
    }
    match current_file(store, folder)? {
        Some(current) => {
            run_cycle_with(&with_file(cfg, &current.path), store, client, cancel, saved)
                .await
                .map(|r| Ran::Cycle(r, None))
        }
        None => Ok(Ran::NoSource(format!(
            "no source file yet in {}: nothing to do",
            crate::escape::path(folder.dir())
        ))),
    }
}

/// Applies the held plans operators approved while another process held the state.
pub async fn apply_requested_approvals(
    cfg: &Config,
    store: &mut Store,
    client: &ConcurClient,
    input: &mut Input,
) -> Result<(), SyncError> {
    for cycle in store.approval_requests()? {
        store.clear_approval(cycle)?;
        let digest = input::current_source_digest(cfg, store, input);
        match cycle::apply_held(cfg, store, client, cycle, digest.as_deref()).await {
            Ok(r) => tracing::info!(
                cycle,
                outcome = r.outcome.as_str(),
                "approved held plan applied"
            ),
            Err(SyncError::Refused(why)) => {
                tracing::warn!(cycle, reason = %why, "approval not applied");
                store.audit("approve-refused", &format!("cycle {cycle}: {why}"))?;
            }
            Err(e) => return Err(e),
        }
    }
    apply_requested_plan(cfg, store, client, input).await
}

/// Applies the saved plan an operator asked to apply (`apply FILE`) while another process
/// held the state: exactly as `apply` does, refused (logged and audited) if the source or the
/// snapshot changed since it was saved.
async fn apply_requested_plan(
    cfg: &Config,
    store: &mut Store,
    client: &ConcurClient,
    input: &mut Input,
) -> Result<(), SyncError> {
    let Some((file, text)) = store.take_saved_plan_request()? else {
        return Ok(());
    };
    let refused = |store: &Store, why: &str| -> Result<(), SyncError> {
        tracing::warn!(file = %file, reason = %why, "saved plan not applied; nothing was sent");
        store.audit("apply-refused", &format!("{file}: {why}"))?;
        Ok(())
    };
    let saved = match SavedPlan::parse(&text) {
        Ok(s) => s,
        Err(why) => return refused(store, &why),
    };
    let cancel = CancellationToken::new();
    match cycle_once_with(cfg, store, client, input, &cancel, Some(&saved)).await {
        Ok(Ran::Cycle(r, _)) => {
            tracing::info!(file = %file, cycle = r.cycle_id, outcome = r.outcome.as_str(), counts = ?r.counts, "saved plan applied");
            store.audit(
                "apply",
                &format!(
                    "{file} applied as cycle {} ({} operations saved): {}",
                    r.cycle_id,
                    saved.operations.len(),
                    r.outcome
                ),
            )?;
            Ok(())
        }
        Ok(Ran::Duplicate(_) | Ran::NoSource(_)) => refused(
            store,
            "the source the plan was saved from is not there to apply",
        ),
        Err(SyncError::Refused(why)) => refused(store, &why),
        Err(e) => Err(e),
    }
}
