use super::*;
use crate::config::DeactivationLimit;
use crate::model::{FieldChange, User};

fn op(kind: OpKind, id: &str) -> Op {
    let mut user = User::new();
    user.set(Field::EMPLOYEE_ID, id);
    Op {
        kind,
        employee_id: id.into(),
        user,
        old_login_id: None,
        old_employee_id: None,
        changes: Vec::new(),
        password: None,
        origin: String::new(),
    }
}

fn changing(kind: OpKind, id: &str, fields: &[Field]) -> Op {
    let mut o = op(kind, id);
    o.changes = fields
        .iter()
        .map(|&field| FieldChange {
            field,
            old: Some("before".into()),
            new: Some("after".into()),
        })
        .collect();
    o
}

fn deactivations(n: usize) -> Vec<Op> {
    (0..n)
        .map(|i| op(OpKind::Deactivate, &format!("E{i}")))
        .collect()
}

/// A complete read naming `source_ids` users.
fn planned(ops: Vec<Op>, source_ids: u64) -> PlannedCycle {
    PlannedCycle {
        ops,
        source_ids,
        complete: true,
        ..PlannedCycle::default()
    }
}

fn limits(deactivations: DeactivationLimit, identity: DeactivationLimit) -> SyncConfig {
    SyncConfig {
        max_deactivations: deactivations,
        max_identity_changes: identity,
        ..SyncConfig::default()
    }
}

#[test]
fn deactivations_up_to_the_count_limit_proceed_and_one_more_is_held() {
    let sync = limits(DeactivationLimit::Count(2), DeactivationLimit::Count(100));
    assert_eq!(
        guard(&sync, &planned(deactivations(2), 98), 100),
        Verdict::default()
    );
    let v = guard(&sync, &planned(deactivations(3), 97), 100);
    assert_eq!(
        v.hold_deactivations.as_deref(),
        Some("3 deactivations exceed sync.max_deactivations = 2 (2 of 100 managed active users)")
    );
    assert_eq!(v.degraded, None);
    assert_eq!(v.hold_reason(), v.hold_deactivations);
    assert!(v.holds(&op(OpKind::Deactivate, "E0")));
    assert!(!v.holds(&op(OpKind::Create, "N1")));
    assert!(!v.holds(&changing(OpKind::Update, "E9", &[Field::LOGIN_ID])));
}

#[test]
fn the_share_limit_is_a_share_of_the_managed_active_users_rounded_down() {
    let sync = limits(DeactivationLimit::Share(5.0), DeactivationLimit::Count(100));
    // 5% of 119 is 5.95: five are allowed.
    assert_eq!(
        guard(&sync, &planned(deactivations(5), 114), 119),
        Verdict::default()
    );
    let v = guard(&sync, &planned(deactivations(6), 113), 119);
    assert_eq!(
        v.hold_deactivations.as_deref(),
        Some("6 deactivations exceed sync.max_deactivations = 5% (5 of 119 managed active users)")
    );
}

#[test]
fn a_suspicious_read_deactivates_nobody_whatever_the_limits() {
    let sync = limits(DeactivationLimit::Count(100), DeactivationLimit::Count(100));
    let mut p = planned(deactivations(1), 99);
    p.suspicious = Some("the last row (hr.csv:101) has too few fields".into());
    let v = guard(&sync, &p, 100);
    assert_eq!(
        v.degraded.as_deref(),
        Some("the last row (hr.csv:101) has too few fields")
    );
    assert_eq!(v.hold_reason(), None);
    // Degraded drops deactivations; it holds nothing.
    assert!(!v.holds(&op(OpKind::Deactivate, "E0")));
}

#[test]
fn an_empty_or_shrunken_complete_read_is_degraded_not_held() {
    let sync = limits(DeactivationLimit::Count(0), DeactivationLimit::Count(100));
    let v = guard(&sync, &planned(deactivations(10), 0), 10);
    assert_eq!(
        v.degraded.as_deref(),
        Some(
            "the source named 0 users, fewer than sync.min_source_ratio = 0.9 of the 10 managed active users"
        )
    );
    assert_eq!(v.hold_deactivations, None);
    // Exactly the ratio is enough: the limit decides.
    let v = guard(&sync, &planned(deactivations(1), 9), 10);
    assert_eq!(v.degraded, None);
    assert!(v.hold_deactivations.is_some());
}

#[test]
fn an_empty_source_without_deactivations_is_not_guarded() {
    let sync = limits(DeactivationLimit::Count(0), DeactivationLimit::Count(0));
    assert_eq!(
        guard(&sync, &planned(Vec::new(), 0), 10),
        Verdict::default()
    );
    assert_eq!(guard(&sync, &planned(Vec::new(), 0), 0), Verdict::default());
}

#[test]
fn a_partial_read_is_not_measured_against_the_source_ratio() {
    let sync = limits(DeactivationLimit::Count(1), DeactivationLimit::Count(100));
    let mut p = planned(deactivations(1), 1);
    p.complete = false;
    assert_eq!(guard(&sync, &p, 10), Verdict::default());
}

#[test]
fn identity_changes_count_each_user_once_and_beyond_the_limit_are_held() {
    let ops = vec![
        changing(OpKind::Update, "E1", &[Field::LOGIN_ID, Field::EMAIL]),
        changing(OpKind::Reactivate, "E2", &[Field::LAST_NAME]),
        changing(OpKind::Update, "E3", &[Field::ORG_UNIT1]),
        changing(OpKind::Create, "N1", &[Field::FIRST_NAME]),
    ];
    let sync = limits(DeactivationLimit::Count(100), DeactivationLimit::Count(2));
    assert_eq!(
        guard(&sync, &planned(ops.clone(), 4), 4),
        Verdict::default()
    );
    let sync = limits(DeactivationLimit::Count(100), DeactivationLimit::Count(1));
    let v = guard(&sync, &planned(ops.clone(), 4), 4);
    assert_eq!(
        v.hold_identity_changes.as_deref(),
        Some(
            "2 users with a changed login, e-mail, name or employee id exceed sync.max_identity_changes = 1 (1 of 4 managed active users)"
        )
    );
    let held: Vec<&str> = ops
        .iter()
        .filter(|o| v.holds(o))
        .map(|o| o.employee_id.as_str())
        .collect();
    assert_eq!(held, ["E1", "E2"]);
}

#[test]
fn what_changes_who_a_user_is() {
    let mut renamed = op(OpKind::Update, "E1");
    renamed.old_employee_id = Some("OLD1".into());
    assert!(changes_identity(&renamed));
    for field in [
        Field::LOGIN_ID,
        Field::EMAIL,
        Field::FIRST_NAME,
        Field::LAST_NAME,
    ] {
        assert!(changes_identity(&changing(OpKind::Update, "E1", &[field])));
        assert!(changes_identity(&changing(
            OpKind::Reactivate,
            "E1",
            &[field]
        )));
        assert!(!changes_identity(&changing(OpKind::Create, "E1", &[field])));
        assert!(!changes_identity(&changing(
            OpKind::Deactivate,
            "E1",
            &[field]
        )));
    }
    // A plain reactivation, or a change of anything else, is no identity change.
    assert!(!changes_identity(&op(OpKind::Reactivate, "E1")));
    assert!(!changes_identity(&changing(
        OpKind::Update,
        "E1",
        &[Field::ORG_UNIT1, Field::MIDDLE_INITIAL, Field::ACTIVE]
    )));
}

#[test]
fn both_holds_are_reported_together() {
    let mut ops = deactivations(2);
    ops.push(changing(OpKind::Update, "E9", &[Field::EMAIL]));
    let sync = limits(DeactivationLimit::Count(1), DeactivationLimit::Count(0));
    let v = guard(&sync, &planned(ops, 98), 100);
    assert_eq!(
        v.hold_reason().as_deref(),
        Some(
            "2 deactivations exceed sync.max_deactivations = 1 (1 of 100 managed active users); 1 users with a changed login, e-mail, name or employee id exceed sync.max_identity_changes = 0 (0 of 100 managed active users)"
        )
    );
}
