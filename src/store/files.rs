//! The drop folders' records in the state database: which files were taken (for the user
//! source or the attendee list) and what became of them (the last processed file is read from
//! here, never guessed from names in `archive/`), the alerts an operator must see.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{Store, StoreError, now};

/// How long an alert stays in `status`, `/readyz` and the metric.
pub const ALERT_HOURS: i64 = 24;

/// One file the drop folder handed over.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SourceFile {
    /// The name it was dropped under.
    pub name: String,
    pub digest: Option<String>,
    /// Its modification time when taken (RFC 3339).
    pub modified_at: Option<String>,
    /// `processed`, `duplicate`, `rejected` or `skipped`.
    pub outcome: String,
    /// Its path under `archive/` or `rejected/`.
    pub moved_to: Option<String>,
    pub at: String,
    pub message: Option<String>,
}

/// Whose drop folder a file came from (`source_files.job`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FileJob {
    Users,
    Attendees,
}

impl FileJob {
    fn as_str(self) -> &'static str {
        match self {
            FileJob::Users => "users",
            FileJob::Attendees => "attendees",
        }
    }
}

/// A drop-folder problem an operator must see.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Alert {
    pub at: String,
    pub file: String,
    pub message: String,
}

impl Store {
    /// Records what became of a file taken from the user source's drop folder.
    pub fn record_source_file(&self, f: &SourceFile) -> Result<(), StoreError> {
        self.record_file(FileJob::Users, f)
    }

    /// The last file processed (applied and archived) for the user source, if any.
    pub fn last_processed_file(&self) -> Result<Option<SourceFile>, StoreError> {
        self.last_file(FileJob::Users)
    }

    /// Records what became of a file taken from `job`'s drop folder.
    pub(super) fn record_file(&self, job: FileJob, f: &SourceFile) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO source_files (name, digest, modified_at, outcome, moved_to, at, message, job)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                f.name,
                f.digest,
                f.modified_at,
                f.outcome,
                f.moved_to,
                f.at,
                f.message,
                job.as_str()
            ],
        )?;
        Ok(())
    }

    /// The last file processed for `job`, if any.
    pub(super) fn last_file(&self, job: FileJob) -> Result<Option<SourceFile>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT name, digest, modified_at, outcome, moved_to, at, message FROM source_files
                 WHERE outcome = 'processed' AND job = ?1 ORDER BY id DESC LIMIT 1",
                [job.as_str()],
                |r| {
                    Ok(SourceFile {
                        name: r.get(0)?,
                        digest: r.get(1)?,
                        modified_at: r.get(2)?,
                        outcome: r.get(3)?,
                        moved_to: r.get(4)?,
                        at: r.get(5)?,
                        message: r.get(6)?,
                    })
                },
            )
            .optional()?)
    }

    /// Raises (or raises again) an alert about `file`.
    pub fn alert(&self, file: &str, message: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO alerts (at, file, message) VALUES (?1, ?2, ?3)
             ON CONFLICT (file, message) DO UPDATE SET at = excluded.at",
            params![now(), file, message],
        )?;
        Ok(())
    }

    /// Alerts of the last [`ALERT_HOURS`] hours, newest first (at most 100).
    pub fn recent_alerts(&self) -> Result<Vec<Alert>, StoreError> {
        let since = (chrono::Utc::now() - chrono::Duration::hours(ALERT_HOURS))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut stmt = self.conn.prepare(
            "SELECT at, file, message FROM alerts WHERE at >= ?1 ORDER BY at DESC, id DESC LIMIT 100",
        )?;
        Ok(stmt
            .query_map([since], |r| {
                Ok(Alert {
                    at: r.get(0)?,
                    file: r.get(1)?,
                    message: r.get(2)?,
                })
            })?
            .collect::<Result<_, _>>()?)
    }
}
