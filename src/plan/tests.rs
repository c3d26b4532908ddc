use super::*;
use crate::model::User;
use crate::model::{Secret, SnapshotEntry, SnapshotIndex};

fn rec(line: u32, id: &str, login: &str, mgr: Option<&str>) -> SourceRecord {
    let mut u = User::new();
    u.set(Field::EMPLOYEE_ID, id);
    u.set(Field::LOGIN_ID, login);
    u.set(Field::ACTIVE, "Y");
    if let Some(m) = mgr {
        u.set(Field::MANAGER_EMPLOYEE_ID, m);
    }
    SourceRecord {
        origin: format!("hr.csv:{line}"),
        user: u,
        password: None,
        previous_employee_id: None,
    }
}

fn mac(_: &str, _: &Secret) -> [u8; 16] {
    [0; 16]
}

fn run(snap: &SnapshotIndex, recs: Vec<SourceRecord>) -> Draft {
    let snap = RowIndex::from(snap);
    let mut p = Planner::new(
        &snap,
        &mac,
        PlanOptions {
            source_passwords: true,
            manager_must_approve: false,
        },
    );
    for r in recs {
        p.push(r);
    }
    p.finish(true)
}

fn kinds(d: &Draft) -> Vec<(OpKind, String)> {
    d.candidates
        .iter()
        .map(|c| (c.kind, c.record.user.employee_id().to_owned()))
        .collect()
}

#[test]
fn managers_are_created_before_their_reports() {
    let snap = SnapshotIndex::default();
    let d = run(
        &snap,
        vec![
            rec(2, "a", "a@x", Some("b")),
            rec(3, "b", "b@x", Some("c")),
            rec(4, "c", "c@x", None),
            rec(5, "d", "d@x", None),
        ],
    );
    let ids: Vec<_> = kinds(&d).into_iter().map(|(_, i)| i).collect();
    assert_eq!(ids, ["c", "d", "b", "a"]);
}

#[test]
fn duplicates_reject_every_row_and_protect_the_user() {
    let mut snap = SnapshotIndex::default();
    let u = rec(0, "a", "a@x", None).user;
    snap.insert(
        "a",
        SnapshotEntry {
            hash: u.content_hash(),
            active: true,
            password_mac: None,
        },
    );
    let d = run(
        &snap,
        vec![
            rec(2, "a", "a@x", None),
            rec(3, "a", "a2@x", None),
            rec(4, "b", "same@x", None),
            rec(5, "c", "SAME@x", None),
        ],
    );
    assert!(d.candidates.is_empty(), "{:?}", kinds(&d));
    assert!(d.vanished.is_empty());
    let srcs: Vec<_> = d.rejections.iter().map(|r| r.source.as_str()).collect();
    for s in ["hr.csv:2", "hr.csv:3", "hr.csv:4", "hr.csv:5"] {
        assert!(srcs.contains(&s), "{srcs:?}");
    }
}

#[test]
fn unknown_manager_and_loops_are_rejected() {
    let snap = SnapshotIndex::default();
    let d = run(
        &snap,
        vec![
            rec(2, "a", "a@x", Some("zz")),
            rec(3, "b", "b@x", Some("c")),
            rec(4, "c", "c@x", Some("b")),
        ],
    );
    assert!(d.candidates.is_empty());
    assert_eq!(d.rejections.len(), 3);
    assert!(
        d.rejections[0]
            .message
            .contains("neither in the source nor in Concur")
    );
    assert!(d.rejections[1].message.contains("loops"));
}

#[test]
fn reactivated_managers_go_before_their_reports_and_reports_of_a_loop_are_rejected_with_it() {
    // "zed" is in Concur, inactive; "upd" is in Concur and changes.
    let mut snap = SnapshotIndex::default();
    for (id, active) in [("zed", false), ("upd", true)] {
        let u = rec(0, id, &format!("{id}@x"), None).user;
        snap.insert(
            id,
            SnapshotEntry {
                hash: u.content_hash(),
                active,
                password_mac: None,
            },
        );
    }
    let mut upd = rec(2, "upd", "upd@x", None);
    upd.user.set(Field::FIRST_NAME, "Changed");
    let d = run(
        &snap,
        vec![
            upd,
            // A chain given bottom-up, its ids in the opposite order of its depths: ann under
            // mid under zed (reactivated).
            rec(3, "ann", "ann@x", Some("mid")),
            rec(4, "mid", "mid@x", Some("zed")),
            rec(5, "zed", "zed@x", None),
            // x and y manage each other; z reports to x, and w to z, outside the loop.
            rec(6, "w", "w@x", Some("z")),
            rec(7, "x", "x@x", Some("y")),
            rec(8, "y", "y@x", Some("x")),
            rec(9, "z", "z@x", Some("x")),
        ],
    );
    assert_eq!(
        kinds(&d),
        [
            (OpKind::Reactivate, "zed".to_string()),
            (OpKind::Create, "mid".to_string()),
            (OpKind::Create, "ann".to_string()),
            (OpKind::Update, "upd".to_string()),
        ]
    );
    let loops: Vec<(&str, &str)> = d
        .rejections
        .iter()
        .map(|r| (r.employee_id.as_deref().unwrap_or(""), r.message.as_str()))
        .collect();
    assert_eq!(
        loops,
        [
            (
                "w",
                "manager \"z\" is not a known user: its own row at hr.csv:9 was rejected"
            ),
            ("x", "manager chain of new users loops back: x → y → x"),
            ("y", "manager chain of new users loops back: y → x → y"),
            (
                "z",
                "manager \"x\" is not a known user: its own row at hr.csv:7 was rejected"
            ),
        ]
    );
}

fn snapshot_of(users: &[User]) -> (SnapshotIndex, HashMap<String, User>) {
    let mut snap = SnapshotIndex::default();
    for u in users {
        snap.insert(
            u.employee_id(),
            SnapshotEntry {
                hash: u.content_hash(),
                active: true,
                password_mac: None,
            },
        );
    }
    let old = users
        .iter()
        .map(|u| (u.employee_id().to_owned(), u.clone()))
        .collect();
    (snap, old)
}

#[test]
fn a_rejected_row_protects_every_user_it_could_name() {
    let users: Vec<User> = ["a", "b", "c", "d"]
        .iter()
        .map(|id| {
            let mut u = rec(0, id, &format!("{id}@x"), None).user;
            u.set(Field::EMAIL, format!("{id}.mail@x"));
            u
        })
        .collect();
    let (snap, old) = snapshot_of(&users);
    let snap = RowIndex::from(&snap);
    let mut p = Planner::new(
        &snap,
        &mac,
        PlanOptions {
            source_passwords: false,
            manager_must_approve: false,
        },
    );
    let rejected = |ident: &[&str]| Rejection {
        source: "hr.csv:9".into(),
        employee_id: None,
        field: "employee_id".into(),
        message: "is missing; it is required".into(),
        identity: RowIdentity(ident.iter().map(ToString::to_string).collect()),
    };
    // By login (any case), by e-mail, by a look-alike id; "d" is simply gone.
    p.push_rejected(vec![rejected(&["A@X"])]);
    p.push_rejected(vec![rejected(&["b.mail@x"])]);
    p.push_rejected(vec![rejected(&["\u{0441}"])]);
    let (ops, rejections, _) = complete(p.finish(true), &old);
    let deactivated: Vec<&str> = ops.iter().map(|o| o.employee_id.as_str()).collect();
    assert_eq!(deactivated, ["d"]);
    assert_eq!(rejections.len(), 3);
}

#[test]
fn a_rename_never_takes_over_a_present_employee() {
    let users: Vec<User> = ["a", "b", "c"]
        .iter()
        .map(|id| rec(0, id, &format!("{id}@x"), None).user)
        .collect();
    let (snap, old) = snapshot_of(&users);
    let renamed = |line: u32, id: &str, login: &str, prev: &str| {
        let mut r = rec(line, id, login, None);
        r.previous_employee_id = Some(prev.into());
        r
    };
    let d = run(
        &snap,
        vec![
            rec(2, "a", "a@x", None),
            renamed(3, "x", "x@x", "a"),
            renamed(4, "y", "y@x", "b"),
            renamed(5, "z", "z@x", "b"),
            renamed(6, "c", "c@x", "a"),
        ],
    );
    let (ops, rejections, _) = complete(d, &old);
    assert!(ops.is_empty(), "{ops:?}");
    let lines: Vec<&str> = rejections.iter().map(|r| r.source.as_str()).collect();
    assert_eq!(lines, ["hr.csv:6", "hr.csv:3", "hr.csv:4", "hr.csv:5"]);
    assert!(rejections.iter().all(|r| r.field == "previous_employee_id"));
}

#[test]
fn vanished_and_inactive_rows_deactivate() {
    let mut snap = SnapshotIndex::default();
    for id in ["a", "b", "c"] {
        let u = rec(0, id, &format!("{id}@x"), None).user;
        snap.insert(
            id,
            SnapshotEntry {
                hash: u.content_hash(),
                active: true,
                password_mac: None,
            },
        );
    }
    let mut b = rec(3, "b", "b@x", None);
    b.user.set(Field::ACTIVE, "N");
    let d = run(&snap, vec![rec(2, "a", "a@x", None), b]);
    assert_eq!(kinds(&d), [(OpKind::Deactivate, "b".to_string())]);
    assert_eq!(d.vanished, ["c"]);
    assert_eq!(d.unchanged, 1);
}

#[test]
fn under_v4_a_new_user_whose_manager_is_not_an_expense_approver_is_rejected() {
    let snap = SnapshotIndex::default();
    let mut approver = rec(2, "m1", "m1@x", None);
    approver.user.set(Field::EXPENSE_APPROVER, "Y");
    let records = vec![
        approver,
        rec(3, "m2", "m2@x", None),
        rec(4, "a", "a@x", Some("m1")),
        rec(5, "b", "b@x", Some("m2")),
    ];
    let snap = RowIndex::from(&snap);
    let mut p = Planner::new(
        &snap,
        &mac,
        PlanOptions {
            source_passwords: false,
            manager_must_approve: true,
        },
    );
    for r in records {
        p.push(r);
    }
    let d = p.finish(true);
    let ids: Vec<_> = kinds(&d).into_iter().map(|(_, i)| i).collect();
    assert_eq!(ids, ["m1", "m2", "a"]);
    assert_eq!(d.rejections.len(), 1, "{:?}", d.rejections);
    let r = &d.rejections[0];
    assert_eq!(r.source, "hr.csv:5");
    assert_eq!(r.field, "manager_employee_id");
    assert!(
        r.message.contains("\"m2\" is not an expense approver")
            && r.message.contains("hr.csv:3")
            && r.message.contains("EXP_APPROVER"),
        "{}",
        r.message
    );
}

/// The same rows through a plan and a lean plan: the same users to create (by row digest) and
/// the same rejections, in order.
fn plan_and_lean(recs: &[SourceRecord], manager_must_approve: bool) {
    let snap = RowIndex::from(&SnapshotIndex::default());
    let options = PlanOptions {
        source_passwords: false,
        manager_must_approve,
    };
    let digest = |r: &SourceRecord| u128::from(r.origin.len() as u64) << 64 | id_key(&r.origin);
    let mut full = Planner::new(&snap, &mac, options);
    let mut lean = Planner::new(&snap, &mac, options);
    lean.lean();
    for r in recs {
        full.push_row(r.clone(), Some(digest(r)));
        lean.push_row(r.clone(), Some(digest(r)));
    }
    let full = full.finish(true);
    let lean = lean.finish(true);
    let mut created: Vec<u128> = full
        .candidates
        .iter()
        .map(|c| {
            assert_eq!(c.kind, OpKind::Create);
            c.digest.unwrap()
        })
        .collect();
    created.sort_unstable();
    assert!(lean.candidates.is_empty());
    assert_eq!(lean.lean_creates, created);
    let text = |d: &Draft| {
        d.rejections
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(text(&lean), text(&full));
    assert_eq!(
        (lean.source_ids, lean.skipped_inactive),
        (full.source_ids, full.skipped_inactive)
    );
}

#[test]
fn a_lean_plan_creates_and_rejects_exactly_what_a_plan_does() {
    let mut inactive = rec(9, "i", "i@x", None);
    inactive.user.set(Field::ACTIVE, "N");
    let mut approver = rec(12, "boss", "boss@x", None);
    approver.user.set(Field::EXPENSE_APPROVER, "Y");
    let recs = vec![
        rec(2, "a", "a@x", Some("b")),
        rec(3, "b", "b@x", Some("c")),
        rec(4, "c", "c@x", None),
        // Duplicate ids and logins, and their reports.
        rec(5, "d", "d@x", None),
        rec(6, "d", "d2@x", None),
        rec(7, "e", "shared@x", Some("d")),
        rec(8, "f", "shared@x", None),
        inactive,
        rec(10, "g", "g@x", Some("i")),
        rec(11, "h", "h@x", Some("nobody")),
        approver,
        rec(13, "j", "j@x", Some("boss")),
        // Loops, one through itself.
        rec(14, "k", "k@x", Some("l")),
        rec(15, "l", "l@x", Some("m")),
        rec(16, "m", "m@x", Some("k")),
        rec(17, "n", "n@x", Some("n")),
        rec(18, "o", "o@x", Some("k")),
    ];
    plan_and_lean(&recs, false);
    plan_and_lean(&recs, true);
}

#[test]
fn the_key_table_finds_every_key_through_collisions_and_growth() {
    let mut t = seen::KeyTable::default();
    assert_eq!(t.get(7), None);
    // Keys sharing their low 64 bits all probe from the same slot.
    let keys: Vec<u128> = (0..3000u128)
        .map(|i| {
            if i % 2 == 0 {
                (i << 64) | 5
            } else {
                i * 0x9E37_79B9
            }
        })
        .collect();
    for (i, &k) in keys.iter().enumerate() {
        assert_eq!(t.insert(k, i as u32), None);
    }
    for (i, &k) in keys.iter().enumerate() {
        assert_eq!(t.get(k), Some(i as u32));
    }
    assert_eq!(t.insert(keys[10], 99), Some(10));
    assert_eq!(t.get(keys[10]), Some(99));
    assert_eq!(t.get((1 << 64) | 5), None);
    assert_eq!(t.get(u128::MAX), None);
}
