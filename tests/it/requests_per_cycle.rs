//! Every rate-limited request a cycle sends is one it needs: a first load into an empty tenant
//! sends the token, the reads that decide adoption (and, under User v1, the company's
//! FormFields) once, then only its writes; the cycle after it, with nothing changed, sends only
//! the token. Counted from the simulator's request log.

use std::collections::BTreeMap;

use super::harness::{Rig, rows};
use concur_sync::simulator::{DEFAULT_COMPANY_UUID, SimConfig};

/// What the simulator received after its first `skip` requests, by kind: the request's path
/// without its query, status polls counted together.
fn requests_by_kind(rig: &Rig, skip: usize) -> BTreeMap<String, usize> {
    let mut kinds = BTreeMap::new();
    for r in rig.sim.requests().into_iter().skip(skip) {
        let path = r.path.trim_end_matches('/').to_ascii_lowercase();
        let kind = if path.contains("/provisions/") {
            format!("{} provision status", r.method)
        } else {
            format!("{} {path}", r.method)
        };
        *kinds.entry(kind).or_insert(0) += 1;
    }
    kinds
}

fn kinds(list: &[(&str, usize)]) -> BTreeMap<String, usize> {
    list.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_v1_first_load_and_the_next_cycle_send_only_what_they_need() {
    let rig = Rig::with(SimConfig::default(), "batch_size = 2").await;
    rig.write_hr(&rows(0..5));
    let out = rig.run(&["sync"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", super::harness::text(&out));
    assert_eq!(
        requests_by_kind(&rig, 0),
        kinds(&[
            ("POST /oauth2/v0/token", 1),
            ("GET /api/user/v1.0/formfields", 1),
            ("GET /users", 1),
            ("POST /api/user/v1.0/users", 3),
        ])
    );

    // FormFields are cached for a day and adoption ran once.
    an_unchanged_source_sends_only_the_token(&rig).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v4_first_load_into_an_empty_tenant_reads_no_spend_users_and_polls_its_bulk() {
    let rig = Rig::with(
        SimConfig::default(),
        &format!(
            "api = \"v4\"\ncompany_uuid = \"{DEFAULT_COMPANY_UUID}\"\nprovision_poll_seconds = 0.05"
        ),
    )
    .await;
    // No manager column values: under v4 a manager must be an expense approver.
    let lines: Vec<String> = rows(0..5)
        .into_iter()
        .map(|l| format!("{},", &l[..l.rfind(',').unwrap()]))
        .collect();
    rig.write_hr(&lines);
    let out = rig.run(&["sync"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", super::harness::text(&out));
    let mut seen = requests_by_kind(&rig, 0);
    // Identity v4.1 listed nobody: there is no one whose spend half could be joined.
    let polls = seen.remove("GET provision status").unwrap_or(0);
    assert!(polls >= 1, "{seen:?}");
    assert_eq!(
        seen,
        kinds(&[
            ("POST /oauth2/v0/token", 1),
            ("GET /profile/identity/v4.1/users", 1),
            ("POST /profile/v4/bulk", 1),
        ])
    );

    an_unchanged_source_sends_only_the_token(&rig).await;
}

/// A second `sync` of the same source sends nothing but the token request.
async fn an_unchanged_source_sends_only_the_token(rig: &Rig) {
    let first = rig.sim.requests().len();
    let out = rig.run(&["sync"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", super::harness::text(&out));
    assert_eq!(
        requests_by_kind(rig, first),
        kinds(&[("POST /oauth2/v0/token", 1)])
    );
}
