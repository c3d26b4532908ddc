//! Rows taken as unchanged without being planned in full (row stamps), the snapshot index file
//! beside the state database, and the CSV read in blocks on every core: none of it may change
//! what a plan says. Each scenario runs the real binary against the simulator.

use super::harness::{HEADER, Rig, code, row, rows, sim_users, text};

/// The `plan: …` summary line of a `plan` run.
async fn plan_summary(rig: &Rig) -> (String, String) {
    let out = rig.run(&["plan"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = stdout
        .lines()
        .rfind(|l| l.starts_with("plan: "))
        .unwrap_or_default()
        .to_owned();
    (line, stdout)
}

fn nothing_to_do(n: usize) -> String {
    format!(
        "plan: 0 create, 0 update, 0 reactivate, 0 deactivate, 0 password, {n} unchanged, 0 rejected ({n} source records)"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_concur_refused_is_planned_again_from_an_unchanged_file() {
    let rig = Rig::start().await;
    // E00025 and E00027 are leaves of the reporting tree of 30 users.
    rig.sim.reject(&["E00025"], "Invalid Input: Custom3");
    rig.write_hr(&rows(0..30));
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 2, "{}", text(&out));
    let (summary, plan) = plan_summary(&rig).await;
    assert_eq!(
        summary,
        "plan: 1 create, 0 update, 0 reactivate, 0 deactivate, 0 password, 29 unchanged, 0 rejected (30 source records)",
        "{plan}"
    );
    assert!(plan.contains("create     E00025"), "{plan}");

    // An update Concur refuses is planned again, too, while the file stays as it is.
    let mut changed = rows(0..30);
    changed[27] = row(27, " Jr");
    rig.write_hr(&changed);
    rig.sim.reject(&["E00027"], "Invalid Input: LastName");
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 2, "{}", text(&out));
    let (summary, plan) = plan_summary(&rig).await;
    assert!(summary.starts_with("plan: 1 create, 1 update,"), "{plan}");
    assert!(plan.contains("update     E00027"), "{plan}");

    // Once Concur takes them, the same file plans nothing.
    assert_eq!(
        rig.sim_control("DELETE", "/_sim/reject", serde_json::Value::Null)
            .await,
        204
    );
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(plan_summary(&rig).await.0, nothing_to_do(30));
    assert!(sim_users(&rig)["E00027"]["LastName"].ends_with(" Jr"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_hidden_among_unchanged_rows_are_still_rejected() {
    let rig = Rig::start().await;
    rig.write_hr(&rows(0..30));
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(plan_summary(&rig).await.0, nothing_to_do(30));

    // Row 7 again, byte for byte, and a new user with E00008's login (any case).
    let mut dup = rows(0..30);
    dup.push(row(7, ""));
    dup.push(row(100, "").replace("user100@example.com", "USER8@example.com"));
    rig.write_hr(&dup);
    let (summary, plan) = plan_summary(&rig).await;
    assert!(
        summary.ends_with("4 rejected (32 source records)"),
        "{plan}"
    );
    assert!(
        plan.contains("hr.csv:9: employee E00007: field employee_id: employee_id \"E00007\" appears again at hr.csv:32")
            && plan.contains("hr.csv:32: employee E00007: field employee_id: employee_id \"E00007\" appears again at hr.csv:9"),
        "{plan}"
    );
    assert!(
        plan.contains("hr.csv:10") && plan.contains("is also used by employee E00100 at hr.csv:33"),
        "{plan}"
    );
    assert!(
        plan.contains("is also used by employee E00008 at hr.csv:10"),
        "{plan}"
    );
    // Nobody is created, and neither rejected user is deactivated.
    assert!(
        summary.starts_with("plan: 0 create, 0 update, 0 reactivate, 0 deactivate"),
        "{plan}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_mapping_or_default_replans_every_row_it_changes() {
    let rig = Rig::start().await;
    rig.write_hr(&rows(0..20));
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(plan_summary(&rig).await.0, nothing_to_do(20));

    // Every row leaves ledger empty: a new default changes all of them.
    let config = std::fs::read_to_string(&rig.config).unwrap();
    std::fs::write(
        &rig.config,
        config.replace("ledger = \"DEFAULT\"", "ledger = \"EMEA\""),
    )
    .unwrap();
    let (summary, plan) = plan_summary(&rig).await;
    assert!(summary.starts_with("plan: 0 create, 20 update,"), "{plan}");
    std::fs::write(&rig.config, &config).unwrap();
    assert_eq!(plan_summary(&rig).await.0, nothing_to_do(20));

    // The file's org_unit1 column mapped to org_unit2 instead.
    std::fs::write(
        &rig.config,
        format!("{config}\n[source.csv.columns]\norg_unit1 = \"org_unit2\"\n"),
    )
    .unwrap();
    let (summary, plan) = plan_summary(&rig).await;
    assert!(summary.starts_with("plan: 0 create, 20 update,"), "{plan}");
    assert!(plan.contains("org_unit2"), "{plan}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_corrupt_or_stale_index_file_is_rebuilt_and_the_plan_is_right() {
    let rig = Rig::start().await;
    rig.write_hr(&rows(0..20));
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let index = rig.dir.path().join("state.db.index");
    let old = std::fs::read(&index).expect("the sync leaves the index file");

    let mut changed = rows(0..20);
    changed[5] = row(5, " Jr");
    rig.write_hr(&changed);
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(plan_summary(&rig).await.0, nothing_to_do(20));

    // A copy from before that sync: it would plan E00005's update again.
    std::fs::write(&index, &old).unwrap();
    assert_eq!(plan_summary(&rig).await.0, nothing_to_do(20));
    assert_ne!(std::fs::read(&index).unwrap(), old, "rebuilt in place");

    // Flipped bytes in every user's record.
    let mut bad = std::fs::read(&index).unwrap();
    for b in bad.iter_mut().skip(40).step_by(17) {
        *b ^= 0x5a;
    }
    std::fs::write(&index, &bad).unwrap();
    assert_eq!(plan_summary(&rig).await.0, nothing_to_do(20));

    std::fs::remove_file(&index).unwrap();
    assert_eq!(plan_summary(&rig).await.0, nothing_to_do(20));
    assert!(index.exists());
    std::fs::write(&index, b"not an index").unwrap();
    let mut gone = changed.clone();
    gone.truncate(19);
    rig.write_hr(&gone);
    let (summary, plan) = plan_summary(&rig).await;
    assert!(
        summary.starts_with("plan: 0 create, 0 update, 0 reactivate, 1 deactivate"),
        "{plan}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quoted_line_breaks_across_read_blocks_keep_every_line_number() {
    let rig = Rig::start().await;
    // Over 2 MiB, the reader's block: a quoted multi-line last name every 7th row (collapsed,
    // accepted), one far too long exactly across the first block's end (rejected), and rows
    // with a bad country after it (leaves of the reporting tree, so that no report is rejected
    // for its manager). Every rejection must name its row's first line.
    let target = HEADER.len() + 1 + (2 << 20);
    let mut file = format!("{HEADER}\n");
    let mut line = 2u64;
    let mut bad = Vec::new();
    let mut across = false;
    let mut multi = 0usize;
    let mut i = 0usize;
    while file.len() < (2 << 20) + (400 << 10) {
        let r = if !across && file.len() + 400 >= target && file.len() + 120 <= target {
            across = true;
            bad.push(line);
            row(i, &format!("{}\nfloor 2", "y".repeat(600)))
        } else if i.is_multiple_of(7) {
            multi += 1;
            row(i, "\nfloor 2")
        } else if i % 1001 == 500 && i > 2500 {
            bad.push(line);
            row(i, "").replace(",true,US,USD,", ",true,XX,USD,")
        } else {
            row(i, "")
        };
        line += 1 + r.matches('\n').count() as u64;
        file.push_str(&r);
        file.push('\n');
        i += 1;
    }
    assert!(across && bad.len() >= 4, "{bad:?}");
    std::fs::write(&rig.hr, &file).unwrap();
    let out = rig.run(&["plan", "--json"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut rejected: Vec<String> = plan["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["source"].as_str().unwrap().to_owned())
        .collect();
    rejected.dedup();
    let want: Vec<String> = bad.iter().map(|l| format!("hr.csv:{l}")).collect();
    let extra: Vec<&String> = rejected.iter().filter(|r| !want.contains(r)).collect();
    let missing: Vec<&String> = want.iter().filter(|r| !rejected.contains(r)).collect();
    assert_eq!((extra, missing), (vec![], vec![]));
    assert_eq!(rejected, want);
    let warned = plan["warnings"].as_array().unwrap();
    assert_eq!(warned.len(), multi, "every multi-line name accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cycle_held_for_approval_leaves_a_saved_plan_valid_while_rows_are_restamped() {
    let rig = Rig::start().await;
    let config = std::fs::read_to_string(&rig.config).unwrap();
    std::fs::write(
        &rig.config,
        format!("{config}[sync]\nrequire_approved_plan = true\n"),
    )
    .unwrap();
    let plan = rig.dir.path().join("plan.json");
    let plan_arg = plan.to_str().unwrap();
    let save_and_apply = async |expected: i32| {
        let out = rig.run(&["plan", "--out", plan_arg]).await;
        assert_eq!(code(&out), 0, "{}", text(&out));
        // The service's next cycle comes first: it plans, holds and sends nothing.
        let out = rig.run(&["sync"]).await;
        assert_eq!(code(&out), 3, "{}", text(&out));
        let out = rig.run(&["apply", plan_arg]).await;
        assert_eq!(code(&out), expected, "{}", text(&out));
    };
    rig.write_hr(&rows(0..10));
    save_and_apply(0).await;
    assert_eq!(sim_users(&rig).len(), 10);

    // E00004's row in other bytes of the same meaning: the held cycle compares it in full and
    // finds it unchanged, yet the plan saved before it still applies.
    let mut changed = rows(0..10);
    changed[3] = changed[3].replacen(",Ops,", ",Treasury,", 1);
    changed[4] = changed[4].replacen("E00004", "\"E00004\"", 1);
    rig.write_hr(&changed);
    save_and_apply(0).await;
    assert_eq!(sim_users(&rig)["E00003"]["OrgUnit1"], "Treasury");
    assert_eq!(plan_summary(&rig).await.0, nothing_to_do(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baseline_records_what_a_first_plan_would_create_and_nothing_is_sent() {
    let rig = Rig::start().await;
    // E00013 twice (both rows rejected), so its reports E00131..E00139 have no manager; a
    // row with a bad country; one user inactive (not recorded).
    let mut hr = rows(0..150);
    hr.push(row(13, " Jr"));
    hr[7] = hr[7].replace(",true,US,USD,", ",true,XX,USD,");
    hr[140] = hr[140].replace(",true,US,USD,", ",false,US,USD,");
    rig.write_hr(&hr);
    let (plan_line, plan) = plan_summary(&rig).await;
    let count = |what: &str| {
        plan_line
            .trim_start_matches("plan: ")
            .split(", ")
            .find_map(|p| p.split_once(' ').filter(|(_, w)| w.starts_with(what)))
            .map(|(n, _)| n.parse::<usize>().unwrap())
            .unwrap_or_else(|| panic!("{plan}"))
    };
    // 150 ids, less E00013, E00007 and E00140, less the reports of E00013 and E00007.
    assert_eq!((count("create"), count("rejected")), (128, 22), "{plan}");

    let out = rig.run(&["baseline"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "baseline: 128 users recorded as present in Concur; 22 rejected"
    );
    assert!(sim_users(&rig).is_empty());
    let (summary, plan) = plan_summary(&rig).await;
    assert_eq!(
        summary,
        "plan: 0 create, 0 update, 0 reactivate, 0 deactivate, 0 password, 128 unchanged, 22 rejected (151 source records)",
        "{plan}"
    );
    // What was recorded is each row's own record: one changed row is one update.
    hr[20] = row(20, " Jr");
    rig.write_hr(&hr);
    let (summary, plan) = plan_summary(&rig).await;
    assert!(summary.starts_with("plan: 0 create, 1 update, "), "{plan}");
    assert!(plan.contains("update     E00020"), "{plan}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_baseline_killed_while_it_records_leaves_nothing_recorded_and_the_next_one_records_everyone()
 {
    if std::env::var_os("CONCUR_SYNC_SLOW_TESTS").is_none() {
        eprintln!("skipped: set CONCUR_SYNC_SLOW_TESTS=1 to run a 120,000-user baseline");
        return;
    }
    // More users than SQLite's page cache holds, so that pages reach the database file before
    // the commit: the kill finds some of them there.
    const N: usize = 120_000;
    let rig = Rig::start().await;
    rig.write_hr(&rows(0..N));
    let state = rig.state_path();
    let beside = |suffix: &str| concur_sync::store::beside(&state, suffix);

    let mut child = super::harness::spawn_bin(&rig.config, &["baseline"], &[]);
    let started = std::time::Instant::now();
    loop {
        // An empty state database is a few hundred kilobytes.
        let grown = std::fs::metadata(&state).map_or(0, |m| m.len()) > 8 << 20;
        if grown && beside("-journal").exists() {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the baseline ended before users reached the database file"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(300));
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    child.start_kill().unwrap();
    assert_eq!(
        child.wait().await.unwrap().code(),
        None,
        "killed by a signal"
    );
    assert!(beside("-journal").exists());

    // status reads without writing: it cannot roll the cut-off write back, and says so.
    let out = rig.run(&["status"]).await;
    assert_eq!(code(&out), 1, "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("a write to it was cut off"), "{err}");
    assert!(err.contains("state.db-journal"), "{err}");

    // The next writing command rolls it back: the snapshot is empty, so baseline streams again.
    let out = rig.run(&["baseline"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("baseline: {N} users recorded as present in Concur; 0 rejected")
    );
    assert!(!beside("-journal").exists());
    let st = rig.status().await;
    assert_eq!(st["users"]["managed"], N, "{st}");
    assert_eq!(plan_summary(&rig).await.0, nothing_to_do(N));
    assert!(sim_users(&rig).is_empty());
    let conn = rusqlite::Connection::open(&state).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal", "the database is back on its log");
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}
