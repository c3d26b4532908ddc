//! What a cycle reads: the configured source as it is (`Input::Fixed`), or a drop folder
//! (`Input::Folder`) whose next complete file or current (last processed) file becomes the
//! source of one cycle. Also the previews `plan`, `check` and `baseline` take (nothing moved)
//! and the digest `approve` compares. Taking a file, archiving or setting it aside is the
//! service's business.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::config::{Config, SourceKind};
use crate::error::SyncError;
use crate::source::dropfolder::{self, DropFolder};
use crate::store::Store;
use crate::store::files::SourceFile;

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
                    modified_at: dropfolder::modified_at(&path),
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

/// The configuration for one cycle reading `file` of a drop folder.
pub fn with_file(cfg: &Config, file: &Path) -> Config {
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
