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
//! - User Provisioning Service v4 under `/profile/v4` and `/provisioning/v4` (`/Users`,
//!   `/Bulk`, `/provisions/{id}/status`, `/Schemas`, `/ResourceTypes`,
//!   `/ServiceProviderConfig`), Identity v4 and v4.1 (`/profile/identity/v4[.1]/Users`,
//!   `.search`) and Spend User v4.1 (`/profile/spend/v4.1/Users`), in `v4/`;
//! - fault injection (429 with several `Retry-After` forms, 5xx, latency, dropped
//!   connections, applied-then-lost responses; for v4 also transient spend-extension
//!   failures and provisions stuck until the timeout), seedable for deterministic tests;
//! - an unauthenticated inspection and control API under `/_sim/` (see `GET /_sim/`).
//!
//! One tenant, two API views: the users User v1 writes are the users Identity v4.1 lists
//! (each keeps one id; the v4-only attributes are stored beside the v1 elements), so a company
//! moving from v1 to v4 finds its users there, to adopt by employeeNumber.
//!
//! Time in the v4 APIs is a simulated clock (the wall clock plus `SimHandle::advance_clock`):
//! provisions are processed when they are due by that clock, each time the state is read, so
//! tests are deterministic and no background task exists. Tokens expire by the wall clock.
//!
//! Readings of what Concur's v4 documentation leaves open (switchable in [`V4Settings`]
//! unless noted):
//! - a Bulk operation of the wrong shape (no `bulkId` on POST, PUT `data.id` not the path id,
//!   an unknown method or path) refuses the whole request with 400 naming the operation;
//!   attribute rules fail the operation alone, when the provision runs (not switchable);
//! - spend extension rules are checked when the provision runs, for `/Users` too: the 201
//!   only vouches for the identity (not switchable);
//! - `failOnErrors` is accepted and ignored (`honour_fail_on_errors` stops after N failures);
//! - `DELETE` inside `/Bulk` is refused (`bulk_delete`); `bulkId:` references are not
//!   resolved (`bulk_id_references`);
//! - PATCH and PUT answers show the identity only; extension changes are applied by the
//!   provision (not switchable);
//! - Identity filters accept `employeeNumber` bare and URN-prefixed
//!   (`employee_number_filter`); the search lag does not apply to Identity v4 `filter`
//!   look-ups (`lag_applies_to_v4_filter`);
//! - both `companyId` query and token company are accepted; a `companyId` naming another
//!   company is 400 (not switchable);
//! - `DELETE /Users/{id}` answers 204 without a provision (not switchable);
//! - a value filter in a PATCH path that matches nothing creates the element
//!   (`strict_patch_targets` makes `replace` 400 `noTarget`);
//! - a PUT clears every extension its body leaves out ("missing fields are intentional
//!   removals");
//! - a stuck operation holds the rest of its provision (operations run in order) until the
//!   timeout; other provisions go on;
//! - a transient spend failure is `503 SERVICE_UNAVAILABLE` on the spend User extension and
//!   leaves Role and Approver `not-processed`;
//! - `provisionCompleted` and the identity/spend events are not simulated (no webhook, so no
//!   duplicate delivery either): clients poll the status.

// Handlers return early with ready-made responses; boxing them would only add noise.
#![allow(clippy::result_large_err)]

mod attendees;
mod cli;
mod control;
mod faults;
mod handle;
mod http_util;
mod oauth;
mod rest;
mod state;
mod v1;
mod v4;
mod xml;

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
use tower::Layer as _;

pub use cli::{SimulateArgs, run_cli};
pub use faults::{Faults, RetryAfterMode};
pub use handle::SimHandle;
pub use state::{RequestRecord, SimUser};
pub use v4::{DEFAULT_COMPANY_UUID, DeletedUser, EmployeeNumberFilter, V4Settings};

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
    /// The company UUID: Profile's `companyUUID` and the v4 enterprise `companyId`.
    pub company_uuid: String,
    /// v4 timing, scopes and readings.
    pub v4: V4Settings,
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
                .map(ToString::to_string)
                .collect(),
            dialect: Dialect::Wire,
            faults: Faults::default(),
            seed: None,
            state_file: None,
            company_name: "Simulated Company".to_string(),
            company_uuid: DEFAULT_COMPANY_UUID.to_string(),
            v4: V4Settings::default(),
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
            .field("company_uuid", &self.company_uuid)
            .field("v4", &self.v4)
            .finish()
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
        || lower.starts_with("/provisioning/")
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
        .route(
            "/_sim/clock",
            get(control::clock).post(control::advance_clock),
        )
        .route(
            "/_sim/v4/users",
            get(control::v4_users).post(control::seed_v4_users),
        )
        .route("/_sim/v4/provisions", get(control::v4_provisions))
        .route("/_sim/v4/deleted", get(control::v4_deleted))
        .route(
            "/_sim/v4/settings",
            get(control::v4_settings).post(control::set_v4_settings),
        )
        .route(
            "/_sim/v4/fail-spend",
            post(control::fail_spend).delete(control::clear_fail_spend),
        )
        .route(
            "/_sim/v4/stuck",
            post(control::stick).delete(control::clear_stuck),
        )
        .route("/_sim/v4/reserve", post(control::reserve_user_names))
        .merge(v4::routes())
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
        assert_eq!(norm("/provisioning/v4/Bulk/"), "/provisioning/v4/bulk");
        assert_eq!(
            norm("/profile/identity/v4.1/Users/.search"),
            "/profile/identity/v4.1/users/.search"
        );
        assert_eq!(norm("/_sim/users/MixedCase"), "/_sim/users/MixedCase");
    }
}
