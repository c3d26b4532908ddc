//! The attendee plan: what a run writes, from the source rows, the attendee snapshot and what
//! the lookup by external id found. Pure and deterministic: no store, no network, no clock;
//! writes follow the source's order, gone attendees are sorted.
//!
//! An attendee the snapshot knows is updated with only the fields that changed; one it does not
//! know but Concur has (found by external id and type) is adopted, and updated when the source
//! differs; any other is created. Only the columns the file has are compared and written.
//! Attendees of the snapshot that the source no longer lists, and that no rejected row names,
//! are gone (v4 cannot delete them).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::model::{OpKind, Origin, Rejection};
use crate::store::attendees::{AttendeeId, KnownAttendee};

/// One valid attendee row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceAttendee {
    pub origin: Origin,
    /// External id and upper-case type code.
    pub key: AttendeeId,
    /// v4 field name → value; empty values absent.
    pub fields: BTreeMap<String, String>,
}

/// One write of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub key: AttendeeId,
    pub origin: Origin,
    pub kind: WriteKind,
    /// The source's values of the file's columns: what the snapshot holds once Concur
    /// acknowledges the write.
    pub want: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteKind {
    /// `POST` of every field of the row.
    Create { body: BTreeMap<String, String> },
    /// `PUT` of the changed fields to the attendee Concur knows as `concur_id`.
    Update {
        concur_id: String,
        changes: BTreeMap<String, String>,
    },
}

impl Write {
    pub fn op(&self) -> OpKind {
        match self.kind {
            WriteKind::Create { .. } => OpKind::Create,
            WriteKind::Update { .. } => OpKind::Update,
        }
    }

    /// The fields the request carries.
    pub fn body(&self) -> &BTreeMap<String, String> {
        match &self.kind {
            WriteKind::Create { body } => body,
            WriteKind::Update { changes, .. } => changes,
        }
    }
}

/// What a run does.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AttendeePlan {
    /// Creates and updates, in source order.
    pub writes: Vec<Write>,
    /// Found in Concur with nothing to change: taken into the snapshot without a write.
    pub adopt: Vec<(AttendeeId, KnownAttendee)>,
    /// Known and unchanged.
    pub unchanged: u64,
    /// Found in Concur by external id (taken as they are, or updated).
    pub adopted: u64,
    /// Known attendees the source no longer lists, sorted.
    pub gone: Vec<AttendeeId>,
}

/// The external ids to look up in Concur: those of rows the snapshot does not know, sorted,
/// each once.
pub fn lookups<'a>(
    records: &'a [SourceAttendee],
    snapshot: &HashMap<AttendeeId, KnownAttendee>,
) -> Vec<&'a str> {
    let ids: BTreeSet<&str> = records
        .iter()
        .filter(|r| !snapshot.contains_key(&r.key))
        .map(|r| r.key.0.as_str())
        .collect();
    ids.into_iter().collect()
}

/// Plans a run. `columns` are the v4 fields the file has columns for; `found` is what the
/// lookup by external id returned, by key; `rejections` are the source's rejected rows, whose
/// external ids keep their attendees from being gone.
pub fn plan(
    records: &[SourceAttendee],
    columns: &[&str],
    rejections: &[Rejection],
    snapshot: &HashMap<AttendeeId, KnownAttendee>,
    found: &HashMap<AttendeeId, KnownAttendee>,
) -> AttendeePlan {
    let mut out = AttendeePlan::default();
    for r in records {
        let want = managed(&r.fields, columns);
        let write = |kind| Write {
            key: r.key.clone(),
            origin: r.origin.clone(),
            kind,
            want: want.clone(),
        };
        if let Some(known) = snapshot.get(&r.key) {
            let changes = changed(&want, &known.fields, columns);
            if changes.is_empty() {
                out.unchanged += 1;
            } else {
                out.writes.push(write(WriteKind::Update {
                    concur_id: known.concur_id.clone(),
                    changes,
                }));
            }
        } else if let Some(remote) = found.get(&r.key) {
            out.adopted += 1;
            let changes = changed(&want, &managed(&remote.fields, columns), columns);
            if changes.is_empty() {
                let known = KnownAttendee {
                    concur_id: remote.concur_id.clone(),
                    fields: want,
                };
                out.adopt.push((r.key.clone(), known));
            } else {
                out.writes.push(write(WriteKind::Update {
                    concur_id: remote.concur_id.clone(),
                    changes,
                }));
            }
        } else {
            out.writes.push(write(WriteKind::Create {
                body: r.fields.clone(),
            }));
        }
    }
    // A rejected row keeps its attendee: it is not gone from the source.
    let named: HashSet<&str> = rejections
        .iter()
        .flat_map(|x| x.employee_id.iter().chain(&x.identity.0))
        .map(String::as_str)
        .collect();
    let listed: HashSet<&AttendeeId> = records.iter().map(|r| &r.key).collect();
    let gone: BTreeSet<&AttendeeId> = snapshot
        .keys()
        .filter(|k| !listed.contains(k) && !named.contains(k.0.as_str()))
        .collect();
    out.gone = gone.into_iter().cloned().collect();
    out
}

/// Fields of `want` that differ from `have`, over the file's columns: the body of a partial
/// update. A value the source cleared is sent empty; the currency is left to Concur's default.
pub fn changed(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn m(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn key(ext: &str) -> AttendeeId {
        (ext.to_owned(), "BUSGUEST".to_owned())
    }

    fn row(line: u32, ext: &str, kv: &[(&str, &str)]) -> SourceAttendee {
        let mut fields = m(&[("externalId", ext), ("attendeeTypeCode", "BUSGUEST")]);
        fields.extend(m(kv));
        SourceAttendee {
            origin: format!("a.csv:{line}"),
            key: key(ext),
            fields,
        }
    }

    fn known(id: &str, ext: &str, kv: &[(&str, &str)]) -> (AttendeeId, KnownAttendee) {
        let mut fields = m(&[("externalId", ext), ("attendeeTypeCode", "BUSGUEST")]);
        fields.extend(m(kv));
        (
            key(ext),
            KnownAttendee {
                concur_id: id.to_owned(),
                fields,
            },
        )
    }

    const COLUMNS: [&str; 4] = ["attendeeTypeCode", "externalId", "lastName", "title"];

    #[test]
    fn only_changed_columns_are_sent() {
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
    fn creates_updates_adoptions_and_gone_attendees() {
        let records = [
            row(2, "NEW", &[("lastName", "New")]),
            row(3, "SAME", &[("lastName", "Same")]),
            row(4, "CHANGED", &[("lastName", "Changed"), ("title", "Dr")]),
            row(5, "FOUND", &[("lastName", "Found")]),
            row(6, "FOUND2", &[("lastName", "Found")]),
        ];
        let snapshot = HashMap::from([
            known("s1", "SAME", &[("lastName", "Same"), ("company", "kept")]),
            known("s2", "CHANGED", &[("lastName", "Changed"), ("title", "Mr")]),
            known("s3", "LEFT", &[("lastName", "Left")]),
            known("s4", "REJECTED", &[("lastName", "Rejected")]),
            known("s5", "ALSO LEFT", &[("lastName", "Also")]),
        ]);
        let found = HashMap::from([
            known("c1", "FOUND", &[("lastName", "Found"), ("custom1", "x")]),
            known("c2", "FOUND2", &[("lastName", "Other")]),
        ]);
        let rejected = Rejection {
            source: "a.csv:7".into(),
            employee_id: Some("REJECTED".into()),
            field: "last_name".into(),
            message: "is missing; it is required".into(),
            identity: Default::default(),
        };
        assert_eq!(lookups(&records, &snapshot), ["FOUND", "FOUND2", "NEW"]);
        let rejections = [rejected];
        let p = plan(&records, &COLUMNS, &rejections, &snapshot, &found);
        let writes: Vec<(String, OpKind, BTreeMap<String, String>)> = p
            .writes
            .iter()
            .map(|w| (w.origin.clone(), w.op(), w.body().clone()))
            .collect();
        assert_eq!(
            writes,
            [
                (
                    "a.csv:2".to_owned(),
                    OpKind::Create,
                    m(&[
                        ("attendeeTypeCode", "BUSGUEST"),
                        ("externalId", "NEW"),
                        ("lastName", "New")
                    ])
                ),
                ("a.csv:4".to_owned(), OpKind::Update, m(&[("title", "Dr")])),
                (
                    "a.csv:6".to_owned(),
                    OpKind::Update,
                    m(&[("lastName", "Found")])
                ),
            ]
        );
        assert!(
            matches!(&p.writes[2].kind, WriteKind::Update { concur_id, .. } if concur_id == "c2")
        );
        assert_eq!(p.adopt.len(), 1);
        assert_eq!(p.adopt[0].1.concur_id, "c1");
        assert_eq!(p.adopt[0].1.fields, records[3].fields);
        assert_eq!((p.unchanged, p.adopted), (1, 2));
        assert_eq!(p.gone, [key("ALSO LEFT"), key("LEFT")]);
        // The same inputs give the same plan; without the rejected row its attendee is gone.
        assert_eq!(p, plan(&records, &COLUMNS, &rejections, &snapshot, &found));
        let without = plan(&records, &COLUMNS, &[], &snapshot, &found);
        assert_eq!(
            without.gone,
            [key("ALSO LEFT"), key("LEFT"), key("REJECTED")]
        );
    }
}
