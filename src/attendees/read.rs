//! Reading the attendee list: the user source's CSV reader (`source::csv`: limits while
//! streaming, byte-order mark, delimiter, line numbers, the rules that reject a row or fail the
//! file) over the attendee columns, then the attendee rules. Header: `external_id,
//! attendee_type_code, first_name, middle_initial, last_name, suffix, company, title, currency,
//! custom1 … custom25`, the first three mandatory; the key is `external_id` plus the type.
//!
//! A row that breaks a rule becomes a [`Rejection`] naming `file:line`, the attendee (its
//! external id, in `employee_id`) and the column: v4 lengths, required fields, no comma in an
//! external id, `NOSHOWS`/`SYSEMP` refused, an ISO 4217 currency, and a key that appears twice
//! rejects every such row. A file that cannot be used at all is an error and changes nothing.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::REFUSED_TYPES;
use super::plan::SourceAttendee;
use crate::config::{AttendeeColumn, AttendeesConfig, DEFAULT_MAX_RECORD_BYTES, attendee_column};
use crate::error::SyncError;
use crate::model::{Origin, Rejection, RowIdentity};
use crate::source::csv::{ColumnSet, CsvFile, CsvOptions, RowIssue};
use crate::store::attendees::AttendeeId;

/// The attendee columns, for the CSV reader. Unknown columns read as `None`.
#[derive(Debug)]
pub struct AttendeeColumns;

impl ColumnSet for AttendeeColumns {
    type Column = Option<AttendeeColumn>;
    type Record = AttendeeRow;
    const IGNORED: Self::Column = None;
    const REQUIRED: &'static [Self::Column] = &[
        Some(AttendeeColumn::EXTERNAL_ID),
        Some(AttendeeColumn::TYPE_CODE),
        Some(AttendeeColumn::LAST_NAME),
    ];
    const KEY: Self::Column = Some(AttendeeColumn::EXTERNAL_ID);
    const MARK: Option<(Self::Column, char)> = None;

    fn column(canonical: &str) -> Option<Self::Column> {
        attendee_column(canonical).map(Some)
    }

    fn name(column: Self::Column) -> &'static str {
        column.map_or("", |c| c.name)
    }

    fn identity<'a>(values: impl Iterator<Item = (Self::Column, &'a str)>) -> RowIdentity {
        let mut id = RowIdentity::default();
        for (_, v) in values.filter(|(c, _)| *c == Self::KEY) {
            id.push(v);
        }
        id
    }

    fn record<'a>(
        origin: Origin,
        values: impl Iterator<Item = (Self::Column, &'a str)>,
    ) -> AttendeeRow {
        AttendeeRow {
            origin,
            values: values
                .filter_map(|(c, v)| Some((c?, v.to_owned())))
                .collect(),
        }
    }
}

/// One attendee row as read: its non-empty values, not yet checked.
#[derive(Debug)]
pub struct AttendeeRow {
    origin: Origin,
    values: Vec<(AttendeeColumn, String)>,
}

/// What the attendee source read.
#[derive(Debug, Default)]
pub struct AttendeeRead {
    pub records: Vec<SourceAttendee>,
    pub rejections: Vec<Rejection>,
    /// The v4 fields the file has columns for: only these are compared and written.
    pub columns: Vec<&'static str>,
}

/// Reads and checks an attendee file; `no_follow` refuses a symbolic link (drop-folder files).
pub fn read_file(
    path: &Path,
    cfg: &AttendeesConfig,
    no_follow: bool,
) -> Result<AttendeeRead, SyncError> {
    let opts = CsvOptions {
        delimiter: cfg.delimiter()?,
        columns: cfg.source.csv.columns.clone(),
        max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
        // Each value is held to its column's v4 length; the record limit bounds memory.
        max_field_bytes: DEFAULT_MAX_RECORD_BYTES,
        no_follow,
    };
    let reader = CsvFile::<AttendeeColumns>::open(path, &opts)?;
    let mut out = AttendeeRead {
        columns: reader.columns().iter().flatten().map(|c| c.field).collect(),
        ..AttendeeRead::default()
    };
    out.columns.sort_unstable();
    for item in reader {
        match item {
            Ok(row) => match check(row) {
                Ok(a) => out.records.push(a),
                Err(r) => out.rejections.extend(r),
            },
            Err(RowIssue::Rejected(r)) => out.rejections.push(r),
            Err(RowIssue::Fatal(e)) => return Err(e.into()),
        }
    }
    reject_duplicates(&mut out);
    Ok(out)
}

/// Applies the attendee rules to one row.
fn check(row: AttendeeRow) -> Result<SourceAttendee, Vec<Rejection>> {
    let AttendeeRow { origin, values } = row;
    let ext = values
        .iter()
        .find(|(c, _)| *c == AttendeeColumn::EXTERNAL_ID)
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let mut rejections = Vec::new();
    let mut reject = |field: &str, message: String| {
        let mut identity = RowIdentity::default();
        identity.push(&ext);
        rejections.push(Rejection {
            source: origin.clone(),
            employee_id: (!ext.is_empty()).then(|| ext.clone()),
            field: field.to_owned(),
            message,
            identity,
        });
    };
    // In v4 field order, the order the rules report in.
    let by_field: BTreeMap<&str, (AttendeeColumn, String)> =
        values.into_iter().map(|(c, v)| (c.field, (c, v))).collect();
    let mut fields = BTreeMap::new();
    for (field, (col, mut v)) in by_field {
        let n = v.chars().count();
        if n > col.max_len {
            reject(
                col.name,
                format!(
                    "is {n} characters long; Attendees v4 allows at most {}",
                    col.max_len
                ),
            );
        }
        if v.chars().any(char::is_control) {
            reject(col.name, "contains a control character".into());
        }
        if col == AttendeeColumn::TYPE_CODE || col == AttendeeColumn::CURRENCY {
            v.make_ascii_uppercase();
        }
        fields.insert(field.to_owned(), v);
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
            format!("{kind}: Concur does not allow creating or updating attendees of this type"),
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
    if !rejections.is_empty() {
        return Err(rejections);
    }
    Ok(SourceAttendee {
        origin,
        key: (ext, kind),
        fields,
    })
}

/// Every row of a key that appears more than once is rejected.
fn reject_duplicates(read: &mut AttendeeRead) {
    let mut seen: HashMap<AttendeeId, usize> = HashMap::new();
    for r in &read.records {
        *seen.entry(r.key.clone()).or_default() += 1;
    }
    let (dups, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut read.records)
        .into_iter()
        .partition(|r| seen[&r.key] > 1);
    for d in dups {
        let mut identity = RowIdentity::default();
        identity.push(&d.key.0);
        read.rejections.push(Rejection {
            source: d.origin,
            employee_id: Some(d.key.0.clone()),
            field: "external_id".into(),
            message: format!(
                "external_id {:?} with type {} appears {} times; every such row rejected",
                d.key.0, d.key.1, seen[&d.key]
            ),
            identity,
        });
    }
    read.records = keep;
}
