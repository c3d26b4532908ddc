//! The single-writer lock: an exclusive OS lock on `<state>.lock`, held for the life of a
//! `sync` or `run`. The kernel releases it when the holder dies, so a crashed process never
//! blocks the next one; the file's content names the holder for the error message. It is
//! created with mode 0600.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::StoreError;

/// Held while this process may write to Concur and the state DB.
#[derive(Debug)]
pub struct WriterLock {
    file: File,
    path: PathBuf,
}

impl WriterLock {
    /// Takes the lock beside `db`, or fails naming the process that holds it.
    pub fn acquire(db: &Path) -> Result<WriterLock, StoreError> {
        let path = super::beside(db, ".lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| StoreError::Open {
                path: path.display().to_string(),
                message: format!("cannot open the writer lock: {e}"),
            })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(StoreError::Locked(format!(
                    "another concur-sync process is writing to {}: {}",
                    db.display(),
                    if holder.is_empty() {
                        "holder unknown"
                    } else {
                        holder
                    }
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(StoreError::Open {
                    path: path.display().to_string(),
                    message: format!("cannot take the writer lock: {e}"),
                });
            }
        }
        let host = hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "unknown host".into());
        let info = format!(
            "pid {} on {} since {}\n",
            std::process::id(),
            host,
            super::now()
        );
        let _ = file.set_len(0);
        let _ = file.seek(SeekFrom::Start(0));
        let _ = file.write_all(info.as_bytes());
        let _ = file.flush();
        Ok(WriterLock { file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WriterLock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_with_the_first_named() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.db");
        let l = WriterLock::acquire(&db).unwrap();
        let err = WriterLock::acquire(&db).unwrap_err().to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(l);
        WriterLock::acquire(&db).unwrap();
    }
}
