//! Reading Concur back, end to end through the real binary and the simulator: adoption of the
//! users Concur already has, drift repair, the Attendees v4 job and `check`.

use super::harness::{Rig, code, row, rows, sim_users, text};
use concur_sync::simulator::{SimConfig, SimUser};

/// The Concur user the harness row `i` describes, as another tool would have loaded it.
fn concur_user(i: usize, emp_id: &str) -> SimUser {
    let line = row(i, "");
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(line.as_bytes());
    let r = rdr.records().next().unwrap().unwrap();
    SimUser::new()
        .with("EmpId", emp_id)
        .with("LoginId", &r[1])
        .with("EmailAddress", &r[2])
        .with("FirstName", &r[3])
        .with("LastName", &r[5])
        .with("Active", "Y")
        .with("CtryCode", "US")
        .with("LedgerKey", "DEFAULT")
}

fn append_config(rig: &Rig, text: &str) {
    let mut cfg = std::fs::read_to_string(&rig.config).unwrap();
    cfg.push('\n');
    cfg.push_str(text);
    std::fs::write(&rig.config, cfg).unwrap();
}

fn requests(rig: &Rig, method: &str, path: &str) -> usize {
    rig.sim
        .requests()
        .iter()
        .filter(|r| r.method == method && r.path.trim_end_matches('/').eq_ignore_ascii_case(path))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adoption_of_250_existing_users_creates_no_duplicates_and_leaves_unmanaged_ones_alone() {
    let rig = Rig::start().await;
    // Departures below are the point of the test, not the mass-deactivation guard.
    append_config(&rig, "[sync]\nmax_deactivations = \"100%\"\n");
    // Concur already holds 250 of the source's users (one of them under a legacy employee id)
    // and 5 users the source does not know.
    let mut seeded: Vec<SimUser> = (0..250)
        .map(|i| {
            let id = if i == 7 {
                "LEGACY7".to_owned()
            } else {
                format!("E{i:05}")
            };
            concur_user(i, &id)
        })
        .collect();
    let strangers: Vec<SimUser> = (1..=5)
        .map(|k| {
            SimUser::new()
                .with("EmpId", &format!("X{k:03}"))
                .with("LoginId", &format!("contractor{k}@example.com"))
                .with("FirstName", "Con")
                .with("LastName", "Tractor")
                .with("EmailAddress", &format!("contractor{k}@example.com"))
                .with("Active", "Y")
        })
        .collect();
    seeded.extend(strangers.iter().cloned());
    rig.sim.seed_users(seeded);
    rig.write_hr(&rows(0..260));

    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));

    let users = sim_users(&rig);
    // 250 adopted (E00007 renamed from LEGACY7, not created twice) + 10 new + 5 strangers.
    assert_eq!(users.len(), 265, "{:?}", users.keys().collect::<Vec<_>>());
    assert!(!users.contains_key("LEGACY7"));
    assert_eq!(users["E00007"]["LoginId"], "user7@example.com");
    let mut logins: Vec<&str> = users.values().map(|u| u["LoginId"].as_str()).collect();
    logins.sort_unstable();
    logins.dedup();
    assert_eq!(logins.len(), 265, "a login is held twice");
    // Bulk User v3.1 read in pages of at most 100 until `total` (255 users: 3 pages).
    assert_eq!(requests(&rig, "GET", "/users"), 3);
    for s in &strangers {
        assert_eq!(
            &users[s.emp_id()],
            &s.fields,
            "an unmanaged user was written"
        );
    }

    let st = rig.status().await;
    assert_eq!(st["users"]["adopted"], 250, "{st:#}");
    assert_eq!(st["users"]["created"], 10);
    assert_eq!(st["users"]["unmanaged"], 5);
    assert_eq!(st["last_cycle"]["counts"]["create"], 10);
    let listed: Vec<&str> = st["unmanaged_users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["employee_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["X001", "X002", "X003", "X004", "X005"]);

    // Departures among adopted users are deactivated; unmanaged users still are not touched.
    rig.write_hr(&rows(0..240));
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let users = sim_users(&rig);
    for i in 240..250 {
        assert_eq!(users[&format!("E{i:05}")]["Active"], "N");
    }
    for s in &strangers {
        assert_eq!(&users[s.emp_id()], &s.fields);
    }
    // Adoption ran once: a later cycle does not read every user again.
    assert_eq!(requests(&rig, "GET", "/users"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manage_unmatched_takes_strangers_over_and_deactivates_them() {
    let rig = Rig::start().await;
    append_config(
        &rig,
        "[sync]\nmanage_unmatched = true\nmax_deactivations = \"100%\"\n",
    );
    rig.sim.seed_users(vec![
        concur_user(0, "E00000"),
        SimUser::new()
            .with("EmpId", "X001")
            .with("LoginId", "gone@example.com")
            .with("LastName", "Gone")
            .with("Active", "Y"),
    ]);
    rig.write_hr(&rows(0..3));
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(sim_users(&rig)["X001"]["Active"], "N");
    let st = rig.status().await;
    assert_eq!(st["users"]["unmanaged"], 0);
    assert_eq!(st["users"]["adopted"], 2);
}

async fn sim_put(rig: &Rig, path: &str, body: serde_json::Value) {
    let r = reqwest::Client::new()
        .put(format!("{}{path}", rig.sim.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_made_behind_our_back_is_repaired_by_reconcile_and_counted() {
    let rig = Rig::start().await;
    rig.sim.seed_users(vec![
        SimUser::new()
            .with("EmpId", "X001")
            .with("LoginId", "stranger@example.com")
            .with("LastName", "Stranger")
            .with("Active", "Y"),
    ]);
    rig.write_hr(&rows(0..20));
    assert_eq!(code(&rig.run(&["sync"]).await), 0);
    let before = sim_users(&rig);

    // An administrator edits Concur directly.
    sim_put(
        &rig,
        "/_sim/users/E00003",
        serde_json::json!({"LastName": "Edited", "Active": "N"}),
    )
    .await;
    sim_put(
        &rig,
        "/_sim/users/E00005",
        serde_json::json!({"EmailAddress": "private@elsewhere.org"}),
    )
    .await;
    sim_put(
        &rig,
        "/_sim/users/E00009",
        serde_json::json!({"LoginId": "renamed9@example.com"}),
    )
    .await;
    sim_put(
        &rig,
        "/_sim/users/X001",
        serde_json::json!({"LastName": "Still A Stranger"}),
    )
    .await;

    let out = rig.run(&["reconcile"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let after = sim_users(&rig);
    for id in ["E00003", "E00005", "E00009"] {
        assert_eq!(after[id], before[id], "{id} not repaired");
    }
    assert_eq!(after["X001"]["LastName"], "Still A Stranger");

    let st = rig.status().await;
    assert_eq!(st["drift_repaired"], 3, "{st:#}");
    assert_eq!(st["last_reconcile"]["counts"]["drifted"], 3);
    assert_eq!(st["last_reconcile"]["counts"]["drift_repaired"], 3);
    assert_eq!(st["last_reconcile"]["outcome"], "success");

    // Nothing drifted now: nothing is sent, the total stays.
    let writes = requests(&rig, "POST", "/api/user/v1.0/users");
    let out = rig.run(&["reconcile"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(requests(&rig, "POST", "/api/user/v1.0/users"), writes);
    let st = rig.status().await;
    assert_eq!(st["drift_repaired"], 3);
    assert_eq!(st["last_reconcile"]["counts"]["drifted"], 0);
    // The next cycle has nothing to do either: the snapshot holds what was re-sent.
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(requests(&rig, "POST", "/api/user/v1.0/users"), writes);
}

fn sim_attendees(rig: &Rig) -> Vec<serde_json::Value> {
    let url = format!("{}/_sim/attendees", rig.sim.base_url());
    let body = std::thread::spawn(move || {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(async { reqwest::get(url).await.unwrap().text().await.unwrap() })
    })
    .join()
    .unwrap();
    serde_json::from_str(&body).unwrap()
}

fn by_external(list: &[serde_json::Value], ext: &str) -> Vec<serde_json::Value> {
    list.iter()
        .filter(|a| a["externalId"] == ext)
        .cloned()
        .collect()
}

async fn company_token(rig: &Rig) -> String {
    let r: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/oauth2/v0/token", rig.sim.base_url()))
        .form(&[
            ("client_id", "it-client"),
            ("client_secret", "it-client-secret-7f3a"),
            ("grant_type", "password"),
            ("username", "it-company"),
            ("password", "it-request-token-91bc"),
            ("credtype", "authtoken"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attendees_are_created_partially_updated_and_found_past_one_page_and_the_ten_id_limit() {
    let rig = Rig::start().await;
    let csv = rig.dir.path().join("attendees.csv");
    let fixture = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/attendees/attendees.csv"
    ))
    .unwrap();
    std::fs::write(&csv, &fixture).unwrap();
    append_config(
        &rig,
        &format!(
            "[attendees]\npage_size = 4\n[attendees.source]\nkind = \"csv\"\npath = {:?}\n",
            csv.display().to_string()
        ),
    );
    rig.write_hr(&rows(0..3));

    // First run: 25 created; NOSHOWS, SYSEMP and an over-long name rejected locally.
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 2, "{}", text(&out));
    let list = sim_attendees(&rig);
    assert_eq!(list.len(), 25, "{list:#?}");
    let a0 = &by_external(&list, "A0000")[0];
    assert_eq!(a0["attendeeTypeCode"], "SPOUSE");
    assert_eq!(a0["currencyCode"], "EUR");
    assert_eq!(a0["custom21"]["value"], "short");
    assert_eq!(
        by_external(&list, "A0001")[0]["lastName"],
        "O'Brien & <Sons>"
    );
    assert!(by_external(&list, "B0001").is_empty());
    let st = rig.status().await;
    let a = &st["attendees"];
    assert_eq!(a["known"], 25, "{st:#}");
    assert_eq!(a["last_run"]["counts"]["created"], 25);
    let rejected: Vec<String> = a["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| format!("{} {} {}", r["external_id"], r["field"], r["message"]))
        .collect();
    assert_eq!(rejected.len(), 3, "{rejected:?}");
    assert!(
        rejected[0].contains("B0001") && rejected[0].contains("NOSHOWS"),
        "{rejected:?}"
    );
    assert!(
        rejected[1].contains("B0002") && rejected[1].contains("SYSEMP"),
        "{rejected:?}"
    );
    assert!(
        rejected[2].contains("first_name") && rejected[2].contains("50"),
        "{rejected:?}"
    );

    // Someone edits A0003's company in Concur; the source changes only its title. The update
    // sends the title alone, so the company edit survives.
    let id3 = by_external(&list, "A0003")[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = company_token(&rig).await;
    let r = reqwest::Client::new()
        .put(format!("{}/v4/attendees/{id3}", rig.sim.base_url()))
        .bearer_auth(&token)
        .json(&serde_json::json!({"company": "Edited In Concur"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let changed = fixture.replace(
        "A0003,BUSGUEST,Bjørn,E,Sørensen,,Company 3 & Partners,Doctor",
        "A0003,BUSGUEST,Bjørn,E,Sørensen,,Company 3 & Partners,Professor",
    );
    assert_ne!(changed, fixture);
    // A0024 leaves the source: v4 cannot delete it, status reports it.
    let changed: String = changed
        .lines()
        .filter(|l| !l.starts_with("A0024,"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&csv, &changed).unwrap();
    let posts = requests(&rig, "POST", "/v4/attendees");
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 2, "{}", text(&out));
    let list = sim_attendees(&rig);
    assert_eq!(list.len(), 25);
    let a3 = &by_external(&list, "A0003")[0];
    assert_eq!(a3["title"], "Professor");
    assert_eq!(a3["company"], "Edited In Concur");
    assert_eq!(requests(&rig, "POST", "/v4/attendees"), posts);
    let st = rig.status().await;
    assert_eq!(
        st["attendees"]["last_run"]["counts"]["updated"], 1,
        "{st:#}"
    );
    assert_eq!(st["attendees"]["last_run"]["counts"]["unchanged"], 23);
    let gone = st["attendees"]["missing_from_source"].as_array().unwrap();
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0]["external_id"], "A0024");

    // A fresh state database: every attendee is found by external id (24 ids: three lookups
    // of at most ten, each over pages of four) and nothing is created twice.
    for f in ["state.db", "state.db-wal", "state.db-shm"] {
        let _ = std::fs::remove_file(rig.dir.path().join(f));
    }
    let gets = requests(&rig, "GET", "/v4/attendees");
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert_eq!(sim_attendees(&rig).len(), 25);
    assert_eq!(requests(&rig, "POST", "/v4/attendees"), posts);
    // ⌈10/4⌉ + ⌈10/4⌉ + ⌈4/4⌉ pages.
    assert_eq!(requests(&rig, "GET", "/v4/attendees") - gets, 3 + 3 + 1);
    let st = rig.status().await;
    assert_eq!(st["attendees"]["known"], 24, "{st:#}");
    assert_eq!(st["attendees"]["last_run"]["counts"]["adopted"], 24);
    assert_eq!(st["attendees"]["last_run"]["counts"]["created"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_a_missing_required_field_and_sync_rejects_it_locally() {
    let mut sim = SimConfig::default();
    sim.required_fields.push("OrgUnit2".into());
    let rig = Rig::with(sim, "").await;
    rig.write_hr(&rows(0..3));

    let out = rig.run(&["check"]).await;
    assert_eq!(code(&out), 1, "{}", text(&out));
    let report = String::from_utf8_lossy(&out.stdout);
    let problems: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("PROBLEM"))
        .collect();
    assert_eq!(problems.len(), 1, "{report}");
    assert!(
        problems[0].contains("OrgUnit2") && problems[0].contains("org_unit2"),
        "{report}"
    );
    assert!(report.contains("profile: signed in as Company"), "{report}");
    assert!(
        report.contains("required LedgerKey (ledger): [defaults]"),
        "{report}"
    );

    // Sync uses the cached form: the records are rejected here, with the form's rule named,
    // and nothing is sent.
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert!(sim_users(&rig).is_empty());
    assert_eq!(requests(&rig, "POST", "/api/user/v1.0/users"), 0);
    let st = rig.status().await;
    let rejected = st["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 3, "{st:#}");
    assert_eq!(rejected[0]["field"], "org_unit2");
    assert!(
        rejected[0]["message"]
            .as_str()
            .unwrap()
            .contains("FormFields Required=Y"),
        "{st:#}"
    );

    // A default fills it: check passes.
    let cfg = std::fs::read_to_string(&rig.config).unwrap().replace(
        "ledger = \"DEFAULT\"",
        "ledger = \"DEFAULT\"\norg_unit2 = \"HQ\"",
    );
    std::fs::write(&rig.config, cfg).unwrap();
    let out = rig.run(&["check"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("check passed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_an_unreadable_secret_file_and_a_bad_schedule() {
    let rig = Rig::start().await;
    rig.write_hr(&rows(0..1));
    let cfg = std::fs::read_to_string(&rig.config).unwrap().replace(
        "client_secret = \"it-client-secret-7f3a\"",
        "client_secret_file = \"/nonexistent/secret\"",
    );
    std::fs::write(&rig.config, &cfg).unwrap();
    let out = rig.run(&["check"]).await;
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(
        text(&out).contains("concur.client_secret_file"),
        "{}",
        text(&out)
    );

    let cfg = format!("{cfg}\n[sync]\nreconcile_schedule = \"nightly\"\n");
    std::fs::write(&rig.config, cfg).unwrap();
    let out = rig.run(&["check"]).await;
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(
        text(&out).contains("sync.reconcile_schedule"),
        "{}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attendee_creates_whose_answers_are_lost_are_not_duplicated() {
    let rig = Rig::start().await;
    let csv = rig.dir.path().join("attendees.csv");
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/attendees/attendees.csv"
        ),
        &csv,
    )
    .unwrap();
    append_config(
        &rig,
        &format!(
            "[attendees.source]\nkind = \"csv\"\npath = {:?}\n",
            csv.display().to_string()
        ),
    );
    rig.write_hr(&rows(0..3));
    rig.sim.reseed(7);
    rig.sim.set_faults(concur_sync::simulator::Faults {
        rate_lost_response: 0.3,
        rate_5xx: 0.05,
        rate_429: 0.05,
        retry_after: concur_sync::simulator::RetryAfterMode::Zero,
        ..Default::default()
    });
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 2, "{}", text(&out));
    let lost = rig
        .sim
        .requests()
        .iter()
        .filter(|r| r.path == "/v4/attendees" && r.fault.as_deref() == Some("lost_response"))
        .count();
    assert!(lost > 0, "no create lost its answer");
    let list = sim_attendees(&rig);
    let mut ids: Vec<&str> = list
        .iter()
        .map(|a| a["externalId"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    let n = ids.len();
    ids.dedup();
    assert_eq!((n, ids.len()), (25, 25), "{ids:?}");
    let st = rig.status().await;
    assert_eq!(st["attendees"]["known"], 25, "{st:#}");
    assert_eq!(st["attendees"]["failed"].as_array().unwrap().len(), 0);
}
