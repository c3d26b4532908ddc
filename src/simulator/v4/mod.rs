//! SAP Concur's v4 user APIs, over the same tenant User v1 writes:
//!
//! - User Provisioning Service v4 under `/profile/v4` and its alias `/provisioning/v4`:
//!   `POST /Users` (201), `GET|PATCH|PUT|DELETE /Users/{id}`, `POST /Bulk` (202),
//!   `GET /provisions/{id}/status`, `/Schemas`, `/ResourceTypes`, `/ServiceProviderConfig`
//!   (`users.rs`, `bulk.rs`, `provisions.rs`, `schemas.rs`);
//! - Identity v4 (`filter`, `startIndex`) and v4.1 (cursor, `POST /Users/.search`) reads
//!   (`identity.rs`); Spend User v4.1 reads (`spend.rs`);
//! - the SCIM + Concur error body on every 4xx/5xx (`errors.rs`), a `concur-correlationid`
//!   header on every answer, `application/scim+json` when the caller asks for it.
//!
//! `model.rs` maps the stored user to the v4 resource, `store.rs` writes it back,
//! `validate.rs` holds the rules,
//! `patch.rs` the PatchOp engine, `filter.rs` SCIM filters, `apply.rs` what one operation does.

pub(crate) mod apply;
pub(crate) mod attributes;
pub(crate) mod bulk;
pub(crate) mod errors;
pub(crate) mod filter;
pub(crate) mod identity;
pub(crate) mod model;
pub(crate) mod patch;
pub(crate) mod provisions;
pub(crate) mod schemas;
pub(crate) mod search;
pub(crate) mod spend;
pub(crate) mod status;
pub(crate) mod store;
pub(crate) mod users;
pub(crate) mod validate;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{Next, from_fn};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::http_util::{AuthFailure, auth_bearer};
use super::state::{Principal, Shared};
pub use apply::DeletedUser;
use errors::Failure;
use model::{CORE, ENTERPRISE, SAP, known_urn};
use provisions::{Provision, Queues};

/// The company UUID a simulator reports when none is configured.
pub const DEFAULT_COMPANY_UUID: &str = "5e0b3c8a-6f1d-4c2e-9a7b-0c1d2e3f4a5b";

/// Which spellings of `employeeNumber` the Identity filters accept (§1.14 leaves it open).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum EmployeeNumberFilter {
    /// `employeeNumber` and the enterprise URN-prefixed form.
    #[default]
    Both,
    /// Only `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber`.
    Urn,
    /// Only the bare `employeeNumber`.
    Plain,
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// v4 behaviour: timing, scopes, and the readings of what Concur's documentation leaves open.
/// Served as JSON by `GET /_sim/v4/settings` (durations in ms) and replaceable at run time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct V4Settings {
    /// How long after submission a provision's work is done (0: before the first poll).
    #[serde(rename = "provision_delay_ms", with = "millis")]
    pub provision_delay: Duration,
    /// A provision still pending this long after submission is marked failed (Concur: 120 min).
    #[serde(rename = "provision_timeout_ms", with = "millis")]
    pub provision_timeout: Duration,
    /// How long a provision status is kept (Concur: 7 days); 404 afterwards.
    #[serde(rename = "status_retention_ms", with = "millis")]
    pub status_retention: Duration,
    /// Writes younger than this are invisible to `.search` and the v4.1 list (GET by id sees
    /// them at once).
    #[serde(rename = "search_lag_ms", with = "millis")]
    pub search_lag: Duration,
    /// The search lag also applies to the Identity v4 `filter` look-ups.
    pub lag_applies_to_v4_filter: bool,
    /// Scopes the company's tokens hold; `None` grants every scope.
    pub scopes: Option<Vec<String>>,
    /// Accepted spellings of `employeeNumber` in Identity filters.
    pub employee_number_filter: EmployeeNumberFilter,
    /// Honour a Bulk's `failOnErrors`: after that many failed operations, the rest are not
    /// processed. Off by default: Concur's examples send `failOnErrors: 1` yet show later
    /// operations processed.
    pub honour_fail_on_errors: bool,
    /// Accept `DELETE` operations inside `/Bulk` (the swagger allows only POST, PUT, PATCH).
    pub bulk_delete: bool,
    /// Resolve `bulkId:X` references to the user an earlier operation of the same Bulk wrote
    /// (undocumented; off: such a reference is an unknown user).
    pub bulk_id_references: bool,
    /// A PATCH `replace` whose value filter matches nothing is 400 `noTarget` instead of
    /// creating the element.
    pub strict_patch_targets: bool,
}

impl Default for V4Settings {
    fn default() -> Self {
        Self {
            provision_delay: Duration::ZERO,
            provision_timeout: Duration::from_secs(120 * 60),
            status_retention: Duration::from_secs(7 * 24 * 3600),
            search_lag: Duration::ZERO,
            lag_applies_to_v4_filter: false,
            scopes: None,
            employee_number_filter: EmployeeNumberFilter::Both,
            honour_fail_on_errors: false,
            bulk_delete: false,
            bulk_id_references: false,
            strict_patch_targets: false,
        }
    }
}

impl V4Settings {
    /// Whether the company's tokens hold `scope`.
    pub fn grants(&self, scope: &str) -> bool {
        self.scopes
            .as_ref()
            .is_none_or(|s| s.iter().any(|g| g == scope))
    }
}

/// The v4 side of the simulator state.
#[derive(Debug, Default)]
pub(crate) struct V4State {
    pub settings: V4Settings,
    pub company_uuid: String,
    pub provisions: HashMap<String, Provision>,
    pub queues: Queues,
    pub next_provision: u64,
    /// Employee numbers whose operations stay pending until the provision times out.
    pub stuck: HashSet<String>,
    /// Employee number → how many more times its spend User extension fails.
    pub spend_failures: HashMap<String, u32>,
    /// Every hard delete.
    pub deleted: Vec<DeletedUser>,
    /// Lowercased userNames taken in other companies (uniqueness is global).
    pub foreign_user_names: HashSet<String>,
}

/// A scope a route needs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Scope {
    ProvisionWrite,
    ProvisionRead,
    Delete,
    IdentityRead,
    SpendRead,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Self::ProvisionWrite => "user.provision.write",
            Self::ProvisionRead => "user.provision.read",
            Self::Delete => "identity.user.delete",
            Self::IdentityRead => "identity.user.core.read",
            Self::SpendRead => "spend.user.general.read",
        }
    }
}

/// Bearer company token (401 otherwise) holding `scope` (403 naming it otherwise).
pub(crate) fn authorize(
    shared: &Shared,
    headers: &HeaderMap,
    scope: Scope,
) -> Result<(), Response> {
    let principal = auth_bearer(shared, headers).map_err(|f| {
        let message = match f {
            AuthFailure::Missing => "Authorization header missing",
            AuthFailure::Invalid => "Invalid or expired access token",
        };
        let mut resp = Failure::new(StatusCode::UNAUTHORIZED, None, "INVALID_TOKEN", message, "")
            .into_response();
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        resp
    })?;
    if let Principal::User(_) = principal {
        return Err(Failure::new(
            StatusCode::FORBIDDEN,
            None,
            "FORBIDDEN",
            "This API accepts company tokens only",
            "",
        )
        .into_response());
    }
    if !shared.lock().v4.settings.grants(scope.name()) {
        return Err(Failure::new(
            StatusCode::FORBIDDEN,
            None,
            "INSUFFICIENT_SCOPE",
            format!(
                "The access token lacks the scope '{}'; the company's SAP Concur account representative must grant it",
                scope.name()
            ),
            "",
        )
        .into_response());
    }
    Ok(())
}

/// `/provisioning/v4` or `/profile/v4`: the prefix a UPS request came in on.
pub(crate) fn prefix_of(path: &str) -> &'static str {
    if path.to_ascii_lowercase().starts_with("/provisioning/v4") {
        "/provisioning/v4"
    } else {
        "/profile/v4"
    }
}

/// A JSON answer.
pub(crate) fn respond(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// Parses a JSON request body.
pub(crate) fn json_body(body: &[u8]) -> Result<Value, Failure> {
    serde_json::from_slice(body)
        .map_err(|e| Failure::invalid_input("invalidSyntax", format!("Malformed JSON: {e}")))
}

/// A resource body split into its identity (core + enterprise) and its extensions.
pub(crate) type Parts = (Map<String, Value>, Vec<(String, Map<String, Value>)>);

/// Splits a User resource into identity and extensions (moving its members); unknown schema
/// URNs are refused.
pub(crate) fn split_resource(body: Value) -> Result<Parts, Failure> {
    let Value::Object(obj) = body else {
        return Err(Failure::invalid_input(
            "invalidSyntax",
            "The body must be a JSON object",
        ));
    };
    let schemas = obj.get("schemas").and_then(Value::as_array);
    if !schemas.is_some_and(|s| {
        s.iter()
            .any(|v| v.as_str().is_some_and(|u| u.eq_ignore_ascii_case(CORE)))
    }) {
        return Err(Failure::invalid_value(
            "schemas",
            format!("schemas must contain '{CORE}'"),
        ));
    }
    let mut identity = Map::new();
    let mut extensions = Vec::new();
    for (k, v) in obj {
        if k.len() >= 4 && k[..4].eq_ignore_ascii_case("urn:") {
            let urn = known_urn(&k).ok_or_else(|| {
                Failure::invalid_value(&k, format!("Unknown schema extension '{k}'"))
            })?;
            if urn == ENTERPRISE || urn == SAP {
                identity.insert(urn.to_string(), v);
            } else if urn != CORE {
                let Value::Object(m) = v else {
                    return Err(Failure::invalid_value(
                        urn,
                        "an extension must be an object",
                    ));
                };
                extensions.push((urn.to_string(), m));
            }
        } else {
            identity.insert(k, v);
        }
    }
    Ok((identity, extensions))
}

/// Adds `concur-correlationid` (the caller's, or a new one) to every v4 answer, and answers
/// `application/scim+json` to callers that accept it.
async fn envelope(mut req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get("concur-correlationid")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_string);
    let id = given.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let value = HeaderValue::from_str(&id).unwrap_or(HeaderValue::from_static("invalid"));
    req.headers_mut()
        .insert("concur-correlationid", value.clone());
    let scim = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("scim+json"));
    let mut resp = next.run(req).await;
    resp.headers_mut().insert("concur-correlationid", value);
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if scim && is_json {
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/scim+json; charset=utf-8"),
        );
    }
    resp
}

/// The correlation id of a request (set by [`envelope`]).
pub(crate) fn correlation_id(headers: &HeaderMap) -> String {
    headers
        .get("concur-correlationid")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// Every v4 route (paths as `normalize` leaves them: lowercase, no trailing slash).
pub(crate) fn routes() -> Router<Arc<Shared>> {
    let mut r = Router::new();
    for p in ["/profile/v4", "/provisioning/v4"] {
        r = r
            .route(&format!("{p}/users"), post(users::create))
            .route(
                &format!("{p}/users/{{id}}"),
                get(users::get_one)
                    .patch(users::patch)
                    .put(users::put)
                    .delete(users::delete),
            )
            .route(
                &format!("{p}/bulk"),
                post(bulk::post).layer(DefaultBodyLimit::max(bulk::MAX_READ_BYTES)),
            )
            .route(
                &format!("{p}/provisions/{{id}}/status"),
                get(status::status),
            );
        r = schemas::routes(r, p, Scope::ProvisionRead);
    }
    for p in ["/profile/identity/v4", "/profile/identity/v4.1"] {
        r = r.route(&format!("{p}/users/{{id}}"), get(identity::get_one));
        r = schemas::routes(r, p, Scope::IdentityRead);
    }
    r.route("/profile/identity/v4/users", get(identity::list_v4))
        .route("/profile/identity/v4.1/users", get(identity::list_v41))
        .route(
            "/profile/identity/v4.1/users/.search",
            post(identity::search),
        )
        .route("/profile/spend/v4.1/users", get(spend::list))
        .route("/profile/spend/v4.1/users/{id}", get(spend::get_one))
        .layer(from_fn(envelope))
}

/// Creates users through the v4 rules at once (no provision): identity, then each extension.
/// Returns the new ids, or the first refusal as text.
pub(crate) fn seed(
    inner: &mut super::state::Inner,
    users: &[Value],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<String>, String> {
    let text = |f: Failure| {
        f.messages
            .first()
            .map(|m| m.message.clone())
            .unwrap_or_default()
    };
    let mut ids = Vec::new();
    for u in users {
        let (identity, exts) = split_resource(u.clone()).map_err(text)?;
        let i = apply::create(inner, identity, now).map_err(text)?;
        for (urn, m) in exts {
            apply::extension(inner, i, &urn, provisions::ExtWork::Replace(m), true, now)
                .map_err(text)?;
        }
        inner.users[i].v4.visible_from = now;
        inner.users[i].search_prev = None;
        ids.push(inner.users[i].id.to_ascii_lowercase());
    }
    Ok(ids)
}
