//! The plain owned types every stage exchanges: the canonical user and its field table, source
//! records, rejections, plans and operations, cycle reports. No IO lives here.

use serde::{Deserialize, Serialize};
use std::fmt;

/// How a canonical field is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    /// Free text up to `max_len` characters.
    Text,
    /// A login: text that must contain `@`.
    Login,
    /// An e-mail address: text that must contain `@`.
    Email,
    /// A Y/N flag; sources may say true/false, yes/no, 1/0, active/inactive.
    Flag,
    /// A locale such as `en_US`.
    Locale,
    /// ISO 3166-1 alpha-2 country code.
    Country,
    /// ISO 3166-2 subdivision such as `US-WA`.
    Subdivision,
    /// ISO 4217 currency code.
    Currency,
    /// Exactly one character.
    Initial,
}

/// One row of the field table: canonical name, Concur's maximum length and kind.
#[derive(Clone, Copy, Debug)]
pub struct FieldSpec {
    pub name: &'static str,
    pub max_len: usize,
    pub kind: FieldKind,
}

macro_rules! field_table {
    ($( $konst:ident = $idx:expr => ($name:expr, $max:expr, $kind:ident) ),* $(,)?) => {
        impl Field {
            $( pub const $konst: Field = Field($idx); )*
        }
        /// Every canonical field, in [`Field`] order.
        pub const FIELDS: &[FieldSpec] = &[
            $( FieldSpec { name: $name, max_len: $max, kind: FieldKind::$kind } ),*
        ];
    };
}

/// A canonical user field: an index into [`FIELDS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Field(pub u8);

field_table! {
    EMPLOYEE_ID = 0 => ("employee_id", 48, Text),
    LOGIN_ID = 1 => ("login_id", 128, Login),
    LOCALE = 2 => ("locale", 5, Locale),
    ACTIVE = 3 => ("active", 1, Flag),
    FIRST_NAME = 4 => ("first_name", 32, Text),
    LAST_NAME = 5 => ("last_name", 32, Text),
    MIDDLE_INITIAL = 6 => ("middle_initial", 1, Initial),
    EMAIL = 7 => ("email", 255, Email),
    LEDGER = 8 => ("ledger", 20, Text),
    ORG_UNIT1 = 9 => ("org_unit1", 48, Text),
    ORG_UNIT2 = 10 => ("org_unit2", 48, Text),
    ORG_UNIT3 = 11 => ("org_unit3", 48, Text),
    ORG_UNIT4 = 12 => ("org_unit4", 48, Text),
    ORG_UNIT5 = 13 => ("org_unit5", 48, Text),
    ORG_UNIT6 = 14 => ("org_unit6", 48, Text),
    CUSTOM1 = 15 => ("custom1", 48, Text),
    CUSTOM2 = 16 => ("custom2", 48, Text),
    CUSTOM3 = 17 => ("custom3", 48, Text),
    CUSTOM4 = 18 => ("custom4", 48, Text),
    CUSTOM5 = 19 => ("custom5", 48, Text),
    CUSTOM6 = 20 => ("custom6", 48, Text),
    CUSTOM7 = 21 => ("custom7", 48, Text),
    CUSTOM8 = 22 => ("custom8", 48, Text),
    CUSTOM9 = 23 => ("custom9", 48, Text),
    CUSTOM10 = 24 => ("custom10", 48, Text),
    CUSTOM11 = 25 => ("custom11", 48, Text),
    CUSTOM12 = 26 => ("custom12", 48, Text),
    CUSTOM13 = 27 => ("custom13", 48, Text),
    CUSTOM14 = 28 => ("custom14", 48, Text),
    CUSTOM15 = 29 => ("custom15", 48, Text),
    CUSTOM16 = 30 => ("custom16", 48, Text),
    CUSTOM17 = 31 => ("custom17", 48, Text),
    CUSTOM18 = 32 => ("custom18", 48, Text),
    CUSTOM19 = 33 => ("custom19", 48, Text),
    CUSTOM20 = 34 => ("custom20", 48, Text),
    CUSTOM21 = 35 => ("custom21", 48, Text),
    COUNTRY = 36 => ("country", 2, Country),
    CASH_ADVANCE_ACCOUNT_CODE = 37 => ("cash_advance_account_code", 20, Text),
    CURRENCY = 38 => ("currency", 3, Currency),
    COUNTRY_SUBDIVISION = 39 => ("country_subdivision", 6, Subdivision),
    EXPENSE_USER = 40 => ("expense_user", 1, Flag),
    EXPENSE_APPROVER = 41 => ("expense_approver", 1, Flag),
    TRIP_USER = 42 => ("trip_user", 1, Flag),
    INVOICE_USER = 43 => ("invoice_user", 1, Flag),
    INVOICE_APPROVER = 44 => ("invoice_approver", 1, Flag),
    MANAGER_EMPLOYEE_ID = 45 => ("manager_employee_id", 48, Text),
}

/// Number of canonical fields.
pub const FIELD_COUNT: usize = 46;
const _: () = assert!(FIELDS.len() == FIELD_COUNT);

impl Field {
    pub fn spec(self) -> &'static FieldSpec {
        &FIELDS[self.0 as usize]
    }
    pub fn name(self) -> &'static str {
        self.spec().name
    }
    /// Looks a canonical field up by its canonical (CSV header) name.
    pub fn from_name(name: &str) -> Option<Field> {
        FIELDS
            .iter()
            .position(|f| f.name == name)
            .map(|i| Field(i as u8))
    }
    pub fn all() -> impl Iterator<Item = Field> {
        (0..FIELD_COUNT as u8).map(Field)
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The canonical name of the password column; passwords never live among the user fields.
pub const PASSWORD_COLUMN: &str = "password";

/// A canonical user: the normalized values Concur should hold, keyed by [`Field`].
/// Empty values are absent. Flags and `active` are stored as `Y`/`N`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct User {
    /// Sorted by field, no duplicates, no empty values.
    fields: Vec<(Field, String)>,
}

impl Serialize for Field {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Field::from_name(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown field {name}")))
    }
}

/// A user serializes as a JSON object `{canonical name: value}` in field-table order.
impl Serialize for User {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.fields.len()))?;
        for (f, v) in &self.fields {
            m.serialize_entry(f.name(), v)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for User {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = std::collections::BTreeMap::<Field, String>::deserialize(d)?;
        let mut u = User::new();
        for (f, v) in map {
            u.set(f, v);
        }
        Ok(u)
    }
}

impl User {
    pub fn new() -> User {
        User::default()
    }
    pub fn get(&self, field: Field) -> Option<&str> {
        self.fields
            .binary_search_by_key(&field, |(f, _)| *f)
            .ok()
            .map(|i| self.fields[i].1.as_str())
    }
    /// Sets a value; an empty value removes the field.
    pub fn set(&mut self, field: Field, value: impl Into<String>) {
        let value = value.into();
        match self.fields.binary_search_by_key(&field, |(f, _)| *f) {
            Ok(i) if value.is_empty() => {
                self.fields.remove(i);
            }
            Ok(i) => self.fields[i].1 = value,
            Err(_) if value.is_empty() => {}
            Err(i) => self.fields.insert(i, (field, value)),
        }
    }
    pub fn remove(&mut self, field: Field) {
        self.set(field, String::new());
    }
    /// Keeps only `fields`, releasing the memory of the others.
    pub fn keep(&mut self, fields: &[Field]) {
        self.fields.retain(|(f, _)| fields.contains(f));
        self.fields.shrink_to_fit();
    }
    pub fn employee_id(&self) -> &str {
        self.get(Field::EMPLOYEE_ID).unwrap_or("")
    }
    pub fn login_id(&self) -> &str {
        self.get(Field::LOGIN_ID).unwrap_or("")
    }
    /// A user without an `Active` value is active.
    pub fn is_active(&self) -> bool {
        self.get(Field::ACTIVE) != Some("N")
    }
    /// The record makes the user an expense approver (`expense_approver` = Y).
    pub fn is_approver(&self) -> bool {
        self.get(Field::EXPENSE_APPROVER) == Some("Y")
    }
    /// Present fields in field-table order.
    pub fn iter(&self) -> impl Iterator<Item = (Field, &str)> {
        self.fields.iter().map(|(f, v)| (*f, v.as_str()))
    }
    /// A 128-bit content hash of every field (XXH3-128; a change detector, not a MAC); equal
    /// users have equal hashes.
    pub fn content_hash(&self) -> [u8; 16] {
        thread_local! {
            static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        BUF.with_borrow_mut(|buf| {
            buf.clear();
            for (f, v) in &self.fields {
                buf.push(f.0);
                buf.extend_from_slice(&(v.len() as u32).to_le_bytes());
                buf.extend_from_slice(v.as_bytes());
            }
            xxhash_rust::xxh3::xxh3_128(buf).to_le_bytes()
        })
    }
    /// Field-by-field differences from `old` to `self`, in field-table order.
    pub fn changes_from(&self, old: &User) -> Vec<FieldChange> {
        Field::all()
            .filter_map(|f| {
                let (o, n) = (old.get(f), self.get(f));
                (o != n).then(|| FieldChange {
                    field: f,
                    old: o.map(str::to_owned),
                    new: n.map(str::to_owned),
                })
            })
            .collect()
    }
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.fields.iter().map(|(k, v)| (k.name(), v)))
            .finish()
    }
}

/// A secret string (password, token, client secret): redacted when printed, wiped when dropped.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    /// The only way to read the value: call sites are easy to audit.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// Where a record came from, e.g. `hr.csv:12` or an LDAP DN; used in every message about it.
pub type Origin = String;

/// A record as a source read it: values not yet trimmed, defaulted or checked.
#[derive(Clone, Debug, Default)]
pub struct RawRecord {
    /// Where the record came from, e.g. `hr.csv:12`.
    pub origin: Origin,
    /// Field values in any order; an empty value counts as absent. If a field appears twice the
    /// last value wins.
    pub values: Vec<(Field, String)>,
    pub password: Option<Secret>,
    pub previous_employee_id: Option<String>,
}

/// One valid, normalized record from a source.
#[derive(Clone, Debug)]
pub struct SourceRecord {
    pub origin: Origin,
    pub user: User,
    pub password: Option<Secret>,
    /// The employee id this user had before, if the source says (the id is renamed, not a new user).
    pub previous_employee_id: Option<String>,
}

/// A record (or a field of one) that failed validation. It is stored and shown by `status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// `file:line`, or a DN / SCIM id.
    pub source: String,
    pub employee_id: Option<String>,
    pub field: String,
    pub message: String,
    /// Every identifying value the row carried, valid or not; never stored or shown.
    #[serde(skip)]
    pub identity: RowIdentity,
}

/// The identifying values of a rejected row (the raw employee id text even if invalid, login,
/// e-mail, previous employee id): the planner keeps every managed user they could name from
/// being deactivated for the rejection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RowIdentity(pub Vec<String>);

impl RowIdentity {
    /// Longest value kept, in bytes (a longer one is cut at a character boundary).
    const MAX_LEN: usize = 512;

    /// Adds a value (trimmed; empty values and repeats are skipped).
    pub fn push(&mut self, v: &str) {
        let mut v = v.trim();
        if v.len() > Self::MAX_LEN {
            let mut end = Self::MAX_LEN;
            while !v.is_char_boundary(end) {
                end -= 1;
            }
            v = &v[..end];
        }
        if !v.is_empty() && !self.0.iter().any(|x| x == v) {
            self.0.push(v.to_owned());
        }
    }

    /// The identifying fields (employee id, login, e-mail) among raw field values.
    pub fn from_values<'a>(values: impl IntoIterator<Item = (Field, &'a str)>) -> RowIdentity {
        let mut id = RowIdentity::default();
        for (f, v) in values {
            if matches!(f, Field::EMPLOYEE_ID | Field::LOGIN_ID | Field::EMAIL) {
                id.push(v);
            }
        }
        id
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.source)?;
        if let Some(id) = &self.employee_id {
            write!(f, "employee {id}: ")?;
        }
        write!(f, "field {}: {}", self.field, self.message)
    }
}

/// The kind of a planned operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    Create,
    Update,
    Reactivate,
    Deactivate,
    Password,
}

impl OpKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Create => "create",
            OpKind::Update => "update",
            OpKind::Reactivate => "reactivate",
            OpKind::Deactivate => "deactivate",
            OpKind::Password => "password",
        }
    }
    pub fn parse(s: &str) -> Option<OpKind> {
        Some(match s {
            "create" => OpKind::Create,
            "update" => OpKind::Update,
            "reactivate" => OpKind::Reactivate,
            "deactivate" => OpKind::Deactivate,
            "password" => OpKind::Password,
            _ => return None,
        })
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One field's change, old → new.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    pub field: Field,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// One operation of a plan: the full desired record goes to Concur.
#[derive(Clone, Debug)]
pub struct Op {
    pub kind: OpKind,
    pub employee_id: String,
    /// The full record to send: for a deactivation, the last acknowledged record with `Active=N`.
    pub user: User,
    /// The login Concur knows the user by, when this op renames it to `user`'s login.
    pub old_login_id: Option<String>,
    /// The employee id Concur knows the user by, when this op changes it to `user`'s.
    pub old_employee_id: Option<String>,
    /// The fields it changes, old → new. A plan's creates keep none: every field of `user` is
    /// new, and [`Op::field_changes`] lists them when asked.
    pub changes: Vec<FieldChange>,
    /// The password to set: on create, the initial password; on a password op, the new one.
    pub password: Option<Secret>,
    /// Where the desired record came from (empty for deactivations of vanished users).
    pub origin: Origin,
}

impl Op {
    /// The field changes it makes: `changes`, or for a create that keeps none, every field its
    /// record sets.
    pub fn field_changes(&self) -> std::borrow::Cow<'_, [FieldChange]> {
        if self.kind == OpKind::Create && self.changes.is_empty() {
            std::borrow::Cow::Owned(self.user.changes_from(&User::new()))
        } else {
            std::borrow::Cow::Borrowed(&self.changes)
        }
    }
}

/// Counts per operation kind, as shown in status and cycle history.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpCounts {
    pub create: u64,
    pub update: u64,
    pub deactivate: u64,
    pub reactivate: u64,
    pub password: u64,
}

impl OpCounts {
    pub fn add(&mut self, kind: OpKind, n: u64) {
        match kind {
            OpKind::Create => self.create += n,
            OpKind::Update => self.update += n,
            OpKind::Deactivate => self.deactivate += n,
            OpKind::Reactivate => self.reactivate += n,
            OpKind::Password => self.password += n,
        }
    }
    pub fn total(&self) -> u64 {
        self.create + self.update + self.deactivate + self.reactivate + self.password
    }
}

/// The SCIM source's watermarks in force for its next read (RFC 3339 UTC times), as the state
/// database keeps them: when the last acknowledged full read started, where the next delta read
/// starts, and the digest of the settings (`url`, `filter`, mapping) that full read used.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScimWatermarks {
    pub last_full: Option<String>,
    pub delta_since: Option<String>,
    pub digest: Option<String>,
}

/// What one SCIM read stands for once its cycle ends well: its start (RFC 3339 UTC, the next
/// delta read's watermark), whether it was a complete full read, and the settings digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScimReadMark {
    pub start: String,
    pub full: bool,
    pub digest: String,
}

mod keys;

pub use keys::{
    KeyHasher, KeyMap, KeySet, PASSWORD_MAC_UNKNOWN, SnapshotEntry, SnapshotIndex, id_key,
    login_key,
};

#[cfg(test)]
mod tests;
