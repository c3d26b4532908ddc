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

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> User {
        let mut u = User::new();
        for (f, v) in [
            (Field::EMPLOYEE_ID, "E1"),
            (Field::LOGIN_ID, "ann@example.com"),
            (Field::ACTIVE, "Y"),
            (Field::FIRST_NAME, "Ann"),
            (Field::LAST_NAME, "Lee"),
            (Field::EMAIL, "ann@example.com"),
        ] {
            u.set(f, v);
        }
        u
    }

    /// The violations of `valid()` with `edit` applied, as `field: message`.
    fn check(edit: &[(Field, &str)], expected: &[&str]) {
        let mut u = valid();
        for (f, v) in edit {
            u.set(*f, *v);
        }
        let got: Vec<String> = violations(&u)
            .into_iter()
            .map(|(f, m)| format!("{f}: {m}"))
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn user_names() {
        check(&[], &[]);
        check(
            &[(Field::LOGIN_ID, "ann;lee@example.com")],
            &[
                "login_id: userName must not contain ';' (UPS v4: forbidden characters % [ # ! * & ( ) ~ ' { ^ } \\ / ? > < , ; : + = ] \\\" |)",
            ],
        );
        let mut u = valid();
        u.set(Field::LOGIN_ID, "a+b|c+\"d]@example.com");
        let v = violations(&u);
        assert_eq!(v.len(), 1);
        assert!(
            v[0].1
                .starts_with("userName must not contain '+', '|', '\"', ']' (UPS v4:"),
            "{}",
            v[0].1
        );
        for bad in [
            "nobody",
            "@example.com",
            "ann@",
            "a@b@c",
            "ann lee@example.com",
        ] {
            let mut u = valid();
            u.set(Field::LOGIN_ID, bad);
            let v = violations(&u);
            assert_eq!(v.len(), 1, "{bad}");
            assert!(
                v[0].1
                    .starts_with("userName must have the form name@domain"),
                "{bad}"
            );
        }
    }

    #[test]
    fn required_attributes_and_lengths() {
        check(
            &[(Field::FIRST_NAME, ""), (Field::EMAIL, "")],
            &[
                "first_name: name.givenName is required (UPS v4: name.givenName)",
                "email: emails is required (UPS v4: emails)",
            ],
        );
        check(
            &[
                (Field::LAST_NAME, &"L".repeat(33)),
                (Field::EMPLOYEE_ID, &"9".repeat(49)),
                (Field::MIDDLE_INITIAL, "AB"),
                (Field::LEDGER, &"é".repeat(21)),
                (Field::LOCALE, "en_US"),
                (Field::COUNTRY, "US"),
                (Field::CURRENCY, "USD"),
            ],
            &[
                "employee_id: employeeNumber is 49 characters long, at most 48 allowed (UPS v4: employeeNumber ≤ 48)",
                "last_name: name.familyName is 33 characters long, at most 32 allowed (UPS v4: name.familyName ≤ 32)",
                "middle_initial: name.middleInitial \"AB\" is 2 characters long, it must be exactly 1 (UPS v4: name.middleInitial length 1)",
                "ledger: ledgerCode is 21 characters long, at most 20 allowed (UPS v4: ledgerCode ≤ 20)",
            ],
        );
        // 32 characters of any script are fine.
        check(&[(Field::FIRST_NAME, &"山".repeat(32))], &[]);
    }

    #[test]
    fn spend_values_need_the_trio_in_v4_form() {
        let trio = [
            (Field::LOCALE, "en_US"),
            (Field::COUNTRY, "US"),
            (Field::CURRENCY, "USD"),
        ];
        check(&trio, &[]);
        check(
            &[
                (Field::COUNTRY_SUBDIVISION, "US-WA"),
                (Field::LOCALE, "en_US"),
                (Field::COUNTRY, "US"),
                (Field::CURRENCY, "USD"),
            ],
            &[],
        );
        let mut with = trio.to_vec();
        with.push((Field::COUNTRY_SUBDIVISION, "GB-ENG"));
        with.push((Field::LOCALE, "fil_PH"));
        check(
            &with,
            &[
                "locale: locale \"fil-PH\" is not a 5-character RFC 5646 tag of language and region like \"en-US\" (UPS v4: spend locale)",
                "country_subdivision: stateProvince \"ENG\" is 3 characters long, it must be exactly 2 (UPS v4: stateProvince length 2)",
            ],
        );
        let missing = "is required once the spend User extension is used (UPS v4: reimbursementCurrency, country and locale are required together; this user has spend values)";
        check(
            &[(Field::CUSTOM3, "x"), (Field::COUNTRY, "US")],
            &[
                &format!("locale: locale {missing}"),
                &format!("currency: reimbursementCurrency {missing}"),
            ],
        );
        for spend in [
            (Field::MANAGER_EMPLOYEE_ID, "M1"),
            (Field::EXPENSE_APPROVER, "Y"),
            (Field::LEDGER, "L"),
        ] {
            let mut u = valid();
            u.set(spend.0, spend.1);
            assert_eq!(violations(&u).len(), 3, "{spend:?}");
        }
        // Flags that grant nothing and entitlements are not spend values.
        check(
            &[(Field::EXPENSE_APPROVER, "N"), (Field::EXPENSE_USER, "Y")],
            &[],
        );
    }
}
