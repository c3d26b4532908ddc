//! Records and fields found in raw CSV bytes without parsing them: where a block's last
//! complete record ends (quotes followed, so a quoted line break never ends one), the span of
//! one record, one field's bytes, and its value trimmed as the reader trims. The parallel read
//! (`chunks`) uses them to cut blocks and to take a row's employee id before parsing it.

use super::count_newlines;
use crate::validate::is_space;

/// Just past the last line end in `data` that ends a record, following quotes from a record
/// start (a quote opens only at the start of a field, as the CSV parser reads it).
pub(super) fn last_record_end(data: &[u8], delimiter: u8) -> Option<usize> {
    let mut best = None;
    let mut gap = 0usize;
    let mut pos = 0usize;
    while let Some(q) = memchr::memchr(b'"', &data[pos..]).map(|i| pos + i) {
        let field_start = q == 0 || data[q - 1] == delimiter || data[q - 1] == b'\n';
        if !field_start {
            pos = q + 1;
            continue;
        }
        if let Some(n) = memchr::memrchr(b'\n', &data[gap..q]) {
            best = Some(gap + n + 1);
        }
        match closing_quote(data, q + 1) {
            Some(c) if c + 1 < data.len() => {
                gap = c + 1;
                pos = c + 1;
            }
            // Open at the end of the data, or closed on its last byte (an escaped quote may
            // follow): the record is not complete here.
            _ => return best,
        }
    }
    memchr::memrchr(b'\n', &data[gap..])
        .map(|n| gap + n + 1)
        .or(best)
}

/// The quote closing a quoted field whose content starts at `from` (escaped `""` skipped).
pub(super) fn closing_quote(data: &[u8], mut from: usize) -> Option<usize> {
    loop {
        let c = from + memchr::memchr(b'"', &data[from..])?;
        if data.get(c + 1) == Some(&b'"') {
            from = c + 2;
            continue;
        }
        return Some(c);
    }
}

/// Where one record lies in a block.
pub(super) struct Span {
    pub(super) start: usize,
    pub(super) end: usize,
    /// Line breaks inside quoted fields.
    pub(super) inside: u64,
    /// Where a quoted field left open at the end of the file began.
    pub(super) unclosed: Option<usize>,
}

/// The record starting at `start` (a field start).
pub(super) fn record_at(data: &[u8], start: usize, delimiter: u8) -> (Span, usize) {
    let mut p = start;
    let mut inside = 0u64;
    loop {
        let Some(i) = memchr::memchr2(b'"', b'\n', &data[p..]).map(|i| p + i) else {
            let span = Span {
                start,
                end: data.len(),
                inside,
                unclosed: None,
            };
            return (span, data.len());
        };
        if data[i] == b'\n' {
            let span = Span {
                start,
                end: i,
                inside,
                unclosed: None,
            };
            return (span, i + 1);
        }
        if i != start && data[i - 1] != delimiter {
            p = i + 1;
            continue;
        }
        match closing_quote(data, i + 1) {
            Some(c) => {
                inside += count_newlines(&data[i + 1..c]);
                p = c + 1;
            }
            None => {
                let span = Span {
                    start,
                    end: data.len(),
                    inside: inside + count_newlines(&data[i + 1..]),
                    unclosed: Some(i),
                };
                return (span, data.len());
            }
        }
    }
}

/// Field `n` of a record (quotes removed), or `None` past the last field.
pub(super) fn field(record: &[u8], n: usize, delimiter: u8) -> Option<std::borrow::Cow<'_, [u8]>> {
    let mut p = 0usize;
    let mut k = 0usize;
    loop {
        let quoted = record.get(p) == Some(&b'"');
        let (value, next): (std::borrow::Cow<'_, [u8]>, Option<usize>) = if quoted {
            let c = closing_quote(record, p + 1)?;
            let raw = &record[p + 1..c];
            // What follows a closing quote up to the delimiter belongs to the field too; such a
            // field is left to the parser.
            if c + 1 < record.len() && record[c + 1] != delimiter {
                return None;
            }
            let value = if memchr::memchr(b'"', raw).is_some() {
                let mut v = Vec::with_capacity(raw.len());
                let mut i = 0;
                while i < raw.len() {
                    v.push(raw[i]);
                    i += if raw[i] == b'"' { 2 } else { 1 };
                }
                std::borrow::Cow::Owned(v)
            } else {
                std::borrow::Cow::Borrowed(raw)
            };
            (value, (c + 1 < record.len()).then_some(c + 2))
        } else {
            match memchr::memchr(delimiter, &record[p..]) {
                Some(i) => (
                    std::borrow::Cow::Borrowed(&record[p..p + i]),
                    Some(p + i + 1),
                ),
                None => (std::borrow::Cow::Borrowed(&record[p..]), None),
            }
        };
        if k == n {
            return Some(value);
        }
        k += 1;
        p = next?;
    }
}

/// A field's value trimmed as the reader trims, if it is text.
pub(super) fn trimmed(v: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(v).ok()?;
    Some(match (v.first(), v.last()) {
        (Some(a), Some(z)) if a.is_ascii_graphic() && z.is_ascii_graphic() => s,
        _ => s.trim_matches(is_space),
    })
}
