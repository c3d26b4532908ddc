use super::*;
use crate::model::User;
use crate::test_support;

fn op(kind: OpKind, id: &str, ledger: Option<&str>, org_unit: &str) -> Op {
    let mut user = User::new();
    user.set(Field::EMPLOYEE_ID, id);
    user.set(Field::LOGIN_ID, format!("{id}@example.com"));
    user.set(Field::ORG_UNIT1, org_unit);
    if let Some(l) = ledger {
        user.set(Field::LEDGER, l);
    }
    test_support::op(kind, user, &format!("hr.csv:{}", &id[1..]))
}

/// A form that requires `LedgerKey` and allows at most 4 characters in `OrgUnit1`.
fn rules() -> CompanyRules {
    company_rules(
        [
            FormRule {
                id: "LedgerKey",
                required: true,
                max_length: None,
            },
            FormRule {
                id: "OrgUnit1",
                required: false,
                max_length: Some(4),
            },
            // Unknown to concur-sync: no rule.
            FormRule {
                id: "XyzCustomThing",
                required: true,
                max_length: Some(1),
            },
        ],
        |id| match id {
            "LedgerKey" => Some(Field::LEDGER),
            "OrgUnit1" => Some(Field::ORG_UNIT1),
            _ => None,
        },
    )
}

fn check(ops: Vec<Op>, kept: &[&str], rejected: &[(&str, &str, &str)]) {
    let earlier = Rejection {
        source: "hr.csv:1".into(),
        employee_id: None,
        field: "employee_id".into(),
        message: "is empty".into(),
        identity: Default::default(),
    };
    let (ops, rejections) = reject_breaking(&rules(), ops, vec![earlier.clone()]);
    let ids: Vec<&str> = ops.iter().map(|o| o.employee_id.as_str()).collect();
    assert_eq!(ids, kept);
    assert_eq!(rejections[0], earlier, "earlier rejections stay first");
    let got: Vec<(&str, &str, &str)> = rejections[1..]
        .iter()
        .map(|r| {
            (
                r.source.as_str(),
                r.field.as_str(),
                r.employee_id.as_deref().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(got, rejected);
}

#[test]
fn writes_breaking_the_form_are_rejected_and_the_rest_kept_in_order() {
    check(
        vec![
            op(OpKind::Create, "E2", Some("L1"), "R&D"),
            op(OpKind::Create, "E3", None, "R&D"),
            op(OpKind::Update, "E4", Some("L1"), "Sales"),
            op(OpKind::Reactivate, "E5", None, "Marketing"),
            op(OpKind::Update, "E6", Some("L1"), "Ops"),
        ],
        &["E2", "E6"],
        &[
            ("hr.csv:3", "ledger", "E3"),
            ("hr.csv:4", "org_unit1", "E4"),
            ("hr.csv:5", "ledger", "E5"),
            ("hr.csv:5", "org_unit1", "E5"),
        ],
    );
}

#[test]
fn deactivations_and_passwords_go_through_whatever_the_form_says() {
    check(
        vec![
            op(OpKind::Deactivate, "E2", None, "Marketing"),
            op(OpKind::Password, "E3", None, "Marketing"),
        ],
        &["E2", "E3"],
        &[],
    );
}

#[test]
fn the_rejection_names_the_rule_of_the_company_form() {
    let (_, rejections) = reject_breaking(
        &rules(),
        vec![op(OpKind::Create, "E7", None, "Finance")],
        Vec::new(),
    );
    let messages: Vec<&str> = rejections.iter().map(|r| r.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "is missing; the company's Concur form requires LedgerKey (FormFields Required=Y): map a column to it or set [defaults] ledger",
            "is 7 characters long; the company's Concur form allows at most 4 for OrgUnit1 (FormFields MaxLength)"
        ]
    );
}

#[test]
fn without_rules_the_plan_is_unchanged() {
    let (ops, rejections) = reject_breaking(
        &CompanyRules::default(),
        vec![op(OpKind::Create, "E2", None, "Marketing")],
        Vec::new(),
    );
    assert_eq!(ops.len(), 1);
    assert!(rejections.is_empty());
}

fn rule(id: &str, required: bool, max_length: Option<u32>) -> FormRule<'_> {
    FormRule {
        id,
        required,
        max_length,
    }
}

#[test]
fn rules_name_the_form_field_and_skip_what_is_always_required() {
    let field_of = |id: &str| match id {
        "LedgerKey" => Some(Field::LEDGER),
        "OrgUnit1" => Some(Field::ORG_UNIT1),
        "OrgUnit2" => Some(Field::ORG_UNIT2),
        "EmpId" => Some(Field::EMPLOYEE_ID),
        _ => None,
    };
    let rules = company_rules(
        [
            rule("OrgUnit2", true, Some(48)),
            rule("LedgerKey", true, Some(20)),
            rule("EmpId", true, Some(10)),
            rule("OrgUnit1", false, Some(10)),
            rule("PmtMethodCode", true, Some(1)),
        ],
        field_of,
    );
    assert_eq!(
        rules.required,
        [
            (Field::LEDGER, "LedgerKey".to_owned()),
            (Field::ORG_UNIT2, "OrgUnit2".to_owned())
        ]
    );
    assert_eq!(
        rules.max_len,
        [
            (Field::EMPLOYEE_ID, 10, "EmpId".to_owned()),
            (Field::ORG_UNIT1, 10, "OrgUnit1".to_owned())
        ]
    );
}
