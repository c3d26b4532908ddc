use super::*;
use crate::concur::readback::ConcurUser;

fn concur(id: &str, login: &str, last: &str, active: bool) -> ConcurUser {
    ConcurUser {
        id: format!("uuid-{id}"),
        employee_id: id.into(),
        login_id: login.into(),
        active,
        first_name: "Ana".into(),
        middle_name: String::new(),
        last_name: last.into(),
        email: login.into(),
    }
}

fn user(id: &str, login: &str, last: &str, active: bool) -> User {
    let mut u = User::new();
    u.set(Field::EMPLOYEE_ID, id);
    u.set(Field::LOGIN_ID, login);
    u.set(Field::ACTIVE, if active { "Y" } else { "N" });
    u.set(Field::FIRST_NAME, "Ana");
    u.set(Field::LAST_NAME, last);
    u.set(Field::EMAIL, login);
    u
}

fn source(line: u32, id: &str, login: &str, last: &str) -> SourceRecord {
    SourceRecord {
        origin: format!("hr.csv:{line}"),
        user: user(id, login, last, true),
        password: None,
        previous_employee_id: None,
    }
}

/// The snapshot: ownership of each user, and the last acknowledged record of managed ones.
struct Snapshot {
    owners: HashMap<String, Ownership>,
    known: HashMap<String, User>,
}

fn snapshot(users: &[(User, Ownership)]) -> Snapshot {
    Snapshot {
        owners: users
            .iter()
            .map(|(u, o)| (u.employee_id().to_owned(), *o))
            .collect(),
        known: users
            .iter()
            .filter(|(_, o)| *o != Ownership::Unmanaged)
            .map(|(u, _)| (u.employee_id().to_owned(), u.clone()))
            .collect(),
    }
}

fn run(
    listed: &[ConcurUser],
    src: &[SourceRecord],
    snap: &Snapshot,
    manage_unmatched: bool,
    repair: bool,
) -> Matched {
    let listed: Vec<ListedUser> = listed.iter().map(ListedUser::from_v1).collect();
    match_users(
        &listed,
        src,
        &snap.owners,
        &snap.known,
        manage_unmatched,
        repair,
    )
}

fn ids(users: &[User]) -> Vec<&str> {
    users.iter().map(User::employee_id).collect()
}

#[test]
fn concur_users_are_adopted_by_employee_id_as_concur_reports_them() {
    let m = run(
        &[concur("E1", "ana@example.com", "Concur-Name", false)],
        &[source(2, "E1", "other@example.com", "Source-Name")],
        &snapshot(&[]),
        false,
        true,
    );
    assert_eq!(ids(&m.adopt), ["E1"]);
    let adopted = &m.adopt[0];
    assert_eq!(adopted.get(Field::LAST_NAME), Some("Concur-Name"));
    assert_eq!(adopted.login_id(), "ana@example.com");
    assert!(!adopted.is_active());
    assert!(m.ops.is_empty() && m.unmanaged.is_empty() && m.drifted.is_empty());
}

#[test]
fn a_login_match_under_another_employee_id_is_renamed_then_adopted() {
    let m = run(
        &[concur("OLD7", "Ana@Example.com", "Lee", true)],
        &[source(3, "E7", "ana@example.com", "Lee")],
        &snapshot(&[]),
        false,
        false,
    );
    assert!(m.adopt.is_empty() && m.unmanaged.is_empty());
    assert_eq!(m.ops.len(), 1);
    let op = &m.ops[0];
    assert_eq!(op.kind, OpKind::Update);
    assert_eq!(op.employee_id, "E7");
    assert_eq!(op.old_employee_id.as_deref(), Some("OLD7"));
    assert_eq!(op.origin, "adoption: hr.csv:3 renamed from OLD7");
    let changed: Vec<Field> = op.changes.iter().map(|c| c.field).collect();
    assert_eq!(
        changed,
        [Field::EMPLOYEE_ID, Field::LOGIN_ID, Field::EMAIL],
        "the source's record, field by field, from what Concur holds"
    );
    assert_eq!(m.renamed.iter().collect::<Vec<_>>(), ["E7"]);
    assert!(m.repairs.is_empty());
}

#[test]
fn no_rename_onto_an_employee_id_concur_or_the_snapshot_already_has() {
    // E7 is in Concur itself: it is adopted by its id, and the login look-alike stays apart.
    let m = run(
        &[
            concur("OLD7", "ana@example.com", "Lee", true),
            concur("E7", "ana.lee@example.com", "Lee", true),
        ],
        &[source(3, "E7", "ana@example.com", "Lee")],
        &snapshot(&[]),
        false,
        true,
    );
    assert!(m.ops.is_empty());
    assert_eq!(ids(&m.adopt), ["E7"]);
    assert_eq!(ids(&m.unmanaged), ["OLD7"]);
    // E7 is managed already: nothing is renamed onto it.
    let managed = user("E7", "ana@example.com", "Lee", true);
    let m = run(
        &[
            concur("OLD7", "ana@example.com", "Lee", true),
            concur("E7", "ana@example.com", "Lee", true),
        ],
        &[source(3, "E7", "ana@example.com", "Lee")],
        &snapshot(&[(managed, Ownership::Created)]),
        false,
        true,
    );
    assert!(m.ops.is_empty() && m.adopt.is_empty() && m.drifted.is_empty());
    assert_eq!(ids(&m.unmanaged), ["OLD7"]);
}

#[test]
fn users_matching_nobody_are_unmanaged_unless_manage_unmatched() {
    let listed = [
        concur("X1", "x1@example.com", "Lee", true),
        concur("", "no-id@example.com", "Lee", true),
    ];
    let m = run(&listed, &[], &snapshot(&[]), false, true);
    assert_eq!(
        ids(&m.unmanaged),
        ["X1"],
        "a user without employee id is skipped"
    );
    assert!(m.adopt.is_empty());
    let m = run(&listed, &[], &snapshot(&[]), true, true);
    assert_eq!(ids(&m.adopt), ["X1"]);
    assert!(m.unmanaged.is_empty());
}

#[test]
fn an_unmanaged_user_the_source_now_names_is_adopted() {
    let was = user("E3", "e3@example.com", "Lee", true);
    let m = run(
        &[concur("E3", "e3@example.com", "Lee", true)],
        &[source(4, "E3", "e3@example.com", "Lee")],
        &snapshot(&[(was, Ownership::Unmanaged)]),
        false,
        true,
    );
    assert_eq!(ids(&m.adopt), ["E3"]);
}

#[test]
fn drift_of_a_managed_user_is_reported_and_repaired_with_the_source_record() {
    let last = user("E1", "e1@example.com", "Lee", true);
    let snap = snapshot(&[(last, Ownership::Created)]);
    // Concur: deactivated, renamed and logged in under another login by someone else.
    let listed = [concur("E1", "changed@example.com", "Smith", false)];
    let src = [source(2, "E1", "e1@example.com", "Lee-Jones")];
    let m = run(&listed, &src, &snap, false, false);
    assert_eq!(
        m.drifted,
        [(
            "E1".to_owned(),
            vec!["active", "last_name", "email", "login_id"]
        )]
    );
    assert!(m.ops.is_empty(), "without repair nothing is sent");

    let m = run(&listed, &src, &snap, false, true);
    assert_eq!(m.drifted.len(), 1);
    assert_eq!(m.ops.len(), 1);
    let op = &m.ops[0];
    assert_eq!(op.kind, OpKind::Reactivate);
    assert_eq!(op.employee_id, "E1");
    assert_eq!(op.user.get(Field::LAST_NAME), Some("Lee-Jones"));
    assert_eq!(op.old_login_id.as_deref(), Some("changed@example.com"));
    assert_eq!(op.origin, "reconcile: drift repair");
    let changed: Vec<Field> = op.changes.iter().map(|c| c.field).collect();
    assert_eq!(
        changed,
        [
            Field::LOGIN_ID,
            Field::ACTIVE,
            Field::LAST_NAME,
            Field::EMAIL
        ]
    );
    assert_eq!(m.repairs.iter().collect::<Vec<_>>(), ["E1"]);
    assert!(m.adopt.is_empty() && m.renamed.is_empty());
}

#[test]
fn a_drifted_user_the_source_no_longer_names_gets_its_last_record_back() {
    let last = user("E1", "e1@example.com", "Lee", false);
    let snap = snapshot(&[(last, Ownership::Adopted)]);
    let m = run(
        &[concur("E1", "E1@EXAMPLE.COM", "Lee", true)],
        &[],
        &snap,
        false,
        true,
    );
    assert_eq!(m.drifted, [("E1".to_owned(), vec!["active"])]);
    let op = &m.ops[0];
    assert_eq!(op.kind, OpKind::Deactivate);
    assert!(!op.user.is_active());
    assert_eq!(op.old_login_id, None, "logins compare ignoring case");
}

#[test]
fn a_managed_user_as_last_acknowledged_is_left_alone() {
    let mut last = user("E1", "e1@example.com", "Lee", true);
    last.set(Field::MIDDLE_INITIAL, "Q");
    let snap = snapshot(&[(last, Ownership::Created)]);
    let mut listed = concur("E1", "E1@example.com", "Lee", true);
    listed.middle_name = " Quentin ".into();
    let m = run(&[listed.clone()], &[], &snap, false, true);
    assert!(m.drifted.is_empty() && m.ops.is_empty());
    assert!(m.adopt.is_empty() && m.unmanaged.is_empty());
    // Concur without a middle name is no drift either; another initial is.
    listed.middle_name = String::new();
    assert!(
        run(&[listed.clone()], &[], &snap, false, true)
            .drifted
            .is_empty()
    );
    listed.middle_name = "Rob".into();
    assert_eq!(
        run(&[listed], &[], &snap, false, true).drifted,
        [("E1".to_owned(), vec!["middle_initial"])]
    );
}

#[test]
fn drift_is_judged_only_on_the_fields_concur_let_us_read() {
    // Under v4 a token without the sensitive read scope gets no e-mails: a managed user whose
    // e-mail Concur did not return has not drifted; a changed name still has.
    let known = user("E1", "ana@example.com", "Known", true);
    let snap = snapshot(&[(known.clone(), Ownership::Created)]);
    let mut seen = known.clone();
    seen.set(Field::EMAIL, "");
    let listed = |u: &User, unreadable: Vec<Field>| ListedUser {
        uuid: Some("9b1d0c2e-0000-4000-8000-000000000001".into()),
        user: u.clone(),
        unreadable,
    };
    let m = match_users(
        &[listed(&seen, vec![Field::EMAIL])],
        &[],
        &snap.owners,
        &snap.known,
        false,
        true,
    );
    assert!(m.drifted.is_empty() && m.ops.is_empty(), "{:?}", m.drifted);
    seen.set(Field::LAST_NAME, "Renamed");
    let m = match_users(
        &[listed(&seen, vec![Field::EMAIL])],
        &[],
        &snap.owners,
        &snap.known,
        false,
        true,
    );
    assert_eq!(m.drifted, vec![("E1".to_owned(), vec!["last_name"])]);
    // Matching by login ignores case.
    let stranger = user("X9", "ANA@Example.com", "Known", true);
    let src = [source(2, "E2", "ana@example.com", "Known")];
    let m = match_users(
        &[listed(&stranger, Vec::new())],
        &src,
        &HashMap::new(),
        &HashMap::new(),
        false,
        false,
    );
    assert_eq!(m.renamed.iter().collect::<Vec<_>>(), ["E2"]);
}
