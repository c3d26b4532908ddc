//! Service lifecycle and fault handling at the boundary: SIGTERM during a long `Retry-After`
//! (`run` and `sync`), a served throttle honoured by the next process, capped and checked
//! FormFields answers (a tiny fake Concur), `status` on a read-only copy and into a closed pipe,
//! and full SCIM reads (`sync --full`, the first cycle of `run`).

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use concur_sync::simulator::{Faults, RetryAfterMode, SimConfig};
use serde_json::json;

use super::harness::{Rig, code, rows, spawn_bin, text};

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;

fn signal(child: &tokio::process::Child, sig: i32) {
    let pid = child.id().expect("the child runs") as i32;
    // SAFETY: sending a signal to our own child process.
    unsafe { libc_kill(pid, sig) };
}

/// Waits until `cond` holds, polling every 50 ms.
async fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn always_429(retry_after_s: u64) -> Faults {
    Faults {
        rate_429: 1.0,
        retry_after: RetryAfterMode::Seconds(retry_after_s),
        ..Faults::default()
    }
}

/// Starts `args` against a simulator that answers every API call 429 with a 600 s
/// `Retry-After`, signals it once the first 429 went out, and checks that it exits within
/// `limit` and that the simulator saw no request after the signal. Returns the exit code and
/// the output.
async fn stop_while_throttled(
    rig: &Rig,
    args: &[&str],
    sig: i32,
    limit: Duration,
) -> (i32, String) {
    rig.sim.set_faults(always_429(600));
    let mut child = spawn_bin(&rig.config, args, &[]);
    wait_for(
        "the simulator served a 429",
        Duration::from_secs(20),
        || rig.sim.requests().iter().any(|r| r.status == 429),
    )
    .await;
    // Let the process settle into its wait.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = rig.sim.requests().len();
    let t = Instant::now();
    signal(&child, sig);
    let status = tokio::time::timeout(limit + Duration::from_secs(20), child.wait())
        .await
        .expect("the process did not exit after the signal")
        .unwrap();
    let took = t.elapsed();
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        use tokio::io::AsyncReadExt;
        let _ = e.read_to_string(&mut stderr).await;
    }
    assert!(
        took < limit,
        "{args:?} took {took:?} to exit after the signal (limit {limit:?}):\n{stderr}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rig.sim.requests();
    assert_eq!(
        after.len(),
        seen,
        "requests after the signal: {:?}",
        &after[seen..]
    );
    rig.sim.set_faults(Faults::default());
    (status.code().unwrap_or(-1), stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_run_within_shutdown_timeout_during_a_long_retry_after() {
    let rig = Rig::with(
        SimConfig::default(),
        "[service]\nshutdown_timeout = 3\n[admin]\nlisten = \"127.0.0.1:0\"\n",
    )
    .await;
    rig.write_hr(&rows(0..20));
    let (exit, stderr) =
        stop_while_throttled(&rig, &["run"], SIGTERM, Duration::from_secs(3 + 2)).await;
    assert_eq!(exit, 0, "{stderr}");
    assert!(!stderr.contains("exiting anyway"), "{stderr}");
    // Nothing was acknowledged, so nothing is in the snapshot or left pending.
    let st = rig.status().await;
    assert_eq!(st["users"]["managed"], 0, "{st}");
    assert_eq!(st["outbox"]["pending"], 0, "{st}");
    assert_throttle_outlives_the_process(&rig).await;
}

/// The 600 s `Retry-After` served before the signal still holds for the next process: a `sync`
/// that may wait 1 s sends nothing and says until when Concur is throttled.
async fn assert_throttle_outlives_the_process(rig: &Rig) {
    let before = rig.sim.requests().len();
    let out = super::harness::run_bin(
        &rig.config,
        &["sync"],
        &[("CONCUR_SYNC__CONCUR__MAX_WAIT_SECONDS", "1")],
    )
    .await;
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("throttled until"),
        "{}",
        text(&out)
    );
    assert_eq!(rig.sim.requests().len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_and_sigint_stop_sync_during_a_long_retry_after() {
    // The one-shot command may wait an hour here, so only the signal ends the wait.
    let rig = Rig::with(
        SimConfig::default(),
        "max_wait_seconds = 3600\n[service]\nshutdown_timeout = 3\n",
    )
    .await;
    rig.write_hr(&rows(0..20));
    for sig in [SIGTERM, SIGINT] {
        let (exit, stderr) =
            stop_while_throttled(&rig, &["sync"], sig, Duration::from_secs(3 + 2)).await;
        assert_eq!(exit, 1, "signal {sig}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        let st = rig.status().await;
        assert_eq!(st["last_cycle"]["outcome"], "interrupted", "{st}");
        assert_eq!(st["users"]["managed"], 0, "{st}");
        assert_eq!(st["outbox"]["pending"], 0, "{st}");
    }
    assert_throttle_outlives_the_process(&rig).await;
}

/// A plan's entries are written as their batch leaves. While the cycle runs, `status` counts
/// the operations not sent yet as pending; after a shutdown between batches, every user is
/// acknowledged, recorded as stopped by the shutdown (a batch cut off in flight), or was never
/// attempted (no entry), and the next cycle sends exactly the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_between_batches_leaves_the_rest_to_the_next_cycle_and_status_counts_it() {
    let rig = Rig::with(
        SimConfig::default(),
        "requests_per_second = 2\nbatch_size = 5\n",
    )
    .await;
    rig.write_hr(&rows(0..20));
    let child = spawn_bin(&rig.config, &["sync"], &[]);
    wait_for("the first batch left", Duration::from_secs(20), || {
        rig.sim
            .requests()
            .iter()
            .any(|r| r.method == "POST" && r.path.ends_with("/api/user/v1.0/users"))
    })
    .await;
    // Two requests a second: the third batch cannot have left yet.
    let st = rig.status().await;
    assert_eq!(st["last_cycle"]["outcome"], "running", "{st}");
    let pending = st["outbox"]["pending"].as_u64().unwrap();
    assert!(pending >= 10, "the batches not sent yet are pending: {st}");
    signal(&child, SIGTERM);
    let out = tokio::time::timeout(Duration::from_secs(15), child.wait_with_output())
        .await
        .expect("sync stops after SIGTERM")
        .unwrap();
    assert_eq!(code(&out), 1, "{}", text(&out));
    let st = rig.status().await;
    assert_eq!(st["last_cycle"]["outcome"], "interrupted", "{st}");
    assert_eq!(st["outbox"]["pending"], 0, "{st}");
    let cycle = st["last_cycle"]["id"].clone();
    let (mut acknowledged, mut never_attempted) = (0, 0);
    for i in 0..20 {
        let id = format!("E{i:05}");
        let out = rig.run(&["explain", &id, "--json"]).await;
        if code(&out) == 1 {
            // Neither in the snapshot nor in any cycle's outbox.
            never_attempted += 1;
            continue;
        }
        assert_eq!(code(&out), 0, "{id}: {}", text(&out));
        let story: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let newest = story["history"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["kind"] == "operation")
            .unwrap_or_else(|| panic!("{id}: no operation in {story}"))
            .clone();
        assert_eq!(newest["cycle_id"], cycle, "{newest}");
        assert_eq!(newest["operation"], "create", "{newest}");
        match newest["state"].as_str() {
            Some("done") => acknowledged += 1,
            Some("abandoned") => assert!(
                newest["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("stopped by shutdown")),
                "{newest}"
            ),
            _ => panic!("{id}: {newest}"),
        }
    }
    assert_eq!(st["users"]["managed"], acknowledged, "{st}");
    assert!(
        never_attempted >= 10,
        "batches 3 and 4 never left: {never_attempted}"
    );
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(rig.status().await["users"]["managed"], 20);
    assert_eq!(rig.sim.users().len(), 20, "nobody was created twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_served_retry_after_holds_back_the_next_process_and_a_long_one_ends_sync() {
    let rig = Rig::with(SimConfig::default(), "max_wait_seconds = 2").await;
    rig.write_hr(&rows(0..20));

    // Run 1: Concur asks for 6 s, longer than the 2 s this command may wait.
    rig.sim.set_faults(always_429(6));
    let t = Instant::now();
    let out = rig.run(&["sync"]).await;
    assert!(t.elapsed() < Duration::from_secs(5), "{}", text(&out));
    assert_eq!(code(&out), 1, "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("throttled until 20"), "{stderr}");
    let st = rig.status().await;
    assert_eq!(st["last_cycle"]["outcome"], "failed", "{st}");
    let message = st["last_cycle"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("throttled until"), "{st}");
    let throttled_at = rig
        .sim
        .requests()
        .iter()
        .filter(|r| r.status == 429)
        .map(|r| r.time_ms)
        .max()
        .unwrap();

    // Run 2, started right after, with Concur healthy again: the served wait still holds, so
    // it sends nothing at all and says so.
    rig.sim.set_faults(Faults::default());
    let before = rig.sim.requests().len();
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("throttled until"),
        "{}",
        text(&out)
    );
    assert_eq!(
        rig.sim.requests().len(),
        before,
        "no request before the wait ends"
    );

    // Run 3 may wait a minute: it waits out the rest, then sends everything.
    let out = super::harness::run_bin(
        &rig.config,
        &["sync"],
        &[("CONCUR_SYNC__CONCUR__MAX_WAIT_SECONDS", "60")],
    )
    .await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let first = rig.sim.requests()[before].arrived_ms;
    assert!(
        first + 50 >= throttled_at + 6_000,
        "a request arrived {} ms after a 6 s Retry-After",
        first - throttled_at
    );
    assert_eq!(rig.sim.users().len(), 20);
    assert_eq!(rig.status().await["users"]["managed"], 20);
}

// ---- FormFields and the response cap, against a tiny fake Concur ------------------------

const GOOD_FORM: &str = r#"<FormFieldsList xmlns="http://www.concursolutions.com/api/user/2011/02">
<FormField><Id>LoginId</Id><Label>Login</Label><Required>Y</Required><MaxLength>128</MaxLength><Sequence>1</Sequence></FormField>
<FormField><Id>OrgUnit2</Id><Label>Cost Center</Label><Required>Y</Required><MaxLength>48</MaxLength><Sequence>2</Sequence></FormField>
</FormFieldsList>"#;

/// Serves the token endpoint, Profile v1 and FormFields with whatever body is set.
async fn fake_concur(form: Arc<Mutex<String>>) -> String {
    use axum::routing::{get, post};
    let app = axum::Router::new()
        .route(
            "/oauth2/v0/token",
            post(|| async {
                axum::Json(
                    json!({"access_token": "fake-access", "refresh_token": "fake-refresh",
                                   "expires_in": 3600}),
                )
            }),
        )
        .route(
            "/profile/v1/me",
            get(|| async { axum::Json(json!({"id": "p1", "userType": "Company"})) }),
        )
        .route(
            "/api/user/v1.0/FormFields",
            get(move || {
                let body = form.lock().unwrap().clone();
                async move { ([("content-type", "application/xml")], body) }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

/// `check --json`: no FormFields problem when `expected` is empty, else exit 1 and a problem
/// containing `expected`.
async fn check_form_fields(rig: &Rig, expected: &str) {
    let out = rig.run(&["check", "--json"]).await;
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    let problems = report["problems"].to_string();
    if expected.is_empty() {
        assert!(!problems.contains("FormFields"), "{report}");
    } else {
        assert_eq!(code(&out), 1, "{report}");
        assert!(problems.contains(expected), "want {expected:?}: {report}");
    }
}

/// Whether `plan` rejects E00001 for the org_unit2 the cached company form requires.
async fn rejected_for_org_unit2(rig: &Rig) -> bool {
    let out = rig.run(&["plan", "--json"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    plan["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["field"] == "org_unit2" && r["employee_id"] == "E00001")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_empty_or_oversized_form_fields_fail_and_keep_the_cached_form() {
    let form = Arc::new(Mutex::new(GOOD_FORM.to_owned()));
    let base = fake_concur(form.clone()).await;
    let rig = Rig::with(SimConfig::default(), "max_response_bytes = 4096").await;
    let cfg = std::fs::read_to_string(&rig.config)
        .unwrap()
        .replace(&rig.sim.base_url(), &base);
    std::fs::write(&rig.config, cfg).unwrap();
    // The HR file has no org_unit2 column, which the company's form requires.
    rig.write_hr(&rows(0..2));

    // A good form is cached: the plan rejects the users without the required cost centre.
    check_form_fields(&rig, "").await;
    assert!(rejected_for_org_unit2(&rig).await);

    let cut = &GOOD_FORM[..GOOD_FORM.find("<FormField><Id>OrgUnit2").unwrap()];
    let huge = GOOD_FORM.replace(
        "<Label>Login</Label>",
        &format!("<Label>{}</Label>", "x".repeat(8000)),
    );
    for (body, expected) in [
        (cut.to_owned(), "truncated"),
        (String::new(), "empty"),
        (
            "<FormFieldsList></FormFieldsList>".to_owned(),
            "lists no fields",
        ),
        ("<html>gateway</html>".to_owned(), "not a FormFieldsList"),
        (huge, "max_response_bytes"),
    ] {
        *form.lock().unwrap() = body;
        check_form_fields(&rig, expected).await;
        // The cached form still holds: the company is never taken to require nothing.
        assert!(
            rejected_for_org_unit2(&rig).await,
            "after a FormFields answer that is {expected}"
        );
    }
}

// ---- status: read-only, and into a closed pipe ------------------------------------------

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reads_a_read_only_copy_without_creating_files() {
    use std::os::unix::fs::PermissionsExt;
    let rig = Rig::start().await;
    rig.write_hr(&rows(0..5));
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));

    let copy_dir = tempfile::tempdir().unwrap();
    let ro = copy_dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    let db = ro.join("copy.db");
    std::fs::copy(rig.state_path(), &db).unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o444)).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    // The tests may run as root, which ignores modes: make the file immutable where we can.
    let chattr = std::process::Command::new("chattr")
        .arg("+i")
        .arg(&db)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());

    for args in [&["status", "--json"][..], &["status"][..]] {
        let mut full: Vec<&str> = args.to_vec();
        full.extend(["--state", db.to_str().unwrap()]);
        let out = rig.run(&full).await;
        assert_eq!(code(&out), 0, "{}", text(&out));
        if args.len() == 2 {
            let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(st["users"]["managed"], 5, "{st}");
            assert_eq!(st["last_cycle"]["outcome"], "success", "{st}");
        } else {
            assert!(
                String::from_utf8_lossy(&out.stdout).contains("5 managed"),
                "{}",
                text(&out)
            );
        }
        assert_eq!(files_in(&ro), ["copy.db"], "status created files");
    }
    if chattr {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&db)
            .status();
    }
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();

    // Before anything ran there is no database: status says so and creates none.
    let missing = copy_dir.path().join("none.db");
    let out = rig
        .run(&["status", "--state", missing.to_str().unwrap()])
        .await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("no cycle has run yet"),
        "{}",
        text(&out)
    );
    assert_eq!(files_in(copy_dir.path()), ["ro"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_plan_into_a_closed_pipe_exit_quietly() {
    let rig = Rig::start().await;
    rig.write_hr(&rows(0..300));
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    rig.write_hr(&rows(0..600));

    for args in [
        &["status"][..],
        &["status", "--json"][..],
        &["plan"][..],
        &["plan", "--json"][..],
    ] {
        let mut child = spawn_bin(&rig.config, args, &[]);
        // The reader goes away before anything is written (`| head -0`).
        drop(child.stdout.take());
        let out = child.wait_with_output().await.unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "{args:?}: {stderr}"
        );
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }
}

// ---- SCIM: full reads on request and at service start -----------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_deletion_reaches_concur_with_sync_full_and_at_service_start() {
    use super::scim::{ScimServer, user};
    let Some(server) = ScimServer::start("scim_deletion_reaches_concur_…").await else {
        return;
    };
    let ids = server
        .bulk_create(&(0..30).map(user).collect::<Vec<_>>())
        .await;
    let rig = Rig::with(
        SimConfig::default(),
        "[sync]\nmax_deactivations = 10\n[service]\nshutdown_timeout = 5\n[admin]\nlisten = \"127.0.0.1:0\"\n",
    )
    .await;
    // A long full_every: only the request (or the start of `run`) can make a read full.
    rig.use_scim(&server.table("delta_overlap = \"0s\"\nfull_every = \"24h\""));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let active = |rig: &Rig, id: &str| {
        rig.sim
            .users()
            .into_iter()
            .find(|u| u.emp_id() == id)
            .unwrap()
            .active()
    };
    assert!(active(&rig, "E00020"));

    // A deletion: a plain sync reads a delta and cannot see it; `sync --full` can.
    server.delete(&ids["E00020"]).await;
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(
        server
            .user_list_requests()
            .last()
            .unwrap()
            .contains("lastModified"),
        "a delta read"
    );
    assert!(active(&rig, "E00020"), "a delta read cannot see a deletion");
    let out = rig.run(&["sync", "--full"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(
        !server
            .user_list_requests()
            .last()
            .unwrap()
            .contains("lastModified"),
        "a full read"
    );
    assert!(!active(&rig, "E00020"), "{}", text(&out));

    // `run` starts with a full read: a deletion made while it was down reaches Concur at once.
    server.delete(&ids["E00021"]).await;
    let pages_before = server.user_list_requests().len();
    let child = spawn_bin(&rig.config, &["run"], &[]);
    wait_for(
        "the first cycle of run deactivates the deleted user",
        Duration::from_secs(30),
        || !active(&rig, "E00021"),
    )
    .await;
    let pages = server.user_list_requests();
    assert!(
        !pages[pages_before].contains("lastModified"),
        "the first read of run is full: {pages:?}"
    );
    signal(&child, SIGTERM);
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait_with_output())
        .await
        .expect("run did not stop")
        .unwrap();
    assert_eq!(status.status.code(), Some(0));
}
