//! Sources of desired users: each reads raw records and hands them to [`crate::validate`].
//!
//! [`open`] is the one entry point for every kind: it receives `[source]` and what earlier
//! cycles left (the SCIM watermarks, as plain data), and answers with the records (a CSV
//! streamed, the other kinds read whole), whether the read was complete, what it read, and its
//! digest. A source either yields every record it holds or fails with a [`SourceError`]; on
//! such an error the caller fails the whole cycle and changes nothing in Concur.
//!
//! One digest per kind ([`file_digest`], [`records_digest`]): a file source (CSV, LDIF) is
//! known by its bytes, so that the cycle history, `approve` and the drop folder compare the same
//! thing; a live read (LDAP, SCIM) by the content of its records.

pub mod csv;
pub mod dropfolder;
pub mod ldap;
pub mod ldap_filter;
pub mod ldap_map;
pub mod ldif;
pub mod scim;
pub mod scim_push;

use std::io;
use std::path::Path;

use crate::config::{ConfigError, SourceConfig, SourceKind};
use crate::model::{ScimReadMark, ScimWatermarks};
use csv::{CsvOptions, CsvReader, RowIssue};

/// Why a source as a whole cannot be used. Every message names the file (and the line where
/// one applies).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{file}: cannot open: {error}")]
    Open {
        file: String,
        #[source]
        error: io::Error,
    },
    #[error("{file}:{line}: cannot read: {error}")]
    Read {
        file: String,
        line: u64,
        #[source]
        error: io::Error,
    },
    #[error("{file}:{line}: not UTF-8 text (column {column}); save the file as UTF-8")]
    NotUtf8 {
        file: String,
        line: u64,
        column: String,
    },
    #[error("{file}:{line}: binary content (NUL byte): not a text file")]
    Binary { file: String, line: u64 },
    #[error("{file}: empty: no header row")]
    Empty { file: String },
    #[error("{file}:{line}: malformed CSV: {reason}")]
    Malformed {
        file: String,
        line: u64,
        reason: String,
    },
    #[error("{file}:{line}: missing mandatory column {column} (the header has: {found})")]
    MissingColumn {
        file: String,
        line: u64,
        column: &'static str,
        found: String,
    },
    #[error("{file}:{line}: column {name} appears twice (columns {first} and {second})")]
    DuplicateColumn {
        file: String,
        line: u64,
        name: String,
        first: usize,
        second: usize,
    },
    #[error(
        "{file}: [source.csv.columns] maps {header:?} to {target:?}, which is not a canonical \
         field name"
    )]
    UnknownMapping {
        file: String,
        header: String,
        target: String,
    },
    #[error("{file}: [source.csv] delimiter {delimiter:?} cannot separate fields")]
    BadDelimiter { file: String, delimiter: char },
    #[error("{file}:{line}: malformed LDIF: {reason}")]
    Ldif {
        file: String,
        line: u64,
        reason: String,
    },
    #[error("LDAP {url}: {message}")]
    Ldap { url: String, message: String },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("SCIM {0}")]
    Scim(scim::ScimError),
    /// The pushed directory (`scim_push`) cannot be read.
    #[error("SCIM push: {0}")]
    ScimPush(String),
    /// A drop-folder file that is not applied (older than the last processed one, a link).
    #[error("{file}: {reason}")]
    SetAside { file: String, reason: String },
}

/// One item a source hands to the planner: a raw record to normalize, or a record the source
/// itself could not use.
#[derive(Debug)]
pub enum SourceItem {
    Record(crate::model::RawRecord),
    Rejected(crate::model::Rejection),
}

/// What earlier cycles left for a read, kept by the caller (the state database). The default
/// knows nothing: a SCIM source then reads in full.
#[derive(Debug, Clone, Default)]
pub struct Prior {
    /// The SCIM watermarks in force: between full reads, a delta read asks only for the users
    /// changed since `delta_since`.
    pub watermarks: ScimWatermarks,
    /// No user has been acknowledged yet (a delta read would leave everyone out).
    pub snapshot_empty: bool,
}

/// An opened source: what a cycle plans from.
pub struct Opened {
    pub records: Records,
    /// True when this is a full read of every user the source holds. Only complete reads may
    /// lead to deactivations of users missing from them (a delta read is never complete).
    pub complete: bool,
    /// What was read, for logs and the cycle history (a path, a URL with base DN, …).
    pub label: String,
    /// The digest of what was read: the file's bytes ([`file_digest`]) or the records' content
    /// ([`records_digest`]). Equal digests, same source.
    pub digest: String,
    /// A SCIM read: the watermark it stands for, to record for the cycle that planned from it.
    pub watermark: Option<ScimReadMark>,
}

/// A source's records: streamed from a CSV file, or read whole.
pub enum Records {
    /// A CSV file, row by row (the cycle parses it on a second thread while it plans).
    Csv(Box<CsvReader>),
    /// Every item of an LDIF file or a directory service, in a stable order.
    Items(Vec<SourceItem>),
}

impl IntoIterator for Records {
    type Item = Result<SourceItem, SourceError>;
    type IntoIter = RecordsIter;

    /// Every item in order; a CSV file that turns out unusable ends with its error.
    fn into_iter(self) -> RecordsIter {
        match self {
            Records::Csv(r) => RecordsIter::Csv(r),
            Records::Items(items) => RecordsIter::Items(items.into_iter()),
        }
    }
}

/// The items of [`Records`], one at a time.
pub enum RecordsIter {
    Csv(Box<CsvReader>),
    Items(std::vec::IntoIter<SourceItem>),
}

impl Iterator for RecordsIter {
    type Item = Result<SourceItem, SourceError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            RecordsIter::Csv(r) => r.next().map(|item| match item {
                Ok(raw) => Ok(SourceItem::Record(raw)),
                Err(RowIssue::Rejected(r)) => Ok(SourceItem::Rejected(r)),
                Err(RowIssue::Fatal(e)) => Err(e),
            }),
            RecordsIter::Items(items) => items.next().map(Ok),
        }
    }
}

/// How a file source is read: `[source]`'s limits, and whether the file was taken from a drop
/// folder (it is then opened without following symbolic links).
#[derive(Debug, Clone, Copy)]
pub struct FileLimits {
    pub max_record_bytes: u64,
    pub max_field_bytes: u64,
    pub no_follow: bool,
}

impl FileLimits {
    pub fn of(section: &SourceConfig) -> FileLimits {
        FileLimits {
            max_record_bytes: section.max_record_bytes,
            max_field_bytes: section.max_field_bytes,
            no_follow: section.in_drop_folder,
        }
    }
}

/// Opens the source `[source]` configures, whatever its kind. A CSV file is only opened here
/// (its rows stream as the caller iterates); the other kinds are read whole.
pub async fn open(section: &SourceConfig, prior: &Prior) -> Result<Opened, SourceError> {
    match section.kind {
        SourceKind::Csv => {
            let path = &section.path;
            let digest = file_digest(path, section.in_drop_folder)?;
            let reader = CsvReader::open(path, &CsvOptions::from_config(section)?)?;
            Ok(Opened {
                records: Records::Csv(Box::new(reader)),
                complete: true,
                label: path.display().to_string(),
                digest,
                watermark: None,
            })
        }
        SourceKind::Ldif => ldif::read(&section.path, &section.ldap, FileLimits::of(section)),
        SourceKind::Ldap => ldap::read(&section.ldap).await,
        SourceKind::Scim => scim::read(&section.scim, prior).await,
        SourceKind::ScimPush => scim_push::read(&section.scim_push),
    }
}

/// Why `[source]` has nothing to read yet, if so: a SCIM endpoint no identity provider has
/// pushed a user to. A cycle then has nothing to do (like a drop folder with no file yet):
/// it is not run, rather than failing until the first push.
pub fn nothing_to_read_yet(section: &SourceConfig) -> Result<Option<String>, SourceError> {
    match section.kind {
        SourceKind::ScimPush => scim_push::nothing_pushed_yet(&section.scim_push),
        SourceKind::Csv | SourceKind::Ldif | SourceKind::Ldap | SourceKind::Scim => Ok(None),
    }
}

/// What a cycle over `[source]` reads, for the cycle history (before it is read).
pub fn history_label(section: &SourceConfig) -> String {
    match section.kind {
        SourceKind::Csv | SourceKind::Ldif => section.path.display().to_string(),
        SourceKind::Ldap => format!("{} {}", section.ldap.url, section.ldap.base_dn),
        SourceKind::Scim => section.scim.url.clone(),
        SourceKind::ScimPush => scim_push::history_label(&section.scim_push),
    }
}

/// The digest a cycle reading `[source]` now would record, when it can be told without a
/// read: a file's ([`file_digest`]). `None` for directory services, whose content only a read
/// tells.
pub fn current_digest(section: &SourceConfig) -> Option<Result<String, SourceError>> {
    match section.kind {
        SourceKind::Csv | SourceKind::Ldif => {
            Some(file_digest(&section.path, section.in_drop_folder))
        }
        SourceKind::Ldap | SourceKind::Scim | SourceKind::ScimPush => None,
    }
}

/// The digest of a file source (CSV, LDIF): BLAKE3 of the file's bytes, in hex. With
/// `no_follow`, a symbolic link is refused.
pub fn file_digest(path: &Path, no_follow: bool) -> Result<String, SourceError> {
    let mut h = blake3::Hasher::new();
    let file = csv::open_file(path, no_follow).map_err(|error| SourceError::Open {
        file: path.display().to_string(),
        error,
    })?;
    h.update_reader(io::BufReader::with_capacity(1 << 20, file))
        .map_err(|error| SourceError::Read {
            file: path.display().to_string(),
            line: 0,
            error,
        })?;
    Ok(h.finalize().to_hex().to_string())
}

/// [`file_digest`] of a file already read whole.
fn bytes_digest(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// The digest of a live read (LDAP, SCIM): BLAKE3 over every item in read order, each value
/// length-prefixed so that no two different reads hash alike. Secret values (passwords) are
/// left out, always: the digest is kept in the cycle history.
pub fn records_digest(items: &[SourceItem]) -> String {
    let mut h = blake3::Hasher::new();
    let mut text = |s: &str| {
        h.update(&(s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    };
    for item in items {
        match item {
            SourceItem::Record(r) => {
                text("record");
                text(&r.origin);
                text(&r.values.len().to_string());
                for (field, value) in &r.values {
                    text(field.name());
                    text(value);
                }
                if let Some(previous) = &r.previous_employee_id {
                    text("previous_employee_id");
                    text(previous);
                }
            }
            SourceItem::Rejected(r) => {
                text("rejected");
                text(&r.source);
                text(r.employee_id.as_deref().unwrap_or(""));
                text(&r.field);
                text(&r.message);
            }
        }
    }
    h.finalize().to_hex().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::model::{Field, RawRecord, Rejection, Secret};

    fn section(kind: &str, path: &Path) -> SourceConfig {
        Config::from_toml(&format!(
            "[source]\nkind = \"{kind}\"\npath = {:?}\n[concur]\nclient_id = \"i\"\n\
             company_uuid = \"8c4b5f3e-1d2a-4e6b-9f70-0a1b2c3d4e5f\"\n\
             client_secret = \"s\"\ncompany_id = \"c\"\nrequest_token = \"t\"\n",
            path.display().to_string()
        ))
        .unwrap()
        .source
    }

    #[tokio::test]
    async fn a_file_source_is_known_by_its_bytes_whatever_its_kind() {
        let dir = tempfile::tempdir().unwrap();
        let ldif = dir.path().join("people.ldif");
        std::fs::write(
            &ldif,
            "dn: uid=a,dc=x\nobjectClass: inetOrgPerson\nemployeeNumber: E1\nmail: a@x.com\n\n\
             dn: uid=b,dc=x\nobjectClass: inetOrgPerson\nemployeeNumber: E2\nmail: b@x.com\n",
        )
        .unwrap();
        let csv = dir.path().join("hr.csv");
        std::fs::write(&csv, "employee_id,login_id\nE1,a@x.com\n").unwrap();
        for path in [&ldif, &csv] {
            let kind = if path == &ldif { "ldif" } else { "csv" };
            let section = section(kind, path);
            let opened = open(&section, &Prior::default()).await.unwrap();
            let bytes = file_digest(path, false).unwrap();
            assert_eq!(opened.digest, bytes, "{kind}");
            assert_eq!(current_digest(&section).unwrap().unwrap(), bytes, "{kind}");
            assert!(opened.complete && opened.watermark.is_none(), "{kind}");
            let items: Vec<SourceItem> = opened.records.into_iter().map(Result::unwrap).collect();
            assert_eq!(items.len(), if kind == "ldif" { 2 } else { 1 }, "{kind}");
        }
        let mut section = section("ldif", &ldif);
        section.kind = SourceKind::Ldap;
        assert!(
            current_digest(&section).is_none(),
            "a directory is known only by a read"
        );
    }

    #[test]
    fn a_live_read_is_known_by_its_content_never_by_a_secret() {
        let record = |last: &str, password: &str| {
            SourceItem::Record(RawRecord {
                origin: "uid=a,dc=x".into(),
                values: vec![
                    (Field::EMPLOYEE_ID, "E1".into()),
                    (Field::LAST_NAME, last.into()),
                ],
                password: Some(Secret::new(password)),
                previous_employee_id: None,
            })
        };
        let rejected = SourceItem::Rejected(Rejection {
            source: "uid=b,dc=x".into(),
            employee_id: None,
            identity: Default::default(),
            field: "employee_id".into(),
            message: "no employeeNumber".into(),
        });
        let digest = |items: &[SourceItem]| records_digest(items);
        let base = digest(&[record("Lee", "pw-1")]);
        assert_eq!(
            base,
            digest(&[record("Lee", "pw-2")]),
            "secrets are left out"
        );
        assert_ne!(base, digest(&[record("Li", "pw-1")]));
        assert_ne!(base, digest(&[record("Lee", "pw-1"), rejected]));
        // Values are length-prefixed: moving text from one value to the next changes it.
        assert_ne!(digest(&[record("Lee", "")]), digest(&[record("Le", "")]));
    }
}
