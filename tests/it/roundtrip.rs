//! Property: any canonical user (every field of `FIELDS`, XML-special and non-ASCII text up to
//! each field's length limit) survives encode → simulator → decode unchanged.

use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use concur_sync::concur::v1::{self, BatchRecord, write_users};
use concur_sync::concur::{ClientConfig, ConcurClient, RecordOutcome};
use concur_sync::model::RawRecord;
use concur_sync::model::{FIELDS, Field, FieldKind, Secret};
use concur_sync::simulator::{self, SimConfig};
use concur_sync::validate::Normalizer;

fn chars() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => proptest::char::range('a', 'z'),
        2 => proptest::char::range('A', 'Z'),
        1 => proptest::char::range('0', '9'),
        1 => Just(' '),
        3 => proptest::sample::select(vec![
            '<', '>', '&', '"', '\'', ']', ';', '=', '/', '#', '%', '+', '\\',
        ]),
        3 => proptest::sample::select(vec![
            'é', 'ß', 'Ø', 'ñ', 'Ж', 'Ω', '田', '中', 'ア', '한', '😀', '\u{00A0}', '\u{2013}',
        ]),
    ]
}

fn text(max: usize) -> BoxedStrategy<String> {
    proptest::collection::vec(chars(), 1..=max)
        .prop_map(|v| v.into_iter().collect::<String>())
        .boxed()
}

fn token(max: usize) -> BoxedStrategy<String> {
    proptest::collection::vec(
        chars().prop_filter("no space", |c| !c.is_whitespace()),
        1..=max,
    )
    .prop_map(|v| v.into_iter().collect::<String>())
    .boxed()
}

/// An employee id or login part: identifiers are exact, so one script (Latin) and no spaces.
fn id_token(max: usize) -> BoxedStrategy<String> {
    proptest::collection::vec(
        chars().prop_filter("Latin, no space", |c| {
            !c.is_whitespace() && (c.is_ascii() || matches!(c, 'é' | 'ß' | 'Ø' | 'ñ'))
        }),
        1..=max,
    )
    .prop_map(|v| v.into_iter().collect::<String>())
    .boxed()
}

/// A raw value for every field except the employee id, login and manager (set per case).
fn field_values() -> impl Strategy<Value = Vec<Option<String>>> {
    let per_field: Vec<BoxedStrategy<Option<String>>> = FIELDS
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let f = Field(i as u8);
            if matches!(
                f,
                Field::EMPLOYEE_ID
                    | Field::LOGIN_ID
                    | Field::MANAGER_EMPLOYEE_ID
                    | Field::COUNTRY_SUBDIVISION
            ) {
                return Just(None).boxed();
            }
            let value: BoxedStrategy<String> = match spec.kind {
                FieldKind::Text => text(spec.max_len),
                FieldKind::Login | FieldKind::Email => (token(40), token(20))
                    .prop_map(|(a, b)| format!("{a}@{b}.example"))
                    .boxed(),
                FieldKind::Flag => proptest::sample::select(vec!["Y", "N", "true", "no"])
                    .prop_map(str::to_owned)
                    .boxed(),
                FieldKind::Locale => proptest::sample::select(vec!["en_US", "fr_FR", "ja_JP"])
                    .prop_map(str::to_owned)
                    .boxed(),
                FieldKind::Country => proptest::sample::select(vec!["US", "DE", "JP", "BR"])
                    .prop_map(str::to_owned)
                    .boxed(),
                FieldKind::Currency => proptest::sample::select(vec!["USD", "EUR", "JPY"])
                    .prop_map(str::to_owned)
                    .boxed(),
                FieldKind::Initial => chars()
                    .prop_filter("not a space", |c| !c.is_whitespace())
                    .prop_map(String::from)
                    .boxed(),
                FieldKind::Subdivision => Just("US-WA".to_owned()).boxed(),
            };
            proptest::option::weighted(0.6, value).boxed()
        })
        .collect();
    per_field
}

/// Up to four users per batch, each with an id and login made unique by a counter.
fn batch() -> impl Strategy<Value = Vec<(String, String, Vec<Option<String>>)>> {
    proptest::collection::vec((id_token(40), id_token(40), field_values()), 1..=4)
}

#[test]
fn any_canonical_user_survives_encode_simulator_decode() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sim = rt.block_on(async {
        simulator::start(
            "127.0.0.1:0".parse().unwrap(),
            SimConfig {
                required_fields: Vec::new(),
                ..SimConfig::default()
            },
        )
        .await
        .unwrap()
    });
    let client = ConcurClient::new(
        ClientConfig::new(
            sim.base_url(),
            "rt-client",
            Secret::new("rt-secret"),
            "rt-company",
            Secret::new("rt-token"),
        ),
        None,
    )
    .unwrap();
    let normalizer = Normalizer::new(&Default::default()).unwrap();
    let counter = AtomicUsize::new(0);
    let mut runner = TestRunner::new(Config {
        cases: 32,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&batch(), |cases| {
            let mut users = Vec::new();
            for (id, login, values) in cases {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let mut raw = RawRecord {
                    origin: format!("case {n}"),
                    ..RawRecord::default()
                };
                raw.values.push((Field::EMPLOYEE_ID, format!("{id}{n}")));
                raw.values
                    .push((Field::LOGIN_ID, format!("{login}{n}@example.com")));
                for (i, v) in values.into_iter().enumerate() {
                    if let Some(v) = v {
                        raw.values.push((Field(i as u8), v));
                    }
                }
                let rec = normalizer
                    .normalize(raw)
                    .map_err(|r| TestCaseError::reject(format!("{r:?}")))?;
                users.push(rec.user);
            }
            let records: Vec<BatchRecord<'_>> = users.iter().map(BatchRecord::new).collect();
            let outcomes = rt.block_on(write_users(&client, &records)).unwrap();
            prop_assert!(
                outcomes.iter().all(|o| *o == RecordOutcome::Acknowledged),
                "{outcomes:?}"
            );
            let held = sim.users();
            for user in &users {
                let sim_user = held
                    .iter()
                    .find(|u| u.emp_id() == user.employee_id())
                    .ok_or_else(|| {
                        TestCaseError::fail(format!("{} missing", user.employee_id()))
                    })?;
                for (i, spec) in FIELDS.iter().enumerate() {
                    prop_assert_eq!(
                        sim_user.get(v1::element(Field(i as u8))),
                        user.get(Field(i as u8)),
                        "field {} of {}",
                        spec.name,
                        user.employee_id()
                    );
                }
                let known: Vec<&str> = Field::all().map(v1::element).collect();
                for k in sim_user.fields.keys() {
                    prop_assert!(known.contains(&k.as_str()), "unexpected element {k}");
                }
            }
            Ok(())
        })
        .unwrap();
}
