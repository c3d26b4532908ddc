//! The HR CSV read on every core: one thread reads the file in blocks, digests its bytes
//! (BLAKE3, the file digest of [`crate::source::file_digest`]) and cuts each block after its
//! last complete record (quotes followed, so a quoted line break never ends a block); worker
//! threads take the blocks in turn, find each record, digest its raw bytes and either hand it
//! over as unchanged (the caller's `unchanged` says so from the employee id and the digest,
//! without parsing the row) or parse it exactly as [`CsvFile`] does, with the same checks,
//! rejections and line numbers. The caller receives the blocks' results in file order.
//!
//! Memory stays bounded by the blocks in flight, not by the file.

use std::io::Read;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use super::records::{field, last_record_end, record_at, trimmed};
use super::{CsvReader, MAX_RECORD_LINES, RowIssue, count_newlines, open_file};
use crate::model::{RawRecord, Rejection, id_key};
use crate::source::SourceError;
use crate::source::csv::Column;

/// Bytes read at a time.
const BLOCK: usize = 2 << 20;

/// One row of a block, in file order.
pub enum Row<T> {
    /// Taken as unchanged without parsing: the caller's answer, and the row's line.
    Unchanged(u32, u32),
    /// A row parsed in full: what the caller made of it.
    Parsed(T),
    /// A row rejected by the reader (wrong field count, a field too long).
    Rejected(Rejection),
}

/// The result of one block.
pub struct Block<T> {
    pub rows: Vec<Row<T>>,
    /// What the caller's `parse` noted, in file order (warnings).
    pub notes: Vec<Rejection>,
    /// The file is unusable from this block on.
    pub fatal: Option<SourceError>,
}

/// What the whole read found.
pub struct ReadEnd {
    /// BLAKE3 of the file's bytes, in hex (the same as [`crate::source::file_digest`]).
    pub digest: String,
}

/// The reader's view of a row for its caller.
pub struct RawRow<'a> {
    pub line: u64,
    /// The row's bytes as in the file, without the line end.
    pub bytes: &'a [u8],
    pub digest: u128,
}

enum Job {
    Data {
        bytes: Vec<u8>,
        line: u64,
        last: bool,
    },
    Fail(SourceError),
}

/// Reads the rest of `reader`'s file on `threads` workers. `unchanged(id key, digest)`
/// decides, for a row with an employee id and no previous employee id, whether it is taken
/// as unchanged (and what it stands for); every other row is parsed and given to
/// `parse(row, record, notes)`. `consume` gets each block's result in file order and stops the
/// read by returning false.
pub fn read<T, U, P, C>(
    reader: &CsvReader,
    threads: usize,
    unchanged: &U,
    parse: &P,
    consume: C,
) -> Result<ReadEnd, SourceError>
where
    T: Send,
    U: Fn(u128, u128) -> Option<u32> + Sync,
    P: Fn(&RawRow<'_>, RawRecord, &mut Vec<Rejection>) -> T + Sync,
    C: FnMut(Block<T>) -> bool,
{
    read_in(reader, threads, BLOCK, unchanged, parse, consume)
}

/// [`read`], reading `block` bytes at a time.
fn read_in<T, U, P, C>(
    reader: &CsvReader,
    threads: usize,
    block: usize,
    unchanged: &U,
    parse: &P,
    mut consume: C,
) -> Result<ReadEnd, SourceError>
where
    T: Send,
    U: Fn(u128, u128) -> Option<u32> + Sync,
    P: Fn(&RawRow<'_>, RawRecord, &mut Vec<Rejection>) -> T + Sync,
    C: FnMut(Block<T>) -> bool,
{
    let (start, start_line) = reader.data_start();
    let mut file =
        open_file(&reader.path, reader.no_follow).map_err(|error| SourceError::Open {
            file: reader.file.clone(),
            error,
        })?;
    let threads = threads.clamp(1, 8);
    let max_record = reader.max_record_bytes;
    std::thread::scope(|scope| {
        let mut inputs: Vec<SyncSender<Job>> = Vec::new();
        let mut outputs: Vec<Receiver<Block<T>>> = Vec::new();
        for _ in 0..threads {
            let (tx, rx) = sync_channel::<Job>(2);
            let (otx, orx) = sync_channel::<Block<T>>(2);
            inputs.push(tx);
            outputs.push(orx);
            scope.spawn(move || {
                for job in rx {
                    let out = match job {
                        Job::Data { bytes, line, last } => {
                            rows(reader, &bytes, line, last, unchanged, parse)
                        }
                        Job::Fail(e) => Block {
                            rows: Vec::new(),
                            notes: Vec::new(),
                            fatal: Some(e),
                        },
                    };
                    if otx.send(out).is_err() {
                        return;
                    }
                }
            });
        }
        let feeder = scope.spawn(move || {
            feed(
                reader, &mut file, start, start_line, block, max_record, &inputs,
            )
        });
        let mut k = 0usize;
        let mut stopped = false;
        loop {
            let Ok(out) = outputs[k % threads].recv() else {
                break;
            };
            k += 1;
            let fatal = out.fatal.is_some();
            if !consume(out) || fatal {
                stopped = true;
                break;
            }
        }
        drop(outputs);
        let fed = feeder.join().map_err(|_| SourceError::Read {
            file: reader.file.clone(),
            line: 0,
            error: std::io::Error::other("the reader stopped unexpectedly"),
        })?;
        if stopped {
            // The caller has what it needs (an error, or enough); the digest is not used.
            return Ok(ReadEnd {
                digest: String::new(),
            });
        }
        fed
    })
}

/// The reading thread: digests the whole file and sends its records in blocks, in turn to
/// each worker.
fn feed(
    reader: &CsvReader,
    file: &mut std::fs::File,
    start: u64,
    start_line: u64,
    block: usize,
    max_record: u64,
    inputs: &[SyncSender<Job>],
) -> Result<ReadEnd, SourceError> {
    let read_error = |line: u64, error| SourceError::Read {
        file: reader.file.clone(),
        line,
        error,
    };
    let mut hasher = blake3::Hasher::new();
    let mut head = vec![0u8; usize::try_from(start).unwrap_or(0)];
    file.read_exact(&mut head)
        .map_err(|e| read_error(start_line, e))?;
    hasher.update(&head);
    drop(head);
    let mut line = start_line;
    let mut carry: Vec<u8> = Vec::new();
    let mut k = 0usize;
    let d = reader.delimiter;
    let send = |k: &mut usize, job: Job| -> bool {
        let ok = inputs[*k % inputs.len()].send(job).is_ok();
        *k += 1;
        ok
    };
    loop {
        let mut buf = Vec::with_capacity(block + carry.len());
        buf.append(&mut carry);
        let have = buf.len();
        buf.resize(have + block, 0);
        let mut filled = have;
        let mut eof = false;
        while filled < buf.len() {
            let n = file
                .read(&mut buf[filled..])
                .map_err(|e| read_error(line, e))?;
            if n == 0 {
                eof = true;
                break;
            }
            hasher.update(&buf[filled..filled + n]);
            filled += n;
        }
        buf.truncate(filled);
        if eof {
            if !buf.is_empty() {
                let _ = send(
                    &mut k,
                    Job::Data {
                        bytes: buf,
                        line,
                        last: true,
                    },
                );
            }
            break;
        }
        let Some(cut) = last_record_end(&buf, d) else {
            if buf.len() as u64 > max_record {
                // The record at the start of the buffer is past the record limit.
                let e = SourceError::Malformed {
                    file: reader.file.clone(),
                    line,
                    reason: format!(
                        "a record is longer than source.max_record_bytes = {max_record} bytes; \
                         is a quote left open, or is this not a CSV file? Nothing from this \
                         file was applied"
                    ),
                };
                let _ = send(&mut k, Job::Fail(e));
                return Ok(ReadEnd {
                    digest: String::new(),
                });
            }
            carry = buf;
            continue;
        };
        carry.extend_from_slice(&buf[cut..]);
        buf.truncate(cut);
        let lines = count_newlines(&buf);
        if !send(
            &mut k,
            Job::Data {
                bytes: buf,
                line,
                last: false,
            },
        ) {
            break;
        }
        line += lines;
    }
    Ok(ReadEnd {
        digest: hasher.finalize().to_hex().to_string(),
    })
}

/// The worker's part: every record of one block.
fn rows<T, U, P>(
    reader: &CsvReader,
    data: &[u8],
    first_line: u64,
    last: bool,
    unchanged: &U,
    parse: &P,
) -> Block<T>
where
    U: Fn(u128, u128) -> Option<u32> + Sync,
    P: Fn(&RawRow<'_>, RawRecord, &mut Vec<Rejection>) -> T + Sync,
{
    let d = reader.delimiter;
    let key_col = reader.key_col;
    let prev_col = reader
        .columns
        .iter()
        .position(|c| *c == Column::PreviousEmployeeId);
    let mut out = Block {
        rows: Vec::with_capacity(data.len() / 100),
        notes: Vec::new(),
        fatal: None,
    };
    let mut line = first_line;
    let mut pos = 0usize;
    let mut record = csv::StringRecord::new();
    let mut rdr = row_reader(reader);
    while pos < data.len() {
        let (span, next) = record_at(data, pos, d);
        pos = next;
        let this_line = line;
        line += span.inside + 1;
        let bytes = &data[span.start..span.end];
        if let Some(q) = span.unclosed
            && last
        {
            let at = this_line + count_newlines(&data[span.start..q]);
            out.fatal = Some(reader.malformed(at, "a quoted field is never closed".into()));
            return out;
        }
        if bytes.is_empty() {
            continue;
        }
        if bytes.len() as u64 > reader.max_record_bytes {
            out.fatal = Some(reader.malformed(
                this_line,
                format!(
                    "a record is longer than source.max_record_bytes = {} bytes; is a quote \
                     left open, or is this not a CSV file? Nothing from this file was applied",
                    reader.max_record_bytes
                ),
            ));
            return out;
        }
        let digest = crate::plan::index::row_digest(bytes);
        let key = field(bytes, key_col, d).and_then(|k| trimmed(&k).map(id_key));
        let no_previous = prev_col.is_none_or(|c| {
            field(bytes, c, d).is_some_and(|v| trimmed(&v).is_some_and(str::is_empty))
        });
        if let Some(key) = key
            && no_previous
            && let Some(entry) = unchanged(key, digest)
        {
            let l = u32::try_from(this_line).unwrap_or(u32::MAX);
            out.rows.push(Row::Unchanged(entry, l));
            continue;
        }
        match full_row(reader, &mut rdr, bytes, this_line, span.inside, &mut record) {
            Ok(None) => {}
            Ok(Some(Ok(raw))) => {
                let row = RawRow {
                    line: this_line,
                    bytes,
                    digest,
                };
                let t = parse(&row, raw, &mut out.notes);
                out.rows.push(Row::Parsed(t));
            }
            Ok(Some(Err(r))) => out.rows.push(Row::Rejected(r)),
            Err(e) => {
                out.fatal = Some(e);
                return out;
            }
        }
    }
    out
}

/// The bytes of one row at a time, under a CSV parser built once per block (building one
/// costs more than parsing a row).
#[derive(Default)]
struct RowBytes<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Read for RowBytes<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let rest = &self.bytes[self.pos..];
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        Ok(n)
    }
}

impl std::io::Seek for RowBytes<'_> {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        match to {
            std::io::SeekFrom::Start(0) => {
                self.pos = 0;
                Ok(0)
            }
            _ => Err(std::io::Error::other("a row is read from its start only")),
        }
    }
}

/// The parser [`full_row`] gives each row of a block to.
fn row_reader<'a>(reader: &CsvReader) -> csv::Reader<RowBytes<'a>> {
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(reader.delimiter)
        .has_headers(false)
        .flexible(true)
        .terminator(csv::Terminator::Any(b'\n'))
        // Small: the buffer's unfilled part is zeroed again after every seek to a new row,
        // and a row rarely fills even this much (a longer one takes several reads).
        .buffer_capacity(1024)
        .from_reader(RowBytes::default());
    // No first record is taken for headers.
    rdr.set_byte_headers(csv::ByteRecord::new());
    rdr
}

/// One record parsed in full, as [`CsvFile`] parses it: `None` for a blank record.
fn full_row<'a>(
    reader: &CsvReader,
    rdr: &mut csv::Reader<RowBytes<'a>>,
    bytes: &'a [u8],
    line: u64,
    inside: u64,
    record: &mut csv::StringRecord,
) -> Result<Option<Result<RawRecord, Rejection>>, SourceError> {
    *rdr.get_mut() = RowBytes { bytes, pos: 0 };
    rdr.seek_raw(std::io::SeekFrom::Start(0), csv::Position::new())
        .map_err(|e| reader.malformed(line, e.to_string()))?;
    match rdr.read_record(record) {
        Ok(true) => {}
        Ok(false) => return Ok(None),
        Err(e) => {
            let column = match e.kind() {
                csv::ErrorKind::Utf8 { err, .. } => match reader.headers.get(err.field()) {
                    Some(h) if !h.is_empty() => h.clone(),
                    _ => format!("#{}", err.field() + 1),
                },
                _ => return Err(reader.malformed(line, format!("{:?}", e.kind()))),
            };
            let at = match std::str::from_utf8(bytes) {
                Err(bad) => line + count_newlines(&bytes[..bad.valid_up_to()]),
                Ok(_) => line,
            };
            return Err(SourceError::NotUtf8 {
                file: reader.file.clone(),
                line: at,
                column,
            });
        }
    }
    if let Some(at) = memchr::memchr(0, bytes) {
        return Err(SourceError::Binary {
            file: reader.file.clone(),
            line: line + count_newlines(&bytes[..at]),
        });
    }
    if inside > 0
        && !reader.columns.is_empty()
        && let Some(e) = reader.swallowed_rows(record, line)
    {
        return Err(e);
    }
    if inside > MAX_RECORD_LINES {
        return Err(reader.malformed(
            line,
            format!(
                "a record spans {} lines; a quote is probably not closed",
                inside + 1
            ),
        ));
    }
    if record
        .iter()
        .all(|f| f.bytes().all(|b| b.is_ascii_whitespace()))
    {
        return Ok(None);
    }
    Ok(Some(match reader.build(record, line) {
        Ok(raw) => Ok(raw),
        Err(RowIssue::Rejected(r)) => Err(r),
        Err(RowIssue::Fatal(e)) => return Err(e),
    }))
}

impl CsvReader {
    /// Where the data rows begin: the byte offset after the header and its line.
    fn data_start(&self) -> (u64, u64) {
        let p = self.rdr.position();
        (p.byte(), p.line())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::csv::CsvOptions;
    use std::path::Path;

    /// Every item the sequential reader yields, as text.
    fn sequential(path: &Path, opts: &CsvOptions) -> Vec<String> {
        let rdr = CsvReader::open(path, opts).unwrap();
        rdr.map(|item| match item {
            Ok(raw) => format!("{raw:?}"),
            Err(RowIssue::Rejected(r)) => r.to_string(),
            Err(RowIssue::Fatal(e)) => format!("fatal: {e}"),
        })
        .collect()
    }

    /// The same through blocks of `block` bytes on `threads` workers, with the file digest.
    fn chunked(
        path: &Path,
        opts: &CsvOptions,
        block: usize,
        threads: usize,
    ) -> (Vec<String>, String) {
        let rdr = CsvReader::open(path, opts).unwrap();
        let mut out = Vec::new();
        let parse = |_: &RawRow<'_>, raw: RawRecord, _: &mut Vec<Rejection>| format!("{raw:?}");
        let end = read_in(
            &rdr,
            threads,
            block,
            &|_, _| None,
            &parse,
            |b: Block<String>| {
                for row in b.rows {
                    out.push(match row {
                        Row::Parsed(t) => t,
                        Row::Rejected(r) => r.to_string(),
                        Row::Unchanged(..) => unreachable!(),
                    });
                }
                if let Some(e) = b.fatal {
                    out.push(format!("fatal: {e}"));
                    return false;
                }
                true
            },
        )
        .unwrap();
        (out, end.digest)
    }

    #[test]
    fn blocks_read_what_the_sequential_reader_reads_with_the_same_lines() {
        let dir = tempfile::tempdir().unwrap();
        let mut files: Vec<std::path::PathBuf> =
            std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/csv"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "csv"))
                .collect();
        // Quoted line breaks wherever a block may end, a quote inside a value, a blank row,
        // a short row, CRLF line ends and no line end at the end of the file.
        let mut text = String::from("\u{feff}employee_id,login_id,last_name,org_unit1\r\n");
        for i in 0..300 {
            match i % 7 {
                0 => text.push_str(&format!(
                    "E{i},u{i}@x.com,\"Line\none\nand two\",\"R&D\"\r\n"
                )),
                1 => text.push_str(&format!("E{i},u{i}@x.com,O\"Brien,\"a \"\"b\"\"\"\n")),
                2 => text.push('\n'),
                3 => text.push_str(&format!("E{i},u{i}@x.com\n")),
                _ => text.push_str(&format!("E{i},u{i}@x.com,Lee{i},Ops\n")),
            }
        }
        text.push_str("E999,last@x.com,\"End\nof file\",X");
        let synthetic = dir.path().join("synthetic.csv");
        std::fs::write(&synthetic, &text).unwrap();
        files.push(synthetic);
        let unclosed = dir.path().join("unclosed.csv");
        std::fs::write(
            &unclosed,
            "employee_id,login_id,last_name\nE1,a@x.com,Lee\nE2,b@x.com,\"Open\nE3\n",
        )
        .unwrap();
        files.push(unclosed);
        let opts = CsvOptions::default();
        for path in &files {
            if CsvReader::open(path, &opts).is_err() {
                continue;
            }
            let want = sequential(path, &opts);
            let digest = crate::source::file_digest(path, false).unwrap();
            for (block, threads) in [(7, 1), (64, 2), (1000, 3), (BLOCK, 2)] {
                let (got, d) = chunked(path, &opts, block, threads);
                assert_eq!(got, want, "{} in blocks of {block}", path.display());
                if !want.iter().any(|w| w.starts_with("fatal")) {
                    assert_eq!(d, digest, "{}", path.display());
                }
            }
        }
    }
}
