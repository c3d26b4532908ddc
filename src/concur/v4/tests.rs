//! Tests across the v4 wire modules: a user with every field mapped and read back, hostile
//! values, and the documented Bulk / provision status fixture end to end.

use chrono::NaiveDate;
use serde_json::{Value, json};

use super::*;
use crate::model::{Field, FieldChange, Op, OpKind, User};

const COMPANY: &str = "5e0b3c8a-6f1d-4c2e-9a7b-0c1d2e3f4a5b";

fn user(pairs: &[(Field, &str)]) -> User {
    let mut u = User::new();
    for (f, v) in pairs {
        u.set(*f, *v);
    }
    u
}

/// A user with a value in every canonical field.
fn everything() -> User {
    let mut u = user(&[
        (Field::EMPLOYEE_ID, "E123"),
        (Field::LOGIN_ID, "ada@example.com"),
        (Field::LOCALE, "en_US"),
        (Field::ACTIVE, "Y"),
        (Field::FIRST_NAME, "Ada"),
        (Field::LAST_NAME, "Lovelace"),
        (Field::MIDDLE_INITIAL, "K"),
        (Field::EMAIL, "ada@example.com"),
        (Field::LEDGER, "DEFAULT"),
        (Field::COUNTRY, "US"),
        (Field::CASH_ADVANCE_ACCOUNT_CODE, "CA-1"),
        (Field::CURRENCY, "USD"),
        (Field::COUNTRY_SUBDIVISION, "US-WA"),
        (Field::EXPENSE_USER, "Y"),
        (Field::EXPENSE_APPROVER, "Y"),
        (Field::TRIP_USER, "N"),
        (Field::INVOICE_USER, "Y"),
        (Field::INVOICE_APPROVER, "N"),
        (Field::MANAGER_EMPLOYEE_ID, "E001"),
    ]);
    for (i, (field, _)) in schema::CUSTOM_DATA.iter().enumerate() {
        u.set(*field, format!("V{}", i + 1));
    }
    assert_eq!(u.iter().count(), crate::model::FIELD_COUNT);
    u
}

/// `body` as Identity (with an id) would return it, after a trip through its JSON text.
fn as_read(body: &Value) -> Value {
    let mut v: Value = serde_json::from_str(&body.to_string()).expect("valid JSON");
    v["id"] = json!("3f1c5e2a-0000-4000-8000-000000000123");
    v
}

fn no_managers(_: &str) -> Option<String> {
    None
}

#[test]
fn a_user_with_every_field_maps_to_v4() {
    let body = user_body(&everything(), COMPANY);
    let json = serde_json::to_string_pretty(&body).expect("json");
    insta::assert_snapshot!(json);
    assert_eq!(
        body["emails"],
        json!([{"type": "work", "value": "ada@example.com"}])
    );
    assert_eq!(body["entitlements"], json!(["Expense", "Invoice"]));
    let spend = &body[schema::SPEND_USER];
    assert_eq!(spend["locale"], "en-US");
    assert_eq!(spend["stateProvince"], "WA");
    assert_eq!(spend["customData"].as_array().map(Vec::len), Some(27));
    assert_eq!(
        body[schema::SPEND_APPROVER]["report"],
        json!([{"approver": {"employeeNumber": "E001"}, "primary": true}])
    );
    assert_eq!(
        body[schema::SPEND_ROLE]["roles"],
        json!([{"roleName": "EXP_APPROVER"}])
    );
    assert!(violations(&everything()).is_empty());
}

#[test]
fn extensions_appear_only_with_values() {
    let u = user(&[
        (Field::EMPLOYEE_ID, "E9"),
        (Field::LOGIN_ID, "x@example.com"),
        (Field::FIRST_NAME, "X"),
        (Field::LAST_NAME, "Y"),
        (Field::EMAIL, "x@example.com"),
        (Field::ACTIVE, "N"),
        (Field::EXPENSE_APPROVER, "N"),
    ]);
    let body = user_body(&u, COMPANY);
    let keys: Vec<&str> = body
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "active",
            "emails",
            "name",
            "schemas",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
            "userName"
        ]
    );
    assert_eq!(body["active"], false);
    assert_eq!(body["schemas"], json!([schema::CORE, schema::ENTERPRISE]));
    assert_eq!(
        body[schema::ENTERPRISE],
        json!({"companyId": COMPANY, "employeeNumber": "E9"})
    );
}

#[test]
fn every_field_round_trips_through_a_read() {
    let u = everything();
    let read = read_user(&as_read(&user_body(&u, COMPANY)), None, &no_managers).expect("reads");
    assert_eq!(read.user, u);
    assert!(read.unreadable.is_empty(), "{:?}", read.unreadable);
    assert_eq!(read.uuid, "3f1c5e2a-0000-4000-8000-000000000123");
}

#[test]
fn hostile_values_round_trip() {
    let hostile = [
        r#"O'Brien "the \ one""#,
        "<b>&amp;</b> & <script>",
        "Zoë Łukasz 山田 😀",
        "a]b[c] ] eq \"x\"",
        "tab\tand\u{1}control",
    ];
    for v in hostile {
        let mut u = everything();
        for f in [
            Field::FIRST_NAME,
            Field::LAST_NAME,
            Field::LEDGER,
            Field::CUSTOM2,
            Field::ORG_UNIT1,
            Field::EMPLOYEE_ID,
            Field::MANAGER_EMPLOYEE_ID,
        ] {
            u.set(f, v);
        }
        let text = user_body(&u, COMPANY).to_string();
        let back: Value = serde_json::from_str(&text).expect("valid JSON");
        let read = read_user(&as_read(&back), None, &no_managers).expect("reads");
        assert_eq!(read.user, u, "{v}");

        // A PATCH of the same values keeps them exactly, and its filters stay on the ids.
        let old = everything();
        let op = Op {
            kind: OpKind::Update,
            employee_id: u.employee_id().to_owned(),
            changes: u.changes_from(&old),
            user: u.clone(),
            old_login_id: None,
            old_employee_id: Some(old.employee_id().to_owned()),
            password: None,
            origin: String::new(),
        };
        let patch = patch_for(&op, NaiveDate::from_ymd_opt(2026, 9, 30).expect("date"));
        let back: Value = serde_json::from_str(&patch.to_value().to_string()).expect("JSON");
        let custom2 = back["Operations"]
            .as_array()
            .expect("ops")
            .iter()
            .find(|o| {
                o["path"]
                    .as_str()
                    .is_some_and(|p| p.ends_with("[id eq \"custom2\"].value"))
            })
            .expect("custom2 patched by a filtered path");
        assert_eq!(custom2["value"], v);
        // The bulkId of a hostile employee id stays plain ASCII and gives the id back.
        let id = bulk_id(v);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        );
        assert_eq!(employee_id_of(&id).as_deref(), Some(v));
    }
}

#[test]
fn reads_tolerate_missing_scopes_and_report_what_was_not_read() {
    // No coresensitive (emails), no enterprise, no spend read.
    let identity = json!({
        "id": "u-1", "userName": "ada@example.com", "active": true,
        "name": {"givenName": "Ada", "familyName": "Lovelace"},
        "entitlements": [{"value": "Travel"}],
        "unknownAttribute": {"ignored": true}
    });
    let read = read_user(&identity, None, &no_managers).expect("reads");
    assert_eq!(read.user.get(Field::TRIP_USER), Some("Y"));
    assert_eq!(read.user.get(Field::EXPENSE_USER), Some("N"));
    assert_eq!(read.user.get(Field::MIDDLE_INITIAL), None);
    let unread = &read.unreadable;
    assert!(unread.contains(&Field::EMAIL) && unread.contains(&Field::EMPLOYEE_ID));
    assert!(unread.contains(&Field::CUSTOM21) && unread.contains(&Field::MANAGER_EMPLOYEE_ID));
    assert!(!unread.contains(&Field::MIDDLE_INITIAL) && !unread.contains(&Field::INVOICE_USER));
    assert_eq!(unread.len(), 1 + 1 + 6 + 27 + 2 + 1);

    // A spend read without extensions: spend fields read, empty.
    let spend = json!({"id": "U-1", "schemas": []});
    let read = read_user(&identity, Some(&spend), &no_managers).expect("reads");
    assert_eq!(read.unreadable, [Field::EMPLOYEE_ID, Field::EMAIL]);
    assert_eq!(read.user.get(Field::EXPENSE_APPROVER), Some("N"));

    // No entitlements shown: the flags are not readable.
    let mut bare = identity.clone();
    bare.as_object_mut().map(|m| m.remove("entitlements"));
    let read = read_user(&bare, None, &no_managers).expect("reads");
    assert!(
        read.unreadable.contains(&Field::EXPENSE_USER) && read.user.get(Field::TRIP_USER).is_none()
    );

    // Only an id: everything unreadable but the id.
    let read = read_user(&json!({"id": "u-2"}), None, &no_managers).expect("reads");
    assert_eq!(read.unreadable.len(), crate::model::FIELD_COUNT);

    // A spend resource of another user is refused.
    let other = json!({"id": "u-9"});
    assert!(read_user(&identity, Some(&other), &no_managers).is_err());
}

#[test]
fn a_manager_known_by_uuid_is_resolved_or_unreadable() {
    let approver = |a: Value| {
        json!({"id": "u-1", "urn:ietf:params:scim:schemas:extension:spend:2.0:Approver":
            {"report": [{"approver": {"value": "m-2"}, "primary": false},
                        {"approver": a, "primary": true}]}})
    };
    let resolve = |uuid: &str| (uuid == "m-1").then(|| "E001".to_owned());
    let read = read_user(&approver(json!({"value": "m-1"})), None, &resolve).expect("reads");
    assert_eq!(read.user.get(Field::MANAGER_EMPLOYEE_ID), Some("E001"));
    assert_eq!(read.manager_uuid.as_deref(), Some("m-1"));
    let read = read_user(&approver(json!({"value": "m-3"})), None, &resolve).expect("reads");
    assert!(read.unreadable.contains(&Field::MANAGER_EMPLOYEE_ID));
    let read = read_user(
        &approver(json!({"employeeNumber": "E7", "value": "m-3"})),
        None,
        &resolve,
    )
    .expect("reads");
    assert_eq!(read.user.get(Field::MANAGER_EMPLOYEE_ID), Some("E7"));
}

#[test]
fn reads_name_the_member_of_a_wrong_type() {
    for (identity, expected) in [
        (
            json!({"id": "u", "userName": 5}),
            "userName: expected a string, found a number",
        ),
        (
            json!({"id": "u", "name": {"givenName": []}}),
            "name.givenName: expected a string",
        ),
        (
            json!({"id": "u", "emails": [{"value": "a@b", "type": 1}]}),
            "emails[0].type",
        ),
        (
            json!({"id": "u", "active": "yes"}),
            "active: expected a boolean",
        ),
        (
            json!({"id": "u", "userName": "a@b", "entitlements": [3]}),
            "entitlements[0]",
        ),
        (json!({"userName": "a@b"}), "id: missing"),
        (
            json!({"id": "u", "urn:ietf:params:scim:schemas:extension:spend:2.0:User": {"customData": {"id": "custom1"}}}),
            "urn:ietf:params:scim:schemas:extension:spend:2.0:User.customData: expected an array",
        ),
    ] {
        let e = read_user(&identity, None, &no_managers)
            .unwrap_err()
            .to_string();
        assert!(e.contains(expected), "{e} / {expected}");
    }
}

// ---------------------------------------------------------------------------------------------
// §1.13: the documented Bulk request and provision status

fn ada() -> User {
    user(&[
        (Field::EMPLOYEE_ID, "E123"),
        (Field::LOGIN_ID, "ada@example.com"),
        (Field::ACTIVE, "Y"),
        (Field::FIRST_NAME, "Ada"),
        (Field::LAST_NAME, "Lovelace"),
        (Field::EMAIL, "ada@example.com"),
        (Field::EXPENSE_USER, "Y"),
        (Field::COUNTRY, "US"),
        (Field::LOCALE, "en_US"),
        (Field::CURRENCY, "USD"),
        (Field::LEDGER, "DEFAULT"),
        (Field::ORG_UNIT1, "RND"),
    ])
}

fn leaver() -> Op {
    let before = user(&[
        (Field::EMPLOYEE_ID, "E099"),
        (Field::LOGIN_ID, "e099@example.com"),
        (Field::ACTIVE, "Y"),
    ]);
    let mut after = before.clone();
    after.set(Field::ACTIVE, "N");
    Op {
        kind: OpKind::Deactivate,
        employee_id: "E099".into(),
        changes: vec![FieldChange {
            field: Field::ACTIVE,
            old: Some("Y".into()),
            new: Some("N".into()),
        }],
        user: after,
        old_login_id: None,
        old_employee_id: None,
        password: None,
        origin: String::new(),
    }
}

const FIXTURE_REQUEST: &str = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],"Operations":[
 {"method":"POST","path":"/Users","bulkId":"emp-E123","data":{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User","urn:ietf:params:scim:schemas:extension:spend:2.0:User"],
  "userName":"ada@example.com","active":true,"name":{"givenName":"Ada","familyName":"Lovelace"},
  "emails":[{"value":"ada@example.com","type":"work"}],"entitlements":["Expense"],
  "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"employeeNumber":"E123","companyId":"5e0b3c8a-6f1d-4c2e-9a7b-0c1d2e3f4a5b"},
  "urn:ietf:params:scim:schemas:extension:spend:2.0:User":{"country":"US","locale":"en-US","reimbursementCurrency":"USD","ledgerCode":"DEFAULT",
   "customData":[{"id":"orgUnit1","value":"RND"}]}}},
 {"method":"PATCH","path":"/Users/7d2f0c1e-99aa-4bcd-8e0f-000000000099","bulkId":"emp-E099","data":{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
  "Operations":[{"op":"replace","path":"active","value":false},
                {"op":"replace","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:terminationDate","value":"2026-09-30T00:00:00Z"}]}}]}"#;

const FIXTURE_202: &str = r#"{"schemas":["urn:ietf:params:scim:schemas:extension:concur:2.0:Provision:Status"],"id":"prov-1",
 "operationsCount":{"total":2,"success":0,"failed":0,"pending":2},"status":{"completed":false,"success":null},
 "meta":{"location":"https://us.api.concursolutions.com/profile/v4/provisions/prov-1/status","created":"2026-09-30T10:00:00Z","lastModified":"2026-09-30T10:00:00Z",
 "provisionType":"Bulk","resourceType":"ProvisionRequest","correlationId":"c0ffee00-0000-4000-8000-000000000001"}}"#;

const FIXTURE_STATUS: &str = r#"{"schemas":["urn:ietf:params:scim:schemas:extension:concur:2.0:Provision:Status"],"id":"prov-1",
 "operationsCount":{"total":2,"success":1,"failed":1,"pending":0},"status":{"completed":true,"success":false},
 "totalResults":1,"itemsPerPage":1,"startIndex":1,
 "operations":[{"id":"1","bulkId":"emp-E123","status":{"completed":true,"success":false,"code":"400"},
   "resource":{"id":"3f1c5e2a-0000-4000-8000-000000000123","type":"User"},
   "extensions":[{"name":"urn:ietf:params:scim:schemas:core:2.0:User","status":{"completed":true,"success":true,"code":"200","result":"success"}},
                 {"name":"urn:ietf:params:scim:schemas:extension:spend:2.0:User","status":{"completed":true,"success":false,"code":"400","result":"error"},
                  "messages":[{"code":"INVALID_VALUE","message":"Invalid 'urn:ietf:params:scim:schemas:extension:spend:2.0:User:reimbursementCurrency' Size",
                               "schemaPath":"urn:ietf:params:scim:schemas:extension:spend:2.0:User:reimbursementCurrency","type":"error"}]},
                 {"name":"urn:ietf:params:scim:schemas:extension:spend:2.0:Role","status":{"completed":true,"success":true,"code":"200","result":"no-op"}}]}]}"#;

#[test]
fn builds_the_documented_bulk_request() {
    let date = NaiveDate::from_ymd_opt(2026, 9, 30).expect("date");
    let create = Op {
        kind: OpKind::Create,
        employee_id: "E123".into(),
        changes: ada().changes_from(&User::new()),
        user: ada(),
        old_login_id: None,
        old_employee_id: None,
        password: None,
        origin: "hr.csv:2".into(),
    };
    let ops = [
        operation_for(&create, None, COMPANY, date).expect("create"),
        operation_for(
            &leaver(),
            Some("7d2f0c1e-99aa-4bcd-8e0f-000000000099"),
            COMPANY,
            date,
        )
        .expect("deactivation"),
    ];
    let packed = pack(&ops, BulkLimits::default());
    assert!(packed.oversized.is_empty());
    assert_eq!(packed.requests.len(), 1);
    let sent: Value = serde_json::from_str(&packed.requests[0].body).expect("JSON");
    let expected: Value = serde_json::from_str(FIXTURE_REQUEST).expect("fixture");
    // The documented example, without `failOnErrors` and with every schema the user uses.
    assert_eq!(sent, expected);
}

#[test]
fn decodes_and_interprets_the_documented_provision() {
    let accepted = decode_provision_status(FIXTURE_202).expect("202");
    assert_eq!(accepted.id, "prov-1");
    assert!(!accepted.status.completed && accepted.status.success.is_none());
    assert_eq!(accepted.counts.map(|c| c.pending), Some(2));
    assert_eq!(accepted.meta.provision_type.as_deref(), Some("Bulk"));
    assert!(accepted.operations.is_empty());

    let status = decode_provision_status(FIXTURE_STATUS).expect("status");
    assert!(status.status.completed);
    assert_eq!(status.status.success, Some(false));
    assert_eq!(status.next_start_index(), None);
    let op = &status.operations[0];
    assert_eq!(
        op.bulk_id.as_deref().and_then(employee_id_of).as_deref(),
        Some("E123")
    );
    assert_eq!(op.extensions[2].status.result, Some(ExtResult::NoOp));
    let Settled::Applied(applied) = settle(op) else {
        panic!("the identity stands: {:?}", settle(op));
    };
    assert_eq!(
        applied.uuid.as_deref(),
        Some("3f1c5e2a-0000-4000-8000-000000000123")
    );
    assert_eq!(applied.succeeded, [schema::CORE, schema::SPEND_ROLE]);
    assert_eq!(
        applied.failed,
        [(
            schema::SPEND_USER.to_owned(),
            "INVALID_VALUE: Invalid 'urn:ietf:params:scim:schemas:extension:spend:2.0:User:reimbursementCurrency' Size \
             (urn:ietf:params:scim:schemas:extension:spend:2.0:User:reimbursementCurrency)"
                .to_owned()
        )]
    );
    assert!(applied.not_processed.is_empty() && applied.is_final());
    // What the failed extension covers, so that only it is patched again.
    assert!(schema::fields_of(&applied.failed[0].0).contains(&Field::CURRENCY));
}
