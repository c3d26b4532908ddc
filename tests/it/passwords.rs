//! Passwords: a source password that changes for an existing user goes through the User
//! Password endpoint; Concur's refusals end in `status`; the one-off `passwords` command works
//! from a file and from stdin and keeps nothing but an audit record.

use super::harness::{HEADER, Rig, code, row, text};

fn header() -> String {
    format!("{HEADER},password")
}

fn with_pw(i: usize, pw: &str) -> String {
    format!("{},{pw}", row(i, ""))
}

fn password_posts(rig: &Rig) -> Vec<usize> {
    rig.sim_requests_to("/users/password")
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.records.unwrap_or(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_source_password_goes_through_the_password_endpoint() {
    let rig = Rig::start().await;
    let rows = |pw2: &str| {
        vec![
            with_pw(0, "Initial-0!"),
            with_pw(1, "Initial-1!"),
            with_pw(2, pw2),
        ]
    };
    rig.write_csv(&header(), &rows("Initial-2!"));
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(rig.sim.password_matches("E00002", "Initial-2!"));
    assert!(
        password_posts(&rig).is_empty(),
        "creates carry their password"
    );

    // Unchanged passwords: nothing is sent.
    assert_eq!(code(&rig.run(&["sync"]).await), 0);
    assert!(password_posts(&rig).is_empty());

    rig.write_csv(&header(), &rows("Changed-2?"));
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(password_posts(&rig), [1]);
    assert!(rig.sim.password_matches("E00002", "Changed-2?"));
    assert!(rig.sim.password_matches("E00001", "Initial-1!"));
    let st = rig.status().await;
    assert_eq!(st["last_cycle"]["counts"]["password"], 1);
    assert_eq!(st["last_cycle"]["counts"]["update"], 0);
    assert_eq!(st["failed"].as_array().unwrap().len(), 0);

    // Acknowledged: the next cycle has nothing to send.
    assert_eq!(code(&rig.run(&["sync"]).await), 0);
    assert_eq!(password_posts(&rig), [1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_password_is_recorded_with_concurs_message_and_tried_again() {
    let rig = Rig::start().await;
    let rows = |pw: &str| vec![with_pw(0, "Initial-0!"), with_pw(1, pw)];
    rig.write_csv(&header(), &rows("Initial-1!"));
    assert_eq!(code(&rig.run(&["sync"]).await), 0);

    // In Concur, the user lost its Employee ID: the password endpoint refuses it.
    assert_eq!(
        rig.sim_control(
            "PUT",
            "/_sim/users/E00001",
            serde_json::json!({"EmpId": ""})
        )
        .await,
        200
    );
    rig.write_csv(&header(), &rows("Changed-1!"));
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 2, "{}", text(&out));
    let st = rig.status().await;
    let failed = st["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{st}");
    assert_eq!(failed[0]["employee_id"], "E00001");
    assert_eq!(failed[0]["operation"], "password");
    assert!(
        failed[0]["message"]
            .as_str()
            .unwrap()
            .contains("doesn't have an Employee ID"),
        "{st}"
    );
    assert_eq!(failed[0]["attempts"], 1);
    assert_eq!(st["last_cycle"]["outcome"], "partial");

    // Still wanted and never acknowledged: sent again next cycle, and counted.
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert_eq!(password_posts(&rig), [1, 1]);
    let st = rig.status().await;
    assert_eq!(st["failed"][0]["attempts"], 2, "{st}");
    assert!(!rig.sim.password_matches("E00000", "Changed-1!"));
}

fn audit(rig: &Rig) -> Vec<(String, String)> {
    let db = rusqlite::Connection::open(rig.state_path()).unwrap();
    let mut stmt = db
        .prepare("SELECT action, detail FROM audit ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn state_bytes(rig: &Rig) -> Vec<u8> {
    let mut all = Vec::new();
    for suffix in ["", "-wal"] {
        let mut p = rig.state_path().into_os_string();
        p.push(suffix);
        if let Ok(b) = std::fs::read(&p) {
            all.extend(b);
        }
    }
    all
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_passwords_command_sets_passwords_from_a_file_and_from_stdin() {
    let rig = Rig::start().await;
    rig.write_hr(&super::harness::rows(0..3));
    assert_eq!(code(&rig.run(&["sync"]).await), 0);

    let file = rig.dir.path().join("resets.csv");
    std::fs::write(
        &file,
        "login_id,password\nuser0@example.com,Reset-0#a\nuser1@example.com,\"Re,set-1\"\"b\"\nnobody@example.com,Reset-x\n",
    )
    .unwrap();
    let out = rig
        .run(&["passwords", "--file", file.to_str().unwrap()])
        .await;
    assert_eq!(code(&out), 2, "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(stdout.contains("ok      user0@example.com"), "{stdout}");
    assert!(stdout.contains("ok      user1@example.com"), "{stdout}");
    assert!(
        stdout.contains("failed  nobody@example.com: Invalid User:nobody@example.com"),
        "{stdout}"
    );
    assert!(stdout.contains("passwords: 2 set, 1 failed"), "{stdout}");
    assert!(rig.sim.password_matches("E00000", "Reset-0#a"));
    assert!(rig.sim.password_matches("E00001", "Re,set-1\"b"));
    assert_eq!(password_posts(&rig), [3]);

    let out = rig
        .run_stdin(
            &["passwords", "--file", "-"],
            b"login_id,password\r\nuser2@example.com,From-Stdin-2\r\n",
        )
        .await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(rig.sim.password_matches("E00002", "From-Stdin-2"));

    let audit = audit(&rig);
    let resets: Vec<&(String, String)> = audit.iter().filter(|a| a.0 == "passwords").collect();
    assert_eq!(resets.len(), 2, "{audit:?}");
    assert!(
        resets[0].1.contains("2 passwords set, 1 failed"),
        "{audit:?}"
    );
    assert!(resets[0].1.contains("nobody@example.com"), "{audit:?}");
    assert!(resets[1].1.contains("from <stdin>"), "{audit:?}");

    // Nothing but the audit record: no password anywhere in the state or the output.
    let bytes = state_bytes(&rig);
    for pw in ["Reset-0#a", "Re,set-1\"b", "Reset-x", "From-Stdin-2"] {
        assert!(!contains(&bytes, pw), "{pw} in the state DB");
        assert!(!contains(&out.stdout, pw) && !contains(&out.stderr, pw));
    }
    // The snapshot did not learn these passwords: a later sync sends nothing.
    assert_eq!(code(&rig.run(&["sync"]).await), 0);
    assert_eq!(password_posts(&rig), [3, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_file_without_its_columns_is_refused_before_anything_is_sent() {
    let rig = Rig::start().await;
    let file = rig.dir.path().join("resets.csv");
    std::fs::write(&file, "user,pass\na@example.com,x\n").unwrap();
    let out = rig
        .run(&["passwords", "--file", file.to_str().unwrap()])
        .await;
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("login_id and password"),
        "{}",
        text(&out)
    );
    assert!(rig.sim.requests().is_empty());
}
