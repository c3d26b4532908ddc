//! The SCIM 2.0 source against a real SCIM server (scim2-server from PyPI, installed by
//! `.ci/install-scim.sh`): full sync into the simulator, PATCH and DELETE arriving as updates and
//! deactivations, delta reads by `meta.lastModified`, a refused token, a malformed user, and a
//! server that dies mid-read. Misbehaving services (short pages, repeated pages) are played by
//! a small in-process server.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::harness::{Rig, code, sim_users, text};
use concur_sync::simulator::{Faults, SimConfig};

const CORE: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// The Python of the venv `.ci/install-scim.sh` makes, or `$CONCUR_SYNC_SCIM_PYTHON`.
fn scim_python() -> Option<PathBuf> {
    let p = std::env::var_os("CONCUR_SYNC_SCIM_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/concur-sync-test/venv/bin/python3"));
    let ok = Command::new(&p)
        .args(["-c", "import scim2_server.testserver.cli"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(p)
}

fn peers_required() -> bool {
    std::env::var_os("CI").is_some() || std::env::var_os("CONCUR_SYNC_REQUIRE_PEERS").is_some()
}

/// A scim2-server process on 127.0.0.1, killed on drop.
pub(super) struct ScimServer {
    child: Child,
    base: String,
    token: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl ScimServer {
    /// Starts the server, or returns `None` (test skipped) when it is not installed.
    pub(super) async fn start(test: &str) -> Option<ScimServer> {
        let Some(py) = scim_python() else {
            assert!(
                !peers_required(),
                "scim2-server is not installed (run .ci/install-scim.sh)"
            );
            eprintln!("SKIPPED {test}: scim2-server is not installed (run .ci/install-scim.sh)");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let token = format!("it-scim-token-{}", uuid::Uuid::new_v4().simple());
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("server.log");
        let child = Command::new(py)
            .args([
                "-c",
                "import sys; sys.argv[0] = 'scim2-server'; \
                 from scim2_server.testserver.cli import main; main()",
                "--port",
                &port.to_string(),
                "--bearer-token",
                &token,
            ])
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
            .spawn()
            .unwrap();
        let server = ScimServer {
            child,
            base: format!("http://127.0.0.1:{port}/v2"),
            token,
            log: dir.path().join("stderr.log"),
            _dir: dir,
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = server
                .http
                .get(format!("{}/ServiceProviderConfig", server.base))
                .bearer_auth(&server.token)
                .send()
                .await;
            if r.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            assert!(Instant::now() < deadline, "scim2-server did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some(server)
    }

    /// The `[source.scim]` table for this server.
    pub(super) fn table(&self, extra: &str) -> String {
        format!(
            "url = \"{}\"\ntoken = \"{}\"\nrequests_per_second = 0\n{extra}",
            self.base, self.token
        )
    }

    /// The request lines the server logged, query decoded.
    fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split('"').nth(1))
            .map(decode)
            .collect()
    }

    pub(super) fn user_list_requests(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter(|r| r.starts_with("GET /v2/Users?"))
            .collect()
    }

    /// Creates users in one Bulk request; returns employee number → SCIM id.
    pub(super) async fn bulk_create(&self, users: &[Value]) -> BTreeMap<String, String> {
        let ops: Vec<Value> = users
            .iter()
            .map(|u| {
                json!({"method": "POST", "path": "/Users",
                       "bulkId": u[ENT]["employeeNumber"].as_str().unwrap_or("x"), "data": u})
            })
            .collect();
        let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
                          "failOnErrors": 1, "Operations": ops});
        let r: Value = self
            .http
            .post(format!("{}/Bulk", self.base))
            .bearer_auth(&self.token)
            .header("Content-Type", "application/scim+json")
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        r["Operations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                assert_eq!(o["status"], "201", "{o}");
                let loc = o["location"].as_str().unwrap();
                (
                    o["bulkId"].as_str().unwrap().to_owned(),
                    loc.rsplit('/').next().unwrap().to_owned(),
                )
            })
            .collect()
    }

    async fn patch(&self, id: &str, ops: Value) {
        let r = self
            .http
            .patch(format!("{}/Users/{id}", self.base))
            .bearer_auth(&self.token)
            .header("Content-Type", "application/scim+json")
            .json(
                &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                          "Operations": ops}),
            )
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "PATCH {id}: {}", r.status());
    }

    pub(super) async fn delete(&self, id: &str) {
        let r = self
            .http
            .delete(format!("{}/Users/{id}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 204);
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ScimServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                    out.push(v);
                    i += 2;
                } else {
                    out.push(b'%');
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Employee `i` (`E00007`) reports to `(i - 1) / 10`; employee 0 is the root. Managers come first,
/// so a Bulk request can refer to them by bulkId.
pub(super) fn user(i: usize) -> Value {
    const DEPARTMENTS: [&str; 4] = ["R&D", "Sales & Marketing", "Finance", "Ops"];
    const GIVEN: [&str; 4] = ["Zoë", "José", "Ana", "Søren"];
    let mut ent = json!({"employeeNumber": format!("E{i:05}"),
                         "department": DEPARTMENTS[i % 4],
                         "costCenter": format!("CC{}", i % 7), "division": format!("Div{}", i % 3)});
    if i > 0 {
        ent["manager"] = json!({"value": format!("bulkId:E{:05}", (i - 1) / 10)});
    }
    json!({
        "schemas": [CORE, ENT],
        "userName": format!("user{i}@example.com"),
        "name": {"givenName": GIVEN[i % 4], "familyName": format!("Family{i}"),
                 "middleName": "Quinn"},
        "emails": [{"value": format!("home{i}@example.net"), "type": "home"},
                   {"value": format!("user{i}@example.com"), "type": "work", "primary": true}],
        "active": true,
        "locale": "en-US",
        "addresses": [{"type": "work", "country": "us"}],
        ENT: ent,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_full_sync_then_patch_and_delete_arrive_as_delta_updates_and_full_read_deactivations()
{
    let Some(server) = ScimServer::start("scim_full_sync_then_…").await else {
        return;
    };
    let ids = server
        .bulk_create(&(0..250).map(user).collect::<Vec<_>>())
        .await;
    assert_eq!(ids.len(), 250);
    let rig = Rig::with(SimConfig::default(), "max_attempts = 1").await;
    rig.use_scim(&server.table("delta_overlap = \"0s\""));
    // The service's clock has whole seconds: let the seeding fall before the first read's second.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // Cycle 1: a full read of three pages, sorted by id.
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let users = sim_users(&rig);
    assert_eq!(users.len(), 250);
    let u = &users["E00123"];
    let want: BTreeMap<&str, &str> = [
        ("LoginId", "user123@example.com"),
        ("EmailAddress", "user123@example.com"),
        ("FirstName", "Søren"),
        ("LastName", "Family123"),
        ("Mi", "Q"),
        ("Active", "Y"),
        ("LocaleName", "en_US"),
        ("CtryCode", "US"),
        ("OrgUnit1", "Ops"),
        ("OrgUnit2", "CC4"),
        ("OrgUnit3", "Div0"),
        ("ExpenseApproverEmployeeID", "E00012"),
    ]
    .into();
    for (k, v) in want {
        assert_eq!(u.get(k).map(String::as_str), Some(v), "E00123 {k}: {u:?}");
    }
    assert!(!users["E00000"].contains_key("ExpenseApproverEmployeeID"));
    // Concur lists nobody, so there is no one to adopt: the very first cycle reads once, to plan.
    let pages = server.user_list_requests();
    assert_eq!(pages.len(), 3, "{pages:?}");
    assert!(
        pages.iter().all(|p| p.contains("sortBy=id")
            && p.contains("count=100")
            && !p.contains("lastModified")),
        "{pages:?}"
    );
    assert!(pages[2].contains("startIndex=201"), "{pages:?}");

    // A name change, a user set inactive, a user deleted.
    server
        .patch(
            &ids["E00005"],
            json!([{"op": "replace", "path": "name.familyName", "value": "Renamed"}]),
        )
        .await;
    server
        .patch(
            &ids["E00150"],
            json!([{"op": "replace", "path": "active", "value": false}]),
        )
        .await;
    server.delete(&ids["E00200"]).await;

    // Cycle 2: a delta read sees only the two changed users; the deleted one is not deactivated.
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("1 updated")
            && stdout.contains("1 deactivated")
            && stdout.contains("0 unchanged"),
        "{stdout}"
    );
    let delta = server.user_list_requests();
    let delta = &delta[3..];
    assert_eq!(delta.len(), 1, "{delta:?}");
    assert!(
        delta[0].contains("filter=meta.lastModified gt \"20"),
        "{delta:?}"
    );
    let users = sim_users(&rig);
    assert_eq!(users["E00005"]["LastName"], "Renamed");
    assert_eq!(users["E00150"]["Active"], "N");
    assert_eq!(users["E00200"]["Active"], "Y");

    // A change whose cycle fails to write is not skipped by the next delta.
    server
        .patch(
            &ids["E00007"],
            json!([{"op": "replace", "path": "name.familyName", "value": "Later"}]),
        )
        .await;
    rig.sim.set_faults(Faults {
        rate_5xx: 1.0,
        ..Faults::default()
    });
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 1, "{}", text(&out));
    rig.sim.set_faults(Faults::default());
    assert_eq!(sim_users(&rig)["E00007"]["LastName"], "Family7");
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
    assert_eq!(sim_users(&rig)["E00007"]["LastName"], "Later");

    // Cycle 5: a full read (full_every = 0s) deactivates the deleted user, and only them.
    rig.use_scim(&server.table("delta_overlap = \"0s\"\nfull_every = \"0s\""));
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("0 updated")
            && stdout.contains("1 deactivated")
            && stdout.contains("249 unchanged"),
        "{stdout}"
    );
    let full = server.user_list_requests();
    assert!(
        full[6..].iter().all(|p| !p.contains("lastModified")),
        "{full:?}"
    );
    let users = sim_users(&rig);
    assert_eq!(users["E00200"]["Active"], "N");
    assert_eq!(users["E00150"]["Active"], "N");
    assert_eq!(
        users.values().filter(|u| u["Active"] == "N").count(),
        2,
        "only the inactive and the deleted user are inactive"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_server_stopped_mid_read_deactivates_nobody() {
    let Some(mut server) = ScimServer::start("scim_server_stopped_mid_read_…").await else {
        return;
    };
    server
        .bulk_create(&(0..120).map(user).collect::<Vec<_>>())
        .await;
    let rig = Rig::start().await;
    rig.use_scim(&server.table("page_size = 10"));
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    // Concur lists nobody, so there is no one to adopt: the very first cycle reads once, to plan.
    let first_pages = server.user_list_requests().len();
    assert_eq!(first_pages, 12);

    // A full read, slow enough to stop the server after a few pages.
    rig.use_scim(&format!(
        "url = \"{}\"\ntoken = \"{}\"\npage_size = 10\nfull_every = \"0s\"\n\
         requests_per_second = 4\nmax_attempts = 2\ntimeout_seconds = 2",
        server.base, server.token
    ));
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_concur-sync"))
        .arg("--config")
        .arg(&rig.config)
        .arg("sync")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.user_list_requests().len() < first_pages + 3 {
        assert!(Instant::now() < deadline, "the second read did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill();
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(code(&out), 1, "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("SCIM") && stderr.contains("nothing was changed"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(&server.token),
        "the token leaked: {stderr}"
    );
    let users = sim_users(&rig);
    assert_eq!(users.len(), 120);
    assert!(users.values().all(|u| u["Active"] == "Y"));
    let status = rig.status().await;
    assert_eq!(status["last_cycle"]["outcome"], "failed", "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_refused_token_is_fatal_and_a_malformed_user_is_rejected_by_id() {
    let Some(server) = ScimServer::start("scim_refused_token_…").await else {
        return;
    };
    let mut users: Vec<Value> = (0..3).map(user).collect();
    let mut keyless = user(3);
    keyless[ENT] = json!({"department": "Ops"});
    keyless["userName"] = json!("nokey@example.com");
    users.push(keyless);
    server.bulk_create(&users).await;
    let list: Value = server
        .http
        .get(format!("{}/Users", server.base))
        .query(&[("filter", "userName eq \"nokey@example.com\"")])
        .bearer_auth(&server.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keyless_id = list["Resources"][0]["id"].as_str().unwrap().to_owned();

    let rig = Rig::start().await;
    rig.use_scim(&format!(
        "url = \"{}\"\ntoken = \"wrong-token-5d1e\"",
        server.base
    ));
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 1, "{}", text(&out));
    let all = text(&out);
    assert!(
        all.contains("HTTP 401") && all.contains("source.scim.token"),
        "{all}"
    );
    assert!(!all.contains("wrong-token-5d1e"), "the token leaked: {all}");
    assert!(rig.sim.users().is_empty());

    rig.use_scim(&server.table(""));
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert_eq!(rig.sim.users().len(), 3);
    let status = rig.status().await;
    let rejected = status["rejected"].to_string();
    assert!(
        rejected.contains(&format!("scim:{keyless_id} (nokey@example.com)"))
            && rejected.contains("employeeNumber is missing"),
        "{rejected}"
    );
}

// ---- misbehaving services, played in-process --------------------------------------------

/// A SCIM service of `n` users that returns at most `cap` per page; with `repeat` it ignores
/// `startIndex` and always returns the first page.
async fn fake_service(n: usize, cap: usize, repeat: bool) -> String {
    use axum::extract::Query;
    use axum::routing::get;
    let users: Vec<Value> = (0..n)
        .map(|i| {
            json!({"id": format!("id{i:03}"), "userName": format!("u{i}@example.com"),
                   "name": {"givenName": "F", "familyName": format!("L{i}")},
                   ENT: {"employeeNumber": format!("F{i:03}")}})
        })
        .collect();
    let app = axum::Router::new()
        .route(
            "/scim/ServiceProviderConfig",
            get(|| async {
                axum::Json(json!({"sort": {"supported": true}, "filter": {"supported": true}}))
            }),
        )
        .route(
            "/scim/Users",
            get(move |Query(q): Query<BTreeMap<String, String>>| {
                let users = users.clone();
                async move {
                    let start: usize = q
                        .get("startIndex")
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(1);
                    let count: usize = q.get("count").and_then(|s| s.parse().ok()).unwrap_or(100);
                    let from = if repeat { 0 } else { start - 1 };
                    let page: Vec<Value> = users
                        .iter()
                        .skip(from)
                        .take(count.min(cap))
                        .cloned()
                        .collect();
                    axum::Json(
                        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                                      "totalResults": users.len(), "startIndex": start,
                                      "itemsPerPage": page.len(), "Resources": page}),
                    )
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/scim")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_short_pages_are_followed_and_a_repeated_page_fails_the_read() {
    let rig = Rig::start().await;
    let short = fake_service(23, 4, false).await;
    rig.use_scim(&format!(
        "url = \"{short}\"\ntoken = \"t\"\nrequests_per_second = 0"
    ));
    let out = rig.run(&["plan", "--json"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["summary"]["create"], 23, "{plan}");

    let repeating = fake_service(23, 4, true).await;
    rig.use_scim(&format!(
        "url = \"{repeating}\"\ntoken = \"t\"\nrequests_per_second = 0"
    ));
    let out = tokio::time::timeout(Duration::from_secs(60), rig.run(&["plan"]))
        .await
        .expect("the read must end");
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("repeats pages"),
        "{}",
        text(&out)
    );
}
