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
use crate::error::SyncError;
use crate::source::dropfolder::{self, DropFolder};
use crate::store::Store;
use crate::store::files::SourceFile;
use crate::sync::{self, CycleReport};

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
pub fn current_source_digest(cfg: &Config, store: &Store, input: &mut Input) -> Option<String> {
    match input {
        Input::Folder(f) => {
            if !f.pending(SystemTime::now()).is_empty() {
                return Some("a new file is waiting in the drop folder".into());
            }
            current_file(store, f).ok().flatten().and_then(|c| c.digest)
        }
        Input::Fixed => crate::source::current_digest(&cfg.source).and_then(Result::ok),
    }
}

/// The current file of a drop folder: the last processed one as the state database records
/// it, if it is still a regular file in `archive/` with the recorded content.
pub struct Current {
    pub path: PathBuf,
    pub name: String,
    pub digest: Option<String>,
}

/// Finds the current file (see [`Current`]). Files placed in `archive/` by hand are never
/// taken. A state database from before files were recorded adopts the archived file whose
/// content the last cycle read, once.
pub fn current_file(store: &Store, folder: &DropFolder) -> Result<Option<Current>, SyncError> {
    let Some(last) = store.last_processed_file()? else {
        const TRIED: &str = "source_files.adoption_tried";
        let Some(digest) = store.last_source_digest()? else {
            return Ok(None);
        };
        if store.kv_get(TRIED)?.is_some() {
            return Ok(None);
        }
        store.kv_set(TRIED, crate::store::now().as_bytes())?;
        for path in folder.archived_files() {
            if crate::source::file_digest(&path, true).ok().as_deref() == Some(digest.as_str()) {
                let name = dropfolder::display_name(&path);
                store.record_source_file(&SourceFile {
                    name: name.clone(),
                    digest: Some(digest.clone()),
                    modified_at: modified_at(&path),
                    outcome: "processed".into(),
                    moved_to: Some(path.display().to_string()),
                    at: crate::store::now(),
                    message: Some("adopted from archive/: the content the last cycle read".into()),
                })?;
                return Ok(Some(Current {
                    path,
                    name,
                    digest: Some(digest),
                }));
            }
        }
        return Ok(None);
    };
    let Some(path) = last.moved_to.as_deref().map(PathBuf::from) else {
        return Ok(None);
    };
    if !folder.is_archived_file(&path) {
        store.alert(
            &last.name,
            &format!(
                "the last processed file is gone from archive/ ({}): no current source until a new file is dropped",
                path.display()
            ),
        )?;
        return Ok(None);
    }
    let digest = crate::source::file_digest(&path, true)?;
    if last.digest.as_deref() != Some(digest.as_str()) {
        store.alert(
            &last.name,
            &format!(
                "{} changed after it was archived: not used; no current source until a new file is dropped",
                path.display()
            ),
        )?;
        return Ok(None);
    }
    Ok(Some(Current {
        path,
        name: last.name,
        digest: Some(digest),
    }))
}

/// A file's modification time (not followed), RFC 3339.
fn modified_at(path: &Path) -> Option<String> {
    let m = std::fs::symlink_metadata(path).ok()?.modified().ok()?;
    Some(
        chrono::DateTime::<chrono::Utc>::from(m)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    )
}

fn with_file(cfg: &Config, file: &Path) -> Config {
    let mut c = cfg.clone();
    c.source.path = file.to_path_buf();
    c.source.in_drop_folder = true;
    c
}

/// The configuration for reading what the source says now without taking a new file
/// (`reconcile`): with a drop folder, its current file; unchanged otherwise.
pub fn with_current_file(cfg: &Config, store: &Store) -> Result<Config, SyncError> {
    let Input::Folder(folder) = Input::new(cfg) else {
        return Ok(cfg.clone());
    };
    match current_file(store, &folder)? {
        Some(cur) => Ok(with_file(cfg, &cur.path)),
        None => Err(SyncError::Refused(format!(
            "the drop folder {} has no processed file yet: nothing to compare with",
            crate::escape::path(folder.dir())
        ))),
    }
}

/// What `plan` and `check` look at in a drop folder: the file the next cycle would take, else
/// the current one. Nothing is moved.
pub enum Preview {
    Next(PathBuf),
    Current(PathBuf),
    /// No file waits and none was processed yet.
    Nothing,
}

/// The preview of a drop folder (see [`Preview`]), or `None` when the source is not one.
pub fn preview(cfg: &Config, store: &Store) -> Result<Option<(Preview, Config)>, SyncError> {
    let Input::Folder(mut folder) = Input::new(cfg) else {
        return Ok(None);
    };
    let now = SystemTime::now();
    if let Some(next) = folder.next_ready(now) {
        let c = with_file(cfg, &next);
        return Ok(Some((Preview::Next(next), c)));
    }
    Ok(Some(match current_file(store, &folder)? {
        Some(cur) => {
            let c = with_file(cfg, &cur.path);
            (Preview::Current(cur.path), c)
        }
        None => (Preview::Nothing, cfg.clone()),
    }))
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
    let name = dropfolder::display_name(file);
    let modified = modified_at(file);
    let (outcome, moved_to, alert) = match folder.reject(file, reason) {
        Ok(to) => {
            tracing::error!(file = %file.display(), moved_to = %to.display(), reason = %reason, "file not applied: moved to rejected/");
            (
                "rejected",
                Some(to.display().to_string()),
                format!("moved to rejected/: {reason}"),
            )
        }
        Err(e) => {
            folder.skip(file);
            tracing::error!(file = %file.display(), reason = %reason, error = %e, "file not applied and cannot be moved to rejected/: passed over until it changes");
            (
                "skipped",
                None,
                format!(
                    "{reason}; it cannot be moved to rejected/ ({e}): passed over until it changes"
                ),
            )
        }
    };
    store.alert(&name, &alert)?;
    store.record_source_file(&SourceFile {
        name,
        digest,
        modified_at: modified,
        outcome: outcome.into(),
        moved_to,
        at: crate::store::now(),
        message: Some(reason.to_owned()),
    })?;
    Ok(())
}

/// Archives a file that was applied (or had the content of the last one) and records it;
/// when it cannot be archived it is passed over with an alert.
fn archive_and_record(
    store: &Store,
    folder: &mut DropFolder,
    file: &Path,
    digest: &str,
    outcome: &str,
) -> Result<Option<PathBuf>, SyncError> {
    let name = dropfolder::display_name(file);
    let modified = modified_at(file);
    let (moved_to, message) = match folder.archive(file) {
        Ok(to) => (Some(to), None),
        Err(e) => {
            folder.skip(file);
            let m = format!(
                "applied, but it cannot be moved to archive/ ({e}): passed over until it changes"
            );
            tracing::error!(file = %file.display(), error = %e, "file applied but cannot be archived: passed over until it changes");
            store.alert(&name, &m)?;
            (None, Some(m))
        }
    };
    store.record_source_file(&SourceFile {
        name,
        digest: Some(digest.to_owned()),
        modified_at: modified,
        outcome: outcome.into(),
        moved_to: moved_to.as_ref().map(|p| p.display().to_string()),
        at: crate::store::now(),
        message,
    })?;
    Ok(moved_to)
}

/// Moves symbolic links and other entries that are not regular files to `rejected/` (they are
/// never followed or read), with an alert; the daemon does this on every wake-up.
pub fn set_aside_strays(store: &Store, folder: &mut DropFolder) -> Result<(), SyncError> {
    for stray in folder.strays() {
        let kind = match std::fs::symlink_metadata(&stray) {
            Ok(m) if m.file_type().is_symlink() => "a symbolic link",
            _ => "not a regular file",
        };
        let reason = format!("{kind}: never followed or read; drop the file itself");
        set_aside(store, folder, &stray, &reason, None)?;
    }
    Ok(())
}

/// Why `file` must not be applied after `last`: it is older (by modification time).
fn older_than_last(store: &Store, file: &Path) -> Result<Option<String>, SyncError> {
    let Some(last) = store.last_processed_file()? else {
        return Ok(None);
    };
    let (Some(this), Some(then)) = (modified_at(file), last.modified_at.as_deref()) else {
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
    let Input::Folder(folder) = input else {
        return sync::run_cycle(cfg, store, client, cancel)
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
        let result = sync::run_cycle(&with_file(cfg, &file), store, client, cancel).await;
        match &result {
            Err(SyncError::Source(e)) => {
                set_aside(store, folder, &file, &e.to_string(), Some(digest))?;
            }
            Ok(r) if r.outcome != sync::Outcome::Interrupted => {
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
        Some(current) => sync::run_cycle(&with_file(cfg, &current.path), store, client, cancel)
            .await
            .map(|r| Ran::Cycle(r, None)),
        None => Ok(Ran::NoSource),
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
        let digest = current_source_digest(cfg, store, input);
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
