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
        })
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

/// Whether `code` is an ISO 3166-1 alpha-2 country code (uppercase).
pub fn is_country(code: &str) -> bool {
    find_code(&COUNTRIES, code)
}

/// Whether `code` is an ISO 4217 currency code (uppercase).
pub fn is_currency(code: &str) -> bool {
    find_code(&CURRENCIES, code)
}

/// Binary search in a sorted table of equal-length ASCII codes, comparing codes as integers.
fn find_code(table: &[&str], code: &str) -> bool {
    fn key(code: &[u8]) -> u32 {
        code.iter().fold(0, |k, &b| k << 8 | u32::from(b))
    }
    let len = table.first().map_or(0, |c| c.len());
    if code.len() != len {
        return false;
    }
    let want = key(code.as_bytes());
    table
        .binary_search_by(|c| key(c.as_bytes()).cmp(&want))
        .is_ok()
}

// ISO 3166-1 alpha-2 (249 codes) and ISO 4217 (the iso-codes 4.15 list plus XCG and ZWG, which
// came into use in 2024–2025; recently withdrawn codes such as HRK stay accepted). Sorted.
static COUNTRIES: [&str; 249] = [
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ",
    "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS",
    "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN",
    "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE",
    "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF",
    "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM",
    "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM",
    "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC",
    "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK",
    "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA",
    "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG",
    "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW",
    "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS",
    "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO",
    "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
    "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
];
static CURRENCIES: [&str; 183] = [
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BOV", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD",
    "CAD", "CDF", "CHE", "CHF", "CHW", "CLF", "CLP", "CNY", "COP", "COU", "CRC", "CUC", "CUP",
    "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP",
    "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HRK", "HTG", "HUF", "IDR",
    "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW",
    "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "LYD", "MAD", "MDL", "MGA",
    "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MXV", "MYR", "MZN", "NAD",
    "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG",
    "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE",
    "SLL", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TND", "TOP",
    "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "USN", "UYI", "UYU", "UYW", "UZS", "VED",
    "VES", "VND", "VUV", "WST", "XAF", "XAG", "XAU", "XBA", "XBB", "XBC", "XBD", "XCD", "XCG",
    "XDR", "XOF", "XPD", "XPF", "XPT", "XSU", "XTS", "XUA", "XXX", "YER", "ZAR", "ZMW", "ZWG",
    "ZWL",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn normalizer(defaults: &[(&str, &str)]) -> Result<Normalizer, String> {
        let map = defaults
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Normalizer::new(&map)
    }

    /// Renders a normalization outcome: `name=value` per field of a valid record, or one
    /// rejection per line.
    fn render(result: Result<SourceRecord, Vec<Rejection>>) -> Vec<String> {
        match result {
            Ok(rec) => {
                let mut out: Vec<String> =
                    rec.user.iter().map(|(f, v)| format!("{f}={v}")).collect();
                if let Some(p) = rec.password {
                    out.push(format!("password={}", p.expose()));
                }
                if let Some(p) = rec.previous_employee_id {
                    out.push(format!("previous_employee_id={p}"));
                }
                out
            }
            Err(rejections) => rejections.iter().map(|r| r.to_string()).collect(),
        }
    }

    fn raw(input: &[(&str, &str)]) -> RawRecord {
        let mut raw = RawRecord {
            origin: "hr.csv:7".to_owned(),
            ..RawRecord::default()
        };
        for (name, value) in input {
            match *name {
                "password" => raw.password = Some(Secret::new(*value)),
                PREVIOUS_EMPLOYEE_ID => raw.previous_employee_id = Some(value.to_string()),
                _ => {
                    let f = Field::from_name(name).expect("test field name");
                    raw.values.push((f, value.to_string()));
                }
            }
        }
        raw
    }

    /// Normalizes `input` (plus `employee_id=E1` and `login_id=j@x.com` unless given) with the
    /// defaults `ledger=DEFAULT`, and compares with `expected`: the non-identity fields of a
    /// valid record, or the rejection lines.
    fn check(input: &[(&str, &str)], expected: &[&str]) {
        let n = normalizer(&[("ledger", "DEFAULT")]).expect("defaults");
        let mut full: Vec<(&str, &str)> = Vec::new();
        for base in ["employee_id", "login_id"] {
            if !input.iter().any(|(k, _)| *k == base) {
                full.push((base, if base == "login_id" { "j@x.com" } else { "E1" }));
            }
        }
        full.extend_from_slice(input);
        let got: Vec<String> = render(n.normalize(raw(&full)))
            .into_iter()
            .filter(|l| {
                !matches!(
                    l.as_str(),
                    "employee_id=E1" | "login_id=j@x.com" | "active=Y" | "ledger=DEFAULT"
                )
            })
            .collect();
        assert_eq!(got, expected, "input {input:?}");
    }

    #[test]
    fn line_breaks_and_tabs_become_spaces() {
        let n = normalizer(&[]).expect("defaults");
        let mut warnings = Vec::new();
        let rec = n
            .normalize_noting(
                raw(&[
                    ("employee_id", "E1"),
                    ("login_id", "j@x.com"),
                    ("org_unit1", " Cost centre\r\n  Sales \n"),
                    ("first_name", "Jo\thn"),
                    ("last_name", "Doe"),
                ]),
                &mut warnings,
            )
            .expect("valid");
        assert_eq!(rec.user.get(Field::ORG_UNIT1), Some("Cost centre Sales"));
        assert_eq!(rec.user.get(Field::FIRST_NAME), Some("Jo hn"));
        let lines: Vec<String> = warnings.iter().map(|w| w.to_string()).collect();
        assert_eq!(
            lines,
            [
                "hr.csv:7: employee E1: field first_name: a line break or tab inside the value \
                 was replaced by a space",
                "hr.csv:7: employee E1: field org_unit1: a line break or tab inside the value \
                 was replaced by a space",
            ]
        );
        // A rejected record reports its rejections, not warnings; identifiers keep rejecting
        // line breaks.
        let mut warnings = Vec::new();
        let rejected = n.normalize_noting(
            raw(&[("employee_id", "E1\nE2"), ("login_id", "j@x.com")]),
            &mut warnings,
        );
        assert_eq!(
            rejected.err().map(|r| r[0].to_string()),
            Some(
                "hr.csv:7: employee E1\nE2: field employee_id: contains a control character \
                 (U+000A) at character 3"
                    .to_owned()
            )
        );
        let mut warnings = Vec::new();
        let rejected = n.normalize_noting(
            raw(&[("employee_id", "E2"), ("first_name", "A\nB")]),
            &mut warnings,
        );
        assert!(rejected.is_err());
        assert!(warnings.is_empty());
    }

    #[test]
    fn normalizes_values() {
        check(&[], &[]);
        check(
            &[
                ("first_name", "  Jane\u{a0}"),
                ("last_name", "\u{3000}Doe\t"),
            ],
            &["first_name=Jane", "last_name=Doe"],
        );
        check(
            &[("last_name", "O'Brien & <Sons>"), ("first_name", "Zoë")],
            &["first_name=Zoë", "last_name=O'Brien & <Sons>"],
        );
        check(
            &[("login_id", " Jane.Doe@Example.COM "), ("email", "J@X.com")],
            &["login_id=Jane.Doe@Example.COM", "email=J@X.com"],
        );
        check(
            &[("country", "us"), ("currency", "eur"), ("locale", "de-de")],
            &["locale=de_DE", "country=US", "currency=EUR"],
        );
        check(&[("locale", "EN_us")], &["locale=en_US"]);
        check(
            &[("country", "ca"), ("country_subdivision", "ca-on")],
            &["country=CA", "country_subdivision=CA-ON"],
        );
        check(
            &[("country_subdivision", "GB-ABE")],
            &["country_subdivision=GB-ABE"],
        );
        check(&[("middle_initial", "Ł")], &["middle_initial=Ł"]);
        check(
            &[(
                "first_name",
                "文字文字文字文字文字文字文字文字文字文字文字文字文字文字文字文字",
            )],
            &["first_name=文字文字文字文字文字文字文字文字文字文字文字文字文字文字文字文字"],
        );
        check(&[("ledger", "OTHER")], &["ledger=OTHER"]);
        check(
            &[("manager_employee_id", "M9"), ("password", " s3cret ")],
            &["manager_employee_id=M9", "password=s3cret"],
        );
        check(&[("password", "  ")], &[]);
        check(
            &[(PREVIOUS_EMPLOYEE_ID, " OLD1 ")],
            &["previous_employee_id=OLD1"],
        );
        check(&[(PREVIOUS_EMPLOYEE_ID, "E1")], &[]);
        check(&[("custom1", "a\u{200B}")], &["custom1=a"]);
    }

    #[test]
    fn identifiers_are_exact_and_a_rejection_carries_what_names_the_user() {
        check(
            &[("employee_id", "E\u{200B}1")],
            &[
                "hr.csv:7: employee E\u{200B}1: field employee_id: contains an invisible format character U+200B at character 2; identifiers must be exactly what people see",
            ],
        );
        let n = normalizer(&[]).expect("defaults");
        let rejected = n
            .normalize(raw(&[
                ("employee_id", "\u{0415}1"),
                ("login_id", "j@x.com"),
                ("email", "J@X.com"),
                (PREVIOUS_EMPLOYEE_ID, "OLD\u{2066}1"),
                ("manager_employee_id", "M\u{0430}nager"),
            ]))
            .expect_err("rejected");
        let fields: Vec<&str> = rejected.iter().map(|r| r.field.as_str()).collect();
        assert_eq!(
            fields,
            ["employee_id", "manager_employee_id", PREVIOUS_EMPLOYEE_ID]
        );
        assert!(
            rejected[0].message.contains("looks like \"E1\""),
            "{rejected:?}"
        );
        assert!(
            rejected[1].message.contains("mixes Latin and Cyrillic"),
            "{rejected:?}"
        );
        assert!(rejected[2].message.contains("U+2066"), "{rejected:?}");
        let mut ids = rejected[0].identity.0.clone();
        ids.sort();
        assert_eq!(ids, ["J@X.com", "OLD\u{2066}1", "j@x.com", "\u{0415}1"]);
    }

    #[test]
    fn flag_spellings() {
        for (given, want) in [
            ("", "Y"),
            ("Y", "Y"),
            ("n", "N"),
            ("Yes", "Y"),
            ("NO", "N"),
            ("true", "Y"),
            ("False", "N"),
            ("1", "Y"),
            ("0", "N"),
            ("Active", "Y"),
            ("INACTIVE", "N"),
            (" y ", "Y"),
        ] {
            let n = normalizer(&[]).expect("no defaults");
            let rec = n
                .normalize(raw(&[
                    ("employee_id", "E1"),
                    ("login_id", "a@b"),
                    ("active", given),
                    ("trip_user", given),
                ]))
                .expect("valid");
            assert_eq!(rec.user.get(Field::ACTIVE), Some(want), "{given:?}");
            let trip = if given.is_empty() { None } else { Some(want) };
            assert_eq!(rec.user.get(Field::TRIP_USER), trip, "{given:?}");
        }
        check(
            &[("active", "maybe")],
            &[
                "hr.csv:7: employee E1: field active: \"maybe\" is not a yes/no value \
                 (accepted: Y/N, yes/no, true/false, 1/0, active/inactive)",
            ],
        );
        check(
            &[("invoice_approver", "2")],
            &[
                "hr.csv:7: employee E1: field invoice_approver: \"2\" is not a yes/no value \
                 (accepted: Y/N, yes/no, true/false, 1/0, active/inactive)",
            ],
        );
    }

    #[test]
    fn validation_rules() {
        check(
            &[("employee_id", " ")],
            &["hr.csv:7: field employee_id: is missing; it is required"],
        );
        check(
            &[("login_id", "")],
            &["hr.csv:7: employee E1: field login_id: is missing; it is required"],
        );
        check(
            &[("login_id", "jsmith")],
            &["hr.csv:7: employee E1: field login_id: \"jsmith\" must contain \"@\""],
        );
        check(
            &[("email", "jsmith.example.com")],
            &["hr.csv:7: employee E1: field email: \"jsmith.example.com\" must contain \"@\""],
        );
        check(
            &[("first_name", &"x".repeat(40))],
            &["hr.csv:7: employee E1: field first_name: 40 characters, at most 32 allowed"],
        );
        check(
            &[("last_name", &"é".repeat(33))],
            &["hr.csv:7: employee E1: field last_name: 33 characters, at most 32 allowed"],
        );
        check(
            &[("employee_id", &"9".repeat(49))],
            &[&format!(
                "hr.csv:7: employee {}: field employee_id: 49 characters, at most 48 allowed",
                "9".repeat(49)
            )],
        );
        check(
            &[("country", "XX")],
            &[
                "hr.csv:7: employee E1: field country: \"XX\" is not an ISO 3166-1 alpha-2 country code",
            ],
        );
        check(
            &[("country", "USA")],
            &[
                "hr.csv:7: employee E1: field country: \"USA\" is not an ISO 3166-1 alpha-2 country code",
            ],
        );
        check(
            &[("currency", "usx")],
            &["hr.csv:7: employee E1: field currency: \"USX\" is not an ISO 4217 currency code"],
        );
        check(
            &[("country_subdivision", "US/WA")],
            &[
                "hr.csv:7: employee E1: field country_subdivision: \"US/WA\" is not a subdivision \
               code of the form CC-XXX (like US-WA)",
            ],
        );
        check(
            &[("country_subdivision", "US-ABCD")],
            &[
                "hr.csv:7: employee E1: field country_subdivision: \"US-ABCD\" is not a subdivision \
               code of the form CC-XXX (like US-WA)",
            ],
        );
        check(
            &[("country_subdivision", "XX-AB")],
            &[
                "hr.csv:7: employee E1: field country_subdivision: \"XX-AB\": \"XX\" is not an ISO \
               3166-1 alpha-2 country code",
            ],
        );
        check(
            &[("country", "US"), ("country_subdivision", "CA-ON")],
            &[
                "hr.csv:7: employee E1: field country_subdivision: \"CA-ON\" does not belong to \
               country \"US\"",
            ],
        );
        check(
            &[("locale", "english")],
            &[
                "hr.csv:7: employee E1: field locale: \"english\" is not a locale of the form \
               ll_CC (like en_US)",
            ],
        );
        check(
            &[("locale", "fil_PH")],
            &["hr.csv:7: employee E1: field locale: 6 characters, at most 5 allowed"],
        );
        check(
            &[("middle_initial", "AB")],
            &["hr.csv:7: employee E1: field middle_initial: \"AB\" must be exactly one character"],
        );
        // Line breaks and tabs are collapsed (see `line_breaks_and_tabs_become_spaces`);
        // other control characters are not.
        check(
            &[("first_name", "Jo\u{b}hn")],
            &[
                "hr.csv:7: employee E1: field first_name: contains a control character (U+000B) \
               at character 3",
            ],
        );
        check(
            &[("last_name", "Doe\u{85}Smith")],
            &[
                "hr.csv:7: employee E1: field last_name: contains a control character (U+0085) \
               at character 4",
            ],
        );
        check(
            &[("custom3", "a\u{1}b")],
            &[
                "hr.csv:7: employee E1: field custom3: contains a control character (U+0001) \
               at character 2",
            ],
        );
        check(
            &[("manager_employee_id", "E1")],
            &["hr.csv:7: employee E1: field manager_employee_id: \"E1\" is the employee's own id"],
        );
        check(
            &[(PREVIOUS_EMPLOYEE_ID, &"p".repeat(49))],
            &[
                "hr.csv:7: employee E1: field previous_employee_id: 49 characters, at most 48 \
               allowed",
            ],
        );
        check(
            &[("password", "a\u{7f}b")],
            &["hr.csv:7: employee E1: field password: contains a control character"],
        );
    }

    #[test]
    fn every_failure_of_a_row_is_reported() {
        check(
            &[
                ("employee_id", "E2"),
                ("login_id", "nobody"),
                ("first_name", "Ann\u{0}"),
                ("currency", "ZZZ"),
                ("email", &"é".repeat(300)),
            ],
            &[
                "hr.csv:7: employee E2: field login_id: \"nobody\" must contain \"@\"",
                "hr.csv:7: employee E2: field first_name: contains a control character \
                 (U+0000) at character 4",
                "hr.csv:7: employee E2: field email: 300 characters, at most 255 allowed",
                &format!(
                    "hr.csv:7: employee E2: field email: {:?}… must contain \"@\"",
                    "é".repeat(40)
                ),
                "hr.csv:7: employee E2: field currency: \"ZZZ\" is not an ISO 4217 currency code",
            ],
        );
    }

    #[test]
    fn hostile_values_are_rejected_cleanly() {
        let huge = "A".repeat(1 << 20);
        let n = normalizer(&[]).expect("no defaults");
        let rejections = n
            .normalize(raw(&[
                ("employee_id", &huge),
                ("login_id", &huge),
                ("country", &huge),
            ]))
            .expect_err("rejected");
        let cut = format!("{}…", "A".repeat(64));
        for r in &rejections {
            assert_eq!(r.employee_id.as_deref(), Some(cut.as_str()));
            assert!(r.message.len() < 200, "{}", r.message);
        }
        let messages: Vec<&str> = rejections.iter().map(|r| r.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "1048576 characters, at most 48 allowed",
                "1048576 characters, at most 128 allowed",
                &format!("{:?}… must contain \"@\"", "A".repeat(40)),
                &format!(
                    "{:?}… is not an ISO 3166-1 alpha-2 country code",
                    "A".repeat(40)
                ),
            ]
        );
    }

    #[test]
    fn defaults() {
        let n = normalizer(&[
            ("ledger", "DEFAULT"),
            ("currency", "usd"),
            ("locale", "en-us"),
            ("Country", "US"),
            ("expense_user", "yes"),
            ("custom1", ""),
        ])
        .expect("valid defaults");
        assert_eq!(n.default_for(Field::CURRENCY), Some("USD"));
        let out = render(n.normalize(raw(&[
            ("employee_id", "E1"),
            ("login_id", "a@b"),
            ("currency", " "),
            ("ledger", "L2"),
        ])));
        assert_eq!(
            out,
            [
                "employee_id=E1",
                "login_id=a@b",
                "locale=en_US",
                "active=Y",
                "ledger=L2",
                "country=US",
                "currency=USD",
                "expense_user=Y",
            ]
        );
        for (defaults, error) in [
            (("nope", "x"), "[defaults]: unknown field \"nope\""),
            (("password", "x"), "[defaults]: unknown field \"password\""),
            (
                ("login_id", "a@b"),
                "[defaults]: login_id cannot have a default: it identifies each user",
            ),
            (
                ("currency", "dollars"),
                "[defaults]: currency: \"DOLLARS\" is not an ISO 4217 currency code",
            ),
            (
                ("ledger", &"L".repeat(21)),
                "[defaults]: ledger: 21 characters, at most 20 allowed",
            ),
        ] {
            assert_eq!(normalizer(&[defaults]).expect_err("invalid default"), error);
        }
    }

    #[test]
    fn code_tables_are_sorted() {
        assert!(COUNTRIES.is_sorted() && CURRENCIES.is_sorted());
        for c in ["US", "DE", "GB", "JP", "AX", "ZW"] {
            assert!(is_country(c), "{c}");
        }
        for c in ["UK", "EU", "us", ""] {
            assert!(!is_country(c), "{c}");
        }
        for c in ["USD", "EUR", "JPY", "CHF", "XCG", "ZWG"] {
            assert!(is_currency(c), "{c}");
        }
        assert!(!is_currency("ABC"));
    }
}
