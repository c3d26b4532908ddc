//! Which attendee file a run reads. `attendees.source.path` is one file, or a drop folder that
//! follows the user source's protocol (`source::dropfolder`): complete files only, oldest
//! first; a file applied moves to `archive/`, one that cannot be used to `rejected/` beside its
//! reason; symbolic links are never followed. While no new file waits, the current list is the
//! last file processed, as the state database recorded it (never a name guessed from
//! `archive/`). Each file taken and what became of it is recorded (`source_files`, job
//! `attendees`); problems are raised as alerts.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::config::AttendeeSourceConfig;
use crate::error::SyncError;
use crate::source::SourceError;
use crate::source::dropfolder::{self, DropFolder, Handled};
use crate::store::files::SourceFile;
use crate::store::{Store, StoreError};

/// Where the attendee list comes from.
pub enum Input {
    File(PathBuf),
    Folder(DropFolder),
}

/// The file a run reads.
#[derive(Debug)]
pub struct Taken {
    pub path: PathBuf,
    /// A drop-folder file: opened without following links.
    pub no_follow: bool,
    /// A new file from the drop folder (put away after the run): its digest, and whether it
    /// repeats the content of the last file processed.
    new: Option<(String, bool)>,
}

impl Input {
    pub fn new(cfg: &AttendeeSourceConfig) -> Input {
        if dropfolder::is_folder(&cfg.path) {
            Input::Folder(DropFolder::new(
                &cfg.path,
                cfg.settle_seconds,
                cfg.archive_days,
            ))
        } else {
            Input::File(cfg.path.clone())
        }
    }

    /// The file to read now. A folder first sets aside its links and the files that cannot be
    /// taken (older than the last one processed, unreadable); with no new file it gives the
    /// current one, and with neither the run cannot read anything.
    pub fn take(&mut self, store: &Store) -> Result<Taken, SyncError> {
        let folder = match self {
            Input::File(path) => {
                return Ok(Taken {
                    path: path.clone(),
                    no_follow: false,
                    new: None,
                });
            }
            Input::Folder(folder) => folder,
        };
        let shown = dropfolder::display_name(folder.dir());
        if let Err(e) = folder.prepare() {
            let reason = e.to_string();
            store.alert(&shown, &reason)?;
            return Err(SourceError::SetAside {
                file: folder.dir().display().to_string(),
                reason,
            }
            .into());
        }
        for stray in folder.strays() {
            let reason = dropfolder::stray_reason(&stray);
            set_aside(store, folder, &stray, &reason, None)?;
        }
        let last = store.last_processed_attendee_file()?;
        while let Some(file) = folder.next_ready(SystemTime::now()) {
            if let Some(last) = &last
                && let Some(then) = &last.modified_at
                && let Some(this) = dropfolder::older_than(&file, then)
            {
                let reason = format!(
                    "modified {this}, older than the last processed file {} (modified {then}, processed {}): not applied; to apply it anyway, give it a fresh modification time (touch it) and drop it again",
                    last.name, last.at
                );
                set_aside(store, folder, &file, &reason, None)?;
                continue;
            }
            match dropfolder::digest(&file) {
                Ok(digest) => {
                    let duplicate = last
                        .as_ref()
                        .is_some_and(|l| l.digest.as_deref() == Some(digest.as_str()));
                    tracing::info!(file = %file.display(), "taking attendee file from the drop folder");
                    return Ok(Taken {
                        path: file,
                        no_follow: true,
                        new: Some((digest, duplicate)),
                    });
                }
                Err(e) => {
                    let reason = format!("{}: cannot read: {e}", dropfolder::display_name(&file));
                    set_aside(store, folder, &file, &reason, None)?;
                }
            }
        }
        let current = last.and_then(|l| Some((l.moved_to.clone()?, l)));
        let Some((path, last)) = current else {
            return Err(SourceError::Open {
                file: folder.dir().display().to_string(),
                error: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "the drop folder holds no complete file and none was processed yet",
                ),
            }
            .into());
        };
        let path = PathBuf::from(path);
        let problem = if !folder.is_archived_file(&path) {
            Some("is gone from archive/")
        } else if dropfolder::digest(&path).ok() != last.digest {
            Some("changed after it was archived")
        } else {
            None
        };
        if let Some(problem) = problem {
            let reason = format!(
                "the last processed file {} {problem}: no current attendee list until a new file is dropped",
                path.display()
            );
            store.alert(&last.name, &reason)?;
            return Err(SourceError::SetAside {
                file: last.name,
                reason,
            }
            .into());
        }
        Ok(Taken {
            path,
            no_follow: true,
            new: None,
        })
    }

    /// After the run: a new file that was applied goes to `archive/` (archived files past
    /// `archive_days` are pruned), one that could not be read to `rejected/`; one the run could
    /// not finish for other reasons (Concur unreachable) stays for the next run.
    pub fn put_away<T>(
        &mut self,
        store: &Store,
        taken: &Taken,
        result: &Result<T, SyncError>,
    ) -> Result<(), SyncError> {
        let (Input::Folder(folder), Some((digest, duplicate))) = (self, &taken.new) else {
            return Ok(());
        };
        let file = &taken.path;
        match result {
            Err(SyncError::Source(e)) => {
                set_aside(store, folder, file, &e.to_string(), Some(digest.clone()))?;
            }
            Err(_) => {}
            Ok(_) => {
                let outcome = if *duplicate { "duplicate" } else { "processed" };
                let handled = put_away_recorded(
                    store,
                    Store::record_attendee_file,
                    folder,
                    file,
                    digest,
                    outcome,
                )?;
                if let Some(to) = &handled.moved_to {
                    tracing::info!(file = %file.display(), archived = %to.display(), outcome, "attendee file put away");
                } else {
                    tracing::error!(file = %file.display(), "attendee file applied but cannot be archived: passed over until it changes");
                }
                let pruned = match &handled.moved_to {
                    Some(current) if !duplicate => folder.prune(SystemTime::now(), Some(current)),
                    _ => 0,
                };
                if pruned > 0 {
                    tracing::info!(
                        removed = pruned,
                        "removed archived attendee files past attendees.source.archive_days"
                    );
                }
            }
        }
        Ok(())
    }
}

/// Sets aside a file that cannot be used and records it.
fn set_aside(
    store: &Store,
    folder: &mut DropFolder,
    file: &Path,
    reason: &str,
    digest: Option<String>,
) -> Result<(), SyncError> {
    let handled = set_aside_recorded(
        store,
        Store::record_attendee_file,
        folder,
        file,
        reason,
        digest,
    )?;
    tracing::error!(file = %file.display(), outcome = handled.outcome, reason = %reason, "attendee file not applied");
    Ok(())
}

/// Where a drop folder's file history goes: the users' (`Store::record_source_file`) or the
/// attendee job's (`Store::record_attendee_file`).
pub(crate) type FileHistory = fn(&Store, &SourceFile) -> Result<(), StoreError>;

/// Sets aside a file that cannot be used (`DropFolder::set_aside`: to `rejected/`, or passed
/// over) and records it with its reason and alert.
pub(crate) fn set_aside_recorded(
    store: &Store,
    save: FileHistory,
    folder: &mut DropFolder,
    file: &Path,
    reason: &str,
    digest: Option<String>,
) -> Result<Handled, SyncError> {
    let modified = dropfolder::modified_at(file);
    let handled = folder.set_aside(file, reason);
    let message = Some(reason.to_owned());
    record(store, save, file, digest, modified, &handled, message)?;
    Ok(handled)
}

/// Puts away a file that was applied or repeated the last one (`DropFolder::put_away`: to
/// `archive/`, or passed over) and records it, with an alert when it could not be archived.
pub(crate) fn put_away_recorded(
    store: &Store,
    save: FileHistory,
    folder: &mut DropFolder,
    file: &Path,
    digest: &str,
    outcome: &'static str,
) -> Result<Handled, SyncError> {
    let modified = dropfolder::modified_at(file);
    let handled = folder.put_away(file, outcome);
    let digest = Some(digest.to_owned());
    record(
        store,
        save,
        file,
        digest,
        modified,
        &handled,
        handled.alert.clone(),
    )?;
    Ok(handled)
}

/// Records what became of a drop-folder file and raises its alert.
fn record(
    store: &Store,
    save: FileHistory,
    file: &Path,
    digest: Option<String>,
    modified_at: Option<String>,
    handled: &Handled,
    message: Option<String>,
) -> Result<(), SyncError> {
    let name = dropfolder::display_name(file);
    if let Some(alert) = &handled.alert {
        store.alert(&name, alert)?;
    }
    save(
        store,
        &SourceFile {
            name,
            digest,
            modified_at,
            outcome: handled.outcome.into(),
            moved_to: handled.moved_to.as_ref().map(|p| p.display().to_string()),
            at: crate::store::now(),
            message,
        },
    )?;
    Ok(())
}
