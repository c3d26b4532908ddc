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

use crate::harness::{HEADER, Rig, code, csv_fields, row, text};

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
            "api = \"v1\"\n",
            &format!(
                "api = \"v4\"\ncompany_uuid = \"{DEFAULT_COMPANY_UUID}\"\nprovision_poll_seconds = 0.05\n"
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

/// Today's date in UTC as `terminationDate` writes it, read around a run (which may straddle
/// midnight).
fn termination_dates(before: chrono::NaiveDate) -> [String; 2] {
    let after = chrono::Utc::now().date_naive();
    [before, after].map(|d| format!("{}T00:00:00Z", d.format("%Y-%m-%d")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaver_is_deactivated_with_a_termination_date_and_a_returner_reactivated_never_deleted()
{
    let (rig, proxy) = v4_rig(None, "max_deactivations = \"100%\"\nmin_source_ratio = 0.5").await;
    let rows = lines(0..4, 4);
    rig.write_csv(&header(), &rows);
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let uuid = uuid_of(&rig, "E00003");
    assert_eq!(rig.sim.v4_user("E00003").unwrap()["active"], true);

    // E00003 leaves the file.
    rig.write_csv(&header(), &rows[..3]);
    let from = proxy.bulk_operations().len();
    let today = chrono::Utc::now().date_naive();
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let ops = &proxy.bulk_operations()[from..];
    assert_eq!(ops.len(), 1, "{ops:#?}");
    let dates = termination_dates(today);
    let sent_date = ops[0]["data"]["Operations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["path"] == format!("{ENT}:terminationDate"))
        .map(|o| o["value"].as_str().unwrap_or("").to_owned())
        .unwrap_or_else(|| panic!("no terminationDate in {:#}", ops[0]));
    assert!(
        dates.contains(&sent_date),
        "{sent_date} is not today ({dates:?})"
    );
    assert_patch(
        &ops[0],
        &uuid,
        &[
            json!({"op": "replace", "path": "active", "value": false}),
            json!({"op": "replace", "path": format!("{ENT}:terminationDate"), "value": sent_date}),
        ],
    );
    let u = rig.sim.v4_user("E00003").unwrap();
    assert_eq!(u["id"], uuid.as_str());
    assert_eq!(u["active"], false, "{u:#}");
    assert_eq!(u[ENT]["terminationDate"], sent_date.as_str(), "{u:#}");
    let st = rig.status().await;
    assert_eq!(st["last_cycle"]["counts"]["deactivate"], 1, "{st:#}");

    // E00003 comes back.
    rig.write_csv(&header(), &rows);
    let from = proxy.bulk_operations().len();
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let ops = &proxy.bulk_operations()[from..];
    assert_eq!(ops.len(), 1, "{ops:#?}");
    assert_patch(
        &ops[0],
        &uuid,
        &[
            json!({"op": "replace", "path": "active", "value": true}),
            json!({"op": "remove", "path": format!("{ENT}:terminationDate")}),
        ],
    );
    let u = rig.sim.v4_user("E00003").unwrap();
    assert_eq!(u["id"], uuid.as_str());
    assert_eq!(u["active"], true, "{u:#}");
    assert!(
        u[ENT].get("terminationDate").is_none_or(Value::is_null),
        "{u:#}"
    );
    assert_eq!(rig.sim.v4_users().len(), 4);

    // Never a DELETE: not as a request, not as a Bulk operation, and nobody deleted.
    assert!(
        !rig.sim.requests().iter().any(|r| r.method == "DELETE"),
        "a DELETE was sent"
    );
    assert!(
        proxy
            .bulk_operations()
            .iter()
            .all(|o| o["method"] != "DELETE"),
        "a Bulk DELETE was sent"
    );
    assert!(rig.sim.deleted_users().is_empty());
}

/// The `startIndex` of every provision status request for `id`, in order.
fn status_pages(proxy: &Proxy, id: &str) -> Vec<usize> {
    proxy
        .seen()
        .iter()
        .filter(|s| s.method == "GET" && s.path.contains(&format!("/provisions/{id}/status")))
        .map(|s| {
            s.path
                .split(['?', '&'])
                .find_map(|p| p.strip_prefix("startIndex="))
                .map_or(1, |v| v.parse().unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provision_whose_operations_span_many_status_pages_is_settled_whole() {
    // Status pages of 7 operations, whatever the client asks for: a Bulk of up to 100
    // operations spans up to 15 pages.
    const PAGE: usize = 7;
    let (rig, proxy) = v4_rig(Some(PAGE), "").await;
    let mut config = std::fs::read_to_string(&rig.config).unwrap();
    config = config.replacen("[concur]\n", "[concur]\nprovision_timeout_minutes = 1\n", 1);
    std::fs::write(&rig.config, config).unwrap();
    let rows = lines(0..230, 230);
    rig.write_csv(&header(), &rows);
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));

    // Each provision's status was read page by page to its last operation.
    let provisions = rig.sim.provisions();
    let mut widest = 0;
    for p in &provisions {
        let id = p["id"].as_str().unwrap();
        let total = p["operationsCount"]["total"].as_u64().unwrap() as usize;
        widest = widest.max(total);
        let pages: BTreeSet<usize> = status_pages(&proxy, id).into_iter().collect();
        let expected: BTreeSet<usize> = (1..=total).step_by(PAGE).collect();
        assert!(
            expected.is_subset(&pages),
            "provision {id} of {total} operations: pages {pages:?} read, {expected:?} needed"
        );
        assert_eq!(p["operationsCount"]["failed"], 0, "{p:#}");
    }
    assert!(widest > PAGE * 10, "no Bulk spanned many pages: {widest}");

    // Every operation of every page was settled and recorded.
    assert_eq!(rig.sim.v4_users().len(), 230);
    let stored = stored_uuids(&rig);
    assert_eq!(stored.len(), 230);
    for l in &rows {
        let id = csv_fields(l)[0].clone();
        assert_eq!(
            stored[&id].as_deref(),
            Some(uuid_of(&rig, &id).as_str()),
            "{id}: the state database does not hold Concur's UUID"
        );
    }
    let st = rig.status().await;
    assert_eq!(st["last_cycle"]["counts"]["create"], 230, "{st:#}");
    assert_eq!(st["provisions"]["in_flight"], 0, "{st:#}");
    assert!(st["failed"].as_array().is_none_or(Vec::is_empty), "{st:#}");
    assert_eq!(st["users"]["managed"], 230, "{st:#}");
    // Recorded exactly: the same file again sends nothing.
    let before = writes(&rig).len();
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(writes(&rig).len(), before, "{:?}", &writes(&rig)[before..]);
}

/// Line `l` of the source as another tool provisioned it through v4, with `manager` (if any)
/// as the primary report approver and the expense approver role when the line says so.
fn provisioned(l: &str, manager: Option<&str>) -> Value {
    let f = csv_fields(l);
    let mut schemas = vec!["urn:ietf:params:scim:schemas:core:2.0:User", ENT, SPEND];
    let mut u = json!({
        "userName": f[1],
        "active": true,
        "name": {"givenName": f[3], "familyName": f[5]},
        "emails": [{"value": f[2], "type": "work"}],
        ENT: {"employeeNumber": f[0], "companyId": DEFAULT_COMPANY_UUID},
        SPEND: {
            "country": f[7], "locale": f[9].replace('_', "-"), "reimbursementCurrency": f[8],
            "ledgerCode": "DEFAULT", "customData": [{"id": "orgUnit1", "value": f[11]}],
        },
    });
    if f[13] == "Y" {
        schemas.push(ROLE);
        u[ROLE] = json!({"roles": [{"roleName": "EXP_APPROVER"}]});
    }
    if let Some(m) = manager {
        schemas.push(APPROVER);
        u[APPROVER] = json!({"report": [{"approver": {"employeeNumber": m}, "primary": true}]});
    }
    u["schemas"] = json!(schemas);
    u
}

/// The employee number of `u`'s primary report approver, however Concur references it.
fn report_approver(rig: &Rig, u: &Value) -> Option<String> {
    let entry = u[APPROVER]["report"]
        .as_array()?
        .iter()
        .find(|e| e["primary"] == true)?;
    let approver = &entry["approver"];
    // The UUID, when there is one, is who the approver is; the employee number only names it.
    if let Some(uuid) = approver["value"].as_str() {
        return rig
            .sim
            .v4_users()
            .into_iter()
            .find(|v| {
                v["id"]
                    .as_str()
                    .is_some_and(|id| id.eq_ignore_ascii_case(uuid))
            })
            .map(|v| v[ENT]["employeeNumber"].as_str().unwrap_or("").to_owned());
    }
    approver["employeeNumber"].as_str().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adoption_of_users_with_managers_patches_only_what_changed_and_leaves_strangers_alone() {
    const N: usize = 250;
    let (rig, proxy) = v4_rig(None, "").await;
    let mut rows = lines(0..N, N);
    // Concur holds the 250 as another tool provisioned them (each manager an expense approver
    // and its reports' approver), except that E00042's approver there is E00001.
    let manager_of = |i: usize| (i > 0).then(|| format!("E{:05}", (i - 1) / 10));
    let mut seed: Vec<Value> = rows
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let m = if i == 42 {
                Some("E00001".to_owned())
            } else {
                manager_of(i)
            };
            provisioned(l, m.as_deref())
        })
        .collect();
    // And three users the source does not know, one of them approved by a managed user.
    for k in 1..=3 {
        let mut s = provisioned(&line(900 + k, 0, ""), Some("E00002"));
        s["userName"] = json!(format!("contractor{k}@example.com"));
        s["emails"] = json!([{"value": format!("contractor{k}@example.com"), "type": "work"}]);
        s[ENT]["employeeNumber"] = json!(format!("X{k:03}"));
        seed.push(s);
    }
    rig.sim.seed_v4_users(seed).unwrap();
    let strangers: Vec<Value> = (1..=3)
        .map(|k| rig.sim.v4_user(&format!("X{k:03}")).unwrap())
        .collect();

    // The source changes a last name, an org unit and a manager, and keeps E00042's manager.
    rows[7] = line(7, N, " II");
    rows[200] = rows[200].replacen(",R&D,", ",Ops,", 1);
    assert!(rows[200].contains(",Ops,"), "{}", rows[200]);
    let moved = 120;
    rows[moved] = rows[moved].replacen(",E00011,", ",E00003,", 1);
    assert!(rows[moved].ends_with(",E00003,N"), "{}", rows[moved]);
    // The source says who approves invoices too (nobody): see
    // `an_adopted_user_the_source_matches_is_left_alone` for a source that does not.
    let with_invoice: Vec<String> = rows.iter().map(|l| format!("{l},N")).collect();
    rig.write_csv(&format!("{},invoice_approver", header()), &with_invoice);
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));

    // No create: every operation sent is a PATCH, exactly one per changed user.
    let ops = proxy.bulk_operations();
    assert!(ops.iter().all(|o| o["method"] == "PATCH"), "{ops:#?}");
    let mut patched: BTreeMap<String, Value> = BTreeMap::new();
    for o in &ops {
        let uuid = o["path"].as_str().unwrap().trim_start_matches("/Users/");
        assert!(
            patched.insert(uuid.to_owned(), o.clone()).is_none(),
            "{ops:#?}"
        );
    }
    let uuid = |i: usize| uuid_of(&rig, &format!("E{i:05}"));
    let expected: BTreeSet<String> = [7, 42, 200, moved].map(uuid).into_iter().collect();
    assert_eq!(
        patched.keys().cloned().collect::<BTreeSet<_>>(),
        expected,
        "{ops:#?}"
    );
    assert_eq!(rig.sim.v4_users().len(), N + 3, "a user was created");
    assert_eq!(rig.status().await["last_cycle"]["counts"]["create"], 0);

    // The changed fields arrived.
    let user = |i: usize| rig.sim.v4_user(&format!("E{i:05}")).unwrap();
    assert_eq!(
        user(7)["name"]["familyName"],
        csv_fields(&rows[7])[5].as_str()
    );
    assert!(
        user(200)[SPEND]["customData"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == "orgUnit1" && c["value"] == "Ops"),
        "{:#}",
        user(200)
    );
    // The two approver changes went out as PATCHes of the primary report approver naming the
    // source's manager (their effect in Concur: `a_changed_manager_becomes_the_report_approver`).
    for (i, manager) in [(42, "E00004"), (moved, "E00003")] {
        let op = &patched[&uuid(i)];
        let sent = op["data"]["Operations"].to_string();
        assert!(
            sent.contains(&format!("{APPROVER}:report")) && sent.contains(manager),
            "E{i:05}: {op:#}"
        );
    }
    // Everyone else keeps the approver the source names.
    for i in (1..N).filter(|i| ![42, moved].contains(i)) {
        assert_eq!(
            report_approver(&rig, &user(i)),
            manager_of(i),
            "E{i:05}: {:#}",
            user(i)
        );
    }
    for i in 0..25 {
        let roles = user(i)[ROLE]["roles"].to_string();
        assert!(roles.contains("EXP_APPROVER"), "E{i:05}: {roles}");
    }

    // Strangers: untouched, and no request addressed them.
    for (k, before) in (1..=3).zip(&strangers) {
        assert_eq!(&rig.sim.v4_user(&format!("X{k:03}")).unwrap(), before);
        let id = before["id"].as_str().unwrap().to_ascii_lowercase();
        for s in proxy.seen() {
            assert!(
                !s.path.to_ascii_lowercase().contains(&id)
                    && !s.body.to_string().to_ascii_lowercase().contains(&id),
                "X{k:03} was addressed: {} {} {}",
                s.method,
                s.path,
                s.body
            );
        }
    }

    // The state database holds each user's UUID.
    let stored = stored_uuids(&rig);
    for i in 0..N {
        let id = format!("E{i:05}");
        assert_eq!(stored[&id].as_deref(), Some(uuid(i).as_str()), "{id}");
    }
    let st = rig.status().await;
    assert_eq!(st["users"]["adopted"], N, "{st:#}");
    assert_eq!(st["users"]["unmanaged"], 3, "{st:#}");

    // Settled: the same file again sends nothing.
    let before = ops.len();
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(proxy.bulk_operations().len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adopted_user_the_source_matches_is_left_alone() {
    let (rig, proxy) = v4_rig(None, "").await;
    // Concur holds the source's three users exactly as the source describes them; the source
    // has an expense_approver column and no invoice_approver column.
    let rows: Vec<String> = (0..3)
        .map(|i| {
            let l = row(i, "");
            format!("{},,N", &l[..l.rfind(',').unwrap()])
        })
        .collect();
    rig.sim
        .seed_v4_users(rows.iter().map(|l| provisioned(l, None)).collect())
        .unwrap();
    rig.write_csv(&header(), &rows);
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    let st = rig.status().await;
    assert!(st["failed"].as_array().is_none_or(Vec::is_empty), "{st:#}");
    assert_eq!(st["users"]["adopted"], 3, "{st:#}");
    assert!(
        proxy.bulk_operations().is_empty(),
        "{:#?}",
        proxy.bulk_operations()
    );
    // And it stays so: the users are unchanged.
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(proxy.bulk_operations().is_empty());
    let st = rig.status().await;
    assert_eq!(st["last_cycle"]["counts"]["unchanged"], 3, "{st:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_manager_becomes_the_report_approver() {
    let (rig, proxy) = v4_rig(None, "").await;
    // E00000..E00002 manage; E00011 reports to E00001 (created by concur-sync), E00021 to
    // E00002 (adopted: provisioned by another tool).
    let population = 30;
    rig.sim
        .seed_v4_users(vec![
            provisioned(&line(0, population, ""), None),
            provisioned(&line(2, population, ""), Some("E00000")),
            provisioned(&line(21, population, ""), Some("E00002")),
        ])
        .unwrap();
    let mut rows: Vec<String> = [0, 1, 2, 11, 21]
        .map(|i| format!("{},N", line(i, population, "")))
        .into_iter()
        .collect();
    let header = format!("{},invoice_approver", header());
    rig.write_csv(&header, &rows);
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(
        report_approver(&rig, &rig.sim.v4_user("E00011").unwrap()).as_deref(),
        Some("E00001")
    );

    // Both move: E00011 to E00000, E00021 to E00001.
    rows[3] = rows[3].replacen(",E00001,", ",E00000,", 1);
    rows[4] = rows[4].replacen(",E00002,", ",E00001,", 1);
    rig.write_csv(&header, &rows);
    let from = proxy.bulk_operations().len();
    let out = rig.run(&["sync"]).await;
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(proxy.bulk_operations().len(), from + 2);
    for (id, manager) in [("E00011", "E00000"), ("E00021", "E00001")] {
        let u = rig.sim.v4_user(id).unwrap();
        assert_eq!(
            report_approver(&rig, &u).as_deref(),
            Some(manager),
            "{id}: {:#}",
            u[APPROVER]
        );
    }
}
