//! Read and plan: the configured source is read and validated, and the planner diffs it against
//! the snapshot; then the company's cached form rules reject what Concur would refuse. No
//! writes anywhere. A CSV is parsed and validated on a second thread while the snapshot loads
//! and the planner runs; the digest of what was read lets `approve` and the drop folder tell
//! whether the source changed.

use crate::config::{Config, PasswordOnCreate};
use crate::error::SyncError;
use crate::model::{Op, Rejection, Secret};
use crate::plan::{self, PlanOptions, Planner};
use crate::source::csv::{CsvReader, RowIssue};
use crate::source::{Records, SourceError, SourceItem};
use crate::store::Store;
use crate::store::readback::FormFieldRow;
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
}

/// Reads the configured source and plans against the snapshot. No writes anywhere.
///
/// A CSV file is parsed and validated on a second thread while this one loads the snapshot
/// and plans, through a small bounded channel: the two cores share the work and memory stays
/// bounded by the channel, not by the file.
pub async fn read_and_plan(cfg: &Config, store: &Store) -> Result<PlannedCycle, SyncError> {
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
    let prior = crate::source::Prior {
        watermarks: store.scim_watermarks()?,
        snapshot_empty: store.user_count()? == 0,
    };
    let opened = crate::source::open(&cfg.source, &prior).await?;
    let v4 = cfg.concur.api == crate::config::ConcurApi::V4;
    let (mut draft, snapshot_users) = match opened.records {
        Records::Csv(reader) => {
            let path = &cfg.source.path;
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
            let normalizer = &normalizer;
            let (draft, snapshot_users, last_row_short) =
                std::thread::scope(|scope| -> Result<_, SyncError> {
                    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Validated>>(16);
                    let warnings = &mut warnings;
                    let producer =
                        scope.spawn(move || validate_csv(*reader, normalizer, tx, warnings));
                    let snapshot = store.snapshot_index();
                    let snapshot = match snapshot {
                        Ok(s) => s,
                        Err(e) => {
                            drop(rx);
                            let _ = producer.join();
                            return Err(e.into());
                        }
                    };
                    let mut planner = Planner::new(&snapshot, &mac, options);
                    for batch in rx {
                        for item in batch {
                            records += 1;
                            match item {
                                Ok(rec) => planner.push(rec),
                                Err(rejections) => planner.push_rejected(rejections),
                            }
                        }
                        crate::progress::read(records);
                    }
                    let (last_row_short, fatal) = producer.join().map_err(|_| {
                        SyncError::Refused(format!(
                            "{}: the reader stopped unexpectedly; nothing was changed",
                            path.display()
                        ))
                    })?;
                    if let Some(e) = fatal {
                        return Err(e.into());
                    }
                    Ok((planner.finish(true), snapshot.len(), last_row_short))
                })?;
            if let Some(at) = last_row_short {
                suspicious = Some(format!(
                    "the last row ({at}) has too few fields: the file looks truncated"
                ));
            }
            (draft, snapshot_users)
        }
        Records::Items(items) => {
            let snapshot = store.snapshot_index()?;
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
            (planner.finish(opened.complete), snapshot.len())
        }
    };
    crate::progress::read(records);
    let t_read = t0.elapsed();
    let source_ids = draft.source_ids;
    let skipped_inactive = draft.skipped_inactive;
    let learned_password_macs = std::mem::take(&mut draft.learned_macs);
    let old = store.load_users(draft.ids_needing_old())?;
    let (ops, rejections, unchanged) = plan::complete(draft, &old);
    // The company's own form rules (cached FormFields): what Concur would refuse is rejected here.
    // Under v4 there are none (User v1's FormFields went with User v1), but UPS v4's own rules
    // (user name characters, lengths, spend values) apply.
    let (ops, rejections) = if v4 {
        apply_v4_rules(ops, rejections)
    } else {
        apply_company_rules(store, ops, rejections)?
    };
    crate::progress::planned(ops.len() as u64);
    tracing::debug!(
        read_and_plan_ms = t_read.as_millis() as u64,
        complete_ms = (t0.elapsed() - t_read).as_millis() as u64,
        snapshot_users,
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
    })
}

/// A source carrying passwords under v4, refused before anything is planned, sent or stored.
fn v4_password_refusal(source: &str) -> SyncError {
    SyncError::Refused(format!(
        "{source}: the source has a password column, but concur.api = \"v4\" cannot set passwords (the User Provisioning Service has no password attribute); remove the column: users sign in through single sign-on. Nothing was sent or stored"
    ))
}

/// One source row after validation.
type Validated = Result<crate::model::SourceRecord, Vec<Rejection>>;

/// The CSV half of [`read_and_plan`]: reads and validates rows, sending them in batches.
/// Returns where the last row was short (a truncated file), and the error that made the file
/// unusable, if any (then the cycle changes nothing).
fn validate_csv(
    reader: CsvReader,
    normalizer: &Normalizer,
    tx: std::sync::mpsc::SyncSender<Vec<Validated>>,
    warnings: &mut Vec<Rejection>,
) -> (Option<String>, Option<SourceError>) {
    const BATCH: usize = 1024;
    let mut batch = Vec::with_capacity(BATCH);
    let mut last_row_short = None;
    for item in reader {
        let validated = match item {
            Ok(raw) => {
                last_row_short = None;
                normalizer.normalize_noting(raw, warnings)
            }
            Err(RowIssue::Rejected(r)) => {
                last_row_short =
                    (r.field == crate::source::csv::ROW_FIELD).then(|| r.source.clone());
                Err(vec![r])
            }
            Err(RowIssue::Fatal(e)) => return (last_row_short, Some(e)),
        };
        batch.push(validated);
        if batch.len() == BATCH
            && tx
                .send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))
                .is_err()
        {
            return (last_row_short, None);
        }
    }
    if !batch.is_empty() {
        let _ = tx.send(batch);
    }
    (last_row_short, None)
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
