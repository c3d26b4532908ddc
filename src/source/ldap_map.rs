//! Directory entries → raw records: the attribute mapping shared by `ldif` and `ldap`.
//!
//! An [`Entry`] is what either reader produced for one directory object: its DN, where it came
//! from, and its attribute values as bytes (base64 values and binary attributes need not be
//! text). A [`Mapper`] turns a read into [`SourceItem`]s entry by entry, so that a reader need
//! not keep the entries ([`map_entries`] for a read kept whole): it maps attributes to canonical
//! fields through a [`Mapping`], resolves `manager` DNs to the manager's own employee id within
//! the same read once every entry is known, applies `inactive_when`, and rejects what cannot be
//! used, naming the entry and the rule.

use std::collections::HashMap;

use crate::model::RawRecord;
use crate::model::{Field, FieldKind, Rejection, RowIdentity};

use super::SourceItem;
use crate::config::{ConfigError, InactiveWhen, LdapConfig, LdapMapping};

/// One directory object as read from an LDIF file or a live search.
#[derive(Debug, Default, Clone)]
pub struct Entry {
    pub dn: String,
    /// `file:line (dn)` for LDIF, the DN for a live read.
    pub origin: String,
    /// Attribute description (lowercase, options included, e.g. `cn;lang-de`) and one value, in
    /// the order read; a multi-valued attribute appears once per value.
    pub values: Vec<(String, Vec<u8>)>,
    /// Problems the reader found in this entry (attribute or `dn`, message naming the line).
    pub problems: Vec<(String, String)>,
}

impl Entry {
    /// Every value of an attribute description (case-insensitive), in the order read.
    pub fn all<'a, 'b>(&'a self, attr: &'b str) -> impl Iterator<Item = &'a [u8]> + use<'a, 'b> {
        self.values
            .iter()
            .filter(move |(a, _)| a.eq_ignore_ascii_case(attr))
            .map(|(_, v)| v.as_slice())
    }

    /// The first value of an attribute description.
    pub fn first(&self, attr: &str) -> Option<&[u8]> {
        self.all(attr).next()
    }

    /// The entry's stable identity: `entryUUID` (OpenLDAP, 389-DS) or `objectGUID` (Active
    /// Directory, 16 bytes shown in the usual GUID form).
    pub fn stable_id(&self) -> Option<String> {
        if let Some(v) = self.first("entryuuid") {
            return std::str::from_utf8(v)
                .ok()
                .map(|s| format!("entryUUID={}", s.trim()));
        }
        let g = self.first("objectguid")?;
        if g.len() != 16 {
            return None;
        }
        // Active Directory stores the first three groups little-endian.
        Some(format!(
            "objectGUID={:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
            g[3],
            g[2],
            g[1],
            g[0],
            g[5],
            g[4],
            g[7],
            g[6],
            g[8],
            g[9],
            g[10],
            g[11],
            g[12],
            g[13],
            g[14],
            g[15]
        ))
    }
}

/// Which attributes feed which canonical field, and the inactive rule: the compiled
/// `[source.ldap]` mapping (`LdapConfig::mapping`) applied to entries.
#[derive(Debug, Clone)]
pub struct Mapping {
    /// Canonical field → attribute descriptions in priority order (the first one an entry has
    /// wins), as configured (original case, for the search request).
    fields: Vec<(Field, Vec<String>)>,
    inactive: Option<InactiveWhen>,
}

impl Mapping {
    /// The mapping `[source.ldap]` configures.
    pub fn from_config(cfg: &LdapConfig) -> Result<Mapping, ConfigError> {
        let LdapMapping { fields, inactive } = cfg.mapping()?;
        Ok(Mapping { fields, inactive })
    }

    /// The attribute descriptions a search must return: every mapped one, the inactive rule's
    /// and the stable identities. Sorted, without duplicates.
    pub fn requested_attributes(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .fields
            .iter()
            .flat_map(|(_, attrs)| attrs.iter().cloned())
            .collect();
        if let Some(rule) = &self.inactive {
            out.push(rule.attribute.clone());
        }
        out.push("entryUUID".into());
        out.push("objectGUID".into());
        out.sort_by_key(|a| a.to_ascii_lowercase());
        out.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
        out
    }

    fn attrs_for(&self, field: Field) -> &[String] {
        self.fields
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, a)| a.as_slice())
            .unwrap_or(&[])
    }

    /// The first value of the first mapped attribute the entry has, with the attribute name.
    fn value<'e>(&'e self, entry: &'e Entry, field: Field) -> Option<(&'e str, &'e [u8])> {
        self.attrs_for(field)
            .iter()
            .find_map(|a| entry.first(a).map(|v| (a.as_str(), v)))
    }

    /// The entry's employee id, if it has the key attribute as text.
    pub fn employee_id(&self, entry: &Entry) -> Option<String> {
        let (_, v) = self.value(entry, Field::EMPLOYEE_ID)?;
        let s = std::str::from_utf8(v).ok()?.trim();
        (!s.is_empty()).then(|| s.to_owned())
    }

    fn is_inactive(&self, entry: &Entry) -> bool {
        let Some(rule) = &self.inactive else {
            return false;
        };
        entry.all(&rule.attribute).any(|v| {
            let Ok(s) = std::str::from_utf8(v) else {
                return false;
            };
            let s = s.trim();
            if rule
                .values
                .iter()
                .any(|want| want == "*" || want.trim().eq_ignore_ascii_case(s))
            {
                return true;
            }
            match (rule.bitmask, parse_int(s)) {
                (Some(mask), Some(n)) => n & mask != 0,
                _ => false,
            }
        })
    }
}

/// An integer as directories write it: decimal (possibly negative, as AD's signed 32-bit
/// `userAccountControl` may be) or `0x…` hex.
fn parse_int(s: &str) -> Option<u64> {
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        return u64::from_str_radix(hex, 16).ok();
    }
    if let Ok(n) = s.parse::<u64>() {
        return Some(n);
    }
    s.parse::<i64>().ok().map(|n| n as u64)
}

/// A DN in a form that compares equal for equal names: attribute types and values lowercased,
/// spaces around `,` `+` `=` dropped, escapes (`\,` `\2C`) decoded and re-escaped one way.
pub fn normalize_dn(dn: &str) -> String {
    let mut out = String::with_capacity(dn.len());
    let mut rdn_parts: Vec<String> = Vec::new();
    let mut cur = Vec::<u8>::new();
    let bytes = dn.as_bytes();
    let mut i = 0;
    let flush = |cur: &mut Vec<u8>, parts: &mut Vec<String>| {
        let text = String::from_utf8_lossy(cur).into_owned();
        cur.clear();
        let (t, v) = match text.split_once('=') {
            Some((t, v)) => (t.trim().to_ascii_lowercase(), v.trim().to_lowercase()),
            None => (String::new(), text.trim().to_lowercase()),
        };
        let mut esc = String::with_capacity(v.len());
        for c in v.chars() {
            if matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=') {
                esc.push('\\');
            }
            esc.push(c);
        }
        parts.push(format!("{t}={esc}"));
    };
    let mut rdns: Vec<String> = Vec::new();
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'\\' if i + 1 < bytes.len() => {
                let hex = bytes.get(i + 1..i + 3).and_then(|h| {
                    std::str::from_utf8(h)
                        .ok()
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                });
                match hex {
                    Some(h) => {
                        cur.push(h);
                        i += 3;
                    }
                    None => {
                        cur.push(bytes[i + 1]);
                        i += 2;
                    }
                }
                continue;
            }
            b',' | b';' => {
                flush(&mut cur, &mut rdn_parts);
                rdn_parts.sort();
                rdns.push(rdn_parts.join("+"));
                rdn_parts.clear();
            }
            b'+' => flush(&mut cur, &mut rdn_parts),
            _ => cur.push(b),
        }
        i += 1;
    }
    flush(&mut cur, &mut rdn_parts);
    rdn_parts.sort();
    rdns.push(rdn_parts.join("+"));
    for (n, r) in rdns.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        out.push_str(r);
    }
    out
}

/// Whatever identifying values the entry has: they still protect the users they could name
/// when the entry is rejected.
fn identity(entry: &Entry, mapping: &Mapping) -> RowIdentity {
    RowIdentity::from_values(
        [Field::EMPLOYEE_ID, Field::LOGIN_ID, Field::EMAIL]
            .into_iter()
            .filter_map(|f| {
                let (_, v) = mapping.value(entry, f)?;
                Some((f, std::str::from_utf8(v).ok()?))
            }),
    )
}

fn reject(
    entry: &Entry,
    mapping: &Mapping,
    id: Option<&str>,
    field: &str,
    message: String,
) -> SourceItem {
    SourceItem::Rejected(Rejection {
        source: entry.origin.clone(),
        employee_id: id.map(str::to_owned),
        field: field.to_owned(),
        message,
        identity: identity(entry, mapping),
    })
}

fn utf8<'a>(v: &'a [u8], attr: &str) -> Result<&'a str, String> {
    std::str::from_utf8(v).map_err(|_| format!("attribute {attr}: the value is not UTF-8 text"))
}

/// Turns a complete read into records and rejections, in the order of `entries`.
///
/// A manager DN resolves through the manager's own entry in `entries`. A DN that names no
/// entry of this read, or an entry without the key attribute, rejects the subordinate (naming
/// both DNs): its last acknowledged state, approver included, stays in Concur until the
/// directory is fixed.
pub fn map_entries(entries: &[Entry], mapping: &Mapping) -> Vec<SourceItem> {
    let mut mapper = Mapper::new(mapping);
    for entry in entries {
        mapper.push(entry);
    }
    mapper.finish(false)
}

/// Maps a read entry by entry ([`Mapper::push`]): what an entry becomes is kept, the entry
/// itself is not. Manager DNs are resolved by [`Mapper::finish`], once every entry of the read
/// is known, exactly as [`map_entries`] resolves them.
pub struct Mapper<'m> {
    mapping: &'m Mapping,
    key_attrs: String,
    /// Normalized DN → the employee id of its entry (`None`: the entry has none).
    by_dn: HashMap<String, Option<String>>,
    mapped: Vec<Mapped>,
}

/// One entry, mapped but for its manager.
struct Mapped {
    dn: String,
    what: MappedAs,
}

enum MappedAs {
    Items(Vec<SourceItem>),
    Record(RawRecord),
    /// A record whose manager DN is resolved at the end of the read.
    Pending(Box<Pending>),
}

struct Pending {
    record: RawRecord,
    /// Where the manager's employee id goes in `record.values`.
    at: usize,
    attr: String,
    manager_dn: String,
    /// What rejects the entry if its manager resolves: a later field that could not be read.
    later: Option<(&'static str, String)>,
    /// What a rejection of the entry names.
    origin: String,
    id: String,
    identity: RowIdentity,
}

/// The fields of one entry, its manager DN left to resolve.
struct Fields {
    values: Vec<(Field, String)>,
    manager: Option<(usize, String, String)>,
    later: Option<(&'static str, String)>,
}

impl<'m> Mapper<'m> {
    pub fn new(mapping: &'m Mapping) -> Mapper<'m> {
        Mapper {
            mapping,
            key_attrs: mapping.attrs_for(Field::EMPLOYEE_ID).join(" or "),
            by_dn: HashMap::new(),
            mapped: Vec::new(),
        }
    }

    /// Maps one entry of the read.
    pub fn push(&mut self, entry: &Entry) {
        let mapping = self.mapping;
        let id = mapping.employee_id(entry);
        self.by_dn.insert(normalize_dn(&entry.dn), id.clone());
        let what = if !entry.problems.is_empty() {
            MappedAs::Items(
                entry
                    .problems
                    .iter()
                    .map(|(field, message)| {
                        reject(entry, mapping, id.as_deref(), field, message.clone())
                    })
                    .collect(),
            )
        } else if let Some(id) = id {
            match map_fields(entry, mapping) {
                Err((field, message)) => {
                    MappedAs::Items(vec![reject(entry, mapping, Some(&id), field, message)])
                }
                Ok(Fields {
                    values,
                    manager: None,
                    ..
                }) => MappedAs::Record(record(entry, mapping, values)),
                Ok(Fields {
                    values,
                    manager: Some((at, attr, manager_dn)),
                    later,
                }) => MappedAs::Pending(Box::new(Pending {
                    record: record(entry, mapping, values),
                    at,
                    attr,
                    manager_dn,
                    later,
                    origin: entry.origin.clone(),
                    id,
                    identity: identity(entry, mapping),
                })),
            }
        } else {
            MappedAs::Items(vec![reject(
                entry,
                mapping,
                None,
                Field::EMPLOYEE_ID.name(),
                format!(
                    "the entry has no {} attribute (the key of every user): it cannot be matched to a Concur user",
                    self.key_attrs
                ),
            )])
        };
        self.mapped.push(Mapped {
            dn: entry.dn.clone(),
            what,
        });
    }

    /// The records and rejections of the read, managers resolved: in the order pushed, or
    /// ordered by DN when `by_dn` (a live search, whose order the server chooses).
    pub fn finish(mut self, by_dn: bool) -> Vec<SourceItem> {
        if by_dn {
            self.mapped.sort_by(|a, b| a.dn.cmp(&b.dn));
        }
        let mut out = Vec::with_capacity(self.mapped.len());
        for m in self.mapped {
            match m.what {
                MappedAs::Items(items) => out.extend(items),
                MappedAs::Record(r) => out.push(SourceItem::Record(r)),
                MappedAs::Pending(p) => {
                    let Pending {
                        mut record,
                        at,
                        attr,
                        manager_dn,
                        later,
                        origin,
                        id,
                        identity,
                    } = *p;
                    let resolved = match self.by_dn.get(&normalize_dn(&manager_dn)) {
                        Some(Some(mgr)) => Ok(mgr.clone()),
                        Some(None) => Err(format!(
                            "{attr} {manager_dn:?} names an entry without {}: the manager of {:?} cannot be resolved",
                            self.key_attrs, m.dn
                        )),
                        None => Err(format!(
                            "{attr} {manager_dn:?} is not among the entries read: the manager of {:?} cannot be resolved",
                            m.dn
                        )),
                    };
                    let rejected = match (resolved, later) {
                        (Err(message), _) => Some((Field::MANAGER_EMPLOYEE_ID.name(), message)),
                        (Ok(_), Some(later)) => Some(later),
                        (Ok(mgr), None) => {
                            record.values.insert(at, (Field::MANAGER_EMPLOYEE_ID, mgr));
                            None
                        }
                    };
                    out.push(match rejected {
                        None => SourceItem::Record(record),
                        Some((field, message)) => SourceItem::Rejected(Rejection {
                            source: origin,
                            employee_id: Some(id),
                            field: field.to_owned(),
                            message,
                            identity,
                        }),
                    });
                }
            }
        }
        out
    }
}

/// The mapped fields of an entry; the manager's DN is left to resolve. A field that cannot be
/// read after the manager's is kept aside: the manager's problem, if any, is told first.
fn map_fields(entry: &Entry, mapping: &Mapping) -> Result<Fields, (&'static str, String)> {
    let mut out = Fields {
        values: Vec::with_capacity(mapping.fields.len() + 1),
        manager: None,
        later: None,
    };
    for (field, _) in &mapping.fields {
        let field = *field;
        let Some((attr, raw)) = mapping.value(entry, field) else {
            continue;
        };
        let text = match utf8(raw, attr) {
            Ok(t) => t.trim(),
            Err(m) if out.manager.is_some() => {
                out.later = Some((field.name(), m));
                return Ok(out);
            }
            Err(m) => return Err((field.name(), m)),
        };
        if text.is_empty() {
            continue;
        }
        let value = if field == Field::MANAGER_EMPLOYEE_ID {
            out.manager = Some((out.values.len(), attr.to_owned(), text.to_owned()));
            continue;
        } else {
            match field.spec().kind {
                // `initials` may hold "J." or "JR": Concur keeps one character.
                FieldKind::Initial => text
                    .chars()
                    .find(|c| c.is_alphanumeric())
                    .map(String::from)
                    .unwrap_or_default(),
                // preferredLanguage is an Accept-Language list ("en-US, de;q=0.5"): the first
                // tag; a bare language ("en") has no region and is left to [defaults].
                FieldKind::Locale => {
                    let tag = text.split([',', ';']).next().unwrap_or("").trim();
                    if tag.contains(['-', '_']) {
                        tag.to_owned()
                    } else {
                        String::new()
                    }
                }
                _ => text.to_owned(),
            }
        };
        out.values.push((field, value));
    }
    Ok(out)
}

/// The record of an entry's fields: the inactive rule applied, and the entry's own identity
/// in its origin (outbox, failures), so that a record can be traced to its directory object
/// across DN renames.
fn record(entry: &Entry, mapping: &Mapping, mut values: Vec<(Field, String)>) -> RawRecord {
    if mapping.is_inactive(entry) {
        values.push((Field::ACTIVE, "N".to_owned()));
    }
    let origin = match entry.stable_id() {
        Some(id) => format!("{} [{id}]", entry.origin),
        None => entry.origin.clone(),
    };
    RawRecord {
        origin,
        values,
        password: None,
        previous_employee_id: None,
    }
}

#[cfg(test)]
mod tests;
