//! Token lifecycle against the simulator: expiry mid-cycle, rotation across restarts, and
//! credentials the token endpoint rejects.

use std::time::Duration;

use super::harness::{Rig, code, rows, text};
use concur_sync::simulator::SimConfig;

fn token_requests(rig: &Rig) -> Vec<u16> {
    rig.sim_requests_to("/oauth2/v0/token")
        .iter()
        .map(|r| r.status)
        .collect()
}

fn pinned() -> SimConfig {
    SimConfig {
        client_id: Some("it-client".into()),
        client_secret: Some("it-client-secret-7f3a".into()),
        company_id: Some("it-company".into()),
        request_token: Some("it-request-token-91bc".into()),
        ..SimConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_access_token_expiring_mid_cycle_is_refreshed_once_and_the_cycle_goes_on() {
    // 3,000 users at 4 requests/s: six batches over about 1.5 s.
    let rig = Rig::with(pinned(), "requests_per_second = 4").await;
    rig.write_hr(&rows(0..3000));
    let child = {
        let config = rig.config.clone();
        tokio::spawn(async move { super::harness::run_bin(&config, &["sync"], &[]).await })
    };
    // Expire every token once two batches have landed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let landed = rig
            .sim_requests_to("/api/user/v1.0/users")
            .iter()
            .filter(|r| r.status == 200)
            .count();
        if landed >= 2 {
            rig.sim.expire_tokens();
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no batch landed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let out = child.await.unwrap();
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(rig.sim.users().len(), 3000);

    let writes = rig.sim_requests_to("/api/user/v1.0/users");
    let refused = writes.iter().filter(|r| r.status == 403).count();
    assert_eq!(
        refused, 1,
        "exactly one request met the expired token: {writes:?}"
    );
    assert_eq!(writes.iter().filter(|r| r.status == 200).count(), 6);
    assert_eq!(
        token_requests(&rig),
        [200, 200],
        "one token at start, one refresh"
    );
    let st = rig.status().await;
    assert_eq!(st["last_cycle"]["outcome"], "success");
    assert_eq!(st["users"]["managed"], 3000);
    assert_eq!(st["token"]["refresh_token_stored"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_uses_the_newest_refresh_token() {
    // Two-second tokens: a run of about 2.5 s refreshes (and rotates) proactively.
    let sim = SimConfig {
        token_ttl: Duration::from_secs(2),
        ..pinned()
    };
    let rig = Rig::with(sim, "requests_per_second = 2").await;
    rig.write_hr(&rows(0..2500));
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let first_run = token_requests(&rig);
    assert!(
        first_run.len() >= 2 && first_run.iter().all(|s| *s == 200),
        "the first run rotated its refresh token: {first_run:?}"
    );

    // The second run can only succeed with the newest refresh token: the old ones are dead in
    // the simulator, and the company request token is now wrong, so no fallback exists.
    let text_cfg = std::fs::read_to_string(&rig.config).unwrap();
    std::fs::write(
        &rig.config,
        text_cfg.replace(
            "it-request-token-91bc",
            "a-request-token-that-no-longer-works",
        ),
    )
    .unwrap();
    let mut changed = rows(0..2500);
    changed[7] = changed[7].replace("user7@example.com,user7", "user7@example.com,seven");
    rig.write_hr(&changed);
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    // One refresh grant with the newest token (a slow machine may take long enough for the
    // two-second token to be refreshed once more, with the token that grant returned).
    let all = token_requests(&rig);
    let second_run = &all[first_run.len()..];
    assert!(
        !second_run.is_empty() && second_run.iter().all(|s| *s == 200),
        "refresh grants with the newest token only: {all:?}"
    );
    assert_eq!(
        rig.sim.users()[7].get("EmailAddress"),
        Some("seven@example.com")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_client_secret_fails_fast_naming_the_credential() {
    let sim = SimConfig {
        client_secret: Some("the-real-secret".into()),
        ..pinned()
    };
    let rig = Rig::with(sim, "").await;
    rig.write_hr(&rows(0..5));
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 1, "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("rejected the client id / client secret"),
        "{}",
        text(&out)
    );
    assert!(!stderr.contains("it-client-secret-7f3a"));
    let tokens = token_requests(&rig);
    assert!(
        !tokens.is_empty() && tokens.len() <= 2,
        "no retry storm: {tokens:?}"
    );
    assert!(rig.sim_requests_to("/api/user/v1.0/users").is_empty());
    assert!(rig.sim.users().is_empty());
    let st = rig.status().await;
    assert_eq!(st["last_cycle"]["outcome"], "failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_request_token_fails_fast_naming_the_credential() {
    let sim = SimConfig {
        request_token: Some("the-real-request-token".into()),
        ..pinned()
    };
    let rig = Rig::with(sim, "").await;
    rig.write_hr(&rows(0..5));
    for _ in 0..2 {
        let before = token_requests(&rig).len();
        let out = rig.run(&["sync"]).await;
        assert_eq!(code(&out), 1, "{}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("rejected the company id / request token"),
            "{}",
            text(&out)
        );
        assert!(!stderr.contains("it-request-token-91bc"));
        let tokens = token_requests(&rig);
        assert_eq!(tokens.len() - before, 1, "one attempt per run: {tokens:?}");
    }
    assert!(rig.sim.users().is_empty());
}
