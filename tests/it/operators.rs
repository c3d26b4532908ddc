//! What operators use to see and steer single records, through UPS v4 (the default target):
//! `explain` (one user's story), the retry queue (`failed`, `skip`, `retry`) and saved plans
//! (`plan --out`, `apply`, `sync.require_approved_plan`). The real binary against the
//! simulator over HTTP.

use concur_sync::simulator::SimConfig;
use serde_json::Value;

use crate::harness::{HEADER, Rig, code, csv_fields, q, row, text};

/// A v4 rig with quick polls; `sync` is appended as the `[sync]` table.
async fn v4_rig(sync: &str) -> Rig {
    let rig = Rig::with(SimConfig::default(), "").await;
    let config = std::fs::read_to_string(&rig.config).unwrap().replacen(
        "api = \"v1\"\n",
        &format!(
            "api = \"v4\"\ncompany_uuid = \"{}\"\nprovision_poll_seconds = 0.05\n",
            rig.sim.company_uuid()
        ),
        1,
    );
    std::fs::write(&rig.config, format!("{config}[sync]\n{sync}\n")).unwrap();
    rig
}

/// Rows `0..n` (no manager approves anything: every row is its own root).
fn lines(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let mut f = csv_fields(&row(i, ""));
            let last = f.len() - 1;
            f[last] = String::new();
            join(&f)
        })
        .collect()
}

fn write(rig: &Rig, rows: &[String]) {
    rig.write_csv(HEADER, rows);
}

/// Replaces field `at` (a [`HEADER`] column) of row `i`.
fn set(rows: &mut [String], i: usize, at: usize, value: &str) {
    let mut f = csv_fields(&rows[i]);
    f[at] = value.to_owned();
    rows[i] = join(&f);
}

fn join(fields: &[String]) -> String {
    fields.iter().map(|v| q(v)).collect::<Vec<_>>().join(",")
}

const LOGIN: usize = 1;
const EMAIL: usize = 2;
const ORG_UNIT1: usize = 11;
const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const SPEND: &str = "urn:ietf:params:scim:schemas:extension:spend:2.0:User";

/// The operations the simulator received in Bulk requests so far.
fn bulk_operations(rig: &Rig) -> usize {
    rig.sim
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.to_ascii_lowercase().contains("/v4/bulk"))
        .map(|r| r.records.unwrap_or(0))
        .sum()
}

async fn json(rig: &Rig, args: &[&str]) -> Value {
    let out = rig.run(args).await;
    assert_eq!(code(&out), 0, "{args:?}: {}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn sync(rig: &Rig, expected: i32) {
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), expected, "{}", text(&out));
}

#[tokio::test]
async fn explain_tells_the_story_of_a_user_created_renamed_failed_once_and_repaired() {
    let rig = v4_rig("max_identity_changes = \"100%\"").await;
    let mut rows = lines(4);
    write(&rig, &rows);
    sync(&rig, 0).await;
    // Renamed (a new login and e-mail) and moved; Concur refuses the spend part this time.
    set(&mut rows, 2, LOGIN, "anna.berg@example.com");
    set(&mut rows, 2, EMAIL, "anna.berg@example.com");
    set(&mut rows, 2, ORG_UNIT1, "Treasury");
    write(&rig, &rows);
    rig.sim.fail_spend(&["E00002"], 1000);
    sync(&rig, 2).await;
    rig.sim.clear_v4_faults();
    sync(&rig, 0).await;

    let story = json(&rig, &["explain", "E00002", "--json"]).await;
    assert_eq!(story["employee_id"], "E00002", "{story}");
    assert_eq!(story["snapshot"]["login_id"], "anna.berg@example.com");
    assert_eq!(story["snapshot"]["fields"]["org_unit1"], "Treasury");
    assert!(story["snapshot"]["concur_uuid"].is_string(), "{story}");
    assert_eq!(story["failures"], serde_json::json!([]), "{story}");
    let ops: Vec<&Value> = story["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "operation")
        .collect();
    // Newest first: the repair of the third cycle, the failed spend part and the rename of the
    // second, the create of the first.
    let cycles: Vec<i64> = ops
        .iter()
        .map(|e| e["cycle_id"].as_i64().unwrap())
        .collect();
    assert!(cycles.windows(2).all(|w| w[0] >= w[1]), "{cycles:?}");
    let (repair, create) = (ops[0], ops[ops.len() - 1]);
    assert_eq!(repair["state"], "done", "{repair}");
    assert_eq!(repair["operation"], "update");
    assert_eq!(create["operation"], "create", "{create}");
    assert_eq!(create["state"], "done");
    assert!(
        create["origin"].as_str().unwrap().ends_with("hr.csv:4"),
        "{create}"
    );
    assert!(
        create["provision_id"].is_string() && create["bulk_id"].is_string(),
        "{create}"
    );
    let second = ops
        .iter()
        .filter(|e| e["cycle_id"] == ops[1]["cycle_id"])
        .collect::<Vec<_>>();
    let rename = second
        .iter()
        .find(|e| e["changes"].to_string().contains("login_id"))
        .unwrap_or_else(|| panic!("{story}"));
    assert!(
        rename["changes"].to_string().contains("user2@example.com")
            && rename["changes"]
                .to_string()
                .contains("anna.berg@example.com"),
        "{rename}"
    );
    let failed = second
        .iter()
        .find(|e| e["state"] == "failed")
        .unwrap_or_else(|| panic!("{story}"));
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .contains("SERVICE_UNAVAILABLE"),
        "{failed}"
    );
    assert_eq!(second[0]["cycle_outcome"], "partial");

    // By login, as text.
    let out = rig.run(&["explain", "Anna.Berg@example.com"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let t = String::from_utf8_lossy(&out.stdout);
    assert!(
        t.starts_with("employee E00002 (login anna.berg@example.com)"),
        "{t}"
    );
    assert!(
        t.contains("login_id: \"user2@example.com\" → \"anna.berg@example.com\""),
        "{t}"
    );
    assert!(t.contains("Concur: "), "{t}");

    let out = rig.run(&["explain", "E99999"]).await;
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(out.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no user E99999"),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn explain_shows_each_request_of_a_create_sent_again_with_its_provision() {
    let rig = v4_rig("").await;
    write(&rig, &lines(2));
    sync(&rig, 0).await;
    // E00002 exists in Concur though the state database does not know it: its create is
    // refused as a conflict, looked up, adopted and sent again in another Bulk.
    let f = csv_fields(&lines(3)[2]);
    rig.sim
        .seed_v4_users(vec![serde_json::json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENT, SPEND],
            "userName": f[LOGIN],
            "active": true,
            "name": {"givenName": f[3], "familyName": "Old"},
            "emails": [{"value": f[EMAIL], "type": "work"}],
            ENT: {"employeeNumber": f[0], "companyId": rig.sim.company_uuid()},
            SPEND: {"country": "US", "locale": "en-US", "reimbursementCurrency": "USD", "ledgerCode": "DEFAULT"},
        })])
        .unwrap();
    write(&rig, &lines(3));
    sync(&rig, 0).await;

    let story = json(&rig, &["explain", "E00002", "--json"]).await;
    let create = &story["history"][0];
    assert_eq!(create["operation"], "create", "{story}");
    assert_eq!(create["state"], "done", "{story}");
    let requests = create["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 2, "{story}");
    assert_eq!(requests[0]["attempt"], 2, "{story}");
    assert_eq!(requests[0]["state"], "done", "{story}");
    assert_eq!(requests[1]["attempt"], 1, "{story}");
    // The first request's answer is Concur's refusal, kept though the entry went on.
    assert_eq!(requests[1]["state"], "failed", "{story}");
    let refusal = requests[1]["message"].as_str().unwrap();
    assert!(refusal.contains("adopted and patched"), "{refusal}");
    let provisions: Vec<&str> = requests
        .iter()
        .map(|r| r["provision_id"].as_str().unwrap())
        .collect();
    assert_ne!(provisions[0], provisions[1], "{story}");
    // Each provision is one Concur received.
    let known: Vec<String> = rig
        .sim
        .provisions()
        .iter()
        .map(|p| p["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    for p in &provisions {
        assert!(known.iter().any(|k| k == p), "{p} not in {known:?}");
    }
    let out = rig.run(&["explain", "E00002"]).await;
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!(
            "request 1 sent {}",
            requests[1]["sent_at"].as_str().unwrap()
        )) && said.contains(&format!(
            "in provision {} bulkId {}: refused, then sent again: ",
            provisions[1],
            requests[1]["bulk_id"].as_str().unwrap()
        )),
        "{said}"
    );
    assert!(
        said.contains(&format!("in provision {}", provisions[0])),
        "{said}"
    );
}

#[tokio::test]
async fn retry_and_skip_change_what_status_and_the_next_cycle_do() {
    let rig = v4_rig("").await;
    let mut rows = lines(3);
    write(&rig, &rows);
    rig.sim.fail_spend(&["E00001"], 1000);
    sync(&rig, 2).await;
    let queue = json(&rig, &["failed", "--json"]).await;
    assert_eq!(queue["failed"][0]["employee_id"], "E00001", "{queue}");
    assert!(
        queue["failed"][0]["origin"]
            .as_str()
            .unwrap()
            .ends_with("hr.csv:3")
    );

    // Parked: no longer failed, and the next cycle leaves it alone.
    let out = rig
        .run(&["skip", "E00001", "--reason", "HR fixes the cost centre"])
        .await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let status = rig.status().await;
    assert_eq!(status["failed"], serde_json::json!([]), "{status}");
    assert_eq!(status["skipped"][0]["employee_id"], "E00001", "{status}");
    let out = rig.run(&["status"]).await;
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("skipped (1"),
        "{}",
        text(&out)
    );
    // A preview leaves it out as the cycle does, and counts it as skipped.
    let plan = json(&rig, &["plan", "--json"]).await;
    assert_eq!(plan["summary"]["skipped"], 1, "{plan}");
    assert_eq!(plan["operations"], serde_json::json!([]), "{plan}");
    let saved = rig.dir.path().join("parked-plan.json");
    let out = rig.run(&["plan", "--out", saved.to_str().unwrap()]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains(", 1 skipped (parked)"), "{printed}");
    assert!(
        printed.contains("(0 operations; 1 skipped: parked;"),
        "{printed}"
    );
    let file = std::fs::read_to_string(&saved).unwrap();
    assert!(!file.contains("E00001"), "{file}");
    let sent = bulk_operations(&rig);
    sync(&rig, 0).await;
    assert_eq!(bulk_operations(&rig), sent, "a parked record is not sent");

    // Retried: failed again, and sent again by the next cycle though the source is the same.
    let out = rig.run(&["retry", "E00001"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(rig.status().await["failed"][0]["employee_id"], "E00001");
    sync(&rig, 2).await;
    assert!(bulk_operations(&rig) > sent);

    // Parked again until the source row changes: then planned as usual.
    let out = rig.run(&["skip", "E00001", "--reason", "again"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    rig.sim.clear_v4_faults();
    set(&mut rows, 1, ORG_UNIT1, "Treasury");
    write(&rig, &rows);
    let plan = json(&rig, &["plan", "--json"]).await;
    assert!(plan["summary"].get("skipped").is_none(), "{plan}");
    assert_eq!(plan["operations"][0]["employee_id"], "E00001", "{plan}");
    sync(&rig, 0).await;
    let status = rig.status().await;
    assert!(status.get("skipped").is_none(), "{status}");
    assert_eq!(status["failed"], serde_json::json!([]));
    assert_eq!(
        rig.sim.v4_user("E00001").unwrap()["name"]["familyName"],
        "García"
    );
    assert!(
        rig.sim
            .v4_user("E00001")
            .unwrap()
            .to_string()
            .contains("Treasury")
    );

    // Every step is in the user's story, with who did it.
    let story = json(&rig, &["explain", "E00001", "--json"]).await;
    let audit: Vec<&Value> = story["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "audit")
        .collect();
    let actions: Vec<&str> = audit
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["skip-ended", "skip", "retry", "skip"], "{story}");
    assert!(audit[3]["by"].as_str().unwrap().contains('@'), "{story}");
    assert!(
        audit[3]["detail"].as_str().unwrap().contains("HR fixes"),
        "{story}"
    );

    let out = rig.run(&["skip", "E00000", "--reason", "x"]).await;
    assert_eq!(code(&out), 1, "{}", text(&out));
}

#[tokio::test]
async fn a_saved_plan_is_applied_exactly_and_refused_once_the_source_changed() {
    let rig = v4_rig("require_approved_plan = true").await;
    let mut rows = lines(4);
    write(&rig, &rows);
    // Nothing is written except through `apply`.
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 3, "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("nothing sent"),
        "{}",
        text(&out)
    );
    assert_eq!(bulk_operations(&rig), 0);
    assert!(rig.sim.v4_users().is_empty());

    let plan = rig.dir.path().join("plan.json");
    let plan_arg = plan.to_str().unwrap();
    let out = rig.run(&["plan", "--out", plan_arg]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&plan).unwrap()).unwrap();
    assert_eq!(saved["operations"].as_array().unwrap().len(), 4, "{saved}");
    assert!(saved["source_digest"].is_string() && saved["snapshot_generation"].is_i64());
    let out = rig.run(&["apply", plan_arg]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(bulk_operations(&rig), 4);
    assert_eq!(rig.sim.v4_users().len(), 4);

    // A plan of two changes; then one more row changes in the source: refused, nothing sent.
    set(&mut rows, 1, ORG_UNIT1, "Treasury");
    set(&mut rows, 3, ORG_UNIT1, "Audit");
    write(&rig, &rows);
    let out = rig.run(&["plan", "--out", plan_arg]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    set(&mut rows, 2, ORG_UNIT1, "Legal");
    write(&rig, &rows);
    let out = rig.run(&["apply", plan_arg]).await;
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("source changed"),
        "{}",
        text(&out)
    );
    assert_eq!(bulk_operations(&rig), 4);

    // Back to the source it was saved from: exactly its two operations go.
    set(
        &mut rows,
        2,
        ORG_UNIT1,
        &csv_fields(&lines(3)[2])[ORG_UNIT1],
    );
    write(&rig, &rows);
    let out = rig.run(&["apply", plan_arg]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(bulk_operations(&rig), 6);
    assert!(
        rig.sim
            .v4_user("E00001")
            .unwrap()
            .to_string()
            .contains("Treasury")
    );
    // Applied once, the snapshot moved on: the same file is refused.
    let out = rig.run(&["apply", plan_arg]).await;
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("snapshot changed"),
        "{}",
        text(&out)
    );
    assert_eq!(bulk_operations(&rig), 6);
}

#[tokio::test]
async fn a_plan_applied_while_the_service_runs_is_applied_by_the_service() {
    let admin = format!("127.0.0.1:{}", crate::harness::free_port());
    let rig = v4_rig(&format!(
        "require_approved_plan = true\nschedule = \"0 0 0 1 1 *\"\n[admin]\nlisten = \"{admin}\"\n[service]\npoll_seconds = 0.2"
    ))
    .await;
    write(&rig, &lines(3));
    let plan = rig.dir.path().join("plan.json");
    let plan_arg = plan.to_str().unwrap();
    let out = rig.run(&["plan", "--out", plan_arg]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let log = rig.dir.path().join("daemon.log");
    let _daemon = crate::harness::spawn_daemon(&rig.config, &log);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let healthz = format!("http://{admin}/healthz");
    while !reqwest::get(&healthz)
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the service did not start"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let out = rig.run(&["apply", plan_arg]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("running service applies it"),
        "{}",
        text(&out)
    );
    while rig.sim.v4_users().len() < 3 {
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(tokio::time::Instant::now() < deadline, "not applied: {log}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(bulk_operations(&rig), 3);
}
