//! The drop-folder protocol: HR systems drop files into `source.path`; a file is taken only when
//! it is complete, oldest first; afterwards it moves to `archive/` (timestamped, kept
//! `source.archive_days`) or, when it could not be used, to `rejected/` beside a
//! `NAME.reason.txt`. Nothing unprocessed is ever deleted.
//!
//! Complete means: renamed into place (seen as a rename event by the watcher), announced by a
//! `NAME.done` marker, or unchanged in size and modification time for `source.settle_seconds`.
//! Names starting with `.` or ending in `.tmp`, `.part`, `.partial`, `.filepart`, `.crdownload`
//! or `.swp` are files still being written and are never taken.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub const ARCHIVE: &str = "archive";
pub const REJECTED: &str = "rejected";
const MARKER: &str = ".done";
const TEMP_SUFFIXES: &[&str] = &[
    ".tmp",
    ".part",
    ".partial",
    ".filepart",
    ".crdownload",
    ".swp",
    ".reason.txt",
];

/// A drop folder and what the watcher told us about its files.
#[derive(Debug)]
pub struct DropFolder {
    dir: PathBuf,
    settle: Duration,
    archive_days: u64,
    /// Files seen arriving by rename: complete at once.
    renamed: HashMap<PathBuf, SystemTime>,
    /// Size and mtime last seen, and since when they have been stable.
    observed: HashMap<PathBuf, (u64, SystemTime, SystemTime)>,
}

/// Is `path` a drop folder (a directory) rather than a single file?
pub fn is_folder(path: &Path) -> bool {
    path.is_dir()
}

fn is_candidate_name(name: &str) -> bool {
    !name.starts_with('.')
        && !name.ends_with(MARKER)
        && !TEMP_SUFFIXES.iter().any(|s| name.ends_with(s))
}

impl DropFolder {
    pub fn new(dir: &Path, settle_seconds: f64, archive_days: u64) -> DropFolder {
        DropFolder {
            dir: dir.to_path_buf(),
            settle: Duration::from_secs_f64(settle_seconds.max(0.0)),
            archive_days,
            renamed: HashMap::new(),
            observed: HashMap::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates `archive/` and `rejected/` if missing.
    pub fn prepare(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(self.dir.join(ARCHIVE))?;
        std::fs::create_dir_all(self.dir.join(REJECTED))
    }

    /// The watcher saw `path` arrive by rename: it is complete.
    pub fn note_renamed(&mut self, path: &Path) {
        self.renamed.insert(path.to_path_buf(), SystemTime::now());
    }

    /// Files waiting in the folder, oldest first, with whether each is complete now.
    pub fn pending(&mut self, now: SystemTime) -> Vec<(PathBuf, bool)> {
        let mut files: Vec<(SystemTime, PathBuf, u64)> = Vec::new();
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !is_candidate_name(&name) {
                continue;
            }
            let Ok(md) = e.metadata() else { continue };
            if !md.is_file() {
                continue;
            }
            let mtime = md.modified().unwrap_or(now);
            files.push((mtime, e.path(), md.len()));
        }
        files.sort();
        let present: std::collections::HashSet<PathBuf> =
            files.iter().map(|(_, p, _)| p.clone()).collect();
        self.observed.retain(|p, _| present.contains(p));
        self.renamed.retain(|p, _| present.contains(p));
        files
            .into_iter()
            .map(|(mtime, path, size)| {
                let complete = self.is_complete(&path, size, mtime, now);
                (path, complete)
            })
            .collect()
    }

    fn is_complete(&mut self, path: &Path, size: u64, mtime: SystemTime, now: SystemTime) -> bool {
        let mut marker = path.as_os_str().to_owned();
        marker.push(MARKER);
        if Path::new(&marker).exists() || self.renamed.contains_key(path) {
            return true;
        }
        // Stable since when? A file unchanged since before we started watching counts from
        // its mtime.
        let stable_since = match self.observed.get(path) {
            Some((s, m, since)) if *s == size && *m == mtime => *since,
            _ => {
                let since = mtime.min(now);
                self.observed
                    .insert(path.to_path_buf(), (size, mtime, since));
                since
            }
        };
        now.duration_since(stable_since).unwrap_or_default() >= self.settle
            && now.duration_since(mtime).unwrap_or_default() >= self.settle
    }

    /// The oldest complete file, if any; `None` also when an older file is still incomplete
    /// (files are taken strictly in order).
    pub fn next_ready(&mut self, now: SystemTime) -> Option<PathBuf> {
        match self.pending(now).into_iter().next() {
            Some((p, true)) => Some(p),
            _ => None,
        }
    }

    /// The newest archived file: what the source currently says when no new file waits.
    pub fn current(&self) -> Option<PathBuf> {
        let rd = std::fs::read_dir(self.dir.join(ARCHIVE)).ok()?;
        rd.flatten()
            .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
            .map(|e| e.path())
            .max_by(|a, b| archive_stamp(a).cmp(&archive_stamp(b)))
    }

    /// Moves a processed file to `archive/NAME.<UTC timestamp>` (and drops its marker).
    pub fn archive(&mut self, file: &Path) -> std::io::Result<PathBuf> {
        self.move_to(file, ARCHIVE)
    }

    /// Moves an unusable file to `rejected/` and writes `NAME.reason.txt` beside it.
    pub fn reject(&mut self, file: &Path, reason: &str) -> std::io::Result<PathBuf> {
        let to = self.move_to(file, REJECTED)?;
        let mut r = to.as_os_str().to_owned();
        r.push(".reason.txt");
        std::fs::write(PathBuf::from(r), format!("{reason}\n"))?;
        Ok(to)
    }

    fn move_to(&mut self, file: &Path, sub: &str) -> std::io::Result<PathBuf> {
        self.prepare()?;
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".into());
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
        let to = self.dir.join(sub).join(format!("{name}.{stamp}"));
        std::fs::rename(file, &to)?;
        let mut marker = file.as_os_str().to_owned();
        marker.push(MARKER);
        let _ = std::fs::remove_file(PathBuf::from(marker));
        self.renamed.remove(file);
        self.observed.remove(file);
        Ok(to)
    }

    /// Deletes archived files older than `archive_days` (never the newest one, which is the
    /// current source). Returns how many were removed.
    pub fn prune(&self, now: SystemTime) -> usize {
        let keep = self.current();
        let limit = Duration::from_secs(self.archive_days.saturating_mul(86_400));
        let Ok(rd) = std::fs::read_dir(self.dir.join(ARCHIVE)) else {
            return 0;
        };
        let mut removed = 0;
        for e in rd.flatten() {
            let p = e.path();
            if Some(&p) == keep.as_ref() {
                continue;
            }
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .map(|m| now.duration_since(m).unwrap_or_default() > limit)
                .unwrap_or(false);
            if old && std::fs::remove_file(&p).is_ok() {
                removed += 1;
            }
        }
        removed
    }
}

/// The timestamp suffix of an archived name (`NAME.20261123T101500.123Z`, always 20
/// characters), for ordering.
fn archive_stamp(p: &Path) -> String {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let cut = name.len().saturating_sub(20);
    name.get(cut..).unwrap_or("").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_complete_files_are_taken_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = DropFolder::new(dir.path(), 10.0, 30);
        let a = dir.path().join("a.csv");
        std::fs::write(&a, "x").unwrap();
        std::fs::write(dir.path().join(".hidden.csv"), "x").unwrap();
        std::fs::write(dir.path().join("b.csv.part"), "x").unwrap();
        let now = SystemTime::now();
        // Fresh file: not settled yet.
        assert_eq!(f.next_ready(now), None);
        // Settled after 10 s.
        assert_eq!(f.next_ready(now + Duration::from_secs(11)), Some(a.clone()));
        // A marker makes a fresh file complete at once.
        let b = dir.path().join("b.csv");
        std::fs::write(&b, "y").unwrap();
        std::fs::write(dir.path().join("b.csv.done"), "").unwrap();
        let pend = f.pending(now);
        assert_eq!(pend.len(), 2);
        assert!(pend.iter().any(|(p, c)| p == &b && *c));
        // Archive and reject.
        let archived = f.archive(&a).unwrap();
        assert!(archived.starts_with(dir.path().join(ARCHIVE)));
        assert_eq!(f.current(), Some(archived));
        let rej = f.reject(&b, "not UTF-8").unwrap();
        let mut reason = rej.as_os_str().to_owned();
        reason.push(".reason.txt");
        assert_eq!(
            std::fs::read_to_string(PathBuf::from(reason)).unwrap(),
            "not UTF-8\n"
        );
        assert!(!dir.path().join("b.csv.done").exists());
    }

    #[test]
    fn a_renamed_file_is_complete_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = DropFolder::new(dir.path(), 10.0, 30);
        let a = dir.path().join("a.csv");
        std::fs::write(&a, "x").unwrap();
        f.note_renamed(&a);
        assert_eq!(f.next_ready(SystemTime::now()), Some(a));
    }
}
