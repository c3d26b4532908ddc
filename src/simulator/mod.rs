//! The bundled Concur simulator (axum): a sandbox that speaks the Concur wire formats.
//!
//! It implements, with its own wire code, the APIs concur-sync talks to:
//!
//! - `POST /oauth2/v0/token` (company `password` grant with `credtype=authtoken`, user
//!   `password` grant, `refresh_token` grant with rotation);
//! - User v1 under `/api/user/v1.0/`: `POST users` (batch upsert), `GET user[?loginID=]`,
//!   `GET FormFields`, `POST users/password`; paths are case-insensitive;
//! - Bulk User v3.1 `GET /users`, Profile v1 `GET /profile/v1/me`;
//! - Attendees v4 `/v4/attendees` (GET list / by ids, GET/PUT by id, POST; no DELETE);
//! - fault injection (429 with several `Retry-After` forms, 5xx, latency, dropped
//!   connections, applied-then-lost responses), seedable for deterministic tests;
//! - an unauthenticated inspection and control API under `/_sim/` (see `GET /_sim/`).

// Handlers return early with ready-made responses; boxing them would only add noise.
#![allow(clippy::result_large_err)]

mod attendees;
mod control;
mod faults;
mod http_util;
mod oauth;
mod rest;
mod state;
mod v1;
mod xml;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::ServiceExt as _;
use axum::extract::Request;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post, put};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower::Layer as _;

pub use faults::{Faults, RetryAfterMode};
pub use state::{RequestRecord, SimUser};

use faults::{ConnInfo, KillListener};
use state::Shared;

/// Spelling of the User v1 batch response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Dialect {
    /// As captured on the wire: `UsersDetails`, lowercase `message`.
    #[default]
    Wire,
    /// As the documentation spells it: `UserDetails`, `Message`.
    Docs,
}

/// The fields a new user must carry by default (also reported `Required=Y` by FormFields).
pub const DEFAULT_REQUIRED_FIELDS: [&str; 5] = [
    "Password",
    "LedgerKey",
    "FirstName",
    "LastName",
    "EmailAddress",
];

/// Simulator settings.
#[derive(Clone)]
pub struct SimConfig {
    /// Pinned OAuth client id; `None` accepts any.
    pub client_id: Option<String>,
    /// Pinned OAuth client secret; `None` accepts any.
    pub client_secret: Option<String>,
    /// Pinned company id (`username` with `credtype=authtoken`); `None` accepts any.
    pub company_id: Option<String>,
    /// Pinned company request token (`password` with `credtype=authtoken`); `None` accepts any.
    pub request_token: Option<String>,
    /// Access token lifetime (`expires_in`).
    pub token_ttl: Duration,
    /// Elements a new user must carry; FormFields reports them `Required=Y`.
    pub required_fields: Vec<String>,
    /// Spelling of the batch response.
    pub dialect: Dialect,
    /// Initial fault settings.
    pub faults: Faults,
    /// RNG seed for fault draws; `None` = random.
    pub seed: Option<u64>,
    /// JSON state file: loaded at start if present, saved after every change.
    pub state_file: Option<PathBuf>,
    /// Company name reported by Bulk User v3.1 and Profile.
    pub company_name: String,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            client_id: None,
            client_secret: None,
            company_id: None,
            request_token: None,
            token_ttl: Duration::from_secs(3600),
            required_fields: DEFAULT_REQUIRED_FIELDS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            dialect: Dialect::Wire,
            faults: Faults::default(),
            seed: None,
            state_file: None,
            company_name: "Simulated Company".to_string(),
        }
    }
}

impl std::fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pinned = |v: &Option<String>| if v.is_some() { "<pinned>" } else { "<any>" };
        f.debug_struct("SimConfig")
            .field("client_id", &pinned(&self.client_id))
            .field("client_secret", &pinned(&self.client_secret))
            .field("company_id", &pinned(&self.company_id))
            .field("request_token", &pinned(&self.request_token))
            .field("token_ttl", &self.token_ttl)
            .field("required_fields", &self.required_fields)
            .field("dialect", &self.dialect)
            .field("faults", &self.faults)
            .field("seed", &self.seed)
            .field("state_file", &self.state_file)
            .field("company_name", &self.company_name)
            .finish()
    }
}

/// A running simulator. Dropping it stops the server abruptly; prefer [`SimHandle::shutdown`].
pub struct SimHandle {
    addr: SocketAddr,
    base_url: String,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl SimHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://HOST:PORT`, also returned as `geolocation` by the token endpoint.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// Every user, sorted by EmpId (no passwords).
    pub fn users(&self) -> Vec<SimUser> {
        let inner = self.shared.lock();
        inner
            .sorted_users()
            .into_iter()
            .map(|u| u.to_sim_user())
            .collect()
    }

    /// Whether `password` matches the stored hash of the user with this EmpId.
    pub fn password_matches(&self, emp_id: &str, password: &str) -> bool {
        let inner = self.shared.lock();
        inner
            .user_by_emp(emp_id)
            .and_then(|i| inner.users[i].password.as_ref())
            .is_some_and(|h| h.matches(password))
    }

    /// The request log (control endpoints excluded).
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.lock().requests.clone()
    }

    /// Every access and refresh token the token endpoint issued so far, oldest first, so that a
    /// test can scan what the client wrote for them.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.shared.lock().issued_tokens.clone()
    }

    /// Replaces the fault settings.
    pub fn set_faults(&self, faults: Faults) {
        self.shared.lock().faults = faults;
    }

    /// Reseeds the fault RNG.
    pub fn reseed(&self, seed: u64) {
        self.shared.reseed(seed);
    }

    /// Records with these EmpIds fail in later batches with `message`.
    pub fn reject(&self, employee_ids: &[&str], message: &str) {
        let mut inner = self.shared.lock();
        for id in employee_ids {
            inner.rejects.insert((*id).to_string(), message.to_string());
        }
    }

    /// Every access token issued so far is expired from now on.
    pub fn expire_tokens(&self) {
        control::expire_all(&self.shared);
    }

    /// Inserts or replaces users (by EmpId). A `Password` element is stored hashed.
    pub fn seed_users(&self, users: Vec<SimUser>) {
        let mut inner = self.shared.lock();
        inner.seed(users);
        self.shared.persist(&inner);
    }

    /// Stops accepting, lets in-flight requests finish (up to 5 s), then returns.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Lowercases the case-insensitive parts of a path and drops a trailing slash, so that
/// `/api/user/v1.0/Users` and `/users/` reach the same handlers as their canonical forms.
fn normalize(mut req: Request) -> Request {
    let path = req.uri().path();
    let lower = path.to_ascii_lowercase();
    let mut new_path = if lower.starts_with("/api/user/")
        || lower.starts_with("/oauth2/")
        || lower.starts_with("/users")
        || lower.starts_with("/profile/")
    {
        lower
    } else if lower.starts_with("/v4/attendees") {
        format!("/v4/attendees{}", &path["/v4/attendees".len()..])
    } else {
        path.to_string()
    };
    if new_path.len() > 1 && new_path.ends_with('/') && !new_path.starts_with("/_sim") {
        new_path.pop();
    }
    if new_path != req.uri().path() {
        let pq = match req.uri().query() {
            Some(q) => format!("{new_path}?{q}"),
            None => new_path,
        };
        if let Ok(uri) = pq.parse() {
            *req.uri_mut() = uri;
        }
    }
    req
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/oauth2/v0/token", post(oauth::token))
        .route("/api/user/v1.0/users", post(v1::post_users))
        .route("/api/user/v1.0/user", get(v1::get_user))
        .route("/api/user/v1.0/formfields", get(v1::form_fields))
        .route("/api/user/v1.0/users/password", post(v1::post_passwords))
        .route("/users", get(rest::bulk_users))
        .route("/profile/v1/me", get(rest::profile_me))
        .route(
            "/v4/attendees",
            get(attendees::list).post(attendees::create),
        )
        .route(
            "/v4/attendees/{id}",
            get(attendees::get_one).put(attendees::update),
        )
        .route("/_sim", get(control::index))
        .route("/_sim/", get(control::index))
        .route("/_sim/users", get(control::users).post(control::seed))
        .route("/_sim/users/{emp_id}", put(control::edit))
        .route(
            "/_sim/requests",
            get(control::requests).delete(control::clear_requests),
        )
        .route(
            "/_sim/faults",
            get(control::get_faults).post(control::set_faults),
        )
        .route("/_sim/expire-tokens", post(control::expire_tokens))
        .route(
            "/_sim/reject",
            post(control::reject).delete(control::clear_rejects),
        )
        .route("/_sim/attendees", get(control::attendees))
        .layer(from_fn_with_state(shared.clone(), faults::middleware))
        .with_state(shared)
}

/// Starts the simulator on `listen` (port 0 picks a free port) and serves in the background.
pub async fn start(listen: SocketAddr, config: SimConfig) -> std::io::Result<SimHandle> {
    let listener = TcpListener::bind(listen).await?;
    let mut addr = listener.local_addr()?;
    let mut public = addr;
    if public.ip().is_unspecified() {
        public.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let base_url = format!("http://{public}");
    let shared = Arc::new(Shared::new(config, base_url.clone())?);
    let app = tower::util::MapRequestLayer::new(normalize).layer(router(shared.clone()));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let result = axum::serve(
            KillListener(listener),
            app.into_make_service_with_connect_info::<ConnInfo>(),
        )
        .with_graceful_shutdown(async {
            let _ = stopped.await;
        })
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "simulator server stopped with an error");
        }
    });
    if addr.ip().is_unspecified() {
        addr = public;
    }
    Ok(SimHandle {
        addr,
        base_url,
        shared,
        stop: Some(stop),
        task: Some(task),
    })
}

fn parse_share(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("not a number: {s}"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("a share must be between 0 and 1, got {v}"))
    }
}

/// `concur-sync simulate`: run the simulator as a server.
#[derive(clap::Args, Clone)]
pub struct SimulateArgs {
    /// Address to listen on, e.g. 127.0.0.1:8080 (port 0 picks a free port).
    #[arg(long)]
    pub listen: SocketAddr,
    /// JSON state file: loaded at start if present, saved after every change.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Accept only this OAuth client id.
    #[arg(long)]
    pub client_id: Option<String>,
    /// Accept only this OAuth client secret.
    #[arg(long)]
    pub client_secret: Option<String>,
    /// Accept only this company id (token `username` with credtype=authtoken).
    #[arg(long)]
    pub company_id: Option<String>,
    /// Accept only this company request token (token `password` with credtype=authtoken).
    #[arg(long)]
    pub request_token: Option<String>,
    /// Access token lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    pub token_ttl_seconds: u64,
    /// Elements required for new users (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_REQUIRED_FIELDS.map(String::from))]
    pub required_fields: Vec<String>,
    /// Spelling of the User v1 batch response.
    #[arg(long, value_enum, default_value_t = Dialect::Wire)]
    pub dialect: Dialect,
    /// Share of API requests answered 429 (0..1).
    #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
    pub fault_429: f64,
    /// Retry-After on 429: seconds:N (or N), date:N, 0, absent.
    #[arg(long, default_value = "seconds:1")]
    pub retry_after: RetryAfterMode,
    /// Share of API requests answered 500/502/503/504 (0..1).
    #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
    pub fault_5xx: f64,
    /// Latency added to every API request, in ms.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Share of API requests whose connection is closed without a response (0..1).
    #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
    pub fault_drop: f64,
    /// Share of API writes applied, then the connection closed without a response (0..1).
    #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
    pub fault_lost_response: f64,
    /// Also inject faults on the token endpoint.
    #[arg(long)]
    pub fault_token_endpoint: bool,
    /// Seed for the fault RNG (deterministic fault sequence).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Company name reported by Bulk User v3.1 and Profile.
    #[arg(long, default_value = "Simulated Company")]
    pub company_name: String,
}

impl SimulateArgs {
    /// The configuration these flags describe.
    pub fn to_config(&self) -> SimConfig {
        SimConfig {
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
            company_id: self.company_id.clone(),
            request_token: self.request_token.clone(),
            token_ttl: Duration::from_secs(self.token_ttl_seconds),
            required_fields: self.required_fields.clone(),
            dialect: self.dialect,
            faults: Faults {
                rate_429: self.fault_429,
                retry_after: self.retry_after,
                rate_5xx: self.fault_5xx,
                latency_ms: self.latency_ms,
                rate_drop: self.fault_drop,
                rate_lost_response: self.fault_lost_response,
                include_token_endpoint: self.fault_token_endpoint,
            },
            seed: self.seed,
            state_file: self.state.clone(),
            company_name: self.company_name.clone(),
        }
    }
}

/// Serves until `shutdown` resolves. Prints `simulator listening on http://…` to stdout.
pub async fn run_cli(args: SimulateArgs, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let handle = start(args.listen, args.to_config())
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the simulator on {}: {e}", args.listen))?;
    println!("simulator listening on {}", handle.base_url());
    shutdown.await;
    handle.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_modes_parse() {
        assert_eq!("seconds:5".parse(), Ok(RetryAfterMode::Seconds(5)));
        assert_eq!("7".parse(), Ok(RetryAfterMode::Seconds(7)));
        assert_eq!("date:30".parse(), Ok(RetryAfterMode::HttpDate(30)));
        assert_eq!("0".parse(), Ok(RetryAfterMode::Zero));
        assert_eq!("absent".parse(), Ok(RetryAfterMode::Absent));
        assert!("soon".parse::<RetryAfterMode>().is_err());
    }

    #[test]
    fn paths_are_normalized_where_casing_is_loose() {
        let norm = |p: &str| {
            let req = Request::builder()
                .uri(p)
                .body(axum::body::Body::empty())
                .expect("valid request");
            normalize(req).uri().to_string()
        };
        assert_eq!(norm("/api/user/v1.0/Users"), "/api/user/v1.0/users");
        assert_eq!(
            norm("/api/user/v1.0/User?loginID=a%40b"),
            "/api/user/v1.0/user?loginID=a%40b"
        );
        assert_eq!(norm("/users/?limit=5"), "/users?limit=5");
        assert_eq!(norm("/V4/Attendees/AbC"), "/v4/attendees/AbC");
        assert_eq!(norm("/_sim/users/MixedCase"), "/_sim/users/MixedCase");
    }
}
