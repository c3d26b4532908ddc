//! The drop-folder protocol: HR systems drop files into `source.path`; a file is taken only when
//! it is complete, oldest first; afterwards it moves to `archive/` (timestamped, kept
//! `source.archive_days`) or, when it could not be used, to `rejected/` beside a
//! `NAME.reason.txt`. Nothing unprocessed is ever deleted.
//!
//! Complete means: renamed into place (seen as a rename event by the watcher), announced by a
//! `NAME.done` marker, or unchanged in size and modification time for `source.settle_seconds`.
//! Names starting with `.` or ending in `.tmp`, `.part`, `.partial`, `.filepart`, `.crdownload`
//! or `.swp` are files still being written and are never taken.
//!
//! Nothing here follows a symbolic link or touches anything outside the folder: entries are
//! looked at with `symlink_metadata`, files are opened with `O_NOFOLLOW`, `archive/` and
//! `rejected/` must be real directories, and archive names are built from a sanitized,
//! bounded form of the dropped name. Which archived file is current is recorded in the state
//! database, never guessed from the names in `archive/`.

use std::collections::HashMap;
use std::io;
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
/// Longest part of an archive name taken from the dropped name, in bytes.
const NAME_MAX_BYTES: usize = 100;

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
    /// Files that could be neither archived nor rejected, with the size and mtime they had:
    /// passed over (so the files behind them go on) until they change.
    skipped: HashMap<PathBuf, (u64, SystemTime)>,
}

/// What became of a file the drop folder handed over, for the state database's file history
/// and the operator's alerts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handled {
    /// `processed`, `duplicate`, `rejected` or `skipped`.
    pub outcome: &'static str,
    /// Where it went, under `archive/` or `rejected/`; `None` when it could not be moved.
    pub moved_to: Option<PathBuf>,
    /// What an operator must be told, if anything.
    pub alert: Option<String>,
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

/// The name a file was dropped under, for messages and the state database.
pub fn display_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Why a stray entry (see [`DropFolder::strays`]) is set aside.
pub fn stray_reason(path: &Path) -> String {
    let kind = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => "a symbolic link",
        _ => "not a regular file",
    };
    format!("{kind}: never followed or read; drop the file itself")
}

/// A file's modification time (the entry itself, not followed), RFC 3339.
pub fn modified_at(path: &Path) -> Option<String> {
    let m = std::fs::symlink_metadata(path).ok()?.modified().ok()?;
    Some(
        chrono::DateTime::<chrono::Utc>::from(m)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    )
}

/// A file's content digest (BLAKE3, hex), by which the state database records a file and
/// knows it again; a symbolic link is refused.
pub fn digest(path: &Path) -> io::Result<String> {
    let file = super::csv::open_file(path, true)?;
    let mut h = blake3::Hasher::new();
    h.update_reader(io::BufReader::with_capacity(1 << 20, file))?;
    Ok(h.finalize().to_hex().to_string())
}

/// The modification time of `file` when it is older than `then` (RFC 3339): a file older than
/// the last one processed is never applied after it.
pub fn older_than(file: &Path, then: &str) -> Option<String> {
    let this = modified_at(file)?;
    let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
    (parse(&this)? < parse(then)?).then_some(this)
}

/// A safe file name built from a dropped one: no path separators, control, bidi or other
/// unusual characters (each becomes `_`), no leading dot, at most [`NAME_MAX_BYTES`] bytes.
pub fn safe_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len().min(NAME_MAX_BYTES));
    for c in name.chars() {
        let ok = c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '+' | '@' | '=' | ',');
        let c = if ok { c } else { '_' };
        if out.len() + c.len_utf8() > NAME_MAX_BYTES {
            break;
        }
        out.push(c);
    }
    if out.starts_with('.') || out.is_empty() {
        out.insert(0, '_');
    }
    out
}

/// Fails unless `dir` is a real directory (not a symbolic link); creates it when missing.
fn real_dir(dir: &Path, what: &str) -> io::Result<()> {
    match std::fs::symlink_metadata(dir) {
        Ok(md) if md.is_dir() => Ok(()),
        Ok(md) => Err(io::Error::other(format!(
            "{what}/ in the drop folder is {}, not a directory: refusing to move files there",
            if md.file_type().is_symlink() {
                "a symbolic link"
            } else {
                "a file"
            }
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::create_dir(dir),
        Err(e) => Err(e),
    }
}

impl DropFolder {
    pub fn new(dir: &Path, settle_seconds: f64, archive_days: u64) -> DropFolder {
        DropFolder {
            dir: dir.to_path_buf(),
            settle: Duration::from_secs_f64(settle_seconds.max(0.0)),
            archive_days,
            renamed: HashMap::new(),
            observed: HashMap::new(),
            skipped: HashMap::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates `archive/` and `rejected/` if missing; fails if either is a symbolic link or
    /// not a directory.
    pub fn prepare(&self) -> io::Result<()> {
        real_dir(&self.dir.join(ARCHIVE), ARCHIVE)?;
        real_dir(&self.dir.join(REJECTED), REJECTED)
    }

    /// The watcher saw `path` arrive by rename: it is complete.
    pub fn note_renamed(&mut self, path: &Path) {
        self.renamed.insert(path.to_path_buf(), SystemTime::now());
    }

    /// Files waiting in the folder, oldest first, with whether each is complete now. Only
    /// regular files count: symbolic links and other entries are [`DropFolder::strays`].
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
            // Not followed: the entry itself.
            let Ok(md) = std::fs::symlink_metadata(e.path()) else {
                continue;
            };
            if !md.is_file() {
                continue;
            }
            let mtime = md.modified().unwrap_or(now);
            let path = e.path();
            if self.skipped.get(&path) == Some(&(md.len(), mtime)) {
                continue;
            }
            files.push((mtime, path, md.len()));
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

    /// Entries with a file's name that are not regular files (symbolic links, pipes, sockets,
    /// devices): never followed or read; the service moves them to `rejected/`.
    pub fn strays(&self) -> Vec<PathBuf> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out: Vec<PathBuf> = rd
            .flatten()
            .filter(|e| is_candidate_name(&e.file_name().to_string_lossy()))
            .filter(|e| {
                std::fs::symlink_metadata(e.path()).is_ok_and(|md| !md.is_file() && !md.is_dir())
            })
            .map(|e| e.path())
            .filter(|p| !self.skipped.contains_key(p))
            .collect();
        out.sort();
        out
    }

    fn is_complete(&mut self, path: &Path, size: u64, mtime: SystemTime, now: SystemTime) -> bool {
        let mut marker = path.as_os_str().to_owned();
        marker.push(MARKER);
        if std::fs::symlink_metadata(Path::new(&marker)).is_ok_and(|m| m.is_file())
            || self.renamed.contains_key(path)
        {
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

    /// Is `path` a regular file (not a link) directly inside `archive/`? Only such a file, as
    /// recorded in the state database, may be the current source.
    pub fn is_archived_file(&self, path: &Path) -> bool {
        path.parent() == Some(self.dir.join(ARCHIVE).as_path())
            && std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file())
    }

    /// Regular files in `archive/`, newest modification first.
    pub fn archived_files(&self) -> Vec<PathBuf> {
        let Ok(rd) = std::fs::read_dir(self.dir.join(ARCHIVE)) else {
            return Vec::new();
        };
        let mut files: Vec<(SystemTime, PathBuf)> = rd
            .flatten()
            .filter_map(|e| {
                let md = std::fs::symlink_metadata(e.path()).ok()?;
                md.is_file()
                    .then(|| (md.modified().unwrap_or(SystemTime::UNIX_EPOCH), e.path()))
            })
            .collect();
        files.sort();
        files.into_iter().rev().map(|(_, p)| p).collect()
    }

    /// Moves a processed file to `archive/NAME.<UTC timestamp>` (and drops its marker).
    pub fn archive(&mut self, file: &Path) -> io::Result<PathBuf> {
        self.move_to(file, ARCHIVE)
    }

    /// Moves an unusable file (or a link or other entry, never followed) to `rejected/` and
    /// writes `NAME.reason.txt` beside it.
    pub fn reject(&mut self, file: &Path, reason: &str) -> io::Result<PathBuf> {
        let to = self.move_to(file, REJECTED)?;
        let mut r = to.as_os_str().to_owned();
        r.push(".reason.txt");
        // A new file only: an entry already there (even a link) is never written through.
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(PathBuf::from(r))
            .and_then(|mut f| io::Write::write_all(&mut f, format!("{reason}\n").as_bytes()));
        if let Err(e) = written {
            tracing::warn!(file = %to.display(), error = %e, "cannot write the reason file beside a rejected file");
        }
        Ok(to)
    }

    /// Sets aside a file that cannot be used: to `rejected/` with its reason, or, when even
    /// that fails, passed over until it changes.
    pub fn set_aside(&mut self, file: &Path, reason: &str) -> Handled {
        match self.reject(file, reason) {
            Ok(to) => Handled {
                outcome: "rejected",
                moved_to: Some(to),
                alert: Some(format!("moved to rejected/: {reason}")),
            },
            Err(e) => {
                self.skip(file);
                Handled {
                    outcome: "skipped",
                    moved_to: None,
                    alert: Some(format!(
                        "{reason}; it cannot be moved to rejected/ ({e}): passed over until it changes"
                    )),
                }
            }
        }
    }

    /// Puts away a file that was applied (`processed`) or repeated the last one's content
    /// (`duplicate`): to `archive/`, or, when that fails, passed over until it changes.
    pub fn put_away(&mut self, file: &Path, outcome: &'static str) -> Handled {
        match self.archive(file) {
            Ok(to) => Handled {
                outcome,
                moved_to: Some(to),
                alert: None,
            },
            Err(e) => {
                self.skip(file);
                Handled {
                    outcome,
                    moved_to: None,
                    alert: Some(format!(
                        "applied, but it cannot be moved to archive/ ({e}): passed over until it changes"
                    )),
                }
            }
        }
    }

    /// Passes over `file` while it keeps its size and modification time: it could be neither
    /// archived nor rejected, and the files behind it must go on.
    pub fn skip(&mut self, file: &Path) {
        let key = std::fs::symlink_metadata(file)
            .map(|m| (m.len(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH)))
            .unwrap_or((0, SystemTime::UNIX_EPOCH));
        self.skipped.insert(file.to_path_buf(), key);
        self.renamed.remove(file);
        self.observed.remove(file);
    }

    fn move_to(&mut self, file: &Path, sub: &str) -> io::Result<PathBuf> {
        self.prepare()?;
        if file.parent() != Some(self.dir.as_path()) {
            return Err(io::Error::other(format!(
                "{} is not directly in the drop folder",
                file.display()
            )));
        }
        let name = safe_name(&display_name(file));
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
        let target = self.dir.join(sub);
        let mut to = target.join(format!("{name}.{stamp}"));
        let mut n = 1;
        // Never replace anything already there (rename would).
        while std::fs::symlink_metadata(&to).is_ok() {
            n += 1;
            if n > 1000 {
                return Err(io::Error::other(format!(
                    "no free name in {sub}/ for {name}"
                )));
            }
            to = target.join(format!("{name}.{stamp}-{n}"));
        }
        std::fs::rename(file, &to)?;
        let mut marker = file.as_os_str().to_owned();
        marker.push(MARKER);
        let marker = PathBuf::from(marker);
        if std::fs::symlink_metadata(&marker).is_ok() {
            let _ = std::fs::remove_file(&marker);
        }
        self.renamed.remove(file);
        self.observed.remove(file);
        self.skipped.remove(file);
        Ok(to)
    }

    /// Deletes archived files older than `archive_days`, never `keep` (the current source)
    /// and never anything but regular files directly in `archive/`. Returns how many were
    /// removed.
    pub fn prune(&self, now: SystemTime, keep: Option<&Path>) -> usize {
        let limit = Duration::from_secs(self.archive_days.saturating_mul(86_400));
        // Never through a link to somewhere else.
        if !std::fs::symlink_metadata(self.dir.join(ARCHIVE)).is_ok_and(|m| m.is_dir()) {
            return 0;
        }
        let Ok(rd) = std::fs::read_dir(self.dir.join(ARCHIVE)) else {
            return 0;
        };
        let mut removed = 0;
        for e in rd.flatten() {
            let p = e.path();
            if Some(p.as_path()) == keep {
                continue;
            }
            let Ok(md) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            let old = md.is_file()
                && md
                    .modified()
                    .map(|m| now.duration_since(m).unwrap_or_default() > limit)
                    .unwrap_or(false);
            if old && std::fs::remove_file(&p).is_ok() {
                removed += 1;
            }
        }
        removed
    }
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
        assert!(f.is_archived_file(&archived));
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
    fn handed_over_files_are_put_away_or_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = DropFolder::new(dir.path(), 0.0, 30);
        let a = dir.path().join("a.csv");
        std::fs::write(&a, "x").unwrap();
        let then = modified_at(&a).unwrap();
        assert_eq!(older_than(&a, &then), None);
        assert_eq!(older_than(&a, "2999-01-01T00:00:00Z"), Some(then));
        let h = f.put_away(&a, "processed");
        assert_eq!((h.outcome, h.alert), ("processed", None));
        assert!(f.is_archived_file(&h.moved_to.unwrap()));
        let b = dir.path().join("b.csv");
        std::fs::write(&b, "y").unwrap();
        let h = f.set_aside(&b, "not UTF-8");
        assert_eq!(h.outcome, "rejected");
        assert_eq!(h.alert.as_deref(), Some("moved to rejected/: not UTF-8"));
        // rejected/ replaced by a file: the file cannot move and is passed over.
        std::fs::remove_dir_all(dir.path().join(REJECTED)).unwrap();
        std::fs::write(dir.path().join(REJECTED), "").unwrap();
        let c = dir.path().join("c.csv");
        std::fs::write(&c, "z").unwrap();
        let h = f.set_aside(&c, "empty");
        assert_eq!((h.outcome, h.moved_to), ("skipped", None));
        assert!(h.alert.unwrap().contains("passed over until it changes"));
        assert!(c.exists());
        assert!(f.pending(SystemTime::now()).iter().all(|(p, _)| p != &c));
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

#[cfg(test)]
mod safety_tests {
    use super::*;

    #[test]
    fn archive_names_are_safe_bounded_and_unique() {
        assert_eq!(safe_name("hr-2026.csv"), "hr-2026.csv");
        assert_eq!(safe_name("../../etc/passwd"), "_.._.._etc_passwd");
        assert_eq!(safe_name("a\nb\u{1b}[1m\u{202e}.csv"), "a_b__1m_.csv");
        assert_eq!(safe_name(".hidden"), "_.hidden");
        assert_eq!(safe_name(&"é".repeat(200)).len(), NAME_MAX_BYTES);
        let dir = tempfile::tempdir().unwrap();
        let mut f = DropFolder::new(dir.path(), 0.0, 30);
        let long = "x".repeat(250);
        let a = dir.path().join(&long);
        std::fs::write(&a, "1").unwrap();
        let to = f.archive(&a).unwrap();
        assert!(to.file_name().unwrap().len() < 130, "{to:?}");
        // Two files archived within the same millisecond keep distinct names.
        let names: std::collections::HashSet<PathBuf> = (0..5)
            .map(|i| {
                let p = dir.path().join("same.csv");
                std::fs::write(&p, format!("{i}")).unwrap();
                f.archive(&p).unwrap()
            })
            .collect();
        assert_eq!(names.len(), 5);
    }

    #[test]
    fn links_are_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("secret.csv");
        std::fs::write(&secret, "employee_id,login_id\n").unwrap();
        std::os::unix::fs::symlink(&secret, dir.path().join("link.csv")).unwrap();
        let mut f = DropFolder::new(dir.path(), 0.0, 30);
        let later = SystemTime::now() + Duration::from_secs(5);
        assert_eq!(f.pending(later), vec![]);
        assert_eq!(f.strays(), vec![dir.path().join("link.csv")]);
        let to = f.reject(&dir.path().join("link.csv"), "a link").unwrap();
        assert!(
            std::fs::symlink_metadata(&to)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(secret.exists());
        // archive/ as a link to a directory outside: refused, nothing moves.
        std::fs::remove_dir(dir.path().join(ARCHIVE)).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join(ARCHIVE)).unwrap();
        let b = dir.path().join("b.csv");
        std::fs::write(&b, "x").unwrap();
        let err = f.archive(&b).unwrap_err().to_string();
        assert!(
            err.contains("archive/ in the drop folder is a symbolic link"),
            "{err}"
        );
        assert!(b.exists());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 1);
    }
}
