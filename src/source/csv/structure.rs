//! The structural failure rules: what makes a whole file unusable rather than one row (a read
//! error, invalid UTF-8 located to its line, a record past the record limit, a quote left open
//! at the end of the file or one that swallowed rows).

use std::io::{BufReader, Read, Seek, SeekFrom};

use super::bounds::RecordTooLong;
use super::{ColumnSet, CsvFile, REJECTION_ID_MAX_BYTES, count_newlines, open_file};
use crate::source::SourceError;
use crate::validate::is_space;

impl<S: ColumnSet> CsvFile<S> {
    /// The error for a failed read. Invalid UTF-8 is located by reading the raw record again
    /// (the parser drops it), so that the message names the exact line.
    pub(super) fn read_failure(&self, e: csv::Error, before: &csv::Position) -> SourceError {
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
    pub(super) fn check_tail(&self) -> Result<(), SourceError> {
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
    pub(super) fn swallowed_rows(
        &self,
        record: &csv::StringRecord,
        line: u64,
    ) -> Option<SourceError> {
        let mut at = line;
        for (i, field) in record.iter().enumerate() {
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
    /// an id-like value where the key goes and the column set's mark (a login's `@`) where
    /// its marked column goes?
    fn looks_like_row(&self, line: &str) -> bool {
        let d = char::from(self.delimiter);
        let parts: Vec<&str> = line.split(d).collect();
        if parts.len() >= self.columns.len() {
            return true;
        }
        let Some((mark_col, mark)) = self.mark else {
            return false;
        };
        let (Some(id), Some(marked)) = (parts.get(self.key_col), parts.get(mark_col)) else {
            return false;
        };
        let id = id.trim_matches(|c: char| is_space(c) || c == '"');
        !id.is_empty()
            && !id.chars().any(char::is_whitespace)
            && id.len() <= REJECTION_ID_MAX_BYTES
            && marked.contains(mark)
    }
}
