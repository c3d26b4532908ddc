//! Normalization and validation of source records against the Concur field rules.
//!
//! Every source kind (CSV, LDIF, LDAP, SCIM) hands its rows over as [`RawRecord`]s. The
//! [`Normalizer`] trims them, fills in the `[defaults]`, puts flags and codes into canonical form
//! and checks every rule that concerns one record alone. Rules across records (duplicate ids,
//! managers that exist) belong to the planner. No IO happens here.

use crate::model::{
    FIELD_COUNT, Field, FieldKind, RawRecord, Rejection, RowIdentity, Secret, SourceRecord, User,
};
use std::collections::BTreeMap;

/// Canonical name of the optional column holding the id a user had before.
pub const PREVIOUS_EMPLOYEE_ID: &str = "previous_employee_id";
/// Maximum length of `previous_employee_id`, in characters (the same as `employee_id`).
pub const PREVIOUS_EMPLOYEE_ID_MAX_LEN: usize = 48;

/// Turns raw records into valid [`SourceRecord`]s or the list of everything wrong with them.
#[derive(Clone, Debug)]
pub struct Normalizer {
    /// Normalized default per field, indexed by `Field.0`.
    defaults: [Option<String>; FIELD_COUNT],
}

/// Rules of one company's Concur employee form (FormFields): the fields it requires and its
/// maximum lengths where tighter than Concur's general ones. Records breaking them would be
/// refused by Concur; they are rejected locally with a message naming the form rule. They are
/// checked on the records a plan would send, after the per-record and cross-record rules, so a
/// record's first rejection stays the most specific one.
///
/// Each rule carries the form's own name for its field (e.g. `LedgerKey`), which the messages
/// quote so that an administrator finds the rule on the form.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompanyRules {
    /// Fields the company's form marks `Required=Y`, with the form's name for each.
    pub required: Vec<(Field, String)>,
    /// Fields whose company maximum length is below the general one: the field, that length
    /// and the form's name for the field.
    pub max_len: Vec<(Field, usize, String)>,
}

impl CompanyRules {
    /// Every rule `user` breaks, as rejections of the record from `origin`.
    pub fn rejections(&self, origin: &str, user: &User) -> Vec<Rejection> {
        let mut problems = Vec::new();
        self.check(user, &mut problems);
        problems
            .into_iter()
            .map(|p| Rejection {
                source: origin.to_owned(),
                employee_id: Some(user.employee_id().to_owned()),
                field: p.field.to_owned(),
                message: p.message,
                identity: RowIdentity::default(),
            })
            .collect()
    }

    fn check(&self, user: &User, problems: &mut Vec<Problem>) {
        for (field, form_name) in &self.required {
            if user.get(*field).is_none() {
                problems.push(Problem {
                    field: field.name(),
                    message: format!(
                        "is missing; the company's Concur form requires {form_name} (FormFields Required=Y): map a column to it or set [defaults] {}",
                        field.name()
                    ),
                });
            }
        }
        for (field, max, form_name) in &self.max_len {
            if let Some(v) = user.get(*field) {
                let n = v.chars().count();
                if n > *max {
                    problems.push(Problem {
                        field: field.name(),
                        message: format!(
                            "is {n} characters long; the company's Concur form allows at most {max} for {form_name} (FormFields MaxLength)"
                        ),
                    });
                }
            }
        }
    }
}

/// One failed rule: the field it concerns and the rule in plain words.
struct Problem {
    field: &'static str,
    message: String,
}

/// The outcome of normalizing one value.
enum Checked {
    Valid(String),
    Empty,
    /// The value as far as it was normalized; the problems were pushed.
    Invalid(String),
}

/// Longest value (in characters) quoted in a message; longer ones are cut and marked with `…`.
const QUOTE_MAX_CHARS: usize = 40;
/// Longest employee id carried into a rejection; a longer (invalid) one is cut and marked.
const REJECTION_ID_MAX_CHARS: usize = 64;

impl Normalizer {
    /// Builds a normalizer from the `[defaults]` table: canonical field name → value.
    ///
    /// Defaults are normalized and checked like source values. An unknown key, a default for
    /// `employee_id` or `login_id` (they identify each user), or an invalid value is an error
    /// naming the key. An empty value means no default.
    pub fn new(defaults: &BTreeMap<String, String>) -> Result<Normalizer, String> {
        let mut out: [Option<String>; FIELD_COUNT] = std::array::from_fn(|_| None);
        for (key, value) in defaults {
            let name = key.trim();
            let field = Field::from_name(&name.to_ascii_lowercase())
                .ok_or_else(|| format!("[defaults]: unknown field {name:?}"))?;
            if matches!(field, Field::EMPLOYEE_ID | Field::LOGIN_ID) {
                return Err(format!(
                    "[defaults]: {field} cannot have a default: it identifies each user"
                ));
            }
            let mut problems = Vec::new();
            match normalize_value(field, value.clone(), &mut problems) {
                Checked::Valid(v) => out[field.0 as usize] = Some(v),
                Checked::Empty => {}
                Checked::Invalid(_) => {
                    let rules: Vec<String> = problems.into_iter().map(|p| p.message).collect();
                    return Err(format!("[defaults]: {field}: {}", rules.join("; ")));
                }
            }
        }
        Ok(Normalizer { defaults: out })
    }

    /// The normalized default of a field, if the configuration gives one.
    pub fn default_for(&self, field: Field) -> Option<&str> {
        self.defaults.get(field.0 as usize)?.as_deref()
    }

    /// Normalizes and checks one record. A record with any failure is rejected whole, with one
    /// [`Rejection`] per failure, in field-table order.
    pub fn normalize(&self, raw: RawRecord) -> Result<SourceRecord, Vec<Rejection>> {
        self.normalize_noting(raw, &mut Vec::new())
    }

    /// [`Normalizer::normalize`], pushing onto `warnings` one entry per value of an accepted
    /// record that was changed to let it through (a line break or tab collapsed to a space).
    pub fn normalize_noting(
        &self,
        raw: RawRecord,
        warnings: &mut Vec<Rejection>,
    ) -> Result<SourceRecord, Vec<Rejection>> {
        let RawRecord {
            origin,
            values,
            password,
            previous_employee_id,
        } = raw;
        let mut slots: [Option<String>; FIELD_COUNT] = std::array::from_fn(|_| None);
        for (field, value) in values {
            if let Some(slot) = slots.get_mut(field.0 as usize) {
                *slot = Some(value);
            }
        }

        let mut problems = Vec::new();
        let mut collapsed: Vec<&'static str> = Vec::new();
        let mut user = User::new();
        let mut bad_employee_id = None;
        // Identifying values that failed a rule: a rejected row still names its user by them.
        let mut identity = RowIdentity::default();
        for (i, slot) in slots.iter_mut().enumerate() {
            let field = Field(i as u8);
            let checked = match slot.take() {
                Some(mut v) => {
                    if collapsible(field) && collapse_breaks(&mut v) {
                        collapsed.push(field.name());
                    }
                    normalize_value(field, v, &mut problems)
                }
                None => Checked::Empty,
            };
            match checked {
                Checked::Valid(v) => user.set(field, v),
                Checked::Invalid(v) => {
                    if matches!(field, Field::EMPLOYEE_ID | Field::LOGIN_ID | Field::EMAIL) {
                        identity.push(&v);
                    }
                    if field == Field::EMPLOYEE_ID {
                        bad_employee_id = Some(v);
                    }
                }
                Checked::Empty => match &self.defaults[i] {
                    Some(d) => user.set(field, d.clone()),
                    None if field == Field::ACTIVE => user.set(field, "Y"),
                    None if matches!(field, Field::EMPLOYEE_ID | Field::LOGIN_ID) => {
                        problems.push(Problem {
                            field: field.name(),
                            message: "is missing; it is required".to_owned(),
                        });
                    }
                    None => {}
                },
            }
        }

        if let (Some(country), Some(sub)) = (
            user.get(Field::COUNTRY),
            user.get(Field::COUNTRY_SUBDIVISION),
        ) && !sub.starts_with(country)
        {
            problems.push(Problem {
                field: Field::COUNTRY_SUBDIVISION.name(),
                message: format!(
                    "{} does not belong to country {}",
                    quoted(sub),
                    quoted(country)
                ),
            });
        }
        if let Some(manager) = user.get(Field::MANAGER_EMPLOYEE_ID)
            && manager == user.employee_id()
        {
            problems.push(Problem {
                field: Field::MANAGER_EMPLOYEE_ID.name(),
                message: format!("{} is the employee's own id", quoted(manager)),
            });
        }

        if let Some(prev) = &previous_employee_id {
            identity.push(prev);
        }
        let previous_employee_id = previous_employee_id
            .and_then(|v| check_previous_id(v, &mut problems))
            .filter(|v| v != user.employee_id());
        let password = password.and_then(|p| check_password(p, &mut problems));

        if problems.is_empty() {
            warnings.extend(collapsed.into_iter().map(|field| Rejection {
                source: origin.clone(),
                employee_id: Some(user.employee_id().to_owned()),
                field: field.to_owned(),
                message: "a line break or tab inside the value was replaced by a space".to_owned(),
                identity: Default::default(),
            }));
            return Ok(SourceRecord {
                origin,
                user,
                password,
                previous_employee_id,
            });
        }
        let employee_id = match user.get(Field::EMPLOYEE_ID) {
            Some(id) => Some(id.to_owned()),
            None => bad_employee_id.map(|id| cut(&id, REJECTION_ID_MAX_CHARS)),
        };
        for f in [Field::EMPLOYEE_ID, Field::LOGIN_ID, Field::EMAIL] {
            if let Some(v) = user.get(f) {
                identity.push(v);
            }
        }
        Err(problems
            .into_iter()
            .map(|p| Rejection {
                source: origin.clone(),
                employee_id: employee_id.clone(),
                field: p.field.to_owned(),
                message: p.message,
                identity: identity.clone(),
            })
            .collect())
    }
}

/// Trims, normalizes and checks one value of `field`, pushing every failed rule.
fn normalize_value(field: Field, mut v: String, problems: &mut Vec<Problem>) -> Checked {
    trim_in_place(&mut v);
    if v.is_empty() {
        return Checked::Empty;
    }
    let spec = field.spec();
    let before = problems.len();
    let mut fail = |message: String| {
        problems.push(Problem {
            field: spec.name,
            message,
        });
    };
    if let Some(message) = control_char_rule(&v) {
        fail(message);
    } else if is_identifier(field)
        && let Some(message) = crate::identity::identifier_rule(&v)
    {
        fail(message);
    }
    match spec.kind {
        FieldKind::Text | FieldKind::Login | FieldKind::Email => {
            if let Some(message) = length_rule(&v, spec.max_len) {
                fail(message);
            }
            if spec.kind != FieldKind::Text && !v.contains('@') {
                fail(format!("{} must contain \"@\"", quoted(&v)));
            }
        }
        FieldKind::Flag => match parse_flag(&v) {
            Some(yes) => {
                v.clear();
                v.push(if yes { 'Y' } else { 'N' });
            }
            None => fail(format!(
                "{} is not a yes/no value (accepted: Y/N, yes/no, true/false, 1/0, \
                 active/inactive)",
                quoted(&v)
            )),
        },
        FieldKind::Country => {
            v.make_ascii_uppercase();
            if !is_country(&v) {
                fail(format!(
                    "{} is not an ISO 3166-1 alpha-2 country code",
                    quoted(&v)
                ));
            }
        }
        FieldKind::Currency => {
            v.make_ascii_uppercase();
            if !is_currency(&v) {
                fail(format!("{} is not an ISO 4217 currency code", quoted(&v)));
            }
        }
        FieldKind::Subdivision => {
            v.make_ascii_uppercase();
            if !is_subdivision_form(&v) {
                fail(format!(
                    "{} is not a subdivision code of the form CC-XXX (like US-WA)",
                    quoted(&v)
                ));
            } else if !is_country(&v[..2]) {
                fail(format!(
                    "{}: {} is not an ISO 3166-1 alpha-2 country code",
                    quoted(&v),
                    quoted(&v[..2])
                ));
            }
        }
        FieldKind::Locale => {
            if !canonical_locale(&mut v) {
                fail(format!(
                    "{} is not a locale of the form ll_CC (like en_US)",
                    quoted(&v)
                ));
            } else if let Some(message) = length_rule(&v, spec.max_len) {
                fail(message);
            }
        }
        FieldKind::Initial => {
            if v.chars().nth(1).is_some() {
                fail(format!("{} must be exactly one character", quoted(&v)));
            }
        }
    }
    if problems.len() == before {
        Checked::Valid(v)
    } else {
        Checked::Invalid(v)
    }
}

fn check_previous_id(mut v: String, problems: &mut Vec<Problem>) -> Option<String> {
    trim_in_place(&mut v);
    let before = problems.len();
    let rules = [
        control_char_rule(&v).or_else(|| crate::identity::identifier_rule(&v)),
        length_rule(&v, PREVIOUS_EMPLOYEE_ID_MAX_LEN),
    ];
    for message in rules.into_iter().flatten() {
        problems.push(Problem {
            field: PREVIOUS_EMPLOYEE_ID,
            message,
        });
    }
    (problems.len() == before && !v.is_empty()).then_some(v)
}

/// Fields that name a user (or another user): they must be exactly what people see.
fn is_identifier(field: Field) -> bool {
    matches!(
        field,
        Field::EMPLOYEE_ID | Field::LOGIN_ID | Field::MANAGER_EMPLOYEE_ID
    )
}

/// Trims the password; its value never appears in a message.
fn check_password(p: Secret, problems: &mut Vec<Problem>) -> Option<Secret> {
    let trimmed = p.expose().trim_matches(is_space);
    if trimmed.chars().any(is_forbidden_char) {
        problems.push(Problem {
            field: crate::model::PASSWORD_COLUMN,
            message: "contains a control character".to_owned(),
        });
        return None;
    }
    match trimmed.len() {
        0 => None,
        n if n == p.expose().len() => Some(p),
        _ => Some(Secret::new(trimmed)),
    }
}

/// The spaces trimmed from both ends of every value: Unicode white space (which takes in
/// NO-BREAK SPACE and its kin), ZERO WIDTH SPACE and a stray BOM.
pub fn is_space(c: char) -> bool {
    c.is_whitespace() || c == '\u{200B}' || c == '\u{FEFF}'
}

/// Free-text fields, whose line breaks and tabs are collapsed; identifiers, logins, emails,
/// codes and flags keep rejecting them.
fn collapsible(field: Field) -> bool {
    field.spec().kind == FieldKind::Text
        && !matches!(field, Field::EMPLOYEE_ID | Field::MANAGER_EMPLOYEE_ID)
}

/// A line break or tab inside a value (a multi-line cost-centre name, a pasted address) does
/// not keep a record out: each run of white space holding one becomes a single space, and
/// the ends are trimmed. Other control characters stay rejected. Returns whether a line break
/// or tab was found inside the trimmed value.
fn collapse_breaks(v: &mut String) -> bool {
    let is_break = |c: char| matches!(c, '\n' | '\r' | '\t');
    if !v.contains(is_break) {
        return false;
    }
    trim_in_place(v);
    if !v.contains(is_break) {
        return false;
    }
    let mut out = String::with_capacity(v.len());
    let mut run = String::new();
    let mut run_breaks = false;
    for c in v.chars() {
        if is_break(c) || is_space(c) {
            run_breaks |= is_break(c);
            run.push(c);
            continue;
        }
        if run_breaks {
            out.push(' ');
        } else {
            out.push_str(&run);
        }
        run.clear();
        run_breaks = false;
        out.push(c);
    }
    *v = out;
    true
}

/// Trims [`is_space`] characters from both ends without reallocating.
fn trim_in_place(s: &mut String) {
    let b = s.as_bytes();
    if let (Some(&first), Some(&last)) = (b.first(), b.last())
        && first.is_ascii_graphic()
        && last.is_ascii_graphic()
    {
        return;
    }
    let end = s.trim_end_matches(is_space).len();
    s.truncate(end);
    let start = s.len() - s.trim_start_matches(is_space).len();
    if start > 0 {
        s.drain(..start);
    }
}

/// Control characters (C0, DEL, C1) and the two XML non-characters U+FFFE and U+FFFF.
fn is_forbidden_char(c: char) -> bool {
    c.is_control() || c == '\u{FFFE}' || c == '\u{FFFF}'
}

fn control_char_rule(v: &str) -> Option<String> {
    if v.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return None;
    }
    let (pos, c) = v.chars().enumerate().find(|&(_, c)| is_forbidden_char(c))?;
    Some(format!(
        "contains a control character (U+{:04X}) at character {}",
        c as u32,
        pos + 1
    ))
}

/// Maximum length in characters; the byte length is a cheap upper bound.
fn length_rule(v: &str, max: usize) -> Option<String> {
    if v.len() <= max {
        return None;
    }
    let n = v.chars().count();
    (n > max).then(|| format!("{n} characters, at most {max} allowed"))
}

/// A value quoted for a message: escaped like a Rust string, cut after [`QUOTE_MAX_CHARS`].
fn quoted(v: &str) -> String {
    match v.char_indices().nth(QUOTE_MAX_CHARS) {
        Some((i, _)) => format!("{:?}…", &v[..i]),
        None => format!("{v:?}"),
    }
}

fn cut(v: &str, max_chars: usize) -> String {
    match v.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}…", &v[..i]),
        None => v.to_owned(),
    }
}

/// Accepted spellings of yes and no, in any case.
fn parse_flag(v: &str) -> Option<bool> {
    const YES: [&str; 5] = ["y", "yes", "true", "1", "active"];
    const NO: [&str; 5] = ["n", "no", "false", "0", "inactive"];
    if YES.iter().any(|s| s.eq_ignore_ascii_case(v)) {
        Some(true)
    } else if NO.iter().any(|s| s.eq_ignore_ascii_case(v)) {
        Some(false)
    } else {
        None
    }
}

/// `ll_CC`, `ll-cc`, `lll_CC` … → `ll_CC`: 2–3 letters lowercased, `_`, 2 letters uppercased.
fn canonical_locale(v: &mut String) -> bool {
    let b = v.as_bytes();
    let Some(sep) = b.iter().position(|&c| c == b'_' || c == b'-') else {
        return false;
    };
    let (lang, region) = (&b[..sep], &b[sep + 1..]);
    if !(2..=3).contains(&lang.len())
        || region.len() != 2
        || !lang.iter().all(u8::is_ascii_alphabetic)
        || !region.iter().all(u8::is_ascii_alphabetic)
    {
        return false;
    }
    let (lang, region) = v.split_at_mut(sep);
    lang.make_ascii_lowercase();
    region.make_ascii_uppercase();
    v.replace_range(sep..=sep, "_");
    true
}

/// `CC-XXX`: two letters, a hyphen, one to three letters or digits (already uppercased).
fn is_subdivision_form(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() >= 4
        && b.len() <= 6
        && b[..2].iter().all(u8::is_ascii_uppercase)
        && b[2] == b'-'
        && b[3..].iter().all(u8::is_ascii_alphanumeric)
}

mod codes;

pub use codes::{is_country, is_currency};

#[cfg(test)]
mod tests;
