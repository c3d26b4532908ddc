//! The core cycle end to end: HR CSV → real binary → simulator over HTTP → state DB → status.

use super::harness::{Rig, code, q, row, rows, sim_users, text, user_v1_writes};
use concur_sync::simulator::SimConfig;

fn user_writes(rig: &Rig) -> Vec<(u64, usize)> {
    user_v1_writes(rig)
        .into_iter()
        .map(|r| (r.time_ms, r.records.unwrap_or(0)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_load_arrives_exactly_in_bounded_batches_under_the_rate_limit() {
    let rig = Rig::with(SimConfig::default(), "requests_per_second = 2").await;
    rig.write_hr(&rows(0..1200));
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));

    let users = sim_users(&rig);
    assert_eq!(users.len(), 1200);
    for i in [0usize, 1, 7, 11, 512, 1199] {
        let u = &users[&format!("E{i:05}")];
        let expect = super::harness::row(i, "");
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(expect.as_bytes());
        let rec = rdr.records().next().unwrap().unwrap();
        assert_eq!(u["LoginId"], rec[1]);
        assert_eq!(u["FirstName"], rec[3], "first name of E{i:05}");
        assert_eq!(u["LastName"], rec[5], "last name of E{i:05}");
        assert_eq!(u["OrgUnit1"], rec[11]);
        assert_eq!(u["Active"], "Y");
        assert_eq!(u["LedgerKey"], "DEFAULT");
        if i > 0 {
            assert_eq!(u["ExpenseApproverEmployeeID"], rec[12]);
        }
    }
    let writes = user_writes(&rig);
    assert_eq!(writes.iter().map(|w| w.1).sum::<usize>(), 1200);
    assert!(writes.iter().all(|w| w.1 <= 500), "{writes:?}");
    // Never above requests_per_second: any two requests are ≥ 1/rps apart on average over
    // each window of rps + 1 requests.
    let mut all: Vec<u64> = rig.sim.requests().iter().map(|r| r.arrived_ms).collect();
    all.sort_unstable();
    for w in all.windows(3) {
        assert!(w[2] - w[0] >= 950, "3 requests within one second: {all:?}");
    }
    let st = rig.status().await;
    assert_eq!(st["users"]["managed"], 1200);
    assert_eq!(st["users"]["active"], 1200);
    assert_eq!(st["last_cycle"]["outcome"], "success");
    assert_eq!(st["last_cycle"]["counts"]["create"], 1200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_file_sends_exactly_its_changes_and_an_unchanged_one_nothing() {
    let rig = Rig::start().await;
    rig.write_hr(&rows(0..60));
    assert_eq!(code(&rig.run(&["sync"]).await), 0);

    // Unchanged: no write at all.
    let before = user_writes(&rig).len();
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(
        user_writes(&rig).len(),
        before,
        "an unchanged file wrote to Concur"
    );

    // Day 2: 3 updated, 2 gone, 1 marked inactive, 2 new.
    let mut day2: Vec<String> = Vec::new();
    for i in 0..60 {
        match i {
            5..=7 => day2.push(row(i, " Jr")),
            50 | 51 => {}
            52 => day2.push(row(i, "").replace(",true,", ",false,")),
            _ => day2.push(row(i, "")),
        }
    }
    day2.push(row(60, ""));
    day2.push(row(61, ""));
    rig.write_hr(&day2);
    let plan = rig.run(&["plan", "--json"]).await;
    assert_eq!(code(&plan), 0, "{}", text(&plan));
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let mut got: Vec<(String, String)> = plan["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["operation"].as_str().unwrap().to_owned(),
                o["employee_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    got.sort();
    let want: Vec<(String, String)> = [
        ("create", 60),
        ("create", 61),
        ("deactivate", 50),
        ("deactivate", 51),
        ("deactivate", 52),
        ("update", 5),
        ("update", 6),
        ("update", 7),
    ]
    .iter()
    .map(|(k, i)| (k.to_string(), format!("E{i:05}")))
    .collect();
    assert_eq!(got, want);
    let upd = plan["operations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["employee_id"] == "E00005")
        .unwrap();
    assert_eq!(upd["changes"][0]["field"], "last_name");
    assert_eq!(
        upd["changes"][0]["new"].as_str().unwrap(),
        format!("{} Jr", upd["changes"][0]["old"].as_str().unwrap())
    );
    // plan wrote nothing
    assert_eq!(sim_users(&rig).len(), 60);

    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let users = sim_users(&rig);
    assert_eq!(users.len(), 62);
    assert!(users["E00005"]["LastName"].ends_with(" Jr"));
    for i in [50, 51, 52] {
        assert_eq!(users[&format!("E{i:05}")]["Active"], "N");
    }
    let st = rig.status().await;
    let c = &st["last_cycle"]["counts"];
    assert_eq!(
        (
            c["create"].as_u64(),
            c["update"].as_u64(),
            c["deactivate"].as_u64()
        ),
        (Some(2), Some(3), Some(3))
    );
    assert_eq!(st["users"]["inactive"], 3);

    // Day 3: one of the leavers is back.
    let mut day3 = day2.clone();
    day3.push(row(50, ""));
    rig.write_hr(&day3);
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(sim_users(&rig)["E00050"]["Active"], "Y");
    assert_eq!(rig.status().await["last_cycle"]["counts"]["reactivate"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rows_are_rejected_with_clear_messages_and_good_rows_still_go() {
    let rig = Rig::start().await;
    let mut r = rows(0..10);
    r.push("E00010,no-at-sign,x@example.com,Bad,,Login,true,US,USD,en_US,,R&D,E00000".into());
    r.push(format!(
        "E00011,ok11@example.com,,{},,Long,true,US,USD,en_US,,R&D,E00000",
        "N".repeat(40)
    ));
    r.push("E00012,ok12@example.com,,Bad,,Country,true,XX,USD,en_US,,R&D,E00000".into());
    r.push("E00003,dup@example.com,,Dup,,Licate,true,US,USD,en_US,,R&D,E00000".into());
    r.push("E00013,ok13@example.com,,No,,Boss,true,US,USD,en_US,,R&D,E99999".into());
    rig.write_hr(&r);
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 2, "{}", text(&out));
    let users = sim_users(&rig);
    let mut ids: Vec<&str> = users.keys().map(String::as_str).collect();
    ids.sort_unstable();
    // E00003 appears twice: both rows rejected, so it is not created.
    assert_eq!(
        ids,
        [
            "E00000", "E00001", "E00002", "E00004", "E00005", "E00006", "E00007", "E00008",
            "E00009"
        ]
    );

    let st = rig.status().await;
    let rejected = st["rejected"].as_array().unwrap();
    let find = |id: &str| {
        rejected
            .iter()
            .filter(|r| r["employee_id"] == id)
            .map(|r| {
                format!(
                    "{} {} {}",
                    r["source"].as_str().unwrap(),
                    r["field"].as_str().unwrap(),
                    r["message"].as_str().unwrap()
                )
            })
            .collect::<Vec<_>>()
    };
    assert!(
        find("E00010")[0].starts_with("hr.csv:12 login_id"),
        "{:?}",
        find("E00010")
    );
    assert!(find("E00010")[0].contains('@'));
    assert!(
        find("E00011")[0].contains("first_name") && find("E00011")[0].contains("32"),
        "{:?}",
        find("E00011")
    );
    assert!(
        find("E00012")[0].contains("country"),
        "{:?}",
        find("E00012")
    );
    let dups = find("E00003");
    assert_eq!(dups.len(), 2, "{dups:?}");
    assert!(
        dups.iter().any(|d| d.starts_with("hr.csv:5 "))
            && dups.iter().any(|d| d.starts_with("hr.csv:15 ")),
        "{dups:?}"
    );
    assert!(find("E00013")[0].contains("E99999"), "{:?}", find("E00013"));
    assert_eq!(st["last_cycle"]["outcome"], "partial");
    assert_eq!(st["last_cycle"]["counts"]["rejected"], 6);

    // A rejected row of a managed user does not deactivate that user.
    let mut r2 = rows(0..10);
    r2[4] = "E00004,broken,,Bad,,Row,true,US,USD,en_US,,R&D,E00000".into();
    rig.write_hr(&r2);
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert_eq!(sim_users(&rig)["E00004"]["Active"], "Y");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failing_record_beyond_the_first_ten_gets_its_own_message() {
    let rig = Rig::start().await;
    let all = rows(0..500);
    // Leaves of the reporting tree, so no report fails for want of its manager.
    let failing: Vec<String> = (0..60).map(|k| format!("E{:05}", 50 + k * 7)).collect();
    let refs: Vec<&str> = failing.iter().map(String::as_str).collect();
    rig.sim.reject(&refs, "Invalid Input: Custom3");
    rig.write_hr(&all);
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 2, "{}", text(&out));
    let st = rig.status().await;
    let failed = st["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 60, "{failed:?}");
    for f in failed {
        assert!(refs.contains(&f["employee_id"].as_str().unwrap()));
        assert_eq!(f["message"], "Invalid Input: Custom3");
        assert_eq!(f["operation"], "create");
    }
    assert_eq!(st["users"]["managed"], 440);
    assert_eq!(sim_users(&rig).len(), 440);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_source_fails_the_cycle_and_changes_nothing() {
    let rig = Rig::start().await;
    rig.write_hr(&rows(0..5));
    assert_eq!(code(&rig.run(&["sync"]).await), 0);
    std::fs::write(&rig.hr, b"employee_id,login_id\nE1,\xff\xfe@x\n").unwrap();
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("hr.csv"),
        "{}",
        text(&out)
    );
    std::fs::write(&rig.hr, "name,email\nx,y@z\n").unwrap();
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("employee_id"),
        "{}",
        text(&out)
    );
    let users = sim_users(&rig);
    assert_eq!(users.len(), 5);
    assert!(users.values().all(|u| u["Active"] == "Y"));
    assert_eq!(rig.status().await["last_cycle"]["outcome"], "failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_writer_is_refused_naming_the_holder() {
    let rig = Rig::start().await;
    rig.write_hr(&rows(0..3));
    let _held = concur_sync::store::lock::WriterLock::acquire(&rig.state_path()).unwrap();
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 1, "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_quirks_round_trip_exactly() {
    let rig = Rig::start().await;
    let body = format!(
        "\u{feff}{}\r\n{}\r\n\"E2\",\" spaced@example.com \",spaced@example.com,Spaced,,Name,TRUE,us,usd,en-us,,\"a, b\",\r\n\
         E3,multi@example.com,multi@example.com,\"Multi\r\nLine\",,Name,true,US,USD,en_US,,R&D,\r\n\r\n\r\n",
        super::harness::HEADER,
        [
            "E1",
            "o.brien@example.com",
            "o.brien@example.com",
            "Seán",
            "",
            "O'Brien & <Sons>",
            "yes",
            "IE",
            "EUR",
            "en_IE",
            "",
            "R&D",
            "",
        ]
        .iter()
        .map(|s| q(s))
        .collect::<Vec<_>>()
        .join(",")
    );
    std::fs::write(&rig.hr, body).unwrap();
    let out = rig.run(&["sync"]).await;
    let users = sim_users(&rig);
    assert_eq!(
        users["E1"]["LastName"],
        "O'Brien & <Sons>",
        "{}",
        text(&out)
    );
    assert_eq!(users["E1"]["FirstName"], "Seán");
    // Surrounding spaces trimmed, a quoted comma kept, spellings normalized.
    let e2 = &users["E2"];
    assert_eq!(e2["LoginId"], "spaced@example.com");
    assert_eq!(e2["OrgUnit1"], "a, b");
    assert_eq!(
        (
            &*e2["Active"],
            &*e2["CtryCode"],
            &*e2["CrnKey"],
            &*e2["LocaleName"]
        ),
        ("Y", "US", "USD", "en_US")
    );
    // A line break inside a name becomes a space: the user is provisioned, and a warning
    // names the line where the row starts and the field.
    assert_eq!(users["E3"]["FirstName"], "Multi Line");
    let st = rig.status().await;
    assert_eq!(st["rejected"].as_array().unwrap().len(), 0, "{st}");
    let warnings = st["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{st}");
    assert_eq!(warnings[0]["source"], "hr.csv:4", "{st}");
    assert_eq!(warnings[0]["field"], "first_name", "{st}");
    assert_eq!(code(&out), 0, "{}", text(&out));
}

async fn demo(args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_concur-sync"))
        .arg("demo")
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_to_completion() {
    let out = demo(&[]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("Day 2"), "{s}");
    assert!(s.contains("deactivate"), "{s}");
    // The tour provisions through UPS v4: Bulk requests on both days, every provision settled.
    let bulks: Vec<u64> = s
        .lines()
        .filter_map(|l| l.strip_prefix("-- UPS v4: "))
        .map(|l| l.split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(bulks.len(), 2, "{s}");
    assert!(bulks.iter().all(|b| *b > 0), "{s}");
    let provisions: Vec<&str> = s.lines().filter(|l| l.contains(" provision ")).collect();
    assert!(!provisions.is_empty(), "{s}");
    assert!(provisions.iter().all(|l| l.contains("(settled: ")), "{s}");
    assert!(s.contains("\nprovisions in flight: 0\n"), "{s}");
    // Every user of both days ends up in the simulator's v4 store, the two leavers inactive.
    let users: Vec<Vec<&str>> = s
        .split("UPS v4 /Users)\n")
        .nth(1)
        .unwrap_or_else(|| panic!("{s}"))
        .lines()
        .take_while(|l| l.starts_with("  "))
        .map(|l| l.split_whitespace().collect())
        .collect();
    let day2 = include_str!("../../config/examples/hr-day2.csv");
    let expected: Vec<(&str, &str)> = day2
        .lines()
        .skip(1)
        .map(|l| {
            let mut f = l.split(',');
            (f.next().unwrap(), f.next().unwrap())
        })
        .chain([("1003", "bjorn.sorensen@example.com")])
        .collect();
    assert_eq!(users.len(), expected.len(), "{s}");
    for (id, login) in expected {
        let u = users
            .iter()
            .find(|u| u[0] == id)
            .unwrap_or_else(|| panic!("{id} not in the v4 store: {s}"));
        assert_eq!(u[1], login, "{s}");
        let state = if matches!(id, "1003" | "1006") {
            "inactive"
        } else {
            "active"
        };
        assert_eq!(u[2], state, "{s}");
        assert_eq!(u[3].len(), 36, "{id} has no UUID: {s}");
    }

    // `--api v1`: the User v1 tour, no UPS v4.
    let out = demo(&["--api", "v1"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("(User v1)"), "{s}");
    assert!(s.contains("Day 2"), "{s}");
    assert!(s.contains("deactivate"), "{s}");
    assert!(
        s.contains("-- Concur (simulator) now holds 12 users, 10 active"),
        "{s}"
    );
    assert!(!s.contains("UPS v4"), "{s}");
}
