//! Client behaviour against tiny in-test servers on 127.0.0.1:0.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::IntoResponse;
use tokio::time::Instant;

use super::v1::{
    BatchRecord, PASSWORDS_PATH, USERS_PATH, post_password_batch, post_user_batch, write_users,
};
use super::*;
use crate::model::{Field, Secret, User};

const CLIENT_SECRET: &str = "client-secret-9f8e7d";
const REQUEST_TOKEN: &str = "request-token-1a2b3c";

#[derive(Clone, Debug)]
struct Seen {
    path: String,
    form: HashMap<String, String>,
    auth: String,
    body: String,
    at: Instant,
}

type Reply = (u16, Vec<(&'static str, String)>, String);

struct Fake {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Fake {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }
    fn count(&self, path: &str) -> usize {
        self.seen().iter().filter(|s| s.path == path).count()
    }
}

/// A server whose every answer comes from `handler(request, earlier requests)`.
async fn fake<F>(handler: F) -> Fake
where
    F: Fn(&Seen, &[Seen]) -> Reply + Send + Sync + 'static,
{
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let handler = Arc::new(handler);
    let log = seen.clone();
    let app = Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: String| {
        let (log, handler) = (log.clone(), handler.clone());
        async move {
            let form = reqwest::Url::parse(&format!("http://x/?{body}"))
                .map(|u| u.query_pairs().into_owned().collect())
                .unwrap_or_default();
            let req = Seen {
                path: uri.path().to_owned(),
                form,
                auth: headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned(),
                body,
                at: Instant::now(),
            };
            let (status, hdrs, text) = {
                let mut log = log.lock().expect("lock");
                let reply = handler(&req, &log);
                log.push(req);
                reply
            };
            let mut map = HeaderMap::new();
            for (k, v) in hdrs {
                map.insert(
                    HeaderName::from_static(k),
                    HeaderValue::from_str(&v).expect("header"),
                );
            }
            let status = StatusCode::from_u16(status).expect("status");
            (status, map, text).into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Fake { base, seen }
}

fn token_json(access: &str, refresh: &str, expires_in: &str) -> String {
    format!(
        r#"{{"expires_in":{expires_in},"scope":"user.read","token_type":"Bearer","access_token":"{access}","refresh_token":"{refresh}","id_token":"x"}}"#
    )
}

fn ok(body: String) -> Reply {
    (200, vec![("content-type", "application/xml".into())], body)
}

/// Counts `<UserProfile>` elements and answers that all succeeded, listing each.
fn all_succeeded(body: &str) -> String {
    let profiles = profiles(body);
    let infos: String = profiles
        .iter()
        .map(|(feed, emp)| {
            format!("<UserInfo><EmployeeID>{emp}</EmployeeID><FeedRecordNumber>{feed}</FeedRecordNumber><Status>SUCCESS</Status></UserInfo>")
        })
        .collect();
    format!(
        r#"<user-batch-result xmlns="http://www.concursolutions.com/api/user/2011/02"><records-succeeded>{}</records-succeeded><records-failed>0</records-failed><errors/><UsersDetails>{infos}</UsersDetails></user-batch-result>"#,
        profiles.len()
    )
}

fn between<'a>(s: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = s.find(open)? + open.len();
    let end = s[start..].find(close)? + start;
    Some(&s[start..end])
}

/// (FeedRecordNumber, EmpId) of each profile in a request body.
fn profiles(body: &str) -> Vec<(u32, String)> {
    body.split("<UserProfile>")
        .skip(1)
        .map(|p| {
            let feed = between(p, "<FeedRecordNumber>", "</FeedRecordNumber>")
                .and_then(|f| f.parse().ok())
                .unwrap_or(0);
            let emp = between(p, "<EmpId>", "</EmpId>").unwrap_or("").to_owned();
            (feed, emp)
        })
        .collect()
}

fn config(base: &str) -> ClientConfig {
    let mut c = ClientConfig::new(
        base,
        "client-id",
        Secret::new(CLIENT_SECRET),
        "company-1",
        Secret::new(REQUEST_TOKEN),
    );
    c.timeout = Duration::from_secs(2);
    c.backoff_base = Duration::from_millis(20);
    c.backoff_max = Duration::from_millis(200);
    c
}

#[derive(Default)]
struct MemStore {
    initial: Option<StoredToken>,
    saved: Mutex<Vec<StoredToken>>,
}

impl TokenStore for MemStore {
    fn load(&self) -> Option<StoredToken> {
        self.initial.clone()
    }
    fn save(&self, token: &StoredToken) {
        self.saved.lock().expect("lock").push(token.clone());
    }
}

fn users(n: usize) -> Vec<User> {
    (1..=n)
        .map(|i| {
            let mut u = User::new();
            u.set(Field::EMPLOYEE_ID, format!("E{i:04}"));
            u.set(Field::LOGIN_ID, format!("u{i}@example.com"));
            u.set(Field::LAST_NAME, "Brown");
            u
        })
        .collect()
}

fn client(cfg: ClientConfig, store: Option<Arc<MemStore>>) -> ConcurClient {
    ConcurClient::new(cfg, store.map(|s| s as Arc<dyn TokenStore>)).expect("client")
}

/// A server with a working token endpoint (fixed token) and `api` for everything else.
async fn api_server<F>(api: F) -> Fake
where
    F: Fn(&Seen, &[Seen]) -> Reply + Send + Sync + 'static,
{
    fake(move |req, seen| {
        if req.path == "/oauth2/v0/token" {
            ok(token_json("A1", "R1", "3600"))
        } else {
            api(req, seen)
        }
    })
    .await
}

#[tokio::test]
async fn obtains_refreshes_proactively_and_saves_rotated_refresh_tokens() {
    let server = fake(|req, seen| {
        if req.path == "/oauth2/v0/token" {
            let n = seen.iter().filter(|s| s.path == "/oauth2/v0/token").count() + 1;
            match req.form.get("grant_type").map(String::as_str) {
                Some("password") => {
                    assert_eq!(req.form["client_id"], "client-id");
                    assert_eq!(req.form["client_secret"], CLIENT_SECRET);
                    assert_eq!(req.form["username"], "company-1");
                    assert_eq!(req.form["password"], REQUEST_TOKEN);
                    assert_eq!(req.form["credtype"], "authtoken");
                    // expires_in as a string, as the apidoc shows it.
                    ok(token_json(&format!("A{n}"), &format!("R{n}"), "\"2\""))
                }
                Some("refresh_token") => {
                    assert_eq!(req.form["refresh_token"], format!("R{}", n - 1));
                    assert_eq!(req.form["client_secret"], CLIENT_SECRET);
                    ok(token_json(&format!("A{n}"), &format!("R{n}"), "2"))
                }
                other => panic!("grant {other:?}"),
            }
        } else {
            assert_eq!(req.path, USERS_PATH);
            ok(all_succeeded(&req.body))
        }
    })
    .await;
    let store = Arc::new(MemStore::default());
    let c = client(config(&server.base), Some(store.clone()));
    let us = users(1);
    let batch = [BatchRecord::new(&us[0])];
    post_user_batch(&c, &batch).await.expect("first");
    post_user_batch(&c, &batch)
        .await
        .expect("second, same token");
    tokio::time::sleep(Duration::from_millis(1100)).await; // 2 s token, refreshed 1 s early
    post_user_batch(&c, &batch).await.expect("third, refreshed");

    let seen = server.seen();
    let grants: Vec<&str> = seen
        .iter()
        .filter(|s| s.path == "/oauth2/v0/token")
        .map(|s| s.form["grant_type"].as_str())
        .collect();
    assert_eq!(grants, ["password", "refresh_token"]);
    let auths: Vec<&str> = seen
        .iter()
        .filter(|s| s.path == USERS_PATH)
        .map(|s| s.auth.as_str())
        .collect();
    assert_eq!(auths, ["Bearer A1", "Bearer A1", "Bearer A2"]);
    let saved: Vec<String> = store
        .saved
        .lock()
        .expect("lock")
        .iter()
        .map(|t| t.refresh_token.expose().to_owned())
        .collect();
    assert_eq!(saved, ["R1", "R2"]);
    let stats = c.stats();
    assert_eq!(stats.token_requests, 2);
    assert_eq!(stats.requests, 5);
    assert!(stats.access_expires_at.is_some());
}

#[tokio::test]
async fn refreshes_once_after_403_and_fails_on_a_second() {
    // The first access token is "expired" on the API side; the second works.
    let server = fake(|req, seen| {
        let grants = seen.iter().filter(|s| s.path == "/oauth2/v0/token").count();
        if req.path == "/oauth2/v0/token" {
            ok(token_json(&format!("A{}", grants + 1), "R", "3600"))
        } else if req.auth == "Bearer A1" {
            (
                403,
                vec![],
                "<Error><Message>Token expired</Message></Error>".into(),
            )
        } else {
            ok(all_succeeded(&req.body))
        }
    })
    .await;
    let c = client(config(&server.base), None);
    let us = users(2);
    let batch: Vec<_> = us.iter().map(BatchRecord::new).collect();
    // Concurrent calls refused with the same token cause a single refresh.
    let (a, b) = tokio::join!(post_user_batch(&c, &batch), post_user_batch(&c, &batch));
    assert_eq!(a.expect("a").records_succeeded, 2);
    assert_eq!(b.expect("b").records_succeeded, 2);
    assert_eq!(server.count("/oauth2/v0/token"), 2);
    assert_eq!(c.stats().forced_refreshes, 1);

    // A token refused even after a refresh is an error, after exactly one refresh.
    let always = fake(|req, _| {
        if req.path == "/oauth2/v0/token" {
            ok(token_json("A", "R", "3600"))
        } else {
            (
                403,
                vec![],
                r#"{"Error":{"Message":"Forbidden Request"}}"#.into(),
            )
        }
    })
    .await;
    let c = client(config(&always.base), None);
    let err = post_user_batch(&c, &batch).await.expect_err("forbidden");
    assert!(
        matches!(&err, ConcurError::Http { status: 403, message, .. } if message == "Forbidden Request"),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert_eq!(always.count("/oauth2/v0/token"), 2);
    assert_eq!(always.count(USERS_PATH), 2);
}

#[tokio::test]
async fn stored_refresh_token_is_tried_first_and_code_108_falls_back() {
    let server = api_server(|req, _| ok(all_succeeded(&req.body))).await;
    let expired = fake(|req, _| match req.form.get("grant_type").map(String::as_str) {
        Some("refresh_token") => (
            400,
            vec![],
            r#"{"error":"invalid_grant","error_description":"Refresh token expired","code":108}"#.into(),
        ),
        _ => ok(token_json("A1", "R-new", "3600")),
    })
    .await;
    // The stored geolocation points the token request at `expired`; it answers 108, then the
    // company token is requested there too, and API calls go to the configured geolocation.
    let store = Arc::new(MemStore {
        initial: Some(StoredToken {
            refresh_token: Secret::new("R-old"),
            geolocation: Some(format!("{}/", expired.base)),
            access_expires_at: None,
            refresh_expires_at: None,
        }),
        ..MemStore::default()
    });
    let mut cfg = config(&server.base);
    cfg.trusted_test_origins = vec![expired.base.clone()];
    let c = client(cfg, Some(store.clone()));
    c.authenticate()
        .await
        .expect("falls back to the company token");
    let grants: Vec<String> = expired
        .seen()
        .iter()
        .map(|s| s.form["grant_type"].clone())
        .collect();
    assert_eq!(grants, ["refresh_token", "password"]);
    let saved = store.saved.lock().expect("lock").clone();
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0].refresh_token.expose(), "R-new");
    assert_eq!(saved[0].geolocation.as_deref(), Some(expired.base.as_str()));
    drop(server);
}

#[tokio::test]
async fn follows_geolocation_for_api_calls() {
    let geo = api_server(|req, _| ok(all_succeeded(&req.body))).await;
    let geo_base = geo.base.clone();
    let login = fake(move |req, _| {
        assert_eq!(req.path, "/oauth2/v0/token");
        ok(format!(
            r#"{{"access_token":"A","refresh_token":"R","expires_in":3600,"geolocation":"{geo_base}"}}"#
        ))
    })
    .await;
    let store = Arc::new(MemStore::default());
    let mut cfg = config(&login.base);
    cfg.trusted_test_origins = vec![geo.base.clone()];
    let c = client(cfg, Some(store.clone()));
    let us = users(1);
    post_user_batch(&c, &[BatchRecord::new(&us[0])])
        .await
        .expect("posted at the geolocation");
    assert_eq!(geo.count(USERS_PATH), 1);
    assert_eq!(login.count(USERS_PATH), 0);
    assert_eq!(
        store.saved.lock().expect("lock")[0].geolocation.as_deref(),
        Some(geo.base.as_str())
    );
}

#[tokio::test]
async fn wrong_credentials_fail_fast_naming_the_credential() {
    // Wrong request token: refresh (108) then password (5): two token requests, then an error.
    let server = fake(|req, _| match req.form.get("grant_type").map(String::as_str) {
        Some("refresh_token") => (
            401,
            vec![],
            r#"{"error":"invalid_grant","error_description":"bad refresh token","code":"108"}"#
                .into(),
        ),
        _ => (
            400,
            vec![],
            format!(r#"{{"error":"invalid_grant","error_description":"Incorrect Credentials. Please Retry {REQUEST_TOKEN}","code":5}}"#),
        ),
    })
    .await;
    let store = Arc::new(MemStore {
        initial: Some(StoredToken {
            refresh_token: Secret::new("R-old"),
            geolocation: None,
            access_expires_at: None,
            refresh_expires_at: None,
        }),
        ..MemStore::default()
    });
    let c = client(config(&server.base), Some(store));
    let us = users(1);
    let err = post_user_batch(&c, &[BatchRecord::new(&us[0])])
        .await
        .expect_err("rejected");
    assert!(
        matches!(
            err,
            ConcurError::AuthRejected {
                credential: Credential::CompanyRequestToken,
                code: 5,
                ..
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("company id / request token"), "{text}");
    assert!(
        !text.contains(REQUEST_TOKEN) && !text.contains(CLIENT_SECRET),
        "{text}"
    );
    assert!(!err.is_retryable());
    assert_eq!(server.count("/oauth2/v0/token"), 2);
    assert_eq!(server.count(USERS_PATH), 0);

    // Wrong client secret: one request, no fallback, named as such.
    let server = fake(|_, _| {
        (
            401,
            vec![],
            r#"{"error":"invalid_client","error_description":"Invalid client","code":2}"#.into(),
        )
    })
    .await;
    let c = client(config(&server.base), None);
    let err = c.authenticate().await.expect_err("rejected");
    assert!(
        matches!(
            err,
            ConcurError::AuthRejected {
                credential: Credential::Client,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("client id / client secret"));
    assert_eq!(server.count("/oauth2/v0/token"), 1);
}

/// A server whose first API request gets `first`; later ones succeed.
async fn first_then_ok(first: Reply) -> Fake {
    api_server(move |req, seen| {
        if seen.iter().any(|s| s.path == USERS_PATH) {
            ok(all_succeeded(&req.body))
        } else {
            first.clone()
        }
    })
    .await
}

fn api_times(server: &Fake) -> Vec<Instant> {
    server
        .seen()
        .iter()
        .filter(|s| s.path == USERS_PATH)
        .map(|s| s.at)
        .collect()
}

#[tokio::test]
async fn honours_retry_after_seconds_globally() {
    let server = first_then_ok((429, vec![("retry-after", "1".into())], String::new())).await;
    let c = client(config(&server.base), None);
    c.authenticate().await.expect("token");
    let us = users(1);
    let batch = [BatchRecord::new(&us[0])];
    let other = c.clone();
    let other_batch = batch;
    let (a, b) = tokio::join!(post_user_batch(&c, &batch), async {
        // Starts while the first call is being throttled.
        tokio::time::sleep(Duration::from_millis(100)).await;
        post_user_batch(&other, &other_batch).await
    });
    a.expect("a");
    b.expect("b");
    let times = api_times(&server);
    assert_eq!(times.len(), 3);
    for later in &times[1..] {
        assert!(
            *later - times[0] >= Duration::from_secs(1),
            "{:?}",
            *later - times[0]
        );
    }
    let s = c.stats();
    assert_eq!((s.throttled_429, s.retries), (1, 1));
    assert!(
        s.throttled_seconds > 0.9 && s.throttled_seconds < 1.1,
        "{s:?}"
    );
}

#[tokio::test]
async fn honours_retry_after_http_date() {
    let made = Instant::now();
    let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(2));
    let server = first_then_ok((429, vec![("retry-after", date)], String::new())).await;
    let c = client(config(&server.base), None);
    let us = users(1);
    post_user_batch(&c, &[BatchRecord::new(&us[0])])
        .await
        .expect("after the date");
    let times = api_times(&server);
    // The date has one-second resolution: it lies one to two seconds after it was made. The
    // retry waits for it, however late the first request left (a loaded machine).
    assert!(
        times[1] - made >= Duration::from_millis(990),
        "{:?}",
        times[1] - made
    );
    assert!(times[1] > times[0]);
    assert_eq!(c.stats().throttled_429, 1);
}

#[tokio::test]
async fn retry_after_zero_or_absent_backs_off() {
    for headers in [vec![("retry-after", "0".to_owned())], vec![]] {
        let server = first_then_ok((429, headers, "{}".into())).await;
        let c = client(config(&server.base), None);
        let us = users(1);
        post_user_batch(&c, &[BatchRecord::new(&us[0])])
            .await
            .expect("after backoff");
        let times = api_times(&server);
        let gap = times[1] - times[0];
        // First backoff: 20 ms nominal, jittered into [10, 20] ms.
        assert!(
            gap >= Duration::from_millis(10) && gap < Duration::from_millis(500),
            "{gap:?}"
        );
        assert_eq!(c.stats().throttled_429, 1);
    }
}

#[tokio::test]
async fn retries_503_then_succeeds_and_gives_up_on_persistent_errors() {
    let server = first_then_ok((503, vec![], "Service Unavailable".into())).await;
    let c = client(config(&server.base), None);
    let us = users(1);
    let batch = [BatchRecord::new(&us[0])];
    post_user_batch(&c, &batch).await.expect("second attempt");
    assert_eq!(c.stats().retries, 1);
    assert_eq!(server.count(USERS_PATH), 2);

    let down = api_server(|_, _| (502, vec![], "<html>Bad Gateway</html>".into())).await;
    let mut cfg = config(&down.base);
    cfg.max_attempts = 3;
    let c = client(cfg, None);
    let err = post_user_batch(&c, &batch).await.expect_err("gives up");
    assert_eq!(err.status(), Some(502));
    assert!(err.is_retryable());
    assert_eq!(down.count(USERS_PATH), 3);

    let bad = api_server(|_, _| {
        (
            400,
            vec![],
            "<Error><Message>The Request XML is invalid</Message></Error>".into(),
        )
    })
    .await;
    let c = client(config(&bad.base), None);
    let err = post_user_batch(&c, &batch).await.expect_err("not retried");
    assert!(err.to_string().contains("The Request XML is invalid"));
    assert_eq!(bad.count(USERS_PATH), 1);
}

#[tokio::test]
async fn transport_errors_are_retried_then_reported() {
    // Nothing listens on this port once the listener is dropped.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    drop(listener);
    let mut cfg = config(&base);
    cfg.max_attempts = 2;
    let c = client(cfg, None);
    let err = c.authenticate().await.expect_err("no server");
    assert!(matches!(err, ConcurError::Transport { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(c.stats().requests, 2);
}

#[tokio::test]
async fn limiter_never_exceeds_the_rate() {
    let server = api_server(|req, _| ok(all_succeeded(&req.body))).await;
    let mut cfg = config(&server.base);
    cfg.requests_per_second = 5.0;
    let c = client(cfg, None);
    let us = users(1);
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let c = c.clone();
            let u = us[0].clone();
            tokio::spawn(async move { post_user_batch(&c, &[BatchRecord::new(&u)]).await })
        })
        .collect();
    for t in tasks {
        t.await.expect("join").expect("post");
    }
    let times: Vec<Instant> = server.seen().iter().map(|s| s.at).collect();
    assert_eq!(times.len(), 11); // token included
    // Any 6 consecutive requests span at least a second: never 6 within one second.
    for w in times.windows(6) {
        assert!(w[5] - w[0] >= Duration::from_secs(1), "{:?}", w[5] - w[0]);
    }
}

/// A server that fails the given employee ids, lists only the first ten errors and, if
/// `list_successes`, lists the successes.
async fn picky_server(bad: HashSet<String>, list_successes: bool) -> Fake {
    api_server(move |req, _| {
        let profiles = profiles(&req.body);
        let mut errors = String::new();
        let mut infos = String::new();
        let mut failed = 0;
        for (feed, emp) in &profiles {
            if bad.contains(emp) {
                failed += 1;
                if failed <= 10 {
                    errors.push_str(&format!("<error><EmployeeID>{emp}</EmployeeID><FeedRecordNumber>{feed}</FeedRecordNumber><message>Invalid Input: CtryCode ({emp})</message></error>"));
                }
            } else if list_successes {
                infos.push_str(&format!("<UserInfo><EmployeeID>{emp}</EmployeeID><FeedRecordNumber>{feed}</FeedRecordNumber><Status>SUCCESS</Status></UserInfo>"));
            }
        }
        ok(format!(
            r#"<user-batch-result xmlns="http://www.concursolutions.com/api/user/2011/02" xmlns:i="http://www.w3.org/2001/XMLSchema-instance"><records-succeeded>{}</records-succeeded><records-failed>{failed}</records-failed><errors>{errors}</errors><UsersDetails>{infos}</UsersDetails></user-batch-result>"#,
            profiles.len() - failed
        ))
    })
    .await
}

#[tokio::test]
async fn writer_resolves_sixty_failures_when_only_ten_are_listed() {
    let us = users(500);
    let bad: HashSet<String> = (0..60)
        .map(|k| us[k * 8 + 3].employee_id().to_owned())
        .collect();
    for (list_successes, requests) in [(true, 1 + 5), (false, 1 + 49)] {
        let server = picky_server(bad.clone(), list_successes).await;
        let c = client(config(&server.base), None);
        let records: Vec<_> = us.iter().map(BatchRecord::new).collect();
        let outcomes = write_users(&c, &records).await.expect("written");
        assert_eq!(outcomes.len(), 500);
        for (u, o) in us.iter().zip(&outcomes) {
            if bad.contains(u.employee_id()) {
                assert_eq!(
                    o,
                    &RecordOutcome::Failed(format!(
                        "Invalid Input: CtryCode ({})",
                        u.employee_id()
                    ))
                );
            } else {
                assert_eq!(o, &RecordOutcome::Acknowledged, "{}", u.employee_id());
            }
        }
        assert_eq!(
            server.count(USERS_PATH),
            requests,
            "list_successes={list_successes}"
        );
        let sizes: Vec<usize> = server.seen()[2..]
            .iter()
            .map(|s| profiles(&s.body).len())
            .collect();
        assert!(sizes.iter().all(|&n| n <= 10), "{sizes:?}");
    }
}

#[tokio::test]
async fn writer_never_guesses_without_evidence() {
    // A server that only ever answers with counts that do not add up: every record ends
    // Failed with an explanation after being tried whole, in tens and alone.
    let server = api_server(|req, _| {
        let n = profiles(&req.body).len();
        ok(format!(
            "<user-batch-result><records-succeeded>{}</records-succeeded></user-batch-result>",
            n.saturating_sub(1)
        ))
    })
    .await;
    let c = client(config(&server.base), None);
    let us = users(12);
    let records: Vec<_> = us.iter().map(BatchRecord::new).collect();
    let outcomes = write_users(&c, &records).await.expect("written");
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, RecordOutcome::Failed(m) if m.contains("no outcome")))
    );
    assert_eq!(server.count(USERS_PATH), 1 + 2 + 12);

    // A transport failure is an error for the whole call.
    let down = api_server(|_, _| (503, vec![], String::new())).await;
    let mut cfg = config(&down.base);
    cfg.max_attempts = 2;
    let c = client(cfg, None);
    assert!(write_users(&c, &records).await.is_err());
}

#[tokio::test]
async fn password_batch_outcomes_follow_input_order() {
    let server = api_server(|req, _| {
        assert_eq!(req.path, PASSWORDS_PATH);
        assert!(req.body.contains("<UserBatch xmlns=\"http://www.concursolutions.com/api/user/2011/02\">"));
        ok(r#"<BatchResult xmlns="http://www.concursolutions.com/api/user/2011/02"><RecordsSucceeded>1</RecordsSucceeded><RecordsFailed>1</RecordsFailed><UserPasswordStatusList>
            <UserPasswordStatus><LoginID>CM@example.com</LoginID><Status>Failed</Status><Message>This employee doesn't have an Employee ID.</Message></UserPasswordStatus>
            <UserPasswordStatus><LoginID>tb@example.com</LoginID><Status>Success</Status><Message>Password Updated.</Message></UserPasswordStatus>
        </BatchResult>"#.into())
    })
    .await;
    let c = client(config(&server.base), None);
    let (p1, p2, p3) = (
        Secret::new("pw-1-x"),
        Secret::new("pw-2-x"),
        Secret::new("pw-3-x"),
    );
    let out = post_password_batch(
        &c,
        &[
            ("tb@example.com", &p1),
            ("cm@example.com", &p2),
            ("zz@example.com", &p3),
        ],
    )
    .await
    .expect("posted");
    assert_eq!(out[0].outcome, RecordOutcome::Acknowledged);
    assert_eq!(
        out[1].outcome,
        RecordOutcome::Failed("This employee doesn't have an Employee ID.".into())
    );
    assert!(matches!(&out[2].outcome, RecordOutcome::Failed(m) if m.contains("no status")));
    assert_eq!(out[2].login_id, "zz@example.com");
}

#[test]
fn oversized_batches_are_refused_before_sending() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let c = client(config("http://127.0.0.1:9"), None);
        let us = users(501);
        let records: Vec<_> = us.iter().map(BatchRecord::new).collect();
        assert!(matches!(
            post_user_batch(&c, &records).await,
            Err(ConcurError::Batch(_))
        ));
        assert_eq!(c.stats().requests, 0);
    });
}

#[tokio::test]
async fn logs_never_carry_secrets() {
    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }
    let buf = Buf::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(buf.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = fake(|req, seen| {
        if req.path == "/oauth2/v0/token" {
            ok(token_json(
                "ACCESS-TOKEN-SECRET",
                "REFRESH-TOKEN-SECRET",
                "3600",
            ))
        } else if !seen.iter().any(|s| s.path == USERS_PATH) {
            (429, vec![("retry-after", "0".into())], String::new())
        } else {
            ok(all_succeeded(&req.body))
        }
    })
    .await;
    let c = client(config(&server.base), None);
    let us = users(1);
    let pw = Secret::new("PASSWORD-SECRET");
    post_user_batch(
        &c,
        &[BatchRecord {
            password: Some(&pw),
            ..BatchRecord::new(&us[0])
        }],
    )
    .await
    .expect("posted");
    let logs = String::from_utf8(buf.0.lock().expect("lock").clone()).expect("utf8");
    assert!(logs.contains("/api/user/v1.0/Users"), "{logs}");
    for secret in [
        "ACCESS-TOKEN-SECRET",
        "REFRESH-TOKEN-SECRET",
        "PASSWORD-SECRET",
        CLIENT_SECRET,
        REQUEST_TOKEN,
    ] {
        assert!(!logs.contains(secret), "{secret} in logs");
    }
    assert!(!logs.to_ascii_lowercase().contains("authorization"));
}

#[tokio::test]
async fn code_16_moves_the_token_request_to_the_returned_geolocation() {
    let geo = fake(|req, _| match req.path.as_str() {
        "/oauth2/v0/token" => ok(token_json("A", "R", "3600")),
        _ => ok(all_succeeded(&req.body)),
    })
    .await;
    let geo_base = geo.base.clone();
    let home = fake(move |_, _| {
        (
            400,
            vec![],
            format!(
                r#"{{"error":"invalid_grant","error_description":"user lives elsewhere","code":16,"geolocation":"{geo_base}"}}"#
            ),
        )
    })
    .await;
    let store = Arc::new(MemStore::default());
    let mut cfg = config(&home.base);
    cfg.trusted_test_origins = vec![geo.base.clone()];
    let c = client(cfg, Some(store.clone()));
    let us = users(1);
    post_user_batch(&c, &[BatchRecord::new(&us[0])])
        .await
        .expect("token and batch at the geolocation");
    assert_eq!(home.count("/oauth2/v0/token"), 1);
    assert_eq!(geo.count("/oauth2/v0/token"), 1);
    assert_eq!(geo.count(USERS_PATH), 1);
    assert_eq!(c.stats().token_requests, 2);
    assert_eq!(
        store.saved.lock().expect("lock")[0].geolocation.as_deref(),
        Some(geo.base.as_str())
    );
}

#[tokio::test]
async fn an_untrusted_geolocation_is_refused_from_every_source() {
    // `hostile` stands for any host that is not Concur's: nothing may ever reach it.
    let hostile = fake(|_, _| ok(token_json("A", "R", "3600"))).await;
    let bad = format!("{}/", hostile.base);

    // 1. A code-16 refusal naming it.
    let bad16 = bad.clone();
    let home = fake(move |_, _| {
        (
            400,
            vec![],
            format!(r#"{{"error":"invalid_grant","code":16,"geolocation":"{bad16}"}}"#),
        )
    })
    .await;
    let c = client(config(&home.base), None);
    let err = c
        .authenticate()
        .await
        .expect_err("code 16 to a hostile host");
    assert!(
        matches!(
            &err,
            ConcurError::UntrustedGeolocation {
                from: "a code-16 token answer",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains(&hostile.base), "{err}");

    // 2. A value stored by an earlier version: refused once and forgotten, so that the next
    //    request goes to concur.base_url with the stored refresh token.
    let server = api_server(|req, _| ok(all_succeeded(&req.body))).await;
    let store = Arc::new(MemStore {
        initial: Some(StoredToken {
            refresh_token: Secret::new("R-old"),
            geolocation: Some(bad.clone()),
            access_expires_at: None,
            refresh_expires_at: None,
        }),
        ..MemStore::default()
    });
    let c = client(config(&server.base), Some(store.clone()));
    let err = c
        .authenticate()
        .await
        .expect_err("stored hostile geolocation");
    assert!(
        matches!(
            &err,
            ConcurError::UntrustedGeolocation {
                from: "the state database",
                ..
            }
        ),
        "{err:?}"
    );
    let saved = store.saved.lock().expect("lock").clone();
    assert_eq!(saved[0].geolocation, None);
    assert_eq!(saved[0].refresh_token.expose(), "R-old");
    c.authenticate()
        .await
        .expect("then the configured base URL");
    assert_eq!(server.seen()[0].form["grant_type"], "refresh_token");

    assert!(hostile.seen().is_empty(), "{:?}", hostile.seen());
}
