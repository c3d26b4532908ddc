//! Bounded reading: the file as the CSV parser sees it, failing as soon as one record grows past
//! the record limit (before the parser buffers it), and counting what was handed over so that
//! line numbers hold at the end of the file.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};

/// The file, counting what the CSV parser pulled from it, so that the line a record starts on
/// can be told even when the last one has no line break. It also follows the quoting of what
/// it hands over and fails the read as soon as one record grows past the record limit: the
/// CSV parser grows its buffer to hold a whole record, so the limit must hold before it.
pub(super) struct Tracked {
    inner: LimitedRecords<File>,
    /// Bytes handed to the parser so far.
    pub(super) total: u64,
    /// The last byte handed over.
    pub(super) last: u8,
    /// The file has ended.
    pub(super) eof: bool,
}

impl Tracked {
    pub(super) fn new(file: File, delimiter: u8, max_record: u64) -> Tracked {
        Tracked {
            inner: LimitedRecords::new(file, delimiter, max_record),
            total: 0,
            last: 0,
            eof: false,
        }
    }
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
pub(super) struct RecordTooLong {
    pub(super) line: u64,
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
    /// The states are those of `CsvFile::check_tail`: a quote only opens at a field start.
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
/// past `max_record` bytes.
struct LimitedRecords<R> {
    inner: R,
    limit: Limiter,
}

impl<R: Read> LimitedRecords<R> {
    fn new(inner: R, delimiter: u8, max_record: u64) -> LimitedRecords<R> {
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
