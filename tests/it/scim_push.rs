//! `source.kind = "scim_push"`: the real binary runs as a service with its SCIM endpoint, real
//! HTTP clients replay what Entra ID and Okta send, and the users must arrive in the bundled
//! simulator (UPS v4 and User v1). Also: a push that was answered survives kill -9, a wrong
//! token stores nothing, and the SCIM compliance checker scim2-tester finds no failure.

use std::path::PathBuf;
use std::time::Duration;

use concur_sync::simulator::SimConfig;
use serde_json::{Value, json};

use crate::harness::{Rig, code, free_port, spawn_daemon, text};

const TOKEN: &str = "push-token-7c1e9a0b5d3f2468";
const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const APPROVER: &str = "urn:ietf:params:scim:schemas:extension:spend:2.0:Approver";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

struct Push {
    rig: Rig,
    base: String,
    log: PathBuf,
    daemon: Option<tokio::process::Child>,
    http: reqwest::Client,
    v4: bool,
}

/// What the simulator holds for one employee, whichever API.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    active: bool,
    email: String,
    last: String,
    manager: String,
}

impl Push {
    /// `sync` is the `[sync]` table's content.
    async fn new(v4: bool, debounce: &str, sync: &str) -> Push {
        Push::build(v4, debounce, sync, false).await
    }

    /// With `tls`, the endpoint serves HTTPS with a throwaway certificate for 127.0.0.1, which
    /// the client trusts (and nothing else).
    async fn build(v4: bool, debounce: &str, sync: &str, tls: bool) -> Push {
        let rig = Rig::with(SimConfig::default(), "").await;
        let port = free_port();
        let mut config = std::fs::read_to_string(&rig.config).unwrap().replacen(
            "[defaults]\nledger = \"DEFAULT\"\n",
            "[defaults]\nledger = \"DEFAULT\"\ncountry = \"US\"\ncurrency = \"USD\"\nlocale = \"en_US\"\nexpense_approver = \"Y\"\n",
            1,
        );
        if v4 {
            config = config.replacen(
                "api = \"v1\"\n",
                &format!(
                    "api = \"v4\"\ncompany_uuid = \"{}\"\nprovision_poll_seconds = 0.05\n",
                    rig.sim.company_uuid()
                ),
                1,
            );
        }
        std::fs::write(
            &rig.config,
            format!(
                "{config}[admin]\nlisten = \"127.0.0.1:{}\"\n[service]\npoll_seconds = 0.2\n[sync]\n{sync}\n",
                free_port()
            ),
        )
        .unwrap();
        let mut source = format!(
            "[source]\nkind = \"scim_push\"\n[source.scim_push]\nlisten = \"127.0.0.1:{port}\"\n\
             token = \"{TOKEN}\"\ndebounce_seconds = {debounce}\n"
        );
        let mut http = reqwest::Client::builder();
        if tls {
            let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
            let (cert_file, key_file) = (
                rig.dir.path().join("tls.crt"),
                rig.dir.path().join("tls.key"),
            );
            std::fs::write(&cert_file, cert.cert.pem()).unwrap();
            std::fs::write(&key_file, cert.signing_key.serialize_pem()).unwrap();
            source.push_str(&format!(
                "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
                cert_file.display(),
                key_file.display()
            ));
            http = http
                .tls_certs_only([
                    reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap()
                ]);
        }
        rig.write_source_config(&source);
        let log = rig.dir.path().join("daemon.log");
        let scheme = if tls { "https" } else { "http" };
        Push {
            base: format!("{scheme}://127.0.0.1:{port}/scim/v2"),
            rig,
            log,
            daemon: None,
            http: http.build().unwrap(),
            v4,
        }
    }

    /// Starts the service and waits for its SCIM endpoint.
    async fn start(&mut self) {
        self.daemon = Some(spawn_daemon(&self.rig.config, &self.log));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let ok = self
                .http
                .get(format!("{}/ServiceProviderConfig", self.base))
                .bearer_auth(TOKEN)
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if ok {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not up: {}",
                self.daemon_log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn daemon_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a request with the token; answers the status and the JSON body (`null` if none).
    async fn send(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.send_as(Some(TOKEN), method, path, body).await
    }

    async fn send_as(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method.parse().unwrap(), &url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/scim+json")
                .body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// The users with this userName, as Entra and Okta look them up before a create.
    async fn find(&self, user_name: &str) -> Value {
        let url = format!("{}/Users", self.base);
        let resp = self
            .http
            .get(&url)
            .bearer_auth(TOKEN)
            .query(&[
                ("filter", format!("userName eq \"{user_name}\"")),
                ("startIndex", "1".into()),
                ("count", "100".into()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    fn seen(&self, emp: &str) -> Option<Seen> {
        if self.v4 {
            let u = self.rig.sim.v4_user(emp)?;
            // Under v4 the manager is the user's report approver (by its Concur id).
            let approver = u[APPROVER]["report"].to_string();
            let manager = self
                .rig
                .sim
                .v4_users()
                .into_iter()
                .find(|m| m["id"].as_str().is_some_and(|id| approver.contains(id)))
                .and_then(|m| m[ENT]["employeeNumber"].as_str().map(str::to_owned))
                .unwrap_or_default();
            return Some(Seen {
                active: u["active"] == true,
                email: u["emails"][0]["value"].as_str().unwrap_or("").to_owned(),
                last: u["name"]["familyName"].as_str().unwrap_or("").to_owned(),
                manager,
            });
        }
        let u = self
            .rig
            .sim
            .users()
            .into_iter()
            .find(|u| u.emp_id() == emp)?;
        let f = |k: &str| u.fields.get(k).cloned().unwrap_or_default();
        Some(Seen {
            active: f("Active") != "N",
            email: f("EmailAddress"),
            last: f("LastName"),
            manager: f("ExpenseApproverEmployeeID"),
        })
    }

    /// Waits until the simulator holds `want` for `emp`.
    async fn arrives(&self, emp: &str, want: Seen) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while self.seen(emp).as_ref() != Some(&want) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{emp}: want {want:?}, the simulator has {:?}\n{}",
                self.seen(emp),
                self.daemon_log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn seen(active: bool, email: &str, last: &str, manager: &str) -> Seen {
    Seen {
        active,
        email: email.into(),
        last: last.into(),
        manager: manager.into(),
    }
}

fn ops(operations: Value) -> Option<Value> {
    Some(json!({"schemas": [PATCH], "Operations": operations}))
}

/// Entra ID: look up, create, then PATCH with its habits (capitalised ops, booleans as
/// strings, the work-email filter path, the manager as a bare id); deactivate; delete.
async fn entra(p: &Push) {
    assert_eq!(p.find("maria@contoso.com").await["totalResults"], 0);
    let user = |name: &str, emp: &str, given: &str, family: &str| {
        json!({"schemas": [USER, ENT], "externalId": name.split('@').next(), "userName": name,
               "active": true, "displayName": format!("{given} {family}"),
               "name": {"givenName": given, "familyName": family},
               "emails": [{"type": "work", "value": name, "primary": true}],
               ENT: {"employeeNumber": emp, "department": "Finance"}})
    };
    let (s, mgr) = p
        .send(
            "POST",
            "/Users",
            Some(user("maria@contoso.com", "E100", "Maria", "Garcia")),
        )
        .await;
    assert_eq!(s, 201, "{mgr}");
    let mgr_id = mgr["id"].as_str().unwrap().to_owned();
    assert_eq!(p.find("ann@contoso.com").await["totalResults"], 0);
    let (s, ann) = p
        .send(
            "POST",
            "/Users",
            Some(user("ann@contoso.com", "E101", "Ann", "Lee")),
        )
        .await;
    assert_eq!(s, 201, "{ann}");
    let ann_id = ann["id"].as_str().unwrap().to_owned();
    let (s, body) = p
        .send(
            "PATCH",
            &format!("/Users/{ann_id}"),
            ops(json!([
                {"op": "Add", "path": format!("{ENT}:manager"), "value": mgr_id},
                {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "ann.lee@contoso.com"},
                {"op": "Replace", "path": "name.familyName", "value": "Lee-Smith"},
            ])),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body[ENT]["manager"]["value"], mgr_id.as_str());
    // userName is case-insensitive.
    assert_eq!(p.find("ANN@Contoso.com").await["totalResults"], 1);
    p.arrives("E100", seen(true, "maria@contoso.com", "Garcia", ""))
        .await;
    p.arrives(
        "E101",
        seen(true, "ann.lee@contoso.com", "Lee-Smith", "E100"),
    )
    .await;

    let (s, _) = p.send("DELETE", &format!("/Users/{ann_id}"), None).await;
    assert_eq!(s, 204);
    assert_eq!(
        p.send("GET", &format!("/Users/{ann_id}"), None).await.0,
        404
    );
    p.arrives(
        "E101",
        seen(false, "ann.lee@contoso.com", "Lee-Smith", "E100"),
    )
    .await;
    let (s, body) = p
        .send(
            "PATCH",
            &format!("/Users/{mgr_id}"),
            ops(json!([{"op": "Replace", "path": "active", "value": "False"}])),
        )
        .await;
    assert_eq!((s, &body["active"]), (200, &json!(false)), "{body}");
    p.arrives("E100", seen(false, "maria@contoso.com", "Garcia", ""))
        .await;
}

/// Okta: look up, create (no employeeNumber: the employee id is the externalId), PUT for the
/// update, PATCH only for `active`.
async fn okta(p: &Push) {
    assert_eq!(p.find("bob@okta.example").await["totalResults"], 0);
    let mut bob = json!({"schemas": [USER], "userName": "bob@okta.example", "externalId": "00u1bob",
        "name": {"givenName": "Bob", "familyName": "Stone"}, "displayName": "Bob Stone",
        "emails": [{"primary": true, "value": "bob@okta.example", "type": "work"}],
        "active": true, "groups": []});
    let (s, created) = p.send("POST", "/Users", Some(bob.clone())).await;
    assert_eq!(s, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let (s, dup) = p.send("POST", "/Users", Some(bob.clone())).await;
    assert_eq!((s, &dup["scimType"]), (409, &json!("uniqueness")), "{dup}");
    bob["id"] = json!(id);
    bob["name"]["familyName"] = json!("Stone-Hill");
    let (s, body) = p.send("PUT", &format!("/Users/{id}"), Some(bob)).await;
    assert_eq!(s, 200, "{body}");
    p.arrives("00u1bob", seen(true, "bob@okta.example", "Stone-Hill", ""))
        .await;
    let (s, body) = p
        .send(
            "PATCH",
            &format!("/Users/{id}"),
            ops(json!([{"op": "replace", "value": {"active": false}}])),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    p.arrives("00u1bob", seen(false, "bob@okta.example", "Stone-Hill", ""))
        .await;
}

async fn conversations(v4: bool) {
    // Two users in all: each deactivation is half of them, above the default guards' 5%; so
    // is Ann's new e-mail and name when a cycle has created her before her PATCH arrives.
    let mut p = Push::new(
        v4,
        "0.2",
        "max_deactivations = 10\nmax_identity_changes = 10",
    )
    .await;
    p.start().await;
    entra(&p).await;
    okta(&p).await;
}

#[tokio::test]
async fn entra_and_okta_provision_into_concur_v4() {
    conversations(true).await;
}

#[tokio::test]
async fn entra_and_okta_provision_into_concur_v1() {
    conversations(false).await;
}

#[tokio::test]
async fn an_answered_push_survives_kill_9_and_a_wrong_token_stores_nothing() {
    // A long debounce: the push cannot have reached Concur before the kill.
    let mut p = Push::new(false, "600", "").await;
    p.start().await;
    let carol = json!({"schemas": [USER, ENT], "userName": "carol@contoso.com",
        "name": {"givenName": "Carol", "familyName": "King"},
        "emails": [{"type": "work", "value": "carol@contoso.com"}], "active": true,
        ENT: {"employeeNumber": "E200"}});
    for token in [Some("push-token-wrong-000000000"), None] {
        let (s, body) = p
            .send_as(token, "POST", "/Users", Some(carol.clone()))
            .await;
        assert_eq!(s, 401, "{body}");
        assert_eq!(
            body["schemas"][0],
            "urn:ietf:params:scim:api:messages:2.0:Error"
        );
    }
    assert_eq!(
        p.find("carol@contoso.com").await["totalResults"],
        0,
        "nothing stored"
    );

    let (s, body) = p.send("POST", "/Users", Some(carol)).await;
    assert_eq!(s, 201, "{body}");
    let mut daemon = p.daemon.take().unwrap();
    daemon.start_kill().unwrap(); // SIGKILL
    daemon.wait().await.unwrap();
    assert!(
        p.seen("E200").is_none(),
        "carried before the kill: the test proves nothing"
    );

    p.start().await;
    assert_eq!(p.find("carol@contoso.com").await["totalResults"], 1);
    p.arrives("E200", seen(true, "carol@contoso.com", "King", ""))
        .await;
}

/// A user with employee id `E3nn` (`n`), as Entra ID creates one.
fn staff(n: usize) -> Value {
    let name = format!("staff{n}@contoso.com");
    json!({"schemas": [USER, ENT], "userName": name, "active": true,
           "name": {"givenName": "Staff", "familyName": format!("Member{n}")},
           "emails": [{"type": "work", "value": name}],
           ENT: {"employeeNumber": format!("E3{n:02}")}})
}

#[tokio::test]
async fn nothing_runs_before_the_first_push_and_a_burst_of_deletions_is_held() {
    // A debounce of 1 s: the three deletions below reach one cycle.
    let mut p = Push::new(true, "1", "max_deactivations = 2").await;
    // Nobody pushed yet: `sync` has nothing to do, and is not a failure.
    let out = p.rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(
        text(&out).contains("no user has been pushed to 127.0.0.1:"),
        "{}",
        text(&out)
    );
    p.start().await;
    // The service's first cycle finds nothing to read either: one line, no error, however
    // many wake-ups (poll_seconds = 0.2) go by.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let log = p.daemon_log();
    assert_eq!(log.matches("no user has been pushed").count(), 1, "{log}");
    assert!(!log.contains("ERROR"), "{log}");

    let mut ids = Vec::new();
    for n in 0..10 {
        let (s, body) = p.send("POST", "/Users", Some(staff(n))).await;
        assert_eq!(s, 201, "{body}");
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    for n in 0..10 {
        p.arrives(
            &format!("E3{n:02}"),
            seen(
                true,
                &format!("staff{n}@contoso.com"),
                &format!("Member{n}"),
                "",
            ),
        )
        .await;
    }
    // Three deletions, one more than max_deactivations: the cycle holds them.
    for id in &ids[..3] {
        assert_eq!(p.send("DELETE", &format!("/Users/{id}"), None).await.0, 204);
    }
    // Approved (while the service holds the state database), they are deactivated, never
    // deleted. A later cycle may hold the same plan again (superseding the one approved): the
    // newest held cycle is the one to approve.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut approved = None;
    while (0..3).any(|n| p.seen(&format!("E3{n:02}")).unwrap().active) {
        let st = p.rig.status().await;
        let last = &st["last_cycle"];
        if last["outcome"] == "held" && approved != last["id"].as_i64() {
            assert_eq!(st["outbox"]["held"], 3, "{st:#}");
            if approved.is_none() {
                assert!(
                    (0..3).all(|n| p.seen(&format!("E3{n:02}")).unwrap().active),
                    "held, not sent"
                );
            }
            approved = last["id"].as_i64();
            let out = p
                .rig
                .run(&["approve", &approved.unwrap().to_string()])
                .await;
            assert_eq!(code(&out), 0, "{}", text(&out));
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{st:#}\n{}",
            p.daemon_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(approved.is_some(), "deactivated without being held");
    for n in 0..10 {
        p.arrives(
            &format!("E3{n:02}"),
            seen(
                n >= 3,
                &format!("staff{n}@contoso.com"),
                &format!("Member{n}"),
                "",
            ),
        )
        .await;
    }
}

#[tokio::test]
async fn the_endpoint_speaks_tls_with_the_configured_certificate() {
    let mut p = Push::build(true, "0.2", "", true).await;
    p.start().await;
    let (s, body) = p.send("POST", "/Users", Some(staff(1))).await;
    assert_eq!(s, 201, "{body}");
    assert!(
        body["meta"]["location"]
            .as_str()
            .unwrap()
            .starts_with("https://"),
        "{body}"
    );
    p.arrives("E301", seen(true, "staff1@contoso.com", "Member1", ""))
        .await;
    // Plain HTTP on the same port gets no SCIM answer.
    let plain = reqwest::Client::new()
        .get(p.base.replacen("https://", "http://", 1) + "/Users")
        .bearer_auth(TOKEN)
        .send()
        .await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);
}

/// scim2-tester's command (`scim2 … test`) from the venv `.ci/install-scim-tester.sh` makes,
/// or `$CONCUR_SYNC_SCIM_TESTER`.
fn scim_tester() -> Option<PathBuf> {
    let p = std::env::var_os("CONCUR_SYNC_SCIM_TESTER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/concur-sync-test/scim-tester-venv/bin/scim2"));
    p.exists().then_some(p)
}

#[tokio::test]
async fn scim2_tester_finds_no_failure() {
    let Some(tester) = scim_tester() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "scim2-tester is not installed: run .ci/install-scim-tester.sh"
        );
        eprintln!("skipped: scim2-tester is not installed (.ci/install-scim-tester.sh)");
        return;
    };
    let mut p = Push::new(false, "0.2", "").await;
    p.start().await;
    let out = tokio::process::Command::new(tester)
        .args(["--url", &p.base, "test"])
        .env("SCIM_CLI_HEADERS", format!("Authorization: Bearer {TOKEN}"))
        .output()
        .await
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    let successes = report.lines().filter(|l| l.starts_with("SUCCESS")).count();
    let others: Vec<&str> = report
        .lines()
        .filter(|l| {
            ["ERROR", "CRITICAL", "SKIPPED", "WARNING"]
                .iter()
                .any(|w| l.starts_with(w))
        })
        .collect();
    assert!(
        out.status.success() && others.is_empty() && successes > 100,
        "{successes} checks passed; the others: {others:?}\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The users it created went through a cycle's validation without stopping the service.
    assert!(
        p.daemon.as_mut().unwrap().try_wait().unwrap().is_none(),
        "{}",
        p.daemon_log()
    );
}
