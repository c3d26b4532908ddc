//! Identity and deactivation safety, through the real binary against the simulator: a row that
//! cannot name its user deactivates nobody (CSV and LDIF); invisible and look-alike identifiers
//! are rejected naming the rule; `previous_employee_id` never takes over a present employee; a
//! mass rewrite of logins, e-mails and names is held like a mass deactivation; a lost state key
//! refuses to start instead of re-sending every password.

use super::harness::{HEADER, Rig, code, row, rows, text};

/// `status --json` rejections as (line, field, message) for the HR file.
fn rejections(st: &serde_json::Value) -> Vec<(String, String, String)> {
    st["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let src = r["source"].as_str().unwrap();
            let line = src.rsplit(':').next().unwrap().to_owned();
            (
                line,
                r["field"].as_str().unwrap().to_owned(),
                r["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn assert_rejected(st: &serde_json::Value, line: usize, field: &str, rule: &str) {
    let all = rejections(st);
    assert!(
        all.iter()
            .any(|(l, f, m)| *l == line.to_string() && f == field && m.contains(rule)),
        "no rejection of line {line}, field {field}, rule {rule:?} in {all:#?}"
    );
}

/// Active flags of the simulator's users by employee id.
fn active_in_concur(rig: &Rig) -> std::collections::BTreeMap<String, bool> {
    rig.sim
        .users()
        .iter()
        .map(|u| (u.emp_id().to_owned(), u.active()))
        .collect()
}

/// Row `i` with its last field (the manager) replaced.
fn with_manager(i: usize, manager: &str) -> String {
    let r = row(i, "");
    format!("{},{manager}", r.rsplit_once(',').unwrap().0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_that_cannot_name_its_user_exactly_deactivates_nobody() {
    let rig = Rig::start().await;
    rig.write_hr(&rows(0..40));
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));

    let mut next = rows(0..40);
    // Data row i is line i + 2.
    // No employee id at all: only the login names the user.
    next[11] = next[11].replacen("E00011", "", 1);
    // An invisible character inside the id.
    next[12] = next[12].replacen("E00012", "E000\u{200B}12", 1);
    // A Cyrillic look-alike id with a login nobody has: only the look-alike names the user.
    next[13] = next[13]
        .replacen("E00013", "\u{0415}00013", 1)
        .replace("user13@example.com", "someone.new@example.com");
    // A login mixing Latin and Cyrillic letters.
    next[14] = next[14].replacen("user14@example.com", "user14@ex\u{0430}mple.com", 1);
    // A row with too few fields and an empty id: its login column still names the user.
    next[15] = ",user15@example.com,user15@example.com,Cut".into();
    // A manager id with a bidi control: the identifier rules apply to it too.
    next[16] = with_manager(16, "E0000\u{202E}1");
    // A BOM inside the id.
    next[17] = next[17].replacen("E00017", "E00\u{FEFF}017", 1);
    // The control: a user whose row is simply gone is still deactivated.
    next.remove(18);
    rig.write_hr(&next);
    let out = rig.run(&["sync"]).await;
    assert_eq!(
        code(&out),
        2,
        "rejections make the cycle partial: {}",
        text(&out)
    );

    let st = rig.status().await;
    assert_rejected(&st, 13, "employee_id", "is missing");
    assert_rejected(&st, 14, "employee_id", "invisible format character U+200B");
    assert_rejected(&st, 15, "employee_id", "looks like \"E00013\"");
    assert_rejected(&st, 15, "employee_id", "Cyrillic");
    assert_rejected(&st, 16, "login_id", "mixes Latin and Cyrillic letters");
    assert_rejected(&st, 17, "row", "fields where the header has");
    assert_rejected(&st, 18, "manager_employee_id", "U+202E");
    assert_rejected(&st, 19, "employee_id", "U+FEFF");

    let active = active_in_concur(&rig);
    assert_eq!(
        active.len(),
        40,
        "no look-alike became a new user: {active:?}"
    );
    for i in 0..40 {
        let id = format!("E{i:05}");
        assert_eq!(active[&id], i != 18, "{id} active in Concur");
    }
    assert_eq!(st["last_cycle"]["counts"]["deactivate"], 1, "{st}");
    let u14 = rig.sim.users().into_iter().find(|u| u.emp_id() == "E00014");
    assert_eq!(u14.unwrap().login_id(), "user14@example.com");
    assert!(
        rig.sim
            .users()
            .iter()
            .all(|u| u.emp_id().is_ascii() && u.login_id().is_ascii()),
        "no invisible or look-alike character reached Concur"
    );

    // `plan` shows the same: the rejected rows' users are not deactivated.
    let plan = rig.run(&["plan", "--json"]).await;
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(plan["summary"]["deactivate"], 0, "{plan}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ldif_entry_without_its_key_protects_the_user_its_mail_names() {
    let rig = Rig::start().await;
    let ldif = rig.dir.path().join("people.ldif");
    let entry = |i: usize, with_key: bool| {
        let key = if with_key {
            format!("employeeNumber: E{i:05}\n")
        } else {
            String::new()
        };
        format!(
            "dn: uid=u{i},ou=people,dc=example,dc=com\nobjectClass: inetOrgPerson\nuid: u{i}\n\
             cn: User {i}\ngivenName: User\nsn: Number{i}\n{key}mail: user{i}@example.com\n\n"
        )
    };
    let write = |entries: &[String]| std::fs::write(&ldif, entries.concat()).unwrap();
    rig.write_source_config(&format!(
        "[source]\nkind = \"ldif\"\npath = {:?}\n",
        ldif.display().to_string()
    ));
    write(&(0..20).map(|i| entry(i, true)).collect::<Vec<_>>());
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(rig.sim.users().len(), 20);

    // u5 lost its employeeNumber; u6 is gone (the control: deactivated).
    let next: Vec<String> = (0..20)
        .filter(|&i| i != 6)
        .map(|i| entry(i, i != 5))
        .collect();
    write(&next);
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 2, "{}", text(&out));
    let st = rig.status().await;
    let rejected = st["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 1, "{st}");
    assert!(
        rejected[0]["source"].as_str().unwrap().contains("uid=u5"),
        "{st}"
    );
    let active = active_in_concur(&rig);
    assert!(
        active["E00005"],
        "the entry without its key deactivated its user"
    );
    assert!(!active["E00006"], "the vanished entry is deactivated");
    assert_eq!(st["last_cycle"]["counts"]["deactivate"], 1, "{st}");
}

fn rename_header() -> String {
    format!("{HEADER},previous_employee_id")
}

/// Row `i` under `new_id`, saying it was `prev` before.
fn renamed(i: usize, new_id: &str, prev: &str) -> String {
    let r = row(i, "");
    let rest = r.split_once(',').unwrap().1;
    format!("{new_id},{rest},{prev}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previous_employee_id_never_takes_over_a_present_employee() {
    let rig = Rig::with(
        concur_sync::simulator::SimConfig::default(),
        "[sync]\nmax_identity_changes = 10",
    )
    .await;
    rig.write_hr(&rows(0..8));
    assert_eq!(code(&rig.run(&["sync"]).await), 0);

    let mut next: Vec<String> = rows(0..8).into_iter().map(|r| format!("{r},")).collect();
    // E00002 still has its own row (line 4); a new row claims to have been E00002.
    next.push(renamed(2, "X00002", "E00002").replace("user2@", "x2@"));
    // Two rows claim to have been E00003 (whose own row is gone).
    next[3] = renamed(3, "Y00003", "E00003");
    next.push(renamed(3, "Z00003", "E00003").replace("user3@", "other3@"));
    // E00004 exists, and says it was E00005, which exists too.
    next[4] = renamed(4, "E00004", "E00005");
    // A genuine rename still goes through.
    next[6] = renamed(6, "R00006", "E00006");
    rig.write_csv(&rename_header(), &next);
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 2, "{}", text(&out));

    let st = rig.status().await;
    let all = rejections(&st);
    let prev: Vec<&(String, String, String)> = all
        .iter()
        .filter(|(_, f, _)| f == "previous_employee_id")
        .collect();
    assert_eq!(prev.len(), 4, "{all:#?}");
    assert_rejected(&st, 10, "previous_employee_id", "still has its own row at");
    assert_rejected(&st, 5, "previous_employee_id", "is also claimed at");
    assert_rejected(&st, 11, "previous_employee_id", "is also claimed at");
    assert_rejected(
        &st,
        6,
        "previous_employee_id",
        "belongs to another managed user",
    );

    let active = active_in_concur(&rig);
    let ids: Vec<&str> = active.keys().map(String::as_str).collect();
    assert_eq!(
        ids,
        [
            "E00000", "E00001", "E00002", "E00003", "E00004", "E00005", "E00007", "R00006"
        ],
        "no present employee was taken over"
    );
    assert!(
        active.values().all(|a| *a),
        "nobody deactivated: {active:?}"
    );
    assert_eq!(st["last_cycle"]["counts"]["deactivate"], 0, "{st}");
    assert_eq!(st["last_cycle"]["counts"]["update"], 1, "{st}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mass_identity_rewrite_is_held_until_approved() {
    let rig = Rig::start().await;
    rig.write_hr(&rows(0..40));
    assert_eq!(code(&rig.run(&["sync"]).await), 0);

    // Another company's file with the same ids: every login and e-mail differs; and a new
    // hire, which still goes through.
    let other = |i: usize| {
        row(i, "").replace(
            &format!("user{i}@example.com"),
            &format!("p{i}@other.example"),
        )
    };
    let mut next: Vec<String> = (0..40).map(other).collect();
    next.push(row(40, ""));
    rig.write_hr(&next);
    let out = rig.run(&["sync"]).await;
    assert_eq!(
        code(&out),
        3,
        "held like a mass deactivation: {}",
        text(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("held"), "{stdout}");

    let st = rig.status().await;
    let last = &st["last_cycle"];
    assert_eq!(last["outcome"], "held", "{st}");
    let msg = last["message"].as_str().unwrap();
    assert!(msg.contains("sync.max_identity_changes"), "{msg}");
    assert!(msg.contains("40 users"), "{msg}");
    assert!(msg.contains("(2 of 40 managed active users)"), "{msg}");
    assert_eq!(st["outbox"]["held"], 40, "{st}");
    assert_eq!(
        last["counts"]["create"], 1,
        "the rest of the plan applied: {st}"
    );
    let users = rig.sim.users();
    assert_eq!(users.len(), 41);
    assert!(
        users
            .iter()
            .filter(|u| u.emp_id() != "E00040")
            .all(|u| u.login_id().ends_with("@example.com")),
        "no login was rewritten before approval"
    );

    let cycle = last["id"].as_i64().unwrap().to_string();
    let out = rig.run(&["approve", &cycle]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let users = rig.sim.users();
    assert!(
        users
            .iter()
            .filter(|u| u.emp_id() != "E00040")
            .all(|u| u.login_id().ends_with("@other.example") && u.active()),
        "the approved plan is sent"
    );
    let st = rig.status().await;
    assert_eq!(st["outbox"]["held"], 0, "{st}");
    // Settled: the same file again sends nothing and holds nothing.
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_changes_within_the_limit_go_through_and_a_rejected_rewrite_sends_nothing() {
    let rig = Rig::start().await;
    rig.write_hr(&rows(0..40));
    assert_eq!(code(&rig.run(&["sync"]).await), 0);

    // Two users (the 5% of 40), each changing login, e-mail and last name: counted once each.
    let mut next = rows(0..40);
    for i in [3, 4] {
        next[i] = row(i, " Jr").replace(&format!("user{i}@"), &format!("new{i}@"));
    }
    rig.write_hr(&next);
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let st = rig.status().await;
    assert_eq!(st["last_cycle"]["counts"]["update"], 2, "{st}");

    // Three renames (employee id changes) are one too many: held, then rejected by an operator.
    let mut next: Vec<String> = next.into_iter().map(|r| format!("{r},")).collect();
    for i in [20, 21, 22] {
        next[i] = renamed(i, &format!("N{i:05}"), &format!("E{i:05}"));
    }
    rig.write_csv(&rename_header(), &next);
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 3, "{}", text(&out));
    let st = rig.status().await;
    assert_eq!(st["outbox"]["held"], 3, "{st}");
    let cycle = st["last_cycle"]["id"].as_i64().unwrap().to_string();
    let out = rig.run(&["reject", &cycle]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let st = rig.status().await;
    assert_eq!(st["outbox"]["held"], 0, "{st}");
    // The rejected cycle no longer asks to be approved: status names it rejected.
    assert_eq!(st["last_cycle"]["outcome"], "rejected", "{st}");
    let message = st["last_cycle"]["message"].as_str().unwrap();
    assert!(
        message.contains("rejected by an operator") && message.contains("3 operations"),
        "{message}"
    );
    let out = rig.run(&["status"]).await;
    assert!(!text(&out).contains("approve"), "{}", text(&out));
    // Rejecting it again, or approving it, is refused.
    assert_eq!(code(&rig.run(&["reject", &cycle]).await), 1);
    let out = rig.run(&["approve", &cycle]).await;
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(text(&out).contains("rejected, not held"), "{}", text(&out));
    let active = active_in_concur(&rig);
    assert!(active.contains_key("E00020") && !active.contains_key("N00020"));
    assert!(active.values().all(|a| *a));
}

fn pw_header() -> String {
    format!("{HEADER},password")
}

fn with_pw(i: usize, pw: &str) -> String {
    format!("{},{pw}", row(i, ""))
}

fn password_posts(rig: &Rig) -> usize {
    rig.sim_requests_to("/users/password")
        .iter()
        .filter(|r| r.method == "POST")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_state_key_refuses_to_start_and_a_new_key_resends_no_password() {
    let rig = Rig::start().await;
    let file = |changed: Option<&str>| -> Vec<String> {
        (0..5)
            .map(|i| match (i, changed) {
                (2, Some(pw)) => with_pw(i, pw),
                _ => with_pw(i, &format!("Initial-{i}!")),
            })
            .collect()
    };
    rig.write_csv(&pw_header(), &file(None));
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(rig.sim.password_matches("E00001", "Initial-1!"));
    assert_eq!(password_posts(&rig), 0);

    let key = rig.dir.path().join("state.db.key");
    let original = std::fs::read(&key).unwrap();

    // The key file is gone: refused before any request, naming the file and both ways out.
    std::fs::remove_file(&key).unwrap();
    let requests = rig.sim.requests().len();
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 1, "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&key.display().to_string()), "{stderr}");
    assert!(stderr.contains("is missing"), "{stderr}");
    assert!(stderr.contains("Restore"), "{stderr}");
    assert!(stderr.contains("--new-key"), "{stderr}");
    assert_eq!(rig.sim.requests().len(), requests, "nothing was sent");
    assert!(!key.exists(), "no key was made up silently");

    // Another key: it cannot decrypt what the database holds, so it is refused as well.
    std::fs::write(&key, "ab".repeat(32)).unwrap();
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 1, "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot decrypt"), "{stderr}");
    assert!(stderr.contains("--new-key"), "{stderr}");
    assert_eq!(rig.sim.requests().len(), requests, "nothing was sent");

    // The original key restored: it works again.
    std::fs::remove_file(&key).unwrap();
    std::fs::write(&key, &original).unwrap();
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));

    // Lost for good: a new key. No password is sent, now or on the next cycle.
    std::fs::remove_file(&key).unwrap();
    let out = rig.run(&["sync", "--new-key"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("5 stored passwords are now unknown"),
        "{}",
        text(&out)
    );
    assert!(key.exists());
    assert_eq!(password_posts(&rig), 0, "a new key re-sent passwords");
    assert_eq!(code(&rig.run(&["sync"]).await), 0);
    assert_eq!(password_posts(&rig), 0);

    // A password the source changes after that is sent as usual, and only that one.
    rig.write_csv(&pw_header(), &file(Some("Changed-2?")));
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(password_posts(&rig), 1);
    assert!(rig.sim.password_matches("E00002", "Changed-2?"));
    assert!(rig.sim.password_matches("E00001", "Initial-1!"));
    assert_eq!(code(&rig.run(&["sync"]).await), 0);
    assert_eq!(password_posts(&rig), 1);
}
