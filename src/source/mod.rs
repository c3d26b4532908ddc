//! Sources of desired users: each reads raw records and hands them to [`crate::validate`].
//!
//! A source either yields every record it holds or fails with a [`SourceError`]; on such an
//! error the caller fails the whole cycle and changes nothing in Concur.

pub mod csv;

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
}
