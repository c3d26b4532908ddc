//! Renames: a new login for a known employee id, and a new employee id announced through
//! `previous_employee_id`, change the same Concur user; the snapshot follows only after Concur
//! acknowledged.

use concur_sync::simulator::SimUser;

use super::harness::{HEADER, Rig, code, row, rows, text};

/// A rig whose small company may change a few identities without an operator's approval.
async fn renames_rig() -> Rig {
    Rig::with(
        concur_sync::simulator::SimConfig::default(),
        "[sync]\nmax_identity_changes = 10",
    )
    .await
}

fn header() -> String {
    format!("{HEADER},previous_employee_id")
}

/// Row `i` with `employee_id` replaced by `new_id` and `previous_employee_id` = the old id.
fn renamed(i: usize, new_id: &str) -> String {
    let r = row(i, "");
    let rest = r.split_once(',').unwrap().1;
    format!("{new_id},{rest},E{i:05}")
}

fn snapshot_ids(rig: &Rig) -> Vec<(String, String)> {
    let db = rusqlite::Connection::open(rig.state_path()).unwrap();
    let mut stmt = db
        .prepare("SELECT employee_id, login_id FROM users ORDER BY employee_id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_login_changes_the_same_concur_user() {
    let rig = renames_rig().await;
    rig.write_hr(&rows(0..3));
    assert_eq!(code(&rig.run(&["sync"]).await), 0);
    let before = rig.sim.users()[1].fields.clone();

    let mut changed = rows(0..3);
    changed[1] = changed[1].replacen("user1@example.com", "renamed1@example.com", 1);
    rig.write_hr(&changed);
    let plan = rig.run(&["plan", "--json"]).await;
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(plan["operations"][0]["old_login_id"], "user1@example.com");

    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let users = rig.sim.users();
    assert_eq!(users.len(), 3);
    let u = &users[1];
    assert_eq!(u.emp_id(), "E00001");
    assert_eq!(u.login_id(), "renamed1@example.com");
    assert!(u.active());
    assert_eq!(
        u.get("FirstName"),
        before.get("FirstName").map(String::as_str)
    );
    let st = rig.status().await;
    assert_eq!(st["last_cycle"]["counts"]["update"], 1);
    assert_eq!(st["users"]["managed"], 3);
    assert!(
        snapshot_ids(&rig).contains(&("E00001".into(), "renamed1@example.com".into())),
        "{:?}",
        snapshot_ids(&rig)
    );
    // Settled: nothing more to send.
    let writes = rig.sim_requests_to("/api/user/v1.0/users").len();
    assert_eq!(code(&rig.run(&["sync"]).await), 0);
    assert_eq!(rig.sim_requests_to("/api/user/v1.0/users").len(), writes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_previous_employee_id_moves_the_user_without_a_duplicate_or_a_deactivation() {
    let rig = renames_rig().await;
    rig.write_hr(&rows(0..4));
    assert_eq!(code(&rig.run(&["sync"]).await), 0);

    // E00002 becomes X00002 (and changes login at the same time); E00003 is untouched.
    let mut next: Vec<String> = rows(0..4).into_iter().map(|r| format!("{r},")).collect();
    next[2] = renamed(2, "X00002").replacen("user2@example.com", "x2@example.com", 1);
    rig.write_csv(&header(), &next);
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));

    let users = rig.sim.users();
    let ids: Vec<&str> = users.iter().map(SimUser::emp_id).collect();
    assert_eq!(ids, ["E00000", "E00001", "E00003", "X00002"]);
    let x = users.iter().find(|u| u.emp_id() == "X00002").unwrap();
    assert_eq!(x.login_id(), "x2@example.com");
    assert!(x.active());
    assert!(users.iter().all(SimUser::active));
    let st = rig.status().await;
    let counts = &st["last_cycle"]["counts"];
    assert_eq!(counts["deactivate"], 0, "{st}");
    assert_eq!(counts["create"], 0, "{st}");
    assert_eq!(counts["update"], 1, "{st}");
    assert_eq!(st["users"]["managed"], 4);
    assert_eq!(st["users"]["active"], 4);
    let snap = snapshot_ids(&rig);
    assert!(snap.contains(&("X00002".into(), "x2@example.com".into())));
    assert!(!snap.iter().any(|(id, _)| id == "E00002"), "{snap:?}");

    // The rename is settled: the same file again sends nothing.
    let writes = rig.sim_requests_to("/api/user/v1.0/users").len();
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(rig.sim_requests_to("/api/user/v1.0/users").len(), writes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_snapshot_follows_a_rename_only_after_concur_acknowledged_it() {
    let rig = renames_rig().await;
    rig.write_hr(&rows(0..3));
    assert_eq!(code(&rig.run(&["sync"]).await), 0);

    // The rename is refused once (Concur answers by the id it was sent under).
    rig.sim
        .reject(&["E00001"], "Invalid Input: NewEmployeeID is locked");
    let mut next: Vec<String> = rows(0..3).into_iter().map(|r| format!("{r},")).collect();
    next[1] = renamed(1, "Y00001");
    rig.write_csv(&header(), &next);
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 2, "{}", text(&out));

    let st = rig.status().await;
    let failed = st["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{st}");
    assert!(
        failed[0]["message"]
            .as_str()
            .unwrap()
            .contains("NewEmployeeID is locked"),
        "{st}"
    );
    assert_eq!(st["users"]["managed"], 3);
    let snap = snapshot_ids(&rig);
    assert!(snap.iter().any(|(id, _)| id == "E00001"), "{snap:?}");
    assert!(!snap.iter().any(|(id, _)| id == "Y00001"), "{snap:?}");
    let ids: Vec<String> = rig.sim.users().iter().map(|u| u.emp_id().into()).collect();
    assert_eq!(ids, ["E00000", "E00001", "E00002"]);

    // Concur accepts it now: the next cycle sends it again and the snapshot follows.
    assert_eq!(
        rig.sim_control("DELETE", "/_sim/reject", serde_json::Value::Null)
            .await,
        204
    );
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let ids: Vec<String> = rig.sim.users().iter().map(|u| u.emp_id().into()).collect();
    assert_eq!(ids, ["E00000", "E00002", "Y00001"]);
    let snap = snapshot_ids(&rig);
    assert!(snap.iter().any(|(id, _)| id == "Y00001"), "{snap:?}");
    assert!(!snap.iter().any(|(id, _)| id == "E00001"), "{snap:?}");
    let st = rig.status().await;
    assert_eq!(st["failed"].as_array().unwrap().len(), 0, "{st}");
    assert_eq!(st["users"]["managed"], 3);
    assert_eq!(st["users"]["active"], 3);
}
