//! The HR CSV reader: streams a file, one [`RawRecord`] per data row.
//!
//! The first non-blank row is the header. Header names are trimmed and matched case-insensitively,
//! first against `[source.csv.columns]` (file header → canonical name), then against the canonical
//! names. Unknown columns are ignored and listed by [`CsvReader::unknown_columns`].

use super::SourceError;
use crate::model::{Field, PASSWORD_COLUMN, Rejection, Secret};
use crate::validate::{PREVIOUS_EMPLOYEE_ID, RawRecord, is_space};
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
}

impl Default for CsvOptions {
    fn default() -> CsvOptions {
        CsvOptions {
            delimiter: b',',
            columns: BTreeMap::new(),
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
    record: csv::ByteRecord,
    headers: Vec<String>,
    columns: Vec<Column>,
    unknown: Vec<String>,
    /// Number of columns feeding `RawRecord.values`.
    mapped: usize,
    employee_id_col: usize,
    /// Byte offset where the last record read began (before any blank lines).
    last_start: u64,
    done: bool,
}

/// The file, counting what the CSV parser pulled from it, so that the line a record starts on
/// can be told even when the last one has no line break.
struct Tracked {
    inner: File,
    total: u64,
    last: u8,
    eof: bool,
}

impl Read for Tracked {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
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
        let inner = match File::open(path) {
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
                inner,
                total: 0,
                last: 0,
                eof: false,
            });
        let mut me = CsvReader {
            file,
            path: path.to_owned(),
            delimiter: d,
            rdr,
            record: csv::ByteRecord::new(),
            headers: Vec::new(),
            columns: Vec::new(),
            unknown: Vec::new(),
            mapped: 0,
            employee_id_col: 0,
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
            let name = std::str::from_utf8(raw)
                .unwrap_or_default()
                .trim_matches(is_space);
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
                Some(_) => {}
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
            let start_byte = self.rdr.position().byte();
            let read = self.rdr.read_byte_record(&mut self.record);
            let ok = match read {
                Ok(ok) => ok,
                Err(e) => {
                    let line = self.rdr.position().line();
                    return Err(match e.into_kind() {
                        csv::ErrorKind::Io(error) => SourceError::Read {
                            file: self.file.clone(),
                            line,
                            error,
                        },
                        other => self.malformed(line, format!("{other:?}")),
                    });
                }
            };
            if !ok {
                return Ok(None);
            }
            self.last_start = start_byte;
            let bytes = self.record.as_slice();
            let inside = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
            let t = self.rdr.get_ref();
            let end = self.rdr.position();
            let unterminated = t.eof && end.byte() == t.total && t.last != b'\n';
            let line = end.line() - inside - u64::from(!unterminated);
            if bytes.contains(&0) {
                let at = bytes.iter().position(|&b| b == 0).unwrap_or(0);
                let line = line + bytes[..at].iter().filter(|&&b| b == b'\n').count() as u64;
                return Err(SourceError::Binary {
                    file: self.file.clone(),
                    line,
                });
            }
            if let Err(e) = std::str::from_utf8(bytes) {
                let at = e.valid_up_to();
                let line = line + bytes[..at].iter().filter(|&&b| b == b'\n').count() as u64;
                let column = (0..self.record.len())
                    .find(|&i| self.record.range(i).is_some_and(|r| r.end > at))
                    .map(|i| match self.headers.get(i) {
                        Some(h) if !h.is_empty() => h.clone(),
                        _ => format!("#{}", i + 1),
                    })
                    .unwrap_or_default();
                return Err(SourceError::NotUtf8 {
                    file: self.file.clone(),
                    line,
                    column,
                });
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
                .all(|f| f.iter().all(u8::is_ascii_whitespace));
            if !blank {
                return Ok(Some(line));
            }
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
        let mut f = File::open(&self.path).map_err(read_error)?;
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

    fn malformed(&self, line: u64, reason: String) -> SourceError {
        SourceError::Malformed {
            file: self.file.clone(),
            line,
            reason,
        }
    }

    /// Turns the current record into a [`RawRecord`], or rejects it if its field count is wrong.
    fn build(&self, line: u64) -> Result<RawRecord, RowIssue> {
        let origin = format!("{}:{}", self.file, line);
        let rec = &self.record;
        let text = |i: usize| {
            rec.get(i)
                .and_then(|b| std::str::from_utf8(b).ok())
                .unwrap_or_default()
                .trim_matches(is_space)
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
