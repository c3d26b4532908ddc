//! The Attendees v4 job: a second kind of job beside users, run by the same `sync`.
//!
//! Source: a CSV (`[attendees.source]`, a file or a drop folder whose newest `*.csv` is read)
//! with `external_id, attendee_type_code, first_name, middle_initial, last_name, suffix,
//! company, title, currency, custom1 … custom25`. The key is `external_id` plus the type.
//!
//! Each run: recover what a crash left open; read and validate the source (lengths, required
//! fields, `NOSHOWS`/`SYSEMP` refused locally); look attendees the snapshot does not know up
//! with `GET /v4/attendees?externalId=…` (ten per call, every page); plan a `POST` for new ones
//! and a `PUT` with only the changed fields for changed ones; store the plan in the outbox; send;
//! record each outcome (the snapshot advances with the acknowledgement; Concur's v4 error is
//! kept per attendee). v4 has no delete: attendees gone from the source are listed by `status`.
//!
//! A create is not idempotent, so it is sent once; when its outcome is unknown (no answer, 429,
//! 5xx) the attendee is looked up by external id before it is sent again. A crash between a
//! create and its acknowledgement is healed the same way: the next run finds it by lookup.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::concur::ConcurClient;
use crate::concur::attendees::{self as wire, RemoteAttendee, V4Error};
use crate::config::{AttendeesConfig, attendee_column as column};
use crate::error::SyncError;
use crate::source::SourceError;
use crate::store::Store;
use crate::store::attendees::{
    AttendeeCounts, AttendeeId, AttendeeRejection, AttendeeValidationError, AttendeeWriteError,
    KnownAttendee,
};

/// Attendee types Concur refuses to create or update through v4.
pub const REFUSED_TYPES: [&str; 2] = ["NOSHOWS", "SYSEMP"];

/// One valid attendee row.
#[derive(Debug, Clone)]
pub struct SourceAttendee {
    pub origin: String,
    pub key: AttendeeId,
    /// v4 field name → value; empty values absent.
    pub fields: BTreeMap<String, String>,
}

/// What the attendee source read.
#[derive(Debug, Default)]
pub struct AttendeeRead {
    pub label: String,
    pub records: Vec<SourceAttendee>,
    pub rejections: Vec<AttendeeRejection>,
    /// The v4 fields the file has columns for: only these are compared and written.
    pub columns: Vec<&'static str>,
}

/// The file to read: `path` itself, or the newest `*.csv` of a drop folder.
fn resolve(path: &Path) -> Result<PathBuf, SourceError> {
    if !path.is_dir() {
        return Ok(path.to_path_buf());
    }
    let open_err = |error| SourceError::Open {
        file: path.display().to_string(),
        error,
    };
    let mut newest: Option<(std::time::SystemTime, PathBuf)> = None;
    for entry in std::fs::read_dir(path).map_err(open_err)? {
        let p = entry.map_err(open_err)?.path();
        // Links are never followed in a drop folder.
        let regular = std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_file());
        if !regular || !p.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")) {
            continue;
        }
        let mtime = std::fs::symlink_metadata(&p)
            .and_then(|m| m.modified())
            .map_err(open_err)?;
        if newest.as_ref().is_none_or(|(t, n)| (mtime, &p) > (*t, n)) {
            newest = Some((mtime, p));
        }
    }
    newest.map(|(_, p)| p).ok_or_else(|| SourceError::Open {
        file: path.display().to_string(),
        error: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the drop folder holds no .csv file",
        ),
    })
}

/// Reads and validates the attendee CSV. Row problems become rejections; a file that cannot be
/// used at all (unreadable, not UTF-8, missing key columns) is an error and changes nothing.
pub fn read_source(cfg: &AttendeesConfig) -> Result<AttendeeRead, SyncError> {
    let path = resolve(&cfg.source.path)?;
    let file = path.display().to_string();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| file.clone());
    let from_folder = cfg.source.path.is_dir();
    let f =
        crate::source::csv::open_file(&path, from_folder).map_err(|error| SourceError::Open {
            file: file.clone(),
            error,
        })?;
    let delimiter = cfg.delimiter()?;
    // Records are bounded while reading, like the user CSV's (source.max_record_bytes default).
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(crate::source::csv::LimitedRecords::new(
            std::io::BufReader::new(f),
            delimiter,
            crate::source::csv::DEFAULT_MAX_RECORD_BYTES,
        ));
    let mapping: HashMap<String, String> = cfg
        .source
        .csv
        .columns
        .iter()
        .map(|(h, c)| (h.trim().to_lowercase(), c.clone()))
        .collect();
    let mut out = AttendeeRead {
        label: file.clone(),
        ..AttendeeRead::default()
    };
    let mut header: Option<Vec<Option<(&'static str, usize)>>> = None;
    let mut rec = csv::ByteRecord::new();
    let malformed = |line: u64, reason: String| SourceError::Malformed {
        file: file.clone(),
        line,
        reason,
    };
    loop {
        let more = rdr
            .read_byte_record(&mut rec)
            .map_err(|e| malformed(e.position().map_or(0, |p| p.line()), e.to_string()))?;
        if !more {
            break;
        }
        let line = rec.position().map_or(0, |p| p.line());
        if rec.iter().any(|v| v.contains(&0)) {
            return Err(SourceError::Binary { file, line }.into());
        }
        let mut values = Vec::with_capacity(rec.len());
        for (i, v) in rec.iter().enumerate() {
            match std::str::from_utf8(v) {
                Ok(s) => values.push(s.trim().to_owned()),
                Err(_) => {
                    return Err(SourceError::NotUtf8 {
                        file,
                        line,
                        column: (i + 1).to_string(),
                    }
                    .into());
                }
            }
        }
        if values.iter().all(String::is_empty) {
            continue;
        }
        let Some(cols) = &header else {
            let cols: Vec<Option<(&'static str, usize)>> = values
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    let h = if i == 0 {
                        h.trim_start_matches('\u{feff}')
                    } else {
                        h
                    };
                    let h = h.trim().to_lowercase();
                    let target = mapping.get(&h).cloned().unwrap_or(h);
                    column(&target)
                })
                .collect();
            for (need, v4) in [
                ("external_id", "externalId"),
                ("attendee_type_code", "attendeeTypeCode"),
                ("last_name", "lastName"),
            ] {
                if !cols.iter().flatten().any(|(c, _)| *c == v4) {
                    return Err(SourceError::MissingColumn {
                        file,
                        line,
                        column: need,
                        found: values.join(", "),
                    }
                    .into());
                }
            }
            out.columns = cols.iter().flatten().map(|(c, _)| *c).collect();
            out.columns.sort_unstable();
            out.columns.dedup();
            header = Some(cols);
            continue;
        };
        let origin = format!("{name}:{line}");
        let mut reject = |ext: Option<&str>, field: &str, message: String| {
            out.rejections.push(AttendeeRejection {
                source: origin.clone(),
                external_id: ext.filter(|e| !e.is_empty()).map(str::to_owned),
                field: field.to_owned(),
                message,
            })
        };
        if values.len() != cols.len() {
            reject(
                None,
                "row",
                format!("has {} fields, the header {}", values.len(), cols.len()),
            );
            continue;
        }
        let mut fields = BTreeMap::new();
        for (col, v) in cols.iter().zip(values) {
            if let Some((v4, _)) = col
                && !v.is_empty()
            {
                fields.insert((*v4).to_owned(), v);
            }
        }
        let ext = fields.get("externalId").cloned().unwrap_or_default();
        let before = out.rejections.len();
        let mut reject = |field: &str, message: String| {
            out.rejections.push(AttendeeRejection {
                source: origin.clone(),
                external_id: (!ext.is_empty()).then(|| ext.clone()),
                field: field.to_owned(),
                message,
            })
        };
        for (f, v) in fields.iter_mut() {
            let (canon, max) = cols
                .iter()
                .flatten()
                .find(|(c, _)| c == f)
                .map(|(c, m)| (canonical_name(c), *m))
                .unwrap_or(("", usize::MAX));
            let n = v.chars().count();
            if n > max {
                reject(
                    canon,
                    format!("is {n} characters long; Attendees v4 allows at most {max}"),
                );
            }
            if v.chars().any(char::is_control) {
                reject(canon, "contains a control character".into());
            }
            if f == "attendeeTypeCode" || f == "currencyCode" {
                *v = v.to_ascii_uppercase();
            }
        }
        if ext.is_empty() {
            reject("external_id", "is missing; it is required".into());
        } else if ext.contains(',') {
            reject(
                "external_id",
                "contains a comma, which Attendees v4 lookups cannot carry".into(),
            );
        }
        let kind = fields.get("attendeeTypeCode").cloned().unwrap_or_default();
        if kind.is_empty() {
            reject("attendee_type_code", "is missing; it is required".into());
        } else if REFUSED_TYPES.contains(&kind.as_str()) {
            reject(
                "attendee_type_code",
                format!(
                    "{kind}: Concur does not allow creating or updating attendees of this type"
                ),
            );
        }
        if !fields.contains_key("lastName") {
            reject("last_name", "is missing; it is required".into());
        }
        if let Some(c) = fields.get("currencyCode")
            && !crate::validate::is_currency(c)
        {
            reject(
                "currency",
                format!("{c:?} is not an ISO 4217 currency code"),
            );
        }
        if out.rejections.len() > before {
            continue;
        }
        out.records.push(SourceAttendee {
            origin,
            key: (ext, kind),
            fields,
        });
    }
    if header.is_none() {
        return Err(SourceError::Empty { file }.into());
    }
    // Duplicate keys: every row with the key is rejected.
    let mut seen: HashMap<AttendeeId, usize> = HashMap::new();
    for r in &out.records {
        *seen.entry(r.key.clone()).or_default() += 1;
    }
    let (dups, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut out.records)
        .into_iter()
        .partition(|r| seen[&r.key] > 1);
    for d in dups {
        out.rejections.push(AttendeeRejection {
            source: d.origin,
            external_id: Some(d.key.0.clone()),
            field: "external_id".into(),
            message: format!(
                "external_id {:?} with type {} appears {} times; every such row rejected",
                d.key.0, d.key.1, seen[&d.key]
            ),
        });
    }
    out.records = keep;
    Ok(out)
}

fn canonical_name(v4: &str) -> &'static str {
    match v4 {
        "externalId" => "external_id",
        "attendeeTypeCode" => "attendee_type_code",
        "firstName" => "first_name",
        "middleInitial" => "middle_initial",
        "lastName" => "last_name",
        "suffix" => "suffix",
        "company" => "company",
        "title" => "title",
        "currencyCode" => "currency",
        other => column(other).map_or("", |(c, _)| c),
    }
}

/// Fields of `want` that differ from `have`, over the file's columns: the body of a partial
/// update. A value the source cleared is sent empty; the currency is left to Concur's default.
fn changed(
    want: &BTreeMap<String, String>,
    have: &BTreeMap<String, String>,
    columns: &[&str],
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for &c in columns {
        if c == "attendeeTypeCode" || c == "externalId" {
            continue;
        }
        let w = want.get(c).map(String::as_str).unwrap_or("");
        let h = have.get(c).map(String::as_str).unwrap_or("");
        if w == h || (w.is_empty() && c == "currencyCode") {
            continue;
        }
        out.insert(c.to_owned(), w.to_owned());
    }
    out
}

/// The fields of `all` the source manages (its columns).
fn managed(all: &BTreeMap<String, String>, columns: &[&str]) -> BTreeMap<String, String> {
    all.iter()
        .filter(|(k, _)| columns.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn body(fields: &BTreeMap<String, String>) -> Value {
    Value::Object(
        fields
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

/// What an attendee run reports.
#[derive(Debug, Clone, Serialize)]
pub struct AttendeeReport {
    pub run_id: i64,
    pub outcome: &'static str,
    pub counts: AttendeeCounts,
}

impl AttendeeReport {
    pub fn exit_code(&self) -> u8 {
        if self.outcome == "success" { 0 } else { 2 }
    }
}

enum Planned {
    Create,
    /// Concur id and the fields to change.
    Update(String, BTreeMap<String, String>),
}

/// Runs the attendee job once.
pub async fn run(
    cfg: &AttendeesConfig,
    store: &mut Store,
    client: &ConcurClient,
) -> Result<AttendeeReport, SyncError> {
    let interrupted = store.recover_attendees()?;
    if !interrupted.is_empty() {
        tracing::warn!(runs = ?interrupted, "closed attendee runs a previous process left unfinished");
    }
    let run_id = store.begin_attendee_run(&cfg.source.path.display().to_string())?;
    let span = tracing::info_span!("attendees", run = run_id);
    let _guard = span.enter();
    let mut counts = AttendeeCounts::default();
    let before = client.stats();
    let result = run_inner(cfg, store, client, run_id, &mut counts).await;
    counts.requests = client.stats().requests.saturating_sub(before.requests);
    match result {
        Ok(()) => {
            let outcome = if counts.failed > 0 || counts.rejected > 0 {
                "partial"
            } else {
                "success"
            };
            store.finish_attendee_run(run_id, outcome, &counts, None)?;
            tracing::info!(outcome, ?counts, "attendee run finished");
            Ok(AttendeeReport {
                run_id,
                outcome,
                counts,
            })
        }
        Err(e) => {
            let msg = e.to_string();
            tracing::error!(error = %msg, "attendee run failed");
            store.finish_attendee_run(run_id, "failed", &counts, Some(&msg))?;
            Err(e)
        }
    }
}

async fn run_inner(
    cfg: &AttendeesConfig,
    store: &mut Store,
    client: &ConcurClient,
    run_id: i64,
    counts: &mut AttendeeCounts,
) -> Result<(), SyncError> {
    let read = read_source(cfg)?;
    counts.source_records = (read.records.len() + read.rejections.len()) as u64;
    counts.rejected = read.rejections.len() as u64;
    for r in &read.rejections {
        tracing::warn!(rejection = %r, "attendee rejected");
    }
    store.replace_attendee_rejections(run_id, &read.rejections)?;
    let snapshot = store.attendee_snapshot()?;
    let cols = &read.columns;

    // Look up, by external id, every attendee the snapshot does not know.
    let mut unknown: Vec<&str> = read
        .records
        .iter()
        .filter(|r| !snapshot.contains_key(&r.key))
        .map(|r| r.key.0.as_str())
        .collect();
    unknown.sort_unstable();
    unknown.dedup();
    let found = index(wire::lookup_by_external_ids(client, &unknown, cfg.page_size).await?);

    let mut plan: Vec<(&SourceAttendee, Planned)> = Vec::new();
    for r in &read.records {
        let want = managed(&r.fields, cols);
        if let Some(k) = snapshot.get(&r.key) {
            let diff = changed(&want, &k.fields, cols);
            if diff.is_empty() {
                counts.unchanged += 1;
            } else {
                plan.push((r, Planned::Update(k.concur_id.clone(), diff)));
            }
        } else if let Some(remote) = found.get(&r.key) {
            counts.adopted += 1;
            let diff = changed(&want, &managed(&remote.fields, cols), cols);
            if diff.is_empty() {
                let known = KnownAttendee {
                    concur_id: remote.id.clone(),
                    fields: want,
                };
                store.record_attendee_ack(run_id, None, &r.key, &known)?;
            } else {
                plan.push((r, Planned::Update(remote.id.clone(), diff)));
            }
        } else {
            plan.push((r, Planned::Create));
        }
    }
    let entries: Vec<(&AttendeeId, &str, String)> = plan
        .iter()
        .map(|(r, p)| match p {
            Planned::Create => (&r.key, "create", body(&r.fields).to_string()),
            Planned::Update(_, diff) => (&r.key, "update", body(diff).to_string()),
        })
        .collect();
    let ids = store.write_attendee_outbox(run_id, &entries)?;
    tracing::info!(
        creates = plan
            .iter()
            .filter(|p| matches!(p.1, Planned::Create))
            .count(),
        updates = plan
            .iter()
            .filter(|p| matches!(p.1, Planned::Update(..)))
            .count(),
        unchanged = counts.unchanged,
        rejected = counts.rejected,
        "planned attendees"
    );

    for ((r, p), outbox_id) in plan.iter().zip(ids) {
        store.mark_attendee_inflight(outbox_id)?;
        let want = managed(&r.fields, cols);
        let outcome = match p {
            Planned::Create => match create(cfg, client, r).await {
                Ok(result) => result,
                Err(e) => {
                    let v = V4Error {
                        status: 0,
                        message: format!("not confirmed: {e}"),
                        validation_errors: Vec::new(),
                    };
                    store.record_attendee_failure(
                        run_id,
                        outbox_id,
                        &r.key,
                        "create",
                        &write_error(&v),
                    )?;
                    counts.failed += 1;
                    return Err(e);
                }
            },
            Planned::Update(id, diff) => match wire::update(client, id, &body(diff)).await {
                Ok(Ok(())) => Ok(id.clone()),
                Ok(Err(e)) => Err(e),
                Err(e) => {
                    let v = V4Error {
                        status: e.status().unwrap_or(0),
                        message: format!("not applied: {e}"),
                        validation_errors: Vec::new(),
                    };
                    store.record_attendee_failure(
                        run_id,
                        outbox_id,
                        &r.key,
                        "update",
                        &write_error(&v),
                    )?;
                    counts.failed += 1;
                    return Err(e.into());
                }
            },
        };
        match outcome {
            Ok(concur_id) => {
                match p {
                    Planned::Create => counts.created += 1,
                    Planned::Update(..) => counts.updated += 1,
                }
                let known = KnownAttendee {
                    concur_id,
                    fields: want,
                };
                store.record_attendee_ack(run_id, Some(outbox_id), &r.key, &known)?;
            }
            Err(e) => {
                counts.failed += 1;
                let op = if matches!(p, Planned::Create) {
                    "create"
                } else {
                    "update"
                };
                tracing::warn!(external_id = %r.key.0, attendee_type_code = %r.key.1, operation = op, error = %e, "Concur refused the attendee");
                store.record_attendee_failure(run_id, outbox_id, &r.key, op, &write_error(&e))?;
            }
        }
    }
    let present: HashSet<AttendeeId> = read
        .records
        .iter()
        .map(|r| r.key.clone())
        .chain(
            // A rejected row keeps its attendee: it is not gone from the source.
            read.rejections
                .iter()
                .filter_map(|x| x.external_id.clone())
                .flat_map(|e| {
                    snapshot
                        .keys()
                        .filter(move |k| k.0 == e)
                        .cloned()
                        .collect::<Vec<_>>()
                }),
        )
        .collect();
    counts.missing_from_source = store.mark_attendees_missing(&present)?;
    Ok(())
}

/// Lookup results by (external id, upper-case type); the lowest id wins among duplicates.
fn index(list: Vec<RemoteAttendee>) -> HashMap<AttendeeId, RemoteAttendee> {
    let mut out: HashMap<AttendeeId, RemoteAttendee> = HashMap::new();
    for a in list {
        let key = (
            a.get("externalId").to_owned(),
            a.get("attendeeTypeCode").to_ascii_uppercase(),
        );
        match out.get(&key) {
            Some(prev) if prev.id <= a.id => {}
            _ => {
                out.insert(key, a);
            }
        }
    }
    out
}

/// Creates one attendee. An unknown outcome is resolved by looking it up before sending again.
async fn create(
    cfg: &AttendeesConfig,
    client: &ConcurClient,
    r: &SourceAttendee,
) -> Result<Result<String, V4Error>, SyncError> {
    let attempts = 6;
    let mut last = None;
    for attempt in 1..=attempts {
        if attempt > 1 {
            let found = index(
                wire::lookup_by_external_ids(client, &[r.key.0.as_str()], cfg.page_size).await?,
            );
            if let Some(a) = found.get(&r.key) {
                tracing::info!(external_id = %r.key.0, "an unconfirmed create had been applied; found by lookup");
                return Ok(Ok(a.id.clone()));
            }
        }
        match wire::create(client, &body(&r.fields)).await {
            Ok(result) => return Ok(result),
            Err(e) if e.is_retryable() => {
                tracing::info!(external_id = %r.key.0, attempt, error = %e, "attendee create unconfirmed; looking it up before sending again");
                last = Some(e);
            }
            Err(e) => return Err(e.into()),
        }
    }
    match last {
        Some(e) => Err(e.into()),
        None => Ok(Err(V4Error::default())),
    }
}

/// The attendee job as `sync` runs it after the user cycle: prints a line, returns the exit code.
pub async fn command_run(
    cfg: &AttendeesConfig,
    store: &mut Store,
    client: &ConcurClient,
) -> Result<u8, SyncError> {
    let report = run(cfg, store, client).await?;
    let c = &report.counts;
    crate::outln!(
        "attendees {} {}: {} created, {} updated, {} adopted, {} failed, {} rejected, {} unchanged, {} gone from the source",
        report.run_id,
        report.outcome,
        c.created,
        c.updated,
        c.adopted,
        c.failed,
        c.rejected,
        c.unchanged,
        c.missing_from_source
    );
    Ok(report.exit_code())
}

/// A refused v4 write as the store records it.
fn write_error(e: &V4Error) -> AttendeeWriteError {
    AttendeeWriteError {
        summary: e.to_string(),
        message: e.message.clone(),
        validation_errors: e
            .validation_errors
            .iter()
            .map(|v| AttendeeValidationError {
                id: v.id.clone(),
                message: v.message.clone(),
                source: v.source.clone(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AttendeeSourceConfig, AttendeeSourceKind, CsvConfig};

    fn config(path: &Path, columns: &[(&str, &str)]) -> AttendeesConfig {
        AttendeesConfig {
            source: AttendeeSourceConfig {
                kind: AttendeeSourceKind::Csv,
                path: path.to_path_buf(),
                csv: CsvConfig {
                    delimiter: Some(";".into()),
                    columns: columns
                        .iter()
                        .map(|(h, c)| (h.to_string(), c.to_string()))
                        .collect(),
                },
            },
            page_size: 100,
        }
    }

    #[test]
    fn reads_a_mapped_file_and_rejects_bad_rows_naming_line_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.csv");
        std::fs::write(
            &f,
            "\u{feff}Guest ID;attendee_type_code;Surname;currency;custom22\n\
             G1;busguest;Tree;usd;x\n\
             G2;BUSGUEST;;USD;\n\
             G3;BUSGUEST;Long;EUR;{long}\n\
             G4;BUSGUEST;Dup;;\n\
             G4;busguest;Dup again;;\n\
             G,5;BUSGUEST;Comma;;\n\
             G6;BUSGUEST;Money;ABC;\n"
                .replace("{long}", &"y".repeat(49)),
        )
        .unwrap();
        let cfg = config(&f, &[("Guest ID", "external_id"), ("surname", "last_name")]);
        cfg.validate().unwrap();
        let read = read_source(&cfg).unwrap();
        assert_eq!(
            read.records.len(),
            1,
            "{:?} {:?}",
            read.records,
            read.rejections
        );
        let g1 = &read.records[0];
        assert_eq!(g1.key, ("G1".to_owned(), "BUSGUEST".to_owned()));
        assert_eq!(g1.fields["currencyCode"], "USD");
        assert_eq!(g1.fields["custom22"], "x");
        let got: Vec<String> = read.rejections.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            got,
            [
                "a.csv:3: attendee G2: field last_name: is missing; it is required",
                "a.csv:4: attendee G3: field custom22: is 49 characters long; Attendees v4 allows at most 48",
                "a.csv:7: attendee G,5: field external_id: contains a comma, which Attendees v4 lookups cannot carry",
                "a.csv:8: attendee G6: field currency: \"ABC\" is not an ISO 4217 currency code",
                "a.csv:5: attendee G4: field external_id: external_id \"G4\" with type BUSGUEST appears 2 times; every such row rejected",
                "a.csv:6: attendee G4: field external_id: external_id \"G4\" with type BUSGUEST appears 2 times; every such row rejected",
            ]
        );
    }

    #[test]
    fn a_file_without_key_columns_or_not_utf8_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.csv");
        std::fs::write(&f, "external_id;last_name\nA;B\n").unwrap();
        let e = read_source(&config(&f, &[])).unwrap_err().to_string();
        assert!(
            e.contains("attendee_type_code") && e.contains("a.csv"),
            "{e}"
        );
        std::fs::write(&f, b"external_id;attendee_type_code;last_name\nA;X;\xff\n").unwrap();
        let e = read_source(&config(&f, &[])).unwrap_err().to_string();
        assert!(e.contains("UTF-8") && e.contains(":2"), "{e}");
    }

    #[test]
    fn a_drop_folder_reads_its_newest_csv() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("2024-01-01.csv");
        let new = dir.path().join("2024-01-02.csv");
        std::fs::write(&old, "external_id;attendee_type_code;last_name\nOLD;X;Y\n").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&new, "external_id;attendee_type_code;last_name\nNEW;X;Y\n").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let read = read_source(&config(dir.path(), &[])).unwrap();
        assert_eq!(read.records[0].key.0, "NEW");
    }

    #[test]
    fn only_changed_columns_are_sent() {
        let m = |kv: &[(&str, &str)]| -> BTreeMap<String, String> {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let cols = ["company", "currencyCode", "externalId", "lastName", "title"];
        let want = m(&[("externalId", "A"), ("lastName", "L"), ("title", "Dr")]);
        let have = m(&[
            ("externalId", "A"),
            ("lastName", "L"),
            ("company", "C"),
            ("currencyCode", "USD"),
            ("custom3", "kept: not a column"),
        ]);
        assert_eq!(
            changed(&want, &have, &cols),
            m(&[("company", ""), ("title", "Dr")])
        );
    }

    #[test]
    fn config_names_a_bad_column_and_page_size() {
        let mut cfg = config(Path::new("/x.csv"), &[("Who", "name")]);
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("attendees.source.csv.columns.Who"), "{e}");
        cfg.source.csv.columns.clear();
        cfg.page_size = 101;
        assert!(
            cfg.validate()
                .unwrap_err()
                .to_string()
                .contains("attendees.page_size")
        );
    }
}
