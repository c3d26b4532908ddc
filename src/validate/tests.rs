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
            let mut out: Vec<String> = rec.user.iter().map(|(f, v)| format!("{f}={v}")).collect();
            if let Some(p) = rec.password {
                out.push(format!("password={}", p.expose()));
            }
            if let Some(p) = rec.previous_employee_id {
                out.push(format!("previous_employee_id={p}"));
            }
            out
        }
        Err(rejections) => rejections.iter().map(ToString::to_string).collect(),
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
    let lines: Vec<String> = warnings.iter().map(ToString::to_string).collect();
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
        &["hr.csv:7: employee E1: field country: \"XX\" is not an ISO 3166-1 alpha-2 country code"],
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
    assert!(codes::COUNTRIES.is_sorted() && codes::CURRENCIES.is_sorted());
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
