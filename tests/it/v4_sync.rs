//! Sync through the User Provisioning Service v4 (`concur.api = "v4"`): the real binary
//! against the simulator over HTTP, with its asynchronous provisions.

use std::time::Duration;

use concur_sync::simulator::{Faults, SimConfig, V4Settings};
use serde_json::Value;

use crate::harness::{HEADER, Rig, code, csv_fields, row, spawn_bin, text};

const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const SPEND: &str = "urn:ietf:params:scim:schemas:extension:spend:2.0:User";
const APPROVER: &str = "urn:ietf:params:scim:schemas:extension:spend:2.0:Approver";

/// A rig on v4 with the simulator's company UUID and quick polls; `extra` goes to `[concur]`.
async fn v4_rig(sim: SimConfig, extra: &str) -> Rig {
    let rig = Rig::with(sim, "").await;
    let text = std::fs::read_to_string(&rig.config).unwrap();
    let text = text.replacen(
        "api = \"v1\"\n",
        &format!(
            "api = \"v4\"\ncompany_uuid = \"{}\"\nprovision_poll_seconds = 0.05\n{extra}\n",
            rig.sim.company_uuid()
        ),
        1,
    );
    let text = if extra.contains("requests_per_second") {
        text.replacen("requests_per_second = 0\n", "", 1)
    } else {
        text
    };
    std::fs::write(&rig.config, text).unwrap();
    rig
}

/// Rows `range` of the generated population; a manager (someone with reports in
/// `0..population`) is an expense approver, as Concur requires of a report's approver.
fn rows(range: std::ops::Range<usize>, population: usize) -> Vec<String> {
    range
        .map(|i| {
            let approver = if i * 10 + 1 < population { "Y" } else { "N" };
            format!("{},{approver}", row(i, ""))
        })
        .collect()
}

fn write(rig: &Rig, lines: &[String]) {
    rig.write_csv(&format!("{HEADER},expense_approver"), lines);
}

/// Asserts the simulator's v4 user of each row holds what the row says.
fn assert_arrived(rig: &Rig, lines: &[String]) {
    for line in lines {
        let f = csv_fields(line);
        let u = rig
            .sim
            .v4_user(&f[0])
            .unwrap_or_else(|| panic!("{} missing", f[0]));
        assert_eq!(u["userName"], f[1].as_str(), "{u}");
        assert_eq!(u["emails"][0]["value"], f[2].as_str(), "{u}");
        assert_eq!(u["name"]["givenName"], f[3].as_str(), "{u}");
        assert_eq!(u["name"]["familyName"], f[5].as_str(), "{u}");
        assert_eq!(u["active"], f[6] == "true", "{u}");
        assert_eq!(u[ENT]["employeeNumber"], f[0].as_str(), "{u}");
        let custom = &u[SPEND]["customData"];
        assert!(
            custom
                .as_array()
                .is_some_and(|c| c.iter().any(|e| e["value"] == f[11].as_str())),
            "{u}"
        );
        if !f[12].is_empty() {
            let approver = u[APPROVER]["report"][0].to_string();
            let manager = rig.sim.v4_user(&f[12]).unwrap();
            assert!(
                approver.contains(manager["id"].as_str().unwrap()) || approver.contains(&f[12]),
                "{u}"
            );
        }
    }
}

fn bulks(rig: &Rig) -> Vec<concur_sync::simulator::RequestRecord> {
    rig.sim
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.to_ascii_lowercase().contains("/v4/bulk"))
        .collect()
}

fn writes(rig: &Rig) -> usize {
    rig.sim
        .requests()
        .into_iter()
        .filter(|r| matches!(r.method.as_str(), "POST" | "PATCH" | "PUT" | "DELETE"))
        .filter(|r| !r.path.contains("oauth2") && !r.path.ends_with(".search"))
        .count()
}

#[tokio::test]
async fn a_large_file_arrives_exactly_within_the_bulk_limits_and_the_rate() {
    let rig = v4_rig(SimConfig::default(), "requests_per_second = 40").await;
    let lines = rows(0..1200, 1200);
    write(&rig, &lines);
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(rig.sim.v4_users().len(), 1200);
    assert_arrived(&rig, &lines);
    let sent = bulks(&rig);
    assert!(sent.len() >= 12, "{}", sent.len());
    for b in &sent {
        assert!(b.records.unwrap_or(0) <= 100, "{b:?}");
        assert!(b.body_bytes.unwrap_or(0) <= 400_000, "{b:?}");
    }
    // Never above 40 requests in any second (with a little slack for the token).
    let times: Vec<u64> = rig.sim.requests().iter().map(|r| r.arrived_ms).collect();
    for (i, t) in times.iter().enumerate() {
        let within = times[i..].iter().take_while(|u| **u < t + 1000).count();
        assert!(
            within <= 41,
            "{within} requests within a second from {t} ms"
        );
    }
    let polls = rig
        .sim
        .requests()
        .iter()
        .filter(|r| r.path.contains("/provisions/"))
        .count();
    assert!(
        polls as f64 <= sent.len() as f64 * 1.5,
        "{polls} polls for {} Bulk requests",
        sent.len()
    );
    assert!(rig.sim.deleted_users().is_empty());
    let status = rig.status().await;
    assert_eq!(status["provisions"]["in_flight"], 0, "{status}");
}

#[tokio::test]
async fn a_changed_file_sends_exactly_its_changes_and_an_unchanged_one_nothing() {
    let rig = v4_rig(SimConfig::default(), "").await;
    let mut config = std::fs::read_to_string(&rig.config).unwrap();
    config.push_str("[sync]\nmax_deactivations = \"100%\"\nmax_identity_changes = \"100%\"\n");
    std::fs::write(&rig.config, config).unwrap();
    let mut lines = rows(0..30, 32);
    write(&rig, &lines);
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_arrived(&rig, &lines);

    let before = writes(&rig);
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(writes(&rig), before, "an unchanged file sends no write");

    // 3 renamed last names, 2 leavers, 2 new users.
    for i in [5, 6, 7] {
        lines[i] = format!("{},N", row(i, " II"));
    }
    let leavers: Vec<String> = lines.drain(28..30).collect();
    lines.extend(rows(30..32, 32));
    write(&rig, &lines);
    let log_from = rig.sim.requests().len();
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_arrived(&rig, &lines);
    for l in &leavers {
        let u = rig.sim.v4_user(&csv_fields(l)[0]).unwrap();
        assert_eq!(u["active"], false, "{u}");
        assert!(u[ENT]["terminationDate"].is_string(), "{u}");
    }
    let new: Vec<_> = rig.sim.requests()[log_from..]
        .iter()
        .filter(|r| r.method != "GET" && !r.path.contains("oauth2"))
        .cloned()
        .collect();
    let ops: usize = new.iter().filter_map(|r| r.records).sum();
    assert_eq!(ops, 3 + 2 + 2, "{new:?}");

    // The leavers come back.
    lines.extend(leavers.iter().cloned());
    write(&rig, &lines);
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    for l in &leavers {
        let u = rig.sim.v4_user(&csv_fields(l)[0]).unwrap();
        assert_eq!(u["active"], true, "{u}");
        assert!(u[ENT]["terminationDate"].is_null(), "{u}");
    }
    assert_eq!(rig.sim.v4_users().len(), 32);
    assert!(rig.sim.deleted_users().is_empty());
}

fn submitted(rig: &Rig) -> i64 {
    let Ok(db) = rusqlite::Connection::open(rig.state_path()) else {
        return 0;
    };
    db.query_row(
        "SELECT count(*) FROM outbox WHERE state = 'submitted'",
        [],
        |r| r.get(0),
    )
    .unwrap_or(0)
}

/// Operations carried by every Bulk request so far.
fn bulk_operations(rig: &Rig) -> usize {
    bulks(rig).iter().filter_map(|r| r.records).sum()
}

#[tokio::test]
async fn a_kill_while_provisions_are_pending_resumes_polling_without_sending_again() {
    let rig = v4_rig(
        SimConfig {
            v4: V4Settings {
                provision_delay: Duration::from_millis(1500),
                ..V4Settings::default()
            },
            ..SimConfig::default()
        },
        "",
    )
    .await;
    let lines = rows(0..150, 150);
    write(&rig, &lines);
    let mut child = spawn_bin(&rig.config, &["sync"], &[]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while submitted(&rig) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing was submitted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let pending = submitted(&rig);
    assert!(pending > 0);
    let status = rig.status().await;
    assert!(
        status["provisions"]["in_flight"].as_u64().unwrap() >= 1,
        "{status}"
    );
    let out = rig.run(&["status"]).await;
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("provisions in flight"),
        "{}",
        text(&out)
    );

    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(submitted(&rig), 0);
    assert_eq!(rig.sim.v4_users().len(), 150);
    assert_arrived(&rig, &lines);
    // Every operation went out exactly once: nothing pending was sent again.
    assert_eq!(bulk_operations(&rig), 150);
    assert!(rig.sim.deleted_users().is_empty());
    assert!(
        !rig.sim.requests().iter().any(|r| r.method == "DELETE"),
        "no DELETE is ever sent"
    );
}

#[tokio::test]
async fn a_lost_bulk_answer_creates_no_duplicate() {
    let rig = v4_rig(SimConfig::default(), "max_attempts = 2").await;
    let lines = rows(0..5, 5);
    write(&rig, &lines[..2]);
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    // The Bulk creating the others is applied, and its answer lost.
    write(&rig, &lines);
    rig.sim.set_faults(Faults {
        rate_lost_response: 1.0,
        ..Faults::default()
    });
    let out = rig.run(&["sync"]).await;
    assert_ne!(code(&out), 0, "{}", text(&out));
    rig.sim.set_faults(Faults::default());
    assert!(rig.sim.v4_user("E00004").is_some(), "the Bulk was applied");

    let from = rig.sim.requests().len();
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(rig.sim.v4_users().len(), 5);
    assert_arrived(&rig, &lines);
    let lookups = rig.sim.requests()[from..]
        .iter()
        .filter(|r| r.method == "GET" && r.path.to_ascii_lowercase().contains("/identity/v4/users"))
        .count();
    assert!(
        lookups >= 3,
        "each create was looked up before it was sent again: {}",
        text(&out)
    );
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(rig.sim.v4_users().len(), 5);
}

#[tokio::test]
async fn a_create_whose_answer_never_came_is_not_sent_again_while_concur_could_still_apply_it() {
    // A provision would time out after 3 s.
    let rig = v4_rig(SimConfig::default(), "provision_timeout_minutes = 0.05").await;
    let lines = rows(0..4, 4);
    write(&rig, &lines[..2]);
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    // The Bulk creating the others leaves and its connection closes without an answer
    // (nothing applied; concur-sync cannot know that).
    write(&rig, &lines);
    let before = bulks(&rig).len();
    rig.sim.set_faults(Faults {
        rate_drop: 1.0,
        ..Faults::default()
    });
    let out = rig.run(&["sync"]).await;
    rig.sim.set_faults(Faults::default());
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert_eq!(
        bulks(&rig).len(),
        before + 1,
        "a Bulk without an answer is not resent: {}",
        text(&out)
    );
    assert_eq!(rig.sim.v4_users().len(), 2);

    // At once: the creates are looked up, Concur does not show them, and they stay unsent.
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert_eq!(bulks(&rig).len(), before + 1, "{}", text(&out));
    let status = rig.run(&["status", "--json"]).await;
    let failures = serde_json::from_slice::<Value>(&status.stdout).unwrap()["failed"].clone();
    let failures = failures.to_string();
    assert!(
        failures.contains("E00002")
            && failures.contains("got no answer")
            && failures.contains("concur.provision_timeout_minutes"),
        "{failures}"
    );

    // Once a provision accepted then would have timed out, they are created.
    std::thread::sleep(Duration::from_millis(3_200));
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(bulks(&rig).len(), before + 2);
    assert_eq!(rig.sim.v4_users().len(), 4);
    assert_arrived(&rig, &lines);
}

#[tokio::test]
async fn a_create_refused_as_taken_adopts_the_existing_user() {
    let rig = v4_rig(SimConfig::default(), "").await;
    let lines = rows(0..3, 3);
    write(&rig, &lines[..2]);
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    // Meanwhile someone created E00002 in Concur, with other values.
    let mut other: Value = serde_json::from_str(&format!(
        r#"{{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","{ENT}"],"userName":"someone@example.com","active":true,
            "name":{{"givenName":"Some","familyName":"One"}},"{ENT}":{{"employeeNumber":"E00002","companyId":"{}"}}}}"#,
        rig.sim.company_uuid()
    ))
    .unwrap();
    other["emails"] = serde_json::json!([{"type": "work", "value": "someone@example.com"}]);
    rig.sim.seed_v4_users(vec![other]).unwrap();
    write(&rig, &lines);
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(rig.sim.v4_users().len(), 3);
    assert_arrived(&rig, &lines);
}

#[tokio::test]
async fn a_transient_spend_failure_is_repaired_by_patching_only_that_extension() {
    let rig = v4_rig(SimConfig::default(), "").await;
    let lines = rows(0..5, 5);
    write(&rig, &lines);
    rig.sim.fail_spend(&["E00003"], 1);
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_arrived(&rig, &lines);
    assert_eq!(rig.sim.v4_users().len(), 5);
    assert_eq!(rig.status().await["failed"], serde_json::json!([]));
    // The repair is one more operation: a PATCH of the user created a moment before.
    let last = rig.sim.provisions().pop().unwrap();
    let ops = last["operations"].as_array().unwrap();
    assert_eq!(ops.len(), 1, "{last}");
    assert_eq!(
        ops[0]["method"]
            .as_str()
            .map(str::to_ascii_uppercase)
            .as_deref(),
        Some("PATCH"),
        "{last}"
    );
    let uuid = rig.sim.v4_user("E00003").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(last.to_string().contains(&uuid), "{last}");

    // Unchanged afterwards: nothing more is sent.
    let from = bulks(&rig).len();
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(bulks(&rig).len(), from);
}

#[tokio::test]
async fn a_spend_extension_that_keeps_failing_is_tried_a_bounded_number_of_times_then_next_cycle() {
    let rig = v4_rig(SimConfig::default(), "").await;
    let lines = rows(0..5, 5);
    write(&rig, &lines);
    rig.sim.fail_spend(&["E00003"], 100);
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 2, "{}", text(&out));
    let u = rig.sim.v4_user("E00003").unwrap();
    assert!(u.get(SPEND).is_none(), "{u}");
    let status = rig.status().await;
    let failed = status["failed"].to_string();
    assert!(
        failed.contains("SERVICE_UNAVAILABLE") && failed.contains("after 3 attempts"),
        "{status}"
    );
    // One create and two patches carried E00003; the other users were sent once.
    let carried: usize = rig
        .sim
        .provisions()
        .iter()
        .filter(|p| p.to_string().contains("emp-E00003"))
        .count();
    assert_eq!(carried, 3);

    rig.sim.clear_v4_faults();
    let from = bulks(&rig).len();
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_arrived(&rig, &lines);
    let again = &bulks(&rig)[from..];
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0].records, Some(1));
    assert_eq!(rig.sim.v4_users().len(), 5);
}

#[tokio::test]
async fn a_stuck_provision_ends_failed_with_its_reason_and_is_retried() {
    let rig = v4_rig(SimConfig::default(), "provision_timeout_minutes = 0.02").await;
    let lines = rows(0..5, 5);
    write(&rig, &lines);
    rig.sim.stick(&["E00004"]);
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 2, "{}", text(&out));
    let status = rig.status().await;
    assert!(
        status["failed"].to_string().contains("still pending after"),
        "{status}"
    );
    assert!(rig.sim.v4_user("E00004").is_none());
    rig.sim.clear_v4_faults();
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(rig.sim.v4_users().len(), 5);
    assert_arrived(&rig, &lines);
}

#[tokio::test]
async fn rows_breaking_v4_rules_are_rejected_by_name_while_good_rows_apply() {
    let rig = v4_rig(SimConfig::default(), "").await;
    let mut lines = rows(0..4, 4);
    // A user name with a character v4 refuses, and a first name over 32 characters.
    lines.push(format!("{},N", row(4, "")).replace("user4@example.com", "user4#x@example.com"));
    lines.push(format!("{},N", row(5, "")).replacen(
        ",Łukasz,",
        &format!(",{},", "A".repeat(40)),
        1,
    ));
    // A new user whose manager (E00001) is not an expense approver.
    lines.push(format!("{},N", row(11, "")));
    write(&rig, &lines);
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert_eq!(rig.sim.v4_users().len(), 4);
    assert_arrived(&rig, &lines[..4]);
    let status = rig.status().await;
    let rejected = status["rejected"].to_string();
    assert!(
        rejected.contains("E00004") && rejected.contains("E00005"),
        "{rejected}"
    );
    assert!(rejected.contains("userName"), "{rejected}");
    assert!(rejected.contains("UPS v4"), "{rejected}");
    assert!(
        rejected.contains("E00011")
            && rejected.contains("manager \\\"E00001\\\" is not an expense approver")
            && rejected.contains("EXP_APPROVER"),
        "{rejected}"
    );
}

/// The most requests that awaited their answers at once, from the simulator's request log
/// (a request arriving in the same millisecond another was answered did not overlap it).
fn most_at_once(rig: &Rig) -> usize {
    let mut edges: Vec<(u64, i32)> = rig
        .sim
        .requests()
        .iter()
        .flat_map(|r| [(r.arrived_ms, 1), (r.time_ms, -1)])
        .collect();
    edges.sort_unstable();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, step) in edges {
        now += step;
        most = most.max(now);
    }
    usize::try_from(most).unwrap()
}

#[tokio::test]
async fn requests_await_their_answers_side_by_side_up_to_max_requests_in_flight() {
    for max in [3, 1] {
        let rig = v4_rig(
            SimConfig::default(),
            &format!("max_requests_in_flight = {max}"),
        )
        .await;
        let lines = rows(0..600, 600);
        write(&rig, &lines);
        // Every answer takes a while, as Concur's do.
        rig.sim.set_faults(Faults {
            latency_ms: 40,
            ..Faults::default()
        });
        let out = rig.run(&["sync"]).await;
        rig.sim.set_faults(Faults::default());
        assert_eq!(code(&out), 0, "{}", text(&out));
        assert_eq!(rig.sim.v4_users().len(), 600);
        assert_arrived(&rig, &lines);
        let most = most_at_once(&rig);
        if max == 1 {
            assert_eq!(most, 1, "one request at a time");
        } else {
            assert!(
                (2..=max).contains(&most),
                "{most} requests awaited answers at once (at most {max})"
            );
        }
    }
}
