//! Sources of desired users: each reads raw records and hands them to [`crate::validate`].
//!
//! A source either yields every record it holds or fails with a [`SourceError`]; on such an
//! error the caller fails the whole cycle and changes nothing in Concur.

pub mod csv;
pub mod dropfolder;
pub mod ldap;
pub mod ldap_filter;
pub mod ldap_map;
pub mod ldif;
pub mod scim;

use std::io;

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
    Mapping(#[from] ldap_map::MappingError),
    #[error("source kind {kind}: {message}")]
    Unsupported { kind: String, message: String },
    #[error("SCIM {0}")]
    Scim(scim::ScimError),
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

/// What a non-streaming source (LDIF, LDAP, SCIM) read.
#[derive(Debug, Default)]
pub struct SourceRead {
    pub items: Vec<SourceItem>,
    /// True when this was a full read of every user the source holds. Only complete reads may
    /// lead to deactivations of users missing from them (a delta read is never complete).
    pub complete: bool,
    /// What was read, for logs and the cycle history (a path, a URL with base DN, …).
    pub label: String,
}

/// Reads a non-streaming source (every kind but `csv`, which the planner streams).
pub async fn read(
    cfg: &crate::config::Config,
    store: &crate::store::Store,
) -> Result<SourceRead, SourceError> {
    use crate::config::SourceKind;
    match cfg.source.kind {
        SourceKind::Ldif => ldif::read(cfg),
        SourceKind::Ldap => ldap::read(cfg).await,
        SourceKind::Scim => scim::read(cfg, store).await,
        SourceKind::Csv => Err(SourceError::Unsupported {
            kind: "csv".into(),
            message: "CSV files are streamed, not read whole".into(),
        }),
    }
}
