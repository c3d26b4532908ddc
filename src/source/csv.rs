//! The CSV reader: streams a file, one record per data row, holding one row in memory at a
//! time. The HR CSV of the user source and the attendee list are read by the same code; a
//! [`ColumnSet`] says which columns a header may name, which are mandatory and what a row
//! becomes (a [`RawRecord`] for users).
//!
//! The first non-blank row is the header. Header names are trimmed and matched case-insensitively,
//! first against the configured mapping (`[source.csv.columns]`: file header → canonical name),
//! then against the canonical names. Unknown columns are ignored and listed by
//! [`CsvFile::unknown_columns`]. A byte-order mark, CRLF line ends and blank lines are accepted;
//! records are bounded while streaming (`bounds`), and what makes a whole file unusable is
//! decided in one place (`structure`): such a file fails before anything is applied.

mod bounds;
pub mod chunks;
mod records;
mod structure;
#[cfg(test)]
mod tests;

use super::SourceError;
use crate::config::{ConfigError, SourceConfig};
use crate::model::{Field, Origin, PASSWORD_COLUMN, RawRecord, Rejection, RowIdentity, Secret};
use crate::validate::{PREVIOUS_EMPLOYEE_ID, is_space};
use bounds::Tracked;
use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// `[source.csv]` settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsvOptions {
    /// Field separator; `b','` by default.
    pub delimiter: u8,
    /// File header name → canonical name (`[source.csv.columns]`).
    pub columns: BTreeMap<String, String>,
    /// Longest record in bytes (`source.max_record_bytes`); a longer one fails the file,
    /// checked while reading so that memory stays bounded.
    pub max_record_bytes: u64,
    /// Longest field in bytes (`source.max_field_bytes`); a longer one rejects its row.
    pub max_field_bytes: u64,
    /// Refuse to open the file through a symbolic link (drop-folder files).
    pub no_follow: bool,
}

pub use crate::config::{DEFAULT_MAX_FIELD_BYTES, DEFAULT_MAX_RECORD_BYTES};

impl CsvOptions {
    /// The options `[source]` and `[source.csv]` give: delimiter, column mapping, size limits.
    pub fn from_config(cfg: &SourceConfig) -> Result<CsvOptions, ConfigError> {
        Ok(CsvOptions {
            delimiter: cfg.delimiter()?,
            columns: cfg.csv.columns.clone(),
            max_record_bytes: cfg.max_record_bytes,
            max_field_bytes: cfg.max_field_bytes,
            no_follow: cfg.in_drop_folder,
        })
    }
}

impl Default for CsvOptions {
    fn default() -> CsvOptions {
        CsvOptions {
            delimiter: b',',
            columns: BTreeMap::new(),
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            max_field_bytes: DEFAULT_MAX_FIELD_BYTES,
            no_follow: false,
        }
    }
}

/// What one kind of CSV file holds: the columns its header may name, which of them a file must
/// have, and what a row becomes. Everything else (limits, quoting, line numbers, the rules that
/// reject a row or fail the file) is the reader's, the same for every kind.
pub trait ColumnSet {
    /// What one file column feeds.
    type Column: Copy + PartialEq + 'static;
    /// What a row becomes.
    type Record;
    /// The column of an unknown or unnamed header: its values are ignored.
    const IGNORED: Self::Column;
    /// Columns every file must have, in the order they are checked.
    const REQUIRED: &'static [Self::Column];
    /// The column (one of [`ColumnSet::REQUIRED`]) whose value names a row in a rejection:
    /// the employee id, the attendee's external id.
    const KEY: Self::Column;
    /// A required column and a character its values carry (a login's `@`). A line inside a
    /// quoted value with an id-like key and this mark in their places looks like a row of its
    /// own (a quote left open swallowed it); without a mark only the delimiter count tells.
    const MARK: Option<(Self::Column, char)>;

    /// The column a canonical name (trimmed, lower-case) stands for.
    fn column(canonical: &str) -> Option<Self::Column>;
    /// A column's canonical name, for messages.
    fn name(column: Self::Column) -> &'static str;
    /// The identifying values among a row's values (which may be shifted in a malformed row):
    /// a rejected row still protects what they name.
    fn identity<'a>(values: impl Iterator<Item = (Self::Column, &'a str)>) -> RowIdentity;
    /// The record of a row from its non-empty, trimmed values, in file order.
    fn record<'a>(
        origin: Origin,
        values: impl Iterator<Item = (Self::Column, &'a str)>,
    ) -> Self::Record;
}

/// What an HR CSV column feeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Column {
    Field(Field),
    Password,
    PreviousEmployeeId,
    /// An unknown or unnamed column.
    Ignored,
}

/// The user source's columns: the canonical fields, the password and the previous employee id;
/// `employee_id` and `login_id` are mandatory.
#[derive(Debug)]
pub struct UserColumns;

impl ColumnSet for UserColumns {
    type Column = Column;
    type Record = RawRecord;
    const IGNORED: Column = Column::Ignored;
    const REQUIRED: &'static [Column] = &[
        Column::Field(Field::EMPLOYEE_ID),
        Column::Field(Field::LOGIN_ID),
    ];
    const KEY: Column = Column::Field(Field::EMPLOYEE_ID);
    const MARK: Option<(Column, char)> = Some((Column::Field(Field::LOGIN_ID), '@'));

    fn column(canonical: &str) -> Option<Column> {
        match canonical {
            PASSWORD_COLUMN => Some(Column::Password),
            PREVIOUS_EMPLOYEE_ID => Some(Column::PreviousEmployeeId),
            _ => Field::from_name(canonical).map(Column::Field),
        }
    }

    fn name(column: Column) -> &'static str {
        match column {
            Column::Field(f) => f.name(),
            Column::Password => PASSWORD_COLUMN,
            Column::PreviousEmployeeId => PREVIOUS_EMPLOYEE_ID,
            Column::Ignored => "",
        }
    }

    fn identity<'a>(values: impl Iterator<Item = (Column, &'a str)>) -> RowIdentity {
        RowIdentity::from_values(values.filter_map(|(col, v)| match col {
            Column::Field(f) => Some((f, v)),
            _ => None,
        }))
    }

    fn record<'a>(origin: Origin, values: impl Iterator<Item = (Column, &'a str)>) -> RawRecord {
        let mut raw = RawRecord {
            origin,
            values: Vec::with_capacity(values.size_hint().1.unwrap_or(0)),
            password: None,
            previous_employee_id: None,
        };
        for (col, v) in values {
            match col {
                Column::Field(f) => raw.values.push((f, v.to_owned())),
                Column::Password => raw.password = Some(Secret::new(v)),
                Column::PreviousEmployeeId => raw.previous_employee_id = Some(v.to_owned()),
                Column::Ignored => {}
            }
        }
        raw
    }
}

/// A problem with one row, or with the file from that row on.
#[derive(Debug)]
pub enum RowIssue {
    /// This row only (e.g. a wrong number of fields); the following rows go on.
    Rejected(Rejection),
    /// The file is unusable (e.g. invalid UTF-8, a NUL byte): stop and change nothing.
    Fatal(SourceError),
}

impl fmt::Display for RowIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RowIssue::Rejected(r) => r.fmt(f),
            RowIssue::Fatal(e) => e.fmt(f),
        }
    }
}

/// The `Rejection.field` of a row whose structure is wrong.
pub const ROW_FIELD: &str = "row";
/// A record spanning more lines than this is taken for an unclosed quote.
const MAX_RECORD_LINES: u64 = 100;
/// Longest key (employee id) carried into a rejection of a malformed row.
const REJECTION_ID_MAX_BYTES: usize = 64;

/// A streaming reader of one CSV file of the kind `S`: it holds one record in memory at a time.
pub struct CsvFile<S: ColumnSet> {
    file: String,
    path: PathBuf,
    delimiter: u8,
    rdr: csv::Reader<Tracked>,
    record: csv::StringRecord,
    headers: Vec<String>,
    columns: Vec<S::Column>,
    unknown: Vec<String>,
    /// Where [`ColumnSet::KEY`] and [`ColumnSet::MARK`] stand in the file.
    key_col: usize,
    mark: Option<(usize, char)>,
    max_field_bytes: u64,
    max_record_bytes: u64,
    no_follow: bool,
    /// Byte offset where the last record read began (before any blank lines).
    last_start: u64,
    done: bool,
}

/// The reader of the user source's HR CSV.
pub type CsvReader = CsvFile<UserColumns>;

/// Opens a source file; with `no_follow`, a symbolic link is refused instead of followed.
pub fn open_file(path: &Path, no_follow: bool) -> io::Result<File> {
    let mut o = std::fs::OpenOptions::new();
    o.read(true);
    if no_follow {
        use std::os::unix::fs::OpenOptionsExt;
        o.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let f = o.open(path)?;
    if no_follow && !f.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(f)
}

impl<S: ColumnSet> CsvFile<S> {
    /// Opens the file and reads its header row.
    pub fn open(path: &Path, opts: &CsvOptions) -> Result<CsvFile<S>, SourceError> {
        let file = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        let d = opts.delimiter;
        if matches!(d, b'"' | b'\n' | b'\r') || !d.is_ascii() || d.is_ascii_alphanumeric() {
            return Err(SourceError::BadDelimiter {
                file,
                delimiter: char::from(d),
            });
        }
        let mut mapping = Vec::with_capacity(opts.columns.len());
        for (header, target) in &opts.columns {
            let canonical = target.trim().to_lowercase();
            match S::column(&canonical) {
                Some(col) => mapping.push((header.trim().to_lowercase(), col)),
                None => {
                    return Err(SourceError::UnknownMapping {
                        file,
                        header: header.clone(),
                        target: target.clone(),
                    });
                }
            }
        }
        let inner = match open_file(path, opts.no_follow) {
            Ok(f) => f,
            Err(error) => return Err(SourceError::Open { file, error }),
        };
        let rdr = csv::ReaderBuilder::new()
            .delimiter(d)
            .has_headers(false)
            .flexible(true)
            // Only LF ends a record, so that line numbers can be counted; the CR of a CRLF
            // stays at the end of the last field, where trimming removes it.
            .terminator(csv::Terminator::Any(b'\n'))
            .buffer_capacity(64 * 1024)
            .from_reader(Tracked::new(inner, d, opts.max_record_bytes));
        let mut me = CsvFile {
            file,
            path: path.to_owned(),
            delimiter: d,
            rdr,
            record: csv::StringRecord::new(),
            headers: Vec::new(),
            columns: Vec::new(),
            unknown: Vec::new(),
            key_col: 0,
            mark: None,
            max_field_bytes: opts.max_field_bytes.max(1),
            max_record_bytes: opts.max_record_bytes.max(1),
            no_follow: opts.no_follow,
            last_start: 0,
            done: false,
        };
        let Some(line) = me.read_next()? else {
            me.check_tail()?;
            return Err(SourceError::Empty { file: me.file });
        };
        me.read_header(line, &mapping)?;
        Ok(me)
    }

    /// The header names of the file, trimmed, in file order.
    pub fn headers(&self) -> &[String] {
        &self.headers
    }

    /// What each file column feeds, in file order.
    pub fn columns(&self) -> &[S::Column] {
        &self.columns
    }

    /// Header names that match no canonical column (their values are ignored), in file order.
    pub fn unknown_columns(&self) -> &[String] {
        &self.unknown
    }

    /// The file name used in origins and messages.
    pub fn file_name(&self) -> &str {
        &self.file
    }

    fn read_header(
        &mut self,
        line: u64,
        mapping: &[(String, S::Column)],
    ) -> Result<(), SourceError> {
        let mut lowered: Vec<String> = Vec::with_capacity(self.record.len());
        for raw in &self.record {
            let name = raw.trim_matches(is_space);
            if name.contains(['\r', '\n']) {
                return Err(self.malformed(
                    line,
                    "a header name spans lines (are lines ended by CR alone?)".to_owned(),
                ));
            }
            let key = name.to_lowercase();
            let col = if key.is_empty() {
                S::IGNORED
            } else {
                mapping
                    .iter()
                    .find(|(h, _)| *h == key)
                    .map(|&(_, c)| c)
                    .or_else(|| S::column(&key))
                    .unwrap_or(S::IGNORED)
            };
            let second = self.columns.len() + 1;
            let twice = if key.is_empty() {
                None
            } else if let Some(i) = lowered.iter().position(|h| *h == key) {
                Some((name.to_owned(), i + 1))
            } else if col != S::IGNORED
                && let Some(i) = self.columns.iter().position(|c| *c == col)
            {
                Some((S::name(col).to_owned(), i + 1))
            } else {
                None
            };
            if let Some((name, first)) = twice {
                return Err(SourceError::DuplicateColumn {
                    file: self.file.clone(),
                    line,
                    name,
                    first,
                    second,
                });
            }
            if col == S::IGNORED && !key.is_empty() {
                self.unknown.push(name.to_owned());
            }
            self.headers.push(name.to_owned());
            self.columns.push(col);
            lowered.push(key);
        }
        for &required in S::REQUIRED {
            if !self.columns.contains(&required) {
                let mut found = self.headers.iter().take(12).fold(String::new(), |acc, h| {
                    if acc.is_empty() {
                        format!("{h:?}")
                    } else {
                        format!("{acc}, {h:?}")
                    }
                });
                if self.headers.len() > 12 {
                    found.push_str(", …");
                }
                if self.headers.len() == 1 {
                    found.push_str("; is the delimiter right?");
                }
                return Err(SourceError::MissingColumn {
                    file: self.file.clone(),
                    line,
                    column: S::name(required),
                    found,
                });
            }
        }
        let at = |col: S::Column| self.columns.iter().position(|c| *c == col);
        self.key_col = at(S::KEY).unwrap_or(0);
        self.mark = S::MARK.and_then(|(col, mark)| Some((at(col)?, mark)));
        Ok(())
    }

    /// Reads the next non-blank record into `self.record` and returns the line it starts on.
    /// Checks what makes the whole file unusable: read errors, NUL bytes, invalid UTF-8 and
    /// records spanning too many lines.
    fn read_next(&mut self) -> Result<Option<u64>, SourceError> {
        loop {
            let before = self.rdr.position().clone();
            let ok = match self.rdr.read_record(&mut self.record) {
                Ok(ok) => ok,
                Err(e) => return Err(self.read_failure(e, &before)),
            };
            if !ok {
                return Ok(None);
            }
            self.last_start = before.byte();
            let bytes = self.record.as_slice().as_bytes();
            let inside = count_newlines(bytes);
            let t = self.rdr.get_ref();
            let end = self.rdr.position();
            let at_eof = t.eof && end.byte() == t.total;
            if at_eof {
                // The parser needed the end of the file to finish this record: it may have run
                // on inside an unclosed quote, so the record would be garbage.
                self.check_tail()?;
            }
            let unterminated = at_eof && t.last != b'\n';
            let line = end.line() - inside - u64::from(!unterminated);
            if bytes.contains(&0) {
                let at = bytes.iter().position(|&b| b == 0).unwrap_or(0);
                return Err(SourceError::Binary {
                    file: self.file.clone(),
                    line: line + count_newlines(&bytes[..at]),
                });
            }
            if inside > 0
                && !self.columns.is_empty()
                && let Some(e) = self.swallowed_rows(&self.record, line)
            {
                return Err(e);
            }
            if inside > MAX_RECORD_LINES {
                return Err(self.malformed(
                    line,
                    format!(
                        "a record spans {} lines; a quote is probably not closed",
                        inside + 1
                    ),
                ));
            }
            let blank = self
                .record
                .iter()
                .all(|f| f.bytes().all(|b| b.is_ascii_whitespace()));
            if !blank {
                return Ok(Some(line));
            }
        }
    }

    fn malformed(&self, line: u64, reason: String) -> SourceError {
        SourceError::Malformed {
            file: self.file.clone(),
            line,
            reason,
        }
    }

    /// Turns the current record into a record of the column set, or rejects it if its field
    /// count is wrong or a field is past the field limit.
    pub(super) fn build(&self, rec: &csv::StringRecord, line: u64) -> Result<S::Record, RowIssue> {
        let mut origin = String::with_capacity(self.file.len() + 8);
        origin.push_str(&self.file);
        origin.push(':');
        push_decimal(&mut origin, line);
        let text = |i: usize| trim(rec.get(i).unwrap_or_default());
        let values = || {
            self.columns
                .iter()
                .enumerate()
                .filter(|(_, col)| **col != S::IGNORED)
                .map(move |(i, col)| (*col, text(i)))
        };
        // A rejected row still protects what it could name: whatever stands in an
        // identifying column (the values may be shifted) counts.
        let reject = |field: String, message: String| {
            let id = text(self.key_col);
            let employee_id =
                (!id.is_empty() && id.len() <= REJECTION_ID_MAX_BYTES).then(|| id.to_owned());
            Err(RowIssue::Rejected(Rejection {
                source: origin.clone(),
                employee_id,
                field,
                message,
                identity: S::identity(values()),
            }))
        };
        if rec.len() != self.columns.len() {
            return reject(
                ROW_FIELD.to_owned(),
                format!(
                    "{} fields where the header has {}",
                    rec.len(),
                    self.columns.len()
                ),
            );
        }
        if let Some((i, f)) = rec
            .iter()
            .enumerate()
            .find(|(_, f)| f.len() as u64 > self.max_field_bytes)
        {
            let field = match self.columns[i] {
                col if col == S::IGNORED => match self.headers.get(i) {
                    Some(h) if !h.is_empty() => h.clone(),
                    _ => format!("#{}", i + 1),
                },
                col => S::name(col).to_owned(),
            };
            return reject(
                field,
                format!(
                    "{} bytes, longer than source.max_field_bytes = {}",
                    f.len(),
                    self.max_field_bytes
                ),
            );
        }
        Ok(S::record(origin, values().filter(|(_, v)| !v.is_empty())))
    }
}

/// Trims [`is_space`] characters, with a fast path for values that need no trimming.
fn trim(v: &str) -> &str {
    match (v.as_bytes().first(), v.as_bytes().last()) {
        (Some(a), Some(z)) if a.is_ascii_graphic() && z.is_ascii_graphic() => v,
        _ => v.trim_matches(is_space),
    }
}

fn count_newlines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

/// Appends `n` in decimal, without the formatting machinery (once per row).
fn push_decimal(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[i..] {
        out.push(char::from(d));
    }
}

impl<S: ColumnSet> Iterator for CsvFile<S> {
    type Item = Result<S::Record, RowIssue>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.read_next() {
            Ok(Some(line)) => Some(self.build(&self.record, line)),
            Ok(None) => {
                self.done = true;
                self.check_tail().err().map(|e| Err(RowIssue::Fatal(e)))
            }
            Err(e) => {
                self.done = true;
                Some(Err(RowIssue::Fatal(e)))
            }
        }
    }
}
