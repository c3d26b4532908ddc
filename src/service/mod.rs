//! Running cycles as a service: which file a cycle reads (single file or drop folder), what
//! happens to it afterwards, held-plan approvals, and the long-running `run` daemon with its
//! scheduler, folder watcher, admin HTTP endpoint and systemd integration.

pub mod admin;
pub mod daemon;
pub mod metrics;
pub mod probe;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use tokio_util::sync::CancellationToken;

use crate::concur::ConcurClient;
use crate::config::{Config, SourceKind};
use crate::source::dropfolder::{self, DropFolder};
use crate::store::Store;
use crate::sync::{self, CycleReport, SyncError};

/// What one trigger of the cycle driver did.
#[derive(Debug)]
pub enum Ran {
    /// A cycle ran (on `file` when the source is a drop folder).
    Cycle(CycleReport, Option<PathBuf>),
    /// A new file had the same content as the last one processed: archived, no cycle.
    Duplicate(PathBuf),
    /// A drop folder with no file yet: nothing to do.
    NoSource,
}

/// Where file-based sources come from.
pub enum Input {
    /// `source.path` is one file (or the source is not file-based).
    Fixed,
    /// `source.path` is a drop folder.
    Folder(DropFolder),
}

impl Input {
    pub fn new(cfg: &Config) -> Input {
        let file_kind = matches!(cfg.source.kind, SourceKind::Csv | SourceKind::Ldif);
        if file_kind && dropfolder::is_folder(&cfg.source.path) {
            let f = DropFolder::new(
                &cfg.source.path,
                cfg.source.settle_seconds,
                cfg.source.archive_days,
            );
            if let Err(e) = f.prepare() {
                tracing::warn!(folder = %cfg.source.path.display(), error = %e, "cannot create archive/ and rejected/ in the drop folder");
            }
            Input::Folder(f)
        } else {
            Input::Fixed
        }
    }

    pub fn folder(&mut self) -> Option<&mut DropFolder> {
        match self {
            Input::Folder(f) => Some(f),
            Input::Fixed => None,
        }
    }

    /// Is a new complete file waiting?
    pub fn has_ready(&mut self) -> bool {
        match self {
            Input::Folder(f) => f.next_ready(SystemTime::now()).is_some(),
            Input::Fixed => false,
        }
    }
}

/// A digest of what the source says now, for approving a held plan; `None` when it cannot be
/// told cheaply (directory services), in which case later cycles decide.
pub fn current_source_digest(cfg: &Config, input: &mut Input) -> Option<String> {
    let file = match input {
        Input::Folder(f) => {
            if !f.pending(SystemTime::now()).is_empty() {
                return Some("a new file is waiting in the drop folder".into());
            }
            f.current()?
        }
        Input::Fixed => {
            if !matches!(cfg.source.kind, SourceKind::Csv | SourceKind::Ldif) {
                return None;
            }
            cfg.source.path.clone()
        }
    };
    sync::file_digest(&file).ok()
}

fn with_file(cfg: &Config, file: &Path) -> Config {
    let mut c = cfg.clone();
    c.source.path = file.to_path_buf();
    c
}

/// Runs one cycle on what the source says now: the oldest complete new file of a drop folder
/// (archived afterwards, or moved to `rejected/` when unusable), else the newest archived file,
/// else the configured file or directory service.
pub async fn cycle_once(
    cfg: &Config,
    store: &mut Store,
    client: &ConcurClient,
    input: &mut Input,
    cancel: &CancellationToken,
) -> Result<Ran, SyncError> {
    let Input::Folder(folder) = input else {
        return sync::run_cycle(cfg, store, client, cancel)
            .await
            .map(|r| Ran::Cycle(r, None));
    };
    let now = SystemTime::now();
    if let Some(file) = folder.next_ready(now) {
        let digest = sync::file_digest(&file)?;
        if store.last_source_digest()?.as_deref() == Some(digest.as_str()) {
            let to = folder.archive(&file).map_err(|e| io_err(&file, e))?;
            tracing::info!(file = %file.display(), archived = %to.display(), "file content was already processed: archived without a cycle");
            return Ok(Ran::Duplicate(file));
        }
        tracing::info!(file = %file.display(), "taking file from the drop folder");
        let result = sync::run_cycle(&with_file(cfg, &file), store, client, cancel).await;
        match &result {
            Err(SyncError::Source(e)) => {
                let to = folder
                    .reject(&file, &e.to_string())
                    .map_err(|err| io_err(&file, err))?;
                tracing::error!(file = %file.display(), moved_to = %to.display(), error = %e, "file could not be used: moved to rejected/");
            }
            Ok(r) if r.outcome != sync::Outcome::Interrupted => {
                let to = folder.archive(&file).map_err(|e| io_err(&file, e))?;
                tracing::info!(file = %file.display(), archived = %to.display(), "file processed");
                let pruned = folder.prune(SystemTime::now());
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
    match folder.current() {
        Some(current) => sync::run_cycle(&with_file(cfg, &current), store, client, cancel)
            .await
            .map(|r| Ran::Cycle(r, None)),
        None => Ok(Ran::NoSource),
    }
}

fn io_err(file: &Path, e: std::io::Error) -> SyncError {
    SyncError::Source(crate::source::SourceError::Open {
        file: file.display().to_string(),
        error: e,
    })
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
        let digest = current_source_digest(cfg, input);
        match sync::apply_held(cfg, store, client, cycle, digest.as_deref()).await {
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
    Ok(())
}
