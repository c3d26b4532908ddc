//! The rules the User Provisioning Service v4 imposes on a user, checked before anything is
//! sent so that a record Concur would refuse is rejected locally, by a message naming the v4
//! attribute and rule. Pure: a canonical user in, `(field, message)` violations out.
//!
//! - `userName`: none of Concur's forbidden characters; the form `name@domain` (one `@`,
//!   something on each side, no white space).
//! - Required: `name.givenName`, `name.familyName`, `emails` (with `userName` and `active`,
//!   which a canonical user always has).
//! - Lengths, in characters, of the values as v4 holds them (after `US-WA` → `WA`).
//! - `locale` after `en_US` → `en-US`: a 5-character RFC 5646 tag, language and region.
//! - The spend User extension, once used (any spend field, approver role or manager),
//!   requires `reimbursementCurrency`, `country` and `locale`: a user missing one of them is
//!   rejected, naming each missing one, rather than sent without its spend data.
//! - `customData` values: Concur documents no limit beyond the canonical one, so none here.

use super::mapping::{spend_value, uses_spend};
use super::schema::{USER_NAME_FORBIDDEN, home};
use crate::model::{Field, User};

/// `(field, v4 attribute, exact length)`.
const EXACT: [(Field, &str, usize); 4] = [
    (Field::MIDDLE_INITIAL, "name.middleInitial", 1),
    (Field::COUNTRY, "country", 2),
    (Field::COUNTRY_SUBDIVISION, "stateProvince", 2),
    (Field::CURRENCY, "reimbursementCurrency", 3),
];

/// `(field, v4 attribute, maximum length)`.
const MAX: [(Field, &str, usize); 7] = [
    (Field::EMPLOYEE_ID, "employeeNumber", 48),
    (Field::FIRST_NAME, "name.givenName", 32),
    (Field::LAST_NAME, "name.familyName", 32),
    (Field::EMAIL, "emails.value", 255),
    (Field::LEDGER, "ledgerCode", 20),
    (
        Field::CASH_ADVANCE_ACCOUNT_CODE,
        "cashAdvanceAccountCode",
        20,
    ),
    (
        Field::MANAGER_EMPLOYEE_ID,
        "Approver report approver.employeeNumber",
        48,
    ),
];

/// Required v4 attributes a canonical user may lack.
const REQUIRED: [(Field, &str); 3] = [
    (Field::FIRST_NAME, "name.givenName"),
    (Field::LAST_NAME, "name.familyName"),
    (Field::EMAIL, "emails"),
];

/// The spend User attributes required once the extension is used.
const SPEND_TRIO: [(Field, &str); 3] = [
    (Field::CURRENCY, "reimbursementCurrency"),
    (Field::COUNTRY, "country"),
    (Field::LOCALE, "locale"),
];

fn forbidden_list() -> String {
    USER_NAME_FORBIDDEN
        .iter()
        .map(|c| {
            if *c == '"' {
                "\\\"".to_owned()
            } else {
                c.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn user_name_rules(login: &str, out: &mut Vec<(Field, String)>) {
    let mut found: Vec<char> = Vec::new();
    for c in login.chars() {
        if USER_NAME_FORBIDDEN.contains(&c) && !found.contains(&c) {
            found.push(c);
        }
    }
    if !found.is_empty() {
        let listed = found
            .iter()
            .map(|c| format!("'{c}'"))
            .collect::<Vec<_>>()
            .join(", ");
        out.push((
            Field::LOGIN_ID,
            format!(
                "userName must not contain {listed} (UPS v4: forbidden characters {})",
                forbidden_list()
            ),
        ));
    }
    let well_formed = match login.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !login.chars().any(char::is_whitespace)
        }
        None => false,
    };
    if !well_formed {
        out.push((
            Field::LOGIN_ID,
            "userName must have the form name@domain: one '@' with text on both sides and no spaces (UPS v4: userName)".to_owned(),
        ));
    }
}

/// The value v4 holds for a field.
fn v4_value(field: Field, value: &str) -> String {
    match home(field) {
        super::schema::Home::Spend(_) => spend_value(field, value),
        _ => value.to_owned(),
    }
}

fn is_locale_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    b.len() == 5
        && b[..2].iter().all(u8::is_ascii_lowercase)
        && b[2] == b'-'
        && b[3..].iter().all(u8::is_ascii_uppercase)
}

/// Every v4 rule `user` breaks, in field order: the field and a message naming the v4
/// attribute and rule.
pub fn violations(user: &User) -> Vec<(Field, String)> {
    let mut out = Vec::new();
    match user.get(Field::LOGIN_ID) {
        Some(login) => user_name_rules(login, &mut out),
        None => out.push((
            Field::LOGIN_ID,
            "userName is required (UPS v4: userName)".to_owned(),
        )),
    }
    for (field, attr) in REQUIRED {
        if user.get(field).is_none() {
            out.push((field, format!("{attr} is required (UPS v4: {attr})")));
        }
    }
    for (field, attr, max) in MAX {
        if let Some(v) = user.get(field) {
            let n = v4_value(field, v).chars().count();
            if n > max {
                out.push((
                    field,
                    format!(
                        "{attr} is {n} characters long, at most {max} allowed (UPS v4: {attr} ≤ {max})"
                    ),
                ));
            }
        }
    }
    for (field, attr, len) in EXACT {
        if let Some(v) = user.get(field) {
            let value = v4_value(field, v);
            let n = value.chars().count();
            if n != len {
                out.push((
                    field,
                    format!(
                        "{attr} {value:?} is {n} characters long, it must be exactly {len} (UPS v4: {attr} length {len})"
                    ),
                ));
            }
        }
    }
    if let Some(v) = user.get(Field::LOCALE) {
        let tag = spend_value(Field::LOCALE, v);
        if !is_locale_tag(&tag) {
            out.push((
                Field::LOCALE,
                format!(
                    "locale {tag:?} is not a 5-character RFC 5646 tag of language and region like \"en-US\" (UPS v4: spend locale)"
                ),
            ));
        }
    }
    if uses_spend(user) {
        for (field, attr) in SPEND_TRIO {
            if user.get(field).is_none() {
                out.push((
                    field,
                    format!(
                        "{attr} is required once the spend User extension is used (UPS v4: reimbursementCurrency, country and locale are required together; this user has spend values)"
                    ),
                ));
            }
        }
    }
    out.sort_by_key(|(f, _)| *f);
    out
}
