//! Scenarios under `concur.api = "v4"` at the boundary: the real binary, the simulator over
//! HTTP, and a recording pass-through between them that keeps every request body (the
//! simulator's own log keeps no bodies) and can serve provision status in smaller pages than
//! asked, as a server may. Renames, leavers and returners, a provision whose operations span
//! several status pages, and adoption of users with their managers.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use concur_sync::simulator::{DEFAULT_COMPANY_UUID, SimConfig};
use serde_json::{Value, json};

use crate::harness::{HEADER, Rig, code, row, text};

const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const SPEND: &str = "urn:ietf:params:scim:schemas:extension:spend:2.0:User";
const ROLE: &str = "urn:ietf:params:scim:schemas:extension:spend:2.0:Role";
const APPROVER: &str = "urn:ietf:params:scim:schemas:extension:spend:2.0:Approver";

/// One request the pass-through forwarded: method, path with query, JSON body (or null).
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    body: Value,
}

#[derive(Clone)]
struct Relay {
    upstream: String,
    own: String,
    http: reqwest::Client,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Operations per provision status page, whatever `count` the client asked for.
    status_page: Option<usize>,
}

/// A pass-through to the simulator on 127.0.0.1:0.
struct Proxy {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Proxy {
    async fn start(upstream: &str, status_page: Option<usize>) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let relay = Relay {
            upstream: upstream.trim_end_matches('/').to_owned(),
            own: base.clone(),
            http: reqwest::Client::new(),
            seen: seen.clone(),
            status_page,
        };
        let app = axum::Router::new().fallback(forward).with_state(relay);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Proxy { base, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Every Bulk operation sent so far, in order.
    fn bulk_operations(&self) -> Vec<Value> {
        self.seen()
            .into_iter()
            .filter(|s| s.method == "POST" && s.path.to_ascii_lowercase().contains("/v4/bulk"))
            .flat_map(|s| s.body["Operations"].as_array().cloned().unwrap_or_default())
            .collect()
    }
}

async fn forward(
    State(relay): State<Relay>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut path = uri.path().to_owned();
    if let Some(query) = uri.query() {
        let query: Vec<String> = query
            .split('&')
            .map(|pair| match relay.status_page {
                Some(n) if uri.path().contains("/provisions/") && pair.starts_with("count=") => {
                    format!("count={n}")
                }
                _ => pair.to_owned(),
            })
            .collect();
        path = format!("{path}?{}", query.join("&"));
    }
    relay.seen.lock().unwrap().push(Seen {
        method: method.to_string(),
        path: path.clone(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    let mut out = headers;
    out.remove(axum::http::header::HOST);
    out.remove(axum::http::header::CONTENT_LENGTH);
    let Ok(reply) = relay
        .http
        .request(method, format!("{}{path}", relay.upstream))
        .headers(out)
        .body(body)
        .send()
        .await
    else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let status = reply.status();
    let mut headers = reply.headers().clone();
    headers.remove(axum::http::header::CONTENT_LENGTH);
    headers.remove(axum::http::header::TRANSFER_ENCODING);
    let bytes = reply.bytes().await.unwrap_or_default();
    // The token's geolocation (and any location) names the simulator: name this relay instead.
    let text = String::from_utf8_lossy(&bytes).replace(&relay.upstream, &relay.own);
    (status, headers, text).into_response()
}

/// A v4 rig whose binary talks to the simulator through a [`Proxy`]; `sync` goes to `[sync]`.
async fn v4_rig(status_page: Option<usize>, sync: &str) -> (Rig, Proxy) {
    let rig = Rig::with(SimConfig::default(), "").await;
    let proxy = Proxy::start(&rig.sim.base_url(), status_page).await;
    let text = std::fs::read_to_string(&rig.config)
        .unwrap()
        .replace(&rig.sim.base_url(), &proxy.base)
        .replacen(
            "[concur]\n",
            &format!(
                "[concur]\napi = \"v4\"\ncompany_uuid = \"{DEFAULT_COMPANY_UUID}\"\nprovision_poll_seconds = 0.05\n"
            ),
            1,
        );
    std::fs::write(&rig.config, format!("{text}[sync]\n{sync}\n")).unwrap();
    (rig, proxy)
}

/// Row `i` of a population of `population` with its `expense_approver` flag: whoever has
/// reports is an expense approver, as Concur requires of a report's approver.
fn line(i: usize, population: usize, suffix: &str) -> String {
    let approver = if i * 10 + 1 < population { "Y" } else { "N" };
    format!("{},{approver}", row(i, suffix))
}

fn lines(range: std::ops::Range<usize>, population: usize) -> Vec<String> {
    range.map(|i| line(i, population, "")).collect()
}

fn header() -> String {
    format!("{HEADER},expense_approver")
}

/// The unquoted CSV fields of a line.
fn fields(line: &str) -> Vec<String> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(line.as_bytes());
    rdr.records()
        .next()
        .unwrap()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect()
}

fn uuid_of(rig: &Rig, employee_id: &str) -> String {
    rig.sim
        .v4_user(employee_id)
        .unwrap_or_else(|| panic!("{employee_id} missing"))["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The Concur UUID the state database holds per employee id.
fn stored_uuids(rig: &Rig) -> BTreeMap<String, Option<String>> {
    let db = rusqlite::Connection::open(rig.state_path()).unwrap();
    let mut stmt = db
        .prepare("SELECT employee_id, concur_uuid FROM users")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Requests that change something in Concur (neither reads nor tokens), from the simulator's
/// own log.
fn writes(rig: &Rig) -> Vec<concur_sync::simulator::RequestRecord> {
    rig.sim
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET" && !r.path.contains("oauth2") && !r.path.ends_with(".search"))
        .collect()
}

/// Asserts that `op` is a PATCH of `/Users/{uuid}` whose PatchOp operations are exactly
/// `expected` (compared without order).
fn assert_patch(op: &Value, uuid: &str, expected: &[Value]) {
    assert_eq!(op["method"], "PATCH", "{op:#}");
    assert_eq!(op["path"], format!("/Users/{uuid}"), "{op:#}");
    let got: BTreeSet<String> = op["data"]["Operations"]
        .as_array()
        .unwrap_or_else(|| panic!("no Operations in {op:#}"))
        .iter()
        .map(Value::to_string)
        .collect();
    let want: BTreeSet<String> = expected.iter().map(Value::to_string).collect();
    assert_eq!(got, want, "{op:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_login_is_a_patch_of_user_name_on_the_same_uuid() {
    let (rig, proxy) = v4_rig(None, "max_identity_changes = 10").await;
    let mut rows = lines(0..3, 3);
    rig.write_csv(&header(), &rows);
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let uuid = uuid_of(&rig, "E00001");
    let before = rig.sim.v4_user("E00001").unwrap();

    rows[1] = rows[1].replacen(
        "user1@example.com,user1@example.com",
        "renamed1@example.com,user1@example.com",
        1,
    );
    rig.write_csv(&header(), &rows);
    let from_proxy = proxy.bulk_operations().len();
    let from_sim = writes(&rig).len();
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));

    // On the wire: one Bulk with one operation, a PATCH of userName on the user's UUID.
    let sent = &writes(&rig)[from_sim..];
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].method, "POST");
    assert!(
        sent[0]
            .path
            .to_ascii_lowercase()
            .contains("/profile/v4/bulk"),
        "{sent:?}"
    );
    assert_eq!(sent[0].records, Some(1), "{sent:?}");
    let ops = &proxy.bulk_operations()[from_proxy..];
    assert_eq!(ops.len(), 1, "{ops:#?}");
    assert_patch(
        &ops[0],
        &uuid,
        &[json!({"op": "replace", "path": "userName", "value": "renamed1@example.com"})],
    );

    // In Concur: the same user, renamed, nothing else changed, nobody created.
    assert_eq!(rig.sim.v4_users().len(), 3);
    let after = rig.sim.v4_user("E00001").unwrap();
    assert_eq!(after["id"], uuid.as_str());
    assert_eq!(after["userName"], "renamed1@example.com");
    for key in ["name", "emails", "active", ENT, SPEND] {
        assert_eq!(after[key], before[key], "{key}");
    }
    assert_eq!(stored_uuids(&rig)["E00001"].as_deref(), Some(uuid.as_str()));

    // Settled: the same file again sends nothing.
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(writes(&rig).len(), from_sim + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_previous_employee_id_is_a_patch_of_employee_number_on_the_same_uuid() {
    let (rig, proxy) = v4_rig(None, "max_identity_changes = 10").await;
    let header = format!("{},previous_employee_id", header());
    let mut rows: Vec<String> = lines(0..3, 3)
        .into_iter()
        .map(|l| format!("{l},"))
        .collect();
    rig.write_csv(&header, &rows);
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let uuid = uuid_of(&rig, "E00002");
    let before = rig.sim.v4_user("E00002").unwrap();

    // E00002 becomes X00002.
    rows[2] = format!("X00002{}E00002", &rows[2]["E00002".len()..]);
    rig.write_csv(&header, &rows);
    let from_proxy = proxy.bulk_operations().len();
    let from_sim = writes(&rig).len();
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));

    let sent = &writes(&rig)[from_sim..];
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].records, Some(1), "{sent:?}");
    let ops = &proxy.bulk_operations()[from_proxy..];
    assert_eq!(ops.len(), 1, "{ops:#?}");
    assert_patch(
        &ops[0],
        &uuid,
        &[json!({"op": "replace", "path": format!("{ENT}:employeeNumber"), "value": "X00002"})],
    );

    // Concur still holds one user, under the new number; the old number is gone.
    assert_eq!(rig.sim.v4_users().len(), 3);
    assert!(rig.sim.v4_user("E00002").is_none());
    let after = rig.sim.v4_user("X00002").unwrap();
    assert_eq!(after["id"], uuid.as_str());
    assert_eq!(after[ENT]["employeeNumber"], "X00002");
    assert_eq!(after["active"], true);
    assert_eq!(after["userName"], before["userName"]);
    assert!(rig.sim.deleted_users().is_empty());
    // The state database's UUID follows the new employee id.
    let stored = stored_uuids(&rig);
    assert_eq!(
        stored.get("X00002").cloned().flatten().as_deref(),
        Some(uuid.as_str()),
        "{stored:?}"
    );
    assert!(!stored.contains_key("E00002"), "{stored:?}");

    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(
        writes(&rig).len(),
        from_sim + 1,
        "a settled rename was sent again"
    );
}
