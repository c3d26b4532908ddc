//! Sync through the User Provisioning Service v4 (`concur.api = "v4"`): the real binary
//! against the simulator over HTTP, with its asynchronous provisions.

use concur_sync::simulator::SimConfig;

use crate::harness::{HEADER, Rig, code, row, text};

const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const SPEND: &str = "urn:ietf:params:scim:schemas:extension:spend:2.0:User";
const APPROVER: &str = "urn:ietf:params:scim:schemas:extension:spend:2.0:Approver";

/// A rig on v4 with the simulator's company UUID and quick polls; `extra` goes to `[concur]`.
async fn v4_rig(sim: SimConfig, extra: &str) -> Rig {
    let rig = Rig::with(sim, "").await;
    let text = std::fs::read_to_string(&rig.config).unwrap();
    let text = text.replacen(
        "[concur]\n",
        &format!(
            "[concur]\napi = \"v4\"\ncompany_uuid = \"{}\"\nprovision_poll_seconds = 0.05\n{extra}\n",
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

/// The CSV fields of `row(i, suffix)`, unquoted.
fn fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// Asserts the simulator's v4 user of each row holds what the row says.
fn assert_arrived(rig: &Rig, lines: &[String]) {
    for line in lines {
        let f = fields(line);
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
        polls as f64 <= sent.len() as f64 * 3.0,
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
        let u = rig.sim.v4_user(&fields(l)[0]).unwrap();
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
        let u = rig.sim.v4_user(&fields(l)[0]).unwrap();
        assert_eq!(u["active"], true, "{u}");
        assert!(u[ENT]["terminationDate"].is_null(), "{u}");
    }
    assert_eq!(rig.sim.v4_users().len(), 32);
    assert!(rig.sim.deleted_users().is_empty());
}
