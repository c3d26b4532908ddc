//! The HR CSV reader and the normalizer over arbitrary file content: every outcome is a record,
//! a row rejection or a fatal source error, never a panic.
#![no_main]

use std::collections::BTreeMap;
use std::io::Write;

use concur_sync::source::csv::{CsvOptions, CsvReader, RowIssue};
use concur_sync::validate::Normalizer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the delimiter, so that tab- and semicolon-separated files are covered.
    let (delimiter, content) = match data.split_first() {
        Some((b, rest)) => ([b',', b';', b'\t', b'|'][(*b % 4) as usize], rest),
        None => (b',', data),
    };
    let Ok(mut file) = tempfile::NamedTempFile::new() else {
        return;
    };
    if file.write_all(content).is_err() || file.flush().is_err() {
        return;
    }
    let opts = CsvOptions {
        delimiter,
        columns: BTreeMap::from([("Mail".to_owned(), "email".to_owned())]),
        ..CsvOptions::default()
    };
    let Ok(reader) = CsvReader::open(file.path(), &opts) else {
        return;
    };
    let defaults = BTreeMap::from([("ledger".to_owned(), "DEFAULT".to_owned())]);
    let Ok(normalizer) = Normalizer::new(&defaults) else {
        return;
    };
    for item in reader {
        match item {
            Ok(raw) => {
                let _ = normalizer.normalize(raw);
            }
            Err(RowIssue::Rejected(r)) => {
                let _ = r.to_string();
            }
            Err(RowIssue::Fatal(e)) => {
                let _ = e.to_string();
                break;
            }
        }
    }
});
