//! The HR CSV reader: streams a file, one [`RawRecord`] per data row.
//!
//! The first non-blank row is the header. Header names are trimmed and matched case-insensitively,
//! first against `[source.csv.columns]` (file header → canonical name), then against the canonical
//! names. Unknown columns are ignored and listed by [`CsvReader::unknown_columns`].

use super::SourceError;
use crate::config::{ConfigError, SourceConfig};
use crate::model::RawRecord;
use crate::model::{Field, PASSWORD_COLUMN, Rejection, RowIdentity, Secret};
use crate::validate::{PREVIOUS_EMPLOYEE_ID, is_space};
use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
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

/// What a file column feeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Column {
    Field(Field),
    Password,
    PreviousEmployeeId,
    /// An unknown or unnamed column.
    Ignored,
}

impl Column {
    /// The column a canonical name (already trimmed and lowercased) stands for.
    fn from_canonical(name: &str) -> Option<Column> {
        match name {
            PASSWORD_COLUMN => Some(Column::Password),
            PREVIOUS_EMPLOYEE_ID => Some(Column::PreviousEmployeeId),
            _ => Field::from_name(name).map(Column::Field),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Column::Field(f) => f.name(),
            Column::Password => PASSWORD_COLUMN,
            Column::PreviousEmployeeId => PREVIOUS_EMPLOYEE_ID,
            Column::Ignored => "",
        }
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
/// Longest employee id carried into a rejection of a malformed row.
const REJECTION_ID_MAX_BYTES: usize = 64;

/// A streaming reader of one HR CSV file: it holds one record in memory at a time.
pub struct CsvReader {
    file: String,
    path: PathBuf,
    delimiter: u8,
    rdr: csv::Reader<Tracked>,
    record: csv::StringRecord,
    headers: Vec<String>,
    columns: Vec<Column>,
    unknown: Vec<String>,
    /// Number of columns feeding `RawRecord.values`.
    mapped: usize,
    employee_id_col: usize,
    login_id_col: usize,
    max_field_bytes: u64,
    no_follow: bool,
    /// Byte offset where the last record read began (before any blank lines).
    last_start: u64,
    done: bool,
}

/// The file, counting what the CSV parser pulled from it, so that the line a record starts on
/// can be told even when the last one has no line break. It also follows the quoting of what
/// it hands over and fails the read as soon as one record grows past the record limit: the
/// CSV parser grows its buffer to hold a whole record, so the limit must hold before it.
struct Tracked {
    inner: LimitedRecords<File>,
    total: u64,
    last: u8,
    eof: bool,
}

/// Follows the CSV quoting of a byte stream and measures each record against a limit.
#[derive(Debug)]
struct Limiter {
    delimiter: u8,
    max_record: u64,
    quote: Quoting,
    /// Bytes of the record being read so far, and the line it started on.
    record_bytes: u64,
    record_line: u64,
    line: u64,
    /// The record limit was passed: the next read fails with this.
    too_long: Option<RecordTooLong>,
}

/// A record longer than `source.max_record_bytes`; carried through the CSV parser as the
/// payload of an IO error.
#[derive(Debug, Clone, Copy)]
struct RecordTooLong {
    line: u64,
    limit: u64,
}

impl fmt::Display for RecordTooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a record is longer than source.max_record_bytes = {} bytes",
            self.limit
        )
    }
}

impl std::error::Error for RecordTooLong {}

impl Limiter {
    fn new(delimiter: u8, max_record: u64) -> Limiter {
        Limiter {
            delimiter,
            max_record: max_record.max(1),
            quote: Quoting::FieldStart,
            record_bytes: 0,
            record_line: 1,
            line: 1,
            too_long: None,
        }
    }

    /// The error for a read at or past the limit.
    fn error(&self) -> io::Error {
        io::Error::other(self.too_long.unwrap_or(RecordTooLong {
            line: self.record_line,
            limit: self.max_record,
        }))
    }

    /// Follows `bytes` (quote state, record length); notes the first record past the limit.
    /// The states are those of [`CsvReader::check_tail`]: a quote only opens at a field start.
    /// Returns how many bytes to hand over: up to the one past the limit.
    fn follow(&mut self, bytes: &[u8]) -> usize {
        for (i, &b) in bytes.iter().enumerate() {
            self.record_bytes += 1;
            self.quote = match self.quote {
                Quoting::FieldStart | Quoting::Unquoted if b == b'\n' => Quoting::FieldStart,
                Quoting::FieldStart | Quoting::Unquoted if b == self.delimiter => {
                    Quoting::FieldStart
                }
                Quoting::FieldStart if b == b'"' => Quoting::Quoted,
                Quoting::FieldStart | Quoting::Unquoted => Quoting::Unquoted,
                Quoting::Quoted if b == b'"' => Quoting::QuoteInQuoted,
                Quoting::Quoted => Quoting::Quoted,
                Quoting::QuoteInQuoted if b == b'"' => Quoting::Quoted,
                Quoting::QuoteInQuoted if b == b'\n' || b == self.delimiter => Quoting::FieldStart,
                Quoting::QuoteInQuoted => Quoting::Unquoted,
            };
            if b == b'\n' {
                self.line += 1;
                if self.quote == Quoting::FieldStart {
                    self.record_bytes = 0;
                    self.record_line = self.line;
                    continue;
                }
            }
            if self.record_bytes > self.max_record {
                self.too_long = Some(RecordTooLong {
                    line: self.record_line,
                    limit: self.max_record,
                });
                return i;
            }
        }
        bytes.len()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Quoting {
    FieldStart,
    Unquoted,
    Quoted,
    QuoteInQuoted,
}

/// A reader that fails (with an IO error carrying the line) as soon as one CSV record grows
/// past `max_record` bytes: for CSV readers other than [`CsvReader`], such as the attendees'.
pub struct LimitedRecords<R> {
    inner: R,
    limit: Limiter,
}

impl<R: Read> LimitedRecords<R> {
    pub fn new(inner: R, delimiter: u8, max_record: u64) -> LimitedRecords<R> {
        LimitedRecords {
            inner,
            limit: Limiter::new(delimiter, max_record),
        }
    }
}

impl<R: Read> Read for LimitedRecords<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.limit.too_long.is_some() {
            return Err(self.limit.error());
        }
        let read = self.inner.read(buf)?;
        let n = self.limit.follow(&buf[..read]);
        if n == 0 && read > 0 {
            return Err(self.limit.error());
        }
        Ok(n)
    }
}

impl Read for Tracked {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // The file fails at the record past the limit: what follows it is never handed over.
        let n = self.inner.read(buf)?;
        match buf[..n].last() {
            Some(&b) => {
                self.total += n as u64;
                self.last = b;
            }
            None => self.eof = !buf.is_empty(),
        }
        Ok(n)
    }
}

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

impl CsvReader {
    /// Opens the file and reads its header row.
    pub fn open(path: &Path, opts: &CsvOptions) -> Result<CsvReader, SourceError> {
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
            match Column::from_canonical(&canonical) {
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
            .from_reader(Tracked {
                inner: LimitedRecords::new(inner, d, opts.max_record_bytes),
                total: 0,
                last: 0,
                eof: false,
            });
        let mut me = CsvReader {
            file,
            path: path.to_owned(),
            delimiter: d,
            rdr,
            record: csv::StringRecord::new(),
            headers: Vec::new(),
            columns: Vec::new(),
            unknown: Vec::new(),
            mapped: 0,
            employee_id_col: 0,
            login_id_col: 0,
            max_field_bytes: opts.max_field_bytes.max(1),
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
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// Header names that match no canonical field (their values are ignored), in file order.
    pub fn unknown_columns(&self) -> &[String] {
        &self.unknown
    }

    /// The file name used in origins and messages.
    pub fn file_name(&self) -> &str {
        &self.file
    }

    fn read_header(&mut self, line: u64, mapping: &[(String, Column)]) -> Result<(), SourceError> {
        let mut lowered: Vec<String> = Vec::with_capacity(self.record.len());
        for raw in self.record.iter() {
            let name = raw.trim_matches(is_space);
            if name.contains(['\r', '\n']) {
                return Err(self.malformed(
                    line,
                    "a header name spans lines (are lines ended by CR alone?)".to_owned(),
                ));
            }
            let key = name.to_lowercase();
            let col = if key.is_empty() {
                Column::Ignored
            } else {
                mapping
                    .iter()
                    .find(|(h, _)| *h == key)
                    .map(|&(_, c)| c)
                    .or_else(|| Column::from_canonical(&key))
                    .unwrap_or(Column::Ignored)
            };
            let second = self.columns.len() + 1;
            let twice = if key.is_empty() {
                None
            } else if let Some(i) = lowered.iter().position(|h| *h == key) {
                Some((name.to_owned(), i + 1))
            } else if col != Column::Ignored
                && let Some(i) = self.columns.iter().position(|c| *c == col)
            {
                Some((col.name().to_owned(), i + 1))
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
            if col == Column::Ignored && !key.is_empty() {
                self.unknown.push(name.to_owned());
            }
            if matches!(col, Column::Field(_)) {
                self.mapped += 1;
            }
            self.headers.push(name.to_owned());
            self.columns.push(col);
            lowered.push(key);
        }
        for required in [Field::EMPLOYEE_ID, Field::LOGIN_ID] {
            match self
                .columns
                .iter()
                .position(|c| *c == Column::Field(required))
            {
                Some(i) if required == Field::EMPLOYEE_ID => self.employee_id_col = i,
                Some(i) => self.login_id_col = i,
                None => {
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
                        column: required.name(),
                        found,
                    });
                }
            }
        }
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
                && let Some(e) = self.swallowed_rows(line)
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

    /// The error for a failed read. Invalid UTF-8 is located by reading the raw record again
    /// (the parser drops it), so that the message names the exact line.
    fn read_failure(&self, e: csv::Error, before: &csv::Position) -> SourceError {
        let end = self.rdr.position();
        match e.into_kind() {
            csv::ErrorKind::Io(error) => match error
                .get_ref()
                .and_then(|e| e.downcast_ref::<RecordTooLong>())
            {
                Some(too_long) => self.malformed(
                    too_long.line,
                    format!(
                        "{too_long}; is a quote left open, or is this not a CSV file? \
                         Nothing from this file was applied"
                    ),
                ),
                None => SourceError::Read {
                    file: self.file.clone(),
                    line: end.line(),
                    error,
                },
            },
            csv::ErrorKind::Utf8 { err, .. } => {
                let column = match self.headers.get(err.field()) {
                    Some(h) if !h.is_empty() => h.clone(),
                    _ => format!("#{}", err.field() + 1),
                };
                let mut raw = Vec::new();
                // The record is at most the record limit plus one read-ahead buffer.
                let reread = open_file(&self.path, self.no_follow).and_then(|mut f| {
                    f.seek(SeekFrom::Start(before.byte()))?;
                    f.take((end.byte() - before.byte()).min(64 << 20))
                        .read_to_end(&mut raw)
                });
                let line = match (reread, std::str::from_utf8(&raw)) {
                    (Ok(_), Err(bad)) => before.line() + count_newlines(&raw[..bad.valid_up_to()]),
                    _ => before.line(),
                };
                SourceError::NotUtf8 {
                    file: self.file.clone(),
                    line,
                    column,
                }
            }
            other => self.malformed(end.line(), format!("{other:?}")),
        }
    }

    /// At the end of the file: fails if the last record ends inside a quoted field, which the
    /// CSV parser accepts silently.
    fn check_tail(&self) -> Result<(), SourceError> {
        let read_error = |error| SourceError::Read {
            file: self.file.clone(),
            line: self.rdr.position().line(),
            error,
        };
        let mut f = open_file(&self.path, self.no_follow).map_err(read_error)?;
        f.seek(SeekFrom::Start(self.last_start))
            .map_err(read_error)?;
        let mut line = self.rdr.position().line();
        // Lines between the last record's start and the end of the file.
        let mut lines_seen = 0u64;
        let mut opened_at = 0u64;
        #[derive(PartialEq)]
        enum State {
            FieldStart,
            Unquoted,
            Quoted,
            QuoteInQuoted,
        }
        let mut state = State::FieldStart;
        let mut first = self.last_start == 0;
        let mut buf = vec![0u8; 64 * 1024];
        let mut reader = BufReader::new(f);
        loop {
            let n = reader.read(&mut buf).map_err(read_error)?;
            if n == 0 {
                break;
            }
            let mut chunk = &buf[..n];
            if first {
                first = false;
                chunk = chunk.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(chunk);
            }
            for &b in chunk {
                state = match state {
                    State::FieldStart | State::Unquoted if b == b'\n' => State::FieldStart,
                    State::FieldStart | State::Unquoted if b == self.delimiter => State::FieldStart,
                    State::FieldStart if b == b'"' => {
                        opened_at = lines_seen;
                        State::Quoted
                    }
                    State::FieldStart | State::Unquoted => State::Unquoted,
                    State::Quoted if b == b'"' => State::QuoteInQuoted,
                    State::Quoted => State::Quoted,
                    State::QuoteInQuoted if b == b'"' => State::Quoted,
                    State::QuoteInQuoted if b == b'\n' || b == self.delimiter => State::FieldStart,
                    State::QuoteInQuoted => State::Unquoted,
                };
                lines_seen += u64::from(b == b'\n');
            }
        }
        if state == State::Quoted {
            // `line` is the line the parser ended on; count back to the opening quote.
            line = line.saturating_sub(lines_seen - opened_at);
            return Err(self.malformed(line, "a quoted field is never closed".to_owned()));
        }
        Ok(())
    }

    /// A quoted field that runs over a line shaped like a record of its own: a quote left open
    /// swallowed rows, and the employees in them would vanish from the read. The whole file is
    /// suspect then. `line` is the line the record starts on.
    fn swallowed_rows(&self, line: u64) -> Option<SourceError> {
        let mut at = line;
        for (i, field) in self.record.iter().enumerate() {
            let mut lines = field.split('\n');
            let _first = lines.next();
            for (k, embedded) in lines.enumerate() {
                if self.looks_like_row(embedded) {
                    let column = match self.headers.get(i) {
                        Some(h) if !h.is_empty() => h.clone(),
                        _ => format!("#{}", i + 1),
                    };
                    return Some(self.malformed(
                        at,
                        format!(
                            "a quoted field (column {column}) opened on line {at} runs over line \
                             {}, which looks like a row of its own: a quote is probably not \
                             closed and swallowed rows. Nothing from this file was applied",
                            at + k as u64 + 1
                        ),
                    ));
                }
            }
            at += count_newlines(field.as_bytes());
        }
        None
    }

    /// Is an embedded line shaped like a data row: as many delimiters as the header needs, or
    /// an id-like first value and an `@` where the login id goes?
    fn looks_like_row(&self, line: &str) -> bool {
        let d = char::from(self.delimiter);
        let parts: Vec<&str> = line.split(d).collect();
        if parts.len() >= self.columns.len() {
            return true;
        }
        let (Some(id), Some(login)) = (
            parts.get(self.employee_id_col),
            parts.get(self.login_id_col),
        ) else {
            return false;
        };
        let id = id.trim_matches(|c: char| is_space(c) || c == '"');
        !id.is_empty()
            && !id.chars().any(char::is_whitespace)
            && id.len() <= REJECTION_ID_MAX_BYTES
            && login.contains('@')
    }

    fn malformed(&self, line: u64, reason: String) -> SourceError {
        SourceError::Malformed {
            file: self.file.clone(),
            line,
            reason,
        }
    }

    /// Turns the current record into a [`RawRecord`], or rejects it if its field count is wrong.
    fn build(&self, line: u64) -> Result<RawRecord, RowIssue> {
        let mut origin = String::with_capacity(self.file.len() + 8);
        origin.push_str(&self.file);
        origin.push(':');
        push_decimal(&mut origin, line);
        let rec = &self.record;
        let text = |i: usize| trim(rec.get(i).unwrap_or_default());
        // A rejected row still protects the users it could name: whatever stands in an
        // identifying column (the values may be shifted) counts.
        let identity = || {
            RowIdentity::from_values(self.columns.iter().enumerate().filter_map(|(i, col)| {
                match *col {
                    Column::Field(f) => Some((f, text(i))),
                    _ => None,
                }
            }))
        };
        if rec.len() != self.columns.len() {
            let id = text(self.employee_id_col);
            let employee_id =
                (!id.is_empty() && id.len() <= REJECTION_ID_MAX_BYTES).then(|| id.to_owned());
            return Err(RowIssue::Rejected(Rejection {
                source: origin,
                employee_id,
                field: ROW_FIELD.to_owned(),
                message: format!(
                    "{} fields where the header has {}",
                    rec.len(),
                    self.columns.len()
                ),
                identity: identity(),
            }));
        }
        if let Some((i, f)) = rec
            .iter()
            .enumerate()
            .find(|(_, f)| f.len() as u64 > self.max_field_bytes)
        {
            let id = text(self.employee_id_col);
            let employee_id =
                (!id.is_empty() && id.len() <= REJECTION_ID_MAX_BYTES).then(|| id.to_owned());
            let field = match self.columns[i] {
                Column::Ignored => match self.headers.get(i) {
                    Some(h) if !h.is_empty() => h.clone(),
                    _ => format!("#{}", i + 1),
                },
                c => c.name().to_owned(),
            };
            return Err(RowIssue::Rejected(Rejection {
                source: origin,
                employee_id,
                field,
                message: format!(
                    "{} bytes, longer than source.max_field_bytes = {}",
                    f.len(),
                    self.max_field_bytes
                ),
                identity: identity(),
            }));
        }
        let mut raw = RawRecord {
            origin,
            values: Vec::with_capacity(self.mapped),
            password: None,
            previous_employee_id: None,
        };
        for (i, col) in self.columns.iter().enumerate() {
            if *col == Column::Ignored {
                continue;
            }
            let v = text(i);
            if v.is_empty() {
                continue;
            }
            match *col {
                Column::Field(f) => raw.values.push((f, v.to_owned())),
                Column::Password => raw.password = Some(Secret::new(v)),
                Column::PreviousEmployeeId => raw.previous_employee_id = Some(v.to_owned()),
                Column::Ignored => {}
            }
        }
        Ok(raw)
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

impl Iterator for CsvReader {
    type Item = Result<RawRecord, RowIssue>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.read_next() {
            Ok(Some(line)) => Some(self.build(line)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::Normalizer;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/csv")
            .join(name)
    }

    fn opts(delimiter: u8, columns: &[(&str, &str)]) -> CsvOptions {
        CsvOptions {
            delimiter,
            columns: columns
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..CsvOptions::default()
        }
    }

    fn render_raw(raw: &RawRecord) -> String {
        let mut out = raw.origin.clone();
        for (f, v) in &raw.values {
            out.push_str(&format!(" {f}={}", v.escape_debug()));
        }
        if let Some(p) = &raw.password {
            out.push_str(&format!(" password={}", p.expose()));
        }
        if let Some(p) = &raw.previous_employee_id {
            out.push_str(&format!(" previous_employee_id={p}"));
        }
        out
    }

    /// Reads a whole file: `open: …` if it cannot be opened, else one line per item.
    fn read_all(path: &Path, opts: &CsvOptions) -> Vec<String> {
        match CsvReader::open(path, opts) {
            Err(e) => vec![format!("open: {e}")],
            Ok(rdr) => rdr
                .map(|item| match item {
                    Ok(raw) => render_raw(&raw),
                    Err(RowIssue::Rejected(r)) => r.to_string(),
                    Err(RowIssue::Fatal(e)) => format!("fatal: {e}"),
                })
                .collect(),
        }
    }

    /// Writes `input` to `t.csv` in a temporary directory and reads it with `opts`.
    fn check_with(opts: &CsvOptions, input: &[u8], expected: &[&str]) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.csv");
        std::fs::write(&path, input).expect("write");
        assert_eq!(
            read_all(&path, opts),
            expected,
            "input {:?}",
            String::from_utf8_lossy(&input[..input.len().min(200)])
        );
    }

    fn read_all_with(input: &[u8], opts: &CsvOptions) -> Vec<String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.csv");
        std::fs::write(&path, input).expect("write");
        read_all(&path, opts)
    }

    fn check(input: &[u8], expected: &[&str]) {
        check_with(&CsvOptions::default(), input, expected);
    }

    #[test]
    fn bom_crlf_quotes_whitespace_and_blank_lines() {
        let path = fixture("bom_crlf.csv");
        let rdr = CsvReader::open(&path, &CsvOptions::default()).expect("open");
        assert_eq!(
            rdr.headers(),
            [
                "Employee_ID",
                "LOGIN_ID",
                "first_name",
                "last_name",
                "Active",
                "Password",
                "Department"
            ]
        );
        assert_eq!(rdr.unknown_columns(), ["Department"]);
        assert_eq!(
            read_all(&path, &CsvOptions::default()),
            [
                "bom_crlf.csv:2 employee_id=E1 login_id=jdoe@example.com first_name=Jane \
                 last_name=Doe, Jr. active=yes password=s3cret",
                "bom_crlf.csv:4 employee_id=E2 login_id=zoë@example.com first_name=Zoë \
                 last_name=Müller-Łódź active=N",
                "bom_crlf.csv:6 employee_id=E3 login_id=o.brien@example.com first_name=Seán \
                 last_name=O\\'Brien & <Sons>",
                "bom_crlf.csv:7 employee_id=E4 login_id=ann@example.com \
                 first_name=Ann \\\"Annie\\\" last_name=Lee active=1",
            ]
        );
    }

    #[test]
    fn line_numbers() {
        // Blank and whitespace-only lines, a row of empty fields, no final line break.
        check(
            b"employee_id,login_id\n\n  \n,\nE1,a@x\n\n\nE2,b@x",
            &[
                "t.csv:5 employee_id=E1 login_id=a@x",
                "t.csv:8 employee_id=E2 login_id=b@x",
            ],
        );
        // A record spanning lines; the quoted last field of a CRLF row.
        check(
            b"employee_id,login_id,last_name\r\nE1,\"a@x\",\"A\r\nB\"\r\nE2,b@x,\"C\"\r\n",
            &[
                "t.csv:2 employee_id=E1 login_id=a@x last_name=A\\r\\nB",
                "t.csv:4 employee_id=E2 login_id=b@x last_name=C",
            ],
        );
        check(
            b"\n\nemployee_id,login_id\nE1,a@x\n",
            &["t.csv:4 employee_id=E1 login_id=a@x"],
        );
        check(b"employee_id,login_id\n", &[]);
        check(b"employee_id,login_id", &[]);
    }

    #[test]
    fn row_issues() {
        check(
            b"employee_id,login_id,first_name\nE1,a@x\nE2,b@x,Bob\nE3,c@x,Cy,extra\n,d@x\n",
            &[
                "t.csv:2: employee E1: field row: 2 fields where the header has 3",
                "t.csv:3 employee_id=E2 login_id=b@x first_name=Bob",
                "t.csv:4: employee E3: field row: 4 fields where the header has 3",
                "t.csv:5: field row: 2 fields where the header has 3",
            ],
        );
        // A quote left open swallows the rest of the file: fatal at the end.
        check(
            b"employee_id,login_id,last_name\nE1,a@x,Smith\nE2,b@x,\"Unclosed\nE3,c@x,Lee\n",
            &[
                "t.csv:2 employee_id=E1 login_id=a@x last_name=Smith",
                "fatal: t.csv:3: malformed CSV: a quoted field is never closed",
            ],
        );
        let mut long = b"employee_id,login_id,last_name\nE1,a@x,\"".to_vec();
        long.extend(b"x\n".repeat(150));
        long.extend(b"\"\nE2,b@x,Lee\n");
        check(
            &long,
            &[
                "fatal: t.csv:2: malformed CSV: a record spans 151 lines; a quote is probably \
               not closed",
            ],
        );
    }

    #[test]
    fn unusable_files() {
        check(b"", &["open: t.csv: empty: no header row"]);
        check(
            b"\xef\xbb\xbf\r\n \n\n",
            &["open: t.csv: empty: no header row"],
        );
        check(
            b"employee_id,email\nE1,a@x\n",
            &[
                "open: t.csv:1: missing mandatory column login_id (the header has: \
               \"employee_id\", \"email\")",
            ],
        );
        check(
            b"employee_id;login_id\nE1;a@x\n",
            &[
                "open: t.csv:1: missing mandatory column employee_id (the header has: \
               \"employee_id;login_id\"; is the delimiter right?)",
            ],
        );
        check(
            b"employee_id,login_id,Email,EMAIL \n",
            &["open: t.csv:1: column EMAIL appears twice (columns 3 and 4)"],
        );
        check(
            b"employee_id,login_id,x,X\n",
            &["open: t.csv:1: column X appears twice (columns 3 and 4)"],
        );
        check_with(
            &opts(b',', &[("Mail", "email")]),
            b"employee_id,login_id,mail,email\n",
            &["open: t.csv:1: column email appears twice (columns 3 and 4)"],
        );
        check_with(
            &opts(b',', &[("Mail", "e-mail")]),
            b"employee_id,login_id,Mail\n",
            &[
                "open: t.csv: [source.csv.columns] maps \"Mail\" to \"e-mail\", which is not a \
               canonical field name",
            ],
        );
        check_with(
            &opts(b'"', &[]),
            b"employee_id,login_id\n",
            &["open: t.csv: [source.csv] delimiter '\"' cannot separate fields"],
        );
        check(
            b"employee_id,login_id\rE1,a@x\r",
            &[
                "open: t.csv:1: malformed CSV: a header name spans lines (are lines ended by CR \
               alone?)",
            ],
        );
        check(
            b"employee_id,login_id\x00\n",
            &["open: t.csv:1: binary content (NUL byte): not a text file"],
        );
        check(
            b"employee_id,l\xf6gin_id\n",
            &["open: t.csv:1: not UTF-8 text (column #2); save the file as UTF-8"],
        );
        let missing = read_all(Path::new("/nonexistent/hr.csv"), &CsvOptions::default());
        assert!(
            missing[0].starts_with("open: hr.csv: cannot open: "),
            "{missing:?}"
        );
    }

    #[test]
    fn invalid_utf8_mid_file_is_fatal() {
        assert_eq!(
            read_all(&fixture("bad_utf8.csv"), &CsvOptions::default()),
            [
                "bad_utf8.csv:2 employee_id=E1 login_id=a@example.com last_name=Smith",
                "bad_utf8.csv:3 employee_id=E2 login_id=b@example.com last_name=Two\\nLines",
                "fatal: bad_utf8.csv:5: not UTF-8 text (column last_name); save the file as UTF-8",
            ]
        );
        // The bad byte on the second line of a record that spans lines.
        check(
            b"employee_id,login_id,last_name\nE1,a@x,\"A\nB\xff\"\n",
            &["fatal: t.csv:3: not UTF-8 text (column last_name); save the file as UTF-8"],
        );
    }

    #[test]
    fn nul_bytes_are_fatal() {
        assert_eq!(
            read_all(&fixture("nul.csv"), &CsvOptions::default()),
            [
                "nul.csv:2 employee_id=E1 login_id=a@example.com",
                "fatal: nul.csv:3: binary content (NUL byte): not a text file",
            ]
        );
    }

    /// Reads a file and normalizes every record: one line per record or rejection.
    fn pipeline(path: &Path, opts: &CsvOptions, defaults: &[(&str, &str)]) -> Vec<String> {
        let defaults = defaults
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let n = Normalizer::new(&defaults).expect("defaults");
        let mut out = Vec::new();
        for item in CsvReader::open(path, opts).expect("open") {
            match item.map(|raw| n.normalize(raw)) {
                Ok(Ok(rec)) => out.push(format!("{} {:?}", rec.origin, rec.user)),
                Ok(Err(rejections)) => out.extend(rejections.iter().map(|r| r.to_string())),
                Err(issue) => out.push(issue.to_string()),
            }
        }
        out
    }

    #[test]
    fn mapped_headers_and_defaults() {
        let opts = opts(
            b';',
            &[
                ("personalnummer", "employee_id"),
                ("Mail", "login_id"),
                ("Vorname", "first_name"),
                ("Nachname", "last_name"),
                ("Kostenstelle", "org_unit1"),
                ("Land", " Country "),
                ("Alte Nummer", "previous_employee_id"),
                ("Nicht da", "custom1"),
            ],
        );
        let path = fixture("mapped.csv");
        let rdr = CsvReader::open(&path, &opts).expect("open");
        assert_eq!(rdr.unknown_columns(), ["Geburtstag"]);
        assert_eq!(rdr.columns()[6], Column::PreviousEmployeeId);
        assert_eq!(
            read_all(&path, &opts)[1],
            "mapped.csv:3 employee_id=1002 login_id=bernd@example.de first_name=Bernd \
             last_name=Weiß org_unit1=KS-20 country=AT previous_employee_id=0999"
        );
        assert_eq!(
            pipeline(
                &path,
                &opts,
                &[
                    ("ledger", "DEFAULT"),
                    ("currency", "eur"),
                    ("locale", "de-DE")
                ]
            ),
            [
                "mapped.csv:2 {\"employee_id\": \"1001\", \"login_id\": \"anna@example.de\", \
                 \"locale\": \"de_DE\", \"active\": \"Y\", \"first_name\": \"Anna\", \
                 \"last_name\": \"Schmidt\", \"ledger\": \"DEFAULT\", \"org_unit1\": \"KS-10\", \
                 \"country\": \"DE\", \"currency\": \"EUR\"}",
                "mapped.csv:3 {\"employee_id\": \"1002\", \"login_id\": \"bernd@example.de\", \
                 \"locale\": \"de_DE\", \"active\": \"Y\", \"first_name\": \"Bernd\", \
                 \"last_name\": \"Weiß\", \"ledger\": \"DEFAULT\", \"org_unit1\": \"KS-20\", \
                 \"country\": \"AT\", \"currency\": \"EUR\"}",
            ]
        );
    }

    #[test]
    fn a_field_past_the_field_limit_rejects_its_row() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("big.csv");
        let mut data = b"employee_id,login_id,last_name\nE1,a@x,\"".to_vec();
        data.extend(std::iter::repeat_n(b'A', 512 << 10));
        data.extend(b"\"\nE2,b@x,<Lee & Sons>\n");
        std::fs::write(&path, data).expect("write");
        assert_eq!(
            pipeline(&path, &CsvOptions::default(), &[]),
            [
                "big.csv:2: employee E1: field last_name: 524288 bytes, longer than \
                 source.max_field_bytes = 65536",
                "big.csv:3 {\"employee_id\": \"E2\", \"login_id\": \"b@x\", \"active\": \"Y\", \
                 \"last_name\": \"<Lee & Sons>\"}",
            ]
        );
    }

    #[test]
    fn a_record_past_the_record_limit_fails_the_file() {
        let small = CsvOptions {
            max_record_bytes: 64,
            max_field_bytes: 16,
            ..CsvOptions::default()
        };
        // A long unquoted row, a quote left open over many short rows, a long header.
        let mut long_row = b"employee_id,login_id\nE1,a@x\nE2,".to_vec();
        long_row.extend(b"b".repeat(100));
        long_row.extend(b"@x\nE3,c@x\n");
        check_with(
            &small,
            &long_row,
            &[
                "t.csv:2 employee_id=E1 login_id=a@x",
                "fatal: t.csv:3: malformed CSV: a record is longer than source.max_record_bytes \
                 = 64 bytes; is a quote left open, or is this not a CSV file? Nothing from this \
                 file was applied",
            ],
        );
        let mut open_quote = b"employee_id,login_id\nE1,\"a@x\n".to_vec();
        open_quote.extend(b"x\n".repeat(100));
        check_with(
            &small,
            &open_quote,
            &[
                "fatal: t.csv:2: malformed CSV: a record is longer than source.max_record_bytes \
                 = 64 bytes; is a quote left open, or is this not a CSV file? Nothing from this \
                 file was applied",
            ],
        );
        check_with(
            &small,
            &b"x".repeat(1000),
            &[
                "open: t.csv:1: malformed CSV: a record is longer than source.max_record_bytes = \
               64 bytes; is a quote left open, or is this not a CSV file? Nothing from this file \
               was applied",
            ],
        );
        // Quotes inside unquoted values do not open a field: rows are still counted apart.
        let mut many = b"employee_id,login_id,last_name\n".to_vec();
        for i in 0..50 {
            many.extend(format!("E{i},u{i}@x,O\"Brien\n").as_bytes());
        }
        let out = read_all_with(&many, &small);
        assert_eq!(out.len(), 50, "{out:?}");
    }

    #[test]
    fn a_quote_that_swallows_rows_fails_the_file() {
        // The quote opened on line 3 is closed by the quote on line 5: rows 4 and 5 vanish
        // into one value.
        check(
            b"employee_id,login_id,last_name\nE1,a@x,Smith\nE2,b@x,\"Unclosed\nE3,c@x,Lee\n\
              E4,d@x,\"Quoted\"\nE5,e@x,Ng\n",
            &[
                "t.csv:2 employee_id=E1 login_id=a@x last_name=Smith",
                "fatal: t.csv:3: malformed CSV: a quoted field (column last_name) opened on line 3 \
                 runs over line 4, which looks like a row of its own: a quote is probably not \
                 closed and swallowed rows. Nothing from this file was applied",
            ],
        );
        // Fewer delimiters than the header needs, but an id and a login where they belong.
        check(
            b"employee_id,login_id,first_name,last_name\nE1,a@x,\"Ann\nE2,b@x\n\",Lee\n",
            &[
                "fatal: t.csv:2: malformed CSV: a quoted field (column first_name) opened on line \
               2 runs over line 3, which looks like a row of its own: a quote is probably not \
               closed and swallowed rows. Nothing from this file was applied",
            ],
        );
        // A real multi-line value (an address with a comma) is not taken for a row.
        check(
            b"employee_id,login_id,first_name,last_name\nE1,a@x,\"12 Main St,\nSpringfield\",Lee\n",
            &[
                "t.csv:2 employee_id=E1 login_id=a@x first_name=12 Main St,\\nSpringfield \
               last_name=Lee",
            ],
        );
    }

    #[test]
    fn many_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("many.csv");
        std::fs::write(&path, generate(20_000)).expect("write");
        let n = Normalizer::new(&BTreeMap::from([(
            "ledger".to_owned(),
            "DEFAULT".to_owned(),
        )]))
        .expect("defaults");
        let mut count = 0;
        let mut last = String::new();
        for item in CsvReader::open(&path, &CsvOptions::default()).expect("open") {
            let rec = n.normalize(item.expect("row")).expect("valid");
            count += 1;
            last = rec.origin;
        }
        assert_eq!((count, last.as_str()), (20_000, "many.csv:20001"));
    }

    /// A realistic HR file of `rows` rows, about 150 bytes a row.
    pub(crate) fn generate(rows: usize) -> Vec<u8> {
        let mut out = b"employee_id,login_id,email,first_name,last_name,active,country,\
                        currency,org_unit1,manager_employee_id,custom1\n"
            .to_vec();
        for i in 0..rows {
            out.extend(
                format!(
                    "E{i:07},user{i}@example.com,user{i}@example.com,Firstname,Lastname-{i},\
                     {},US,USD,Engineering Department,E{:07},Cost center {}\n",
                    if i % 10 == 0 { "N" } else { "Y" },
                    if i == 0 { 1 } else { i / 10 },
                    i % 97
                )
                .as_bytes(),
            );
        }
        out
    }
}
