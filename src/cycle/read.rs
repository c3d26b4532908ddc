//! Read and plan: the configured source is read and validated, and the planner diffs it against
//! the snapshot; then the company's cached form rules reject what Concur would refuse. No
//! writes anywhere. A CSV is read in blocks on every core (`source::csv::chunks`): rows whose
//! stamp matches the snapshot index are counted unchanged unparsed, the others are parsed and
//! validated on the workers, and the planner takes them in file order; the digest of what was
//! read lets `approve` and the drop folder tell whether the source changed.

use crate::config::{Config, PasswordOnCreate};
use crate::error::SyncError;
use crate::model::RawRecord;
use crate::model::{Op, Rejection, Secret};
use crate::plan::{self, PlanOptions, Planner};
use crate::source::csv::chunks::{self, RawRow, Row};
use crate::source::csv::{CsvOptions, CsvReader, RowIssue};
use crate::source::{Records, SourceItem};
use crate::store::readback::FormFieldRow;
use crate::store::{BaselineRow, Store};
use crate::validate::Normalizer;

/// A computed plan, ready to print or to apply.
#[derive(Debug, Default)]
pub struct PlannedCycle {
    pub ops: Vec<Op>,
    pub rejections: Vec<Rejection>,
    /// Values changed to let a record through (a line break collapsed to a space).
    pub warnings: Vec<Rejection>,
    pub unchanged: u64,
    pub skipped_inactive: u64,
    /// Operations left out because their record is parked (`skip`).
    pub skipped: u64,
    pub source_records: u64,
    pub source_label: String,
    pub source_digest: String,
    /// The SCIM read's watermark, recorded for the cycle that applies this plan.
    pub watermark: Option<crate::model::ScimReadMark>,
    /// False for partial (delta) reads, which never deactivate anyone.
    pub complete: bool,
    /// Distinct employee ids the source named (valid or rejected).
    pub source_ids: u64,
    /// Why the read looks cut short (e.g. a truncated last row); such a read deactivates nobody.
    pub suspicious: Option<String>,
    /// Users whose password was unknown (after a new state key): the keyed hash of the source
    /// password now seen, recorded by the cycle without sending anything.
    pub learned_password_macs: Vec<(String, [u8; 16])>,
    /// Row stamps to record (a CSV source): rows found unchanged in full now, and those the
    /// operations earn once acknowledged.
    pub row_stamps: Option<plan::RowStamps>,
}

/// Reads the configured source and plans against the snapshot. No writes anywhere.
///
/// A CSV file is read on every core while this thread plans; memory stays bounded by the
/// blocks in flight and the compact snapshot index, not by the file.
pub async fn read_and_plan(cfg: &Config, store: &Store) -> Result<PlannedCycle, SyncError> {
    let mut planned = read_and_plan_unruled(cfg, store).await?;
    apply_form_rules(cfg, store, &mut planned)?;
    Ok(planned)
}

/// The form rules applied to a plan made by [`read_and_plan_unruled`]: under v4 UPS v4's own
/// (user name characters, lengths, spend values), under v1 the company's cached FormFields.
/// What Concur would refuse becomes a rejection.
pub(super) fn apply_form_rules(
    cfg: &Config,
    store: &Store,
    planned: &mut PlannedCycle,
) -> Result<(), SyncError> {
    let ops = std::mem::take(&mut planned.ops);
    let rejections = std::mem::take(&mut planned.rejections);
    (planned.ops, planned.rejections) = if cfg.concur.api == crate::config::ConcurApi::V4 {
        apply_v4_rules(ops, rejections)
    } else {
        apply_company_rules(store, ops, rejections)?
    };
    crate::progress::planned(planned.ops.len() as u64);
    Ok(())
}

/// [`read_and_plan`] without the form rules, which the caller applies once the FormFields
/// cache is current ([`apply_form_rules`]): the cycle reads and plans while FormFields are
/// fetched.
pub(super) async fn read_and_plan_unruled(
    cfg: &Config,
    store: &Store,
) -> Result<PlannedCycle, SyncError> {
    let normalizer =
        Normalizer::new(&cfg.defaults).map_err(|m| crate::config::ConfigError::Invalid {
            key: "defaults".into(),
            message: m,
        })?;
    let options = PlanOptions {
        source_passwords: cfg.sync.password_on_create == PasswordOnCreate::Source,
        manager_must_approve: cfg.concur.api == crate::config::ConcurApi::V4,
    };
    let mac = |id: &str, pw: &Secret| store.password_mac(id, pw);
    let t0 = std::time::Instant::now();
    let mut records = 0u64;
    let mut suspicious = None;
    let mut warnings = Vec::new();
    let v4 = cfg.concur.api == crate::config::ConcurApi::V4;
    if cfg.source.kind == crate::config::SourceKind::Csv {
        let path = &cfg.source.path;
        let reader = open_csv(cfg, v4)?;
        let fingerprint = fingerprint(cfg, &reader, options);
        let loaded = store.row_index()?;
        let snapshot = loaded.index();
        let t_index = t0.elapsed();
        let mut planner = Planner::new(&snapshot, &mac, options);
        planner.stamping(fingerprint, reader.file_name());
        let threads = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        let unchanged = |key: u128, digest: u128| snapshot.unchanged(fingerprint, key, digest);
        let parse = |row: &RawRow<'_>, raw: RawRecord, notes: &mut Vec<Rejection>| {
            (normalizer.normalize_noting(raw, notes), row.digest)
        };
        let mut last_row_short = None;
        let mut fatal = None;
        let end = chunks::read(&reader, threads, &unchanged, &parse, |block| {
            if let Some(e) = block.fatal {
                fatal = Some(e);
                return false;
            }
            warnings.extend(block.notes);
            for row in block.rows {
                records += 1;
                match row {
                    Row::Unchanged(entry, line) => {
                        last_row_short = None;
                        planner.push_unchanged(entry, line);
                    }
                    Row::Parsed((Ok(rec), digest)) => {
                        last_row_short = None;
                        planner.push_row(rec, Some(digest));
                    }
                    Row::Parsed((Err(rejections), _)) => {
                        last_row_short = None;
                        planner.push_rejected(rejections);
                    }
                    Row::Rejected(r) => {
                        last_row_short =
                            (r.field == crate::source::csv::ROW_FIELD).then(|| r.source.clone());
                        planner.push_rejected(vec![r]);
                    }
                }
            }
            crate::progress::read(records);
            true
        })?;
        if let Some(e) = fatal {
            return Err(e.into());
        }
        if let Some(at) = last_row_short {
            suspicious = Some(format!(
                "the last row ({at}) has too few fields: the file looks truncated"
            ));
        }
        let t_rows = t0.elapsed();
        let draft = planner.finish(true);
        tracing::debug!(
            index_ms = t_index.as_millis() as u64,
            snapshot_users = snapshot.len(),
            rows_ms = (t_rows - t_index).as_millis() as u64,
            finish_ms = (t0.elapsed() - t_rows).as_millis() as u64,
            "snapshot index, rows read, plan finished"
        );
        drop(snapshot);
        drop(loaded);
        let opened = Opened {
            label: path.display().to_string(),
            digest: end.digest,
            complete: true,
            watermark: None,
        };
        return finish_plan(store, draft, opened, records, warnings, suspicious, t0);
    }
    let prior = crate::source::Prior {
        watermarks: store.scim_watermarks()?,
        snapshot_empty: store.user_count()? == 0,
    };
    let opened = crate::source::open(&cfg.source, &prior).await?;
    let draft = match opened.records {
        Records::Csv(reader) => {
            // A CSV source is read above; a reader here is read row by row.
            let snapshot = crate::plan::RowIndex::from(&store.snapshot_index()?);
            let mut planner = Planner::new(&snapshot, &mac, options);
            for item in *reader {
                records += 1;
                if records.is_multiple_of(1024) {
                    crate::progress::read(records);
                }
                match item {
                    Ok(raw) => match normalizer.normalize_noting(raw, &mut warnings) {
                        Ok(rec) => planner.push(rec),
                        Err(rejections) => planner.push_rejected(rejections),
                    },
                    Err(RowIssue::Rejected(r)) => planner.push_rejected(vec![r]),
                    Err(RowIssue::Fatal(e)) => return Err(e.into()),
                }
            }
            planner.finish(true)
        }
        Records::Items(items) => {
            let snapshot = crate::plan::RowIndex::from(&store.snapshot_index()?);
            let mut planner = Planner::new(&snapshot, &mac, options);
            for item in items {
                records += 1;
                if records.is_multiple_of(1024) {
                    crate::progress::read(records);
                }
                if v4
                    && let SourceItem::Record(raw) = &item
                    && raw.password.is_some()
                {
                    return Err(v4_password_refusal(&raw.origin.to_string()));
                }
                let validated = match item {
                    SourceItem::Record(raw) => normalizer.normalize_noting(raw, &mut warnings),
                    SourceItem::Rejected(r) => Err(vec![r]),
                };
                match validated {
                    Ok(rec) => planner.push(rec),
                    Err(rejections) => planner.push_rejected(rejections),
                }
            }
            planner.finish(opened.complete)
        }
    };
    let opened = Opened {
        label: opened.label,
        digest: opened.digest,
        complete: opened.complete,
        watermark: opened.watermark,
    };
    finish_plan(store, draft, opened, records, warnings, suspicious, t0)
}

/// What a read left for the plan besides its records.
struct Opened {
    label: String,
    digest: String,
    complete: bool,
    watermark: Option<crate::model::ScimReadMark>,
}

/// The plan completed from a draft: old records loaded, field changes (not the form rules).
fn finish_plan(
    store: &Store,
    mut draft: plan::Draft,
    opened: Opened,
    records: u64,
    warnings: Vec<Rejection>,
    suspicious: Option<String>,
    t0: std::time::Instant,
) -> Result<PlannedCycle, SyncError> {
    crate::progress::read(records);
    let t_read = t0.elapsed();
    let source_ids = draft.source_ids;
    let skipped_inactive = draft.skipped_inactive;
    let learned_password_macs = std::mem::take(&mut draft.learned_macs);
    let row_stamps = draft.row_stamps.take();
    let old = store.load_users(draft.ids_needing_old())?;
    let (ops, rejections, unchanged) = plan::complete(draft, &old);
    tracing::debug!(
        read_and_plan_ms = t_read.as_millis() as u64,
        complete_ms = (t0.elapsed() - t_read).as_millis() as u64,
        "plan timings"
    );
    Ok(PlannedCycle {
        ops,
        rejections,
        warnings,
        unchanged,
        skipped_inactive,
        skipped: 0,
        source_records: records,
        source_label: opened.label,
        source_digest: opened.digest,
        complete: opened.complete,
        watermark: opened.watermark,
        source_ids,
        suspicious,
        learned_password_macs,
        row_stamps,
    })
}

/// What a CSV row's stamp is bound to besides its bytes: everything that decides what a row
/// becomes (column mapping and the file's header, delimiter, limits, defaults, the rules of
/// this build, the plan options). A change of any of them re-plans every row in full.
fn fingerprint(cfg: &Config, reader: &CsvReader, options: PlanOptions) -> u128 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let mut text = |s: &str| {
        h.update(&(s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    };
    text(crate::plan::index::STAMP_RULES);
    text(env!("CARGO_PKG_VERSION"));
    for (k, v) in &cfg.defaults {
        text(k);
        text(v);
    }
    for (k, v) in &cfg.source.csv.columns {
        text(k);
        text(v);
    }
    text(&format!("{:?}", reader.columns()));
    text(&format!(
        "{:?} {} {} {} {}",
        cfg.source.delimiter(),
        cfg.source.max_record_bytes,
        cfg.source.max_field_bytes,
        options.source_passwords,
        options.manager_must_approve
    ));
    h.digest128()
}

/// What `baseline` of a CSV file recorded.
pub struct Baselined {
    pub users: u64,
    pub rejected: u64,
    pub label: String,
}

/// `baseline` of a CSV source into an empty snapshot, streamed: the file is planned once
/// keeping only which rows to record (a lean plan: every rule of a plan, no records kept), then
/// read again and each of those rows recorded as it is parsed, in one transaction. Memory
/// stays bounded by what a plan keeps per row, not by the users. `None` when the source is not
/// a CSV file or the snapshot is not empty: the caller plans in full.
pub fn baseline_csv(cfg: &Config, store: &mut Store) -> Result<Option<Baselined>, SyncError> {
    if cfg.source.kind != crate::config::SourceKind::Csv || store.user_count()? > 0 {
        return Ok(None);
    }
    let normalizer =
        Normalizer::new(&cfg.defaults).map_err(|m| crate::config::ConfigError::Invalid {
            key: "defaults".into(),
            message: m,
        })?;
    let v4 = cfg.concur.api == crate::config::ConcurApi::V4;
    let options = PlanOptions {
        source_passwords: cfg.sync.password_on_create == PasswordOnCreate::Source,
        manager_must_approve: v4,
    };
    let path = &cfg.source.path;
    let reader = open_csv(cfg, v4)?;
    let fingerprint = fingerprint(cfg, &reader, options);
    let threads = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    let none = |_: u128, _: u128| None;
    let t0 = std::time::Instant::now();

    // The plan, keeping per row what its rules need.
    let snapshot = plan::RowIndex::empty();
    let draft = {
        let mac = |id: &str, pw: &Secret| store.password_mac(id, pw);
        let mut planner = Planner::new(&snapshot, &mac, options);
        planner.lean();
        // Of a valid record only what the lean plan reads travels to it.
        let parse = |row: &RawRow<'_>, raw: RawRecord, notes: &mut Vec<Rejection>| {
            let rec = normalizer.normalize_noting(raw, notes).map(|mut rec| {
                rec.user.keep(&plan::LEAN_FIELDS);
                rec.password = None;
                rec
            });
            (rec, row.digest)
        };
        let mut records = 0u64;
        let mut fatal = None;
        let end = chunks::read(&reader, threads, &none, &parse, |block| {
            if let Some(e) = block.fatal {
                fatal = Some(e);
                return false;
            }
            for row in block.rows {
                records += 1;
                match row {
                    Row::Unchanged(..) => {}
                    Row::Parsed((Ok(rec), digest)) => planner.push_row(rec, Some(digest)),
                    Row::Parsed((Err(rejections), _)) => planner.push_rejected(rejections),
                    Row::Rejected(r) => planner.push_rejected(vec![r]),
                }
            }
            crate::progress::read(records);
            true
        })?;
        if let Some(e) = fatal {
            return Err(e.into());
        }
        (planner.finish(true), end.digest)
    };
    let (draft, digest) = draft;
    let creates = draft.lean_creates;
    let mut rejected = draft.rejections.len() as u64;
    drop(draft.rejections);
    crate::progress::planned(creates.len() as u64);
    tracing::debug!(
        plan_ms = t0.elapsed().as_millis() as u64,
        creates = creates.len(),
        "baseline planned"
    );

    // The form rules of a plan, applied to each user as it is recorded.
    let company = if v4 {
        None
    } else {
        let fields = store.form_fields()?;
        (!fields.is_empty()).then(|| {
            crate::rules::company_rules(
                fields.iter().map(FormFieldRow::rule),
                crate::concur::readback::canonical_field,
            )
        })
    };
    let broken = |rec: &crate::model::SourceRecord| -> usize {
        if v4 {
            crate::concur::v4::violations(&rec.user).len()
        } else {
            company
                .as_ref()
                .map_or(0, |rules| rules.rejections(&rec.origin, &rec.user).len())
        }
    };
    // Only the rows to record are parsed again, each checked and made ready where it is
    // parsed: a user to record, or the number of rules it breaks.
    let parse = |row: &RawRow<'_>, raw: RawRecord, notes: &mut Vec<Rejection>| {
        if creates.binary_search(&row.digest).is_err() {
            return None;
        }
        let rec = normalizer.normalize_noting(raw, notes).ok()?;
        Some(match broken(&rec) {
            0 => Ok(BaselineRow::new(&rec.user, fingerprint, row.digest)),
            n => Err(n as u64),
        })
    };
    let label = path.display().to_string();
    let users = store.baseline_stream(
        crate::store::Ownership::Adopted,
        |put| -> Result<u64, SyncError> {
            let mut users = 0u64;
            let mut failed: Option<SyncError> = None;
            let end = chunks::read(&reader, threads, &none, &parse, |block| {
                if let Some(e) = block.fatal {
                    failed = Some(e.into());
                    return false;
                }
                for row in block.rows {
                    match row {
                        Row::Parsed(Some(Ok(user))) => {
                            if let Err(e) = put(&user) {
                                failed = Some(e.into());
                                return false;
                            }
                            users += 1;
                        }
                        Row::Parsed(Some(Err(n))) => rejected += n,
                        _ => {}
                    }
                }
                true
            })?;
            if let Some(e) = failed {
                return Err(e);
            }
            if end.digest != digest {
                return Err(SyncError::Refused(format!(
                    "{label}: the file changed while it was read; nothing was recorded"
                )));
            }
            Ok(users)
        },
    )?;
    Ok(Some(Baselined {
        users,
        rejected,
        label,
    }))
}

/// A source carrying passwords under v4, refused before anything is planned, sent or stored.
/// Opens the configured CSV file: refuses a password column under v4, warns of columns that
/// map to no canonical field.
fn open_csv(cfg: &Config, v4: bool) -> Result<CsvReader, SyncError> {
    let path = &cfg.source.path;
    let reader = CsvReader::open(path, &CsvOptions::from_config(&cfg.source)?)?;
    if v4
        && reader
            .columns()
            .contains(&crate::source::csv::Column::Password)
    {
        return Err(v4_password_refusal(&path.display().to_string()));
    }
    for col in reader.unknown_columns() {
        tracing::warn!(file = %path.display(), column = %col, "ignoring a column that maps to no canonical field");
    }
    Ok(reader)
}

fn v4_password_refusal(source: &str) -> SyncError {
    SyncError::Refused(format!(
        "{source}: the source has a password column, but concur.api = \"v4\" cannot set passwords (the User Provisioning Service has no password attribute); remove the column: users sign in through single sign-on. Nothing was sent or stored"
    ))
}

/// The v4 rules applied to a plan: a create, update or reactivation breaking one is rejected,
/// each rule named; deactivations and passwords are left alone.
fn apply_v4_rules(ops: Vec<Op>, mut rejections: Vec<Rejection>) -> (Vec<Op>, Vec<Rejection>) {
    let mut kept = Vec::with_capacity(ops.len());
    for op in ops {
        let broken = match op.kind {
            crate::model::OpKind::Create
            | crate::model::OpKind::Update
            | crate::model::OpKind::Reactivate => crate::concur::v4::violations(&op.user),
            _ => Vec::new(),
        };
        if broken.is_empty() {
            kept.push(op);
            continue;
        }
        rejections.extend(broken.into_iter().map(|(field, message)| Rejection {
            source: op.origin.clone(),
            employee_id: Some(op.employee_id.clone()),
            field: field.name().into(),
            message,
            identity: crate::model::RowIdentity::default(),
        }));
    }
    (kept, rejections)
}

/// The company's own form rules (cached FormFields) applied to a plan: what Concur would refuse
/// is rejected here. Without a cached form the plan is left as it is.
fn apply_company_rules(
    store: &Store,
    ops: Vec<Op>,
    rejections: Vec<Rejection>,
) -> Result<(Vec<Op>, Vec<Rejection>), crate::store::StoreError> {
    let fields = store.form_fields()?;
    if fields.is_empty() {
        return Ok((ops, rejections));
    }
    let rules = crate::rules::company_rules(
        fields.iter().map(FormFieldRow::rule),
        crate::concur::readback::canonical_field,
    );
    Ok(crate::rules::reject_breaking(&rules, ops, rejections))
}
