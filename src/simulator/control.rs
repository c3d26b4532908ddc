//! Inspection and control API under `/_sim/` (no authentication).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::faults::Faults;
use super::http_util::query_ci;
use super::state::{Shared, SimUser, StoredUser};
use super::v4::{self, V4Settings, model, status};

/// Endpoint index, served at `GET /_sim/` after the company UUID.
pub(crate) const INDEX: &str = "\
GET    /_sim/users            all users, every element, JSON, sorted by EmpId (no passwords)
POST   /_sim/users            seed users: JSON array of {element: value} (a Password element is hashed)
PUT    /_sim/users/{empid}    edit elements of one user: {element: value}; \"\" or null removes
GET    /_sim/requests         request log: method, path, status (0 = no response), time_ms, arrived_ms, records, fault
DELETE /_sim/requests         clear the request log
GET    /_sim/faults           fault settings
POST   /_sim/faults[?seed=N]  replace fault settings (JSON, missing keys = off); optional RNG reseed
POST   /_sim/expire-tokens    expire every access token now
POST   /_sim/reject           {\"employee_ids\": [...], \"message\": \"...\"}: those records fail in later batches
DELETE /_sim/reject           forget all rejections
GET    /_sim/attendees        all attendees as v4 GET returns them
GET    /_sim/clock            the simulated clock: {\"now\": RFC 3339, \"offset_ms\": N}
POST   /_sim/clock            {\"advance_seconds\": N}: move the simulated clock forward
GET    /_sim/v4/users         every user as UPS GET /Users/{id} shows it, in creation order
POST   /_sim/v4/users         create users through the v4 rules at once: JSON array of User resources
GET    /_sim/v4/provisions    every provision with all its operations
GET    /_sim/v4/deleted       every v4 hard delete: id, employee_number, user_name, at
GET    /_sim/v4/settings      v4 settings (durations in ms)
POST   /_sim/v4/settings      replace v4 settings (JSON, missing keys = defaults)
POST   /_sim/v4/fail-spend    {\"employee_numbers\": [...], \"times\": N}: their spend User extension fails N times
DELETE /_sim/v4/fail-spend    forget failing employee numbers
POST   /_sim/v4/stuck         {\"employee_numbers\": [...]}: their provisions stay pending until the timeout
DELETE /_sim/v4/stuck         forget stuck employee numbers
POST   /_sim/v4/reserve       {\"user_names\": [...]}: taken by another company (409 on create)
";

pub(crate) async fn index(State(shared): State<Arc<Shared>>) -> String {
    format!("company UUID: {}\n\n{INDEX}", shared.company_uuid)
}

pub(crate) async fn users(State(shared): State<Arc<Shared>>) -> Json<Vec<SimUser>> {
    let inner = shared.lock();
    Json(
        inner
            .sorted_users()
            .into_iter()
            .map(StoredUser::to_sim_user)
            .collect(),
    )
}

pub(crate) async fn seed(
    State(shared): State<Arc<Shared>>,
    Json(users): Json<Vec<SimUser>>,
) -> Response {
    let n = users.len();
    let mut inner = shared.lock();
    inner.seed(users, shared.now());
    shared.persist(&inner);
    (StatusCode::OK, Json(json!({"seeded": n}))).into_response()
}

pub(crate) async fn edit(
    State(shared): State<Arc<Shared>>,
    Path(emp_id): Path<String>,
    Json(changes): Json<BTreeMap<String, Value>>,
) -> Response {
    let mut inner = shared.lock();
    let Some(i) = inner.user_by_emp(&emp_id) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "no such user"})),
        )
            .into_response();
    };
    inner.begin_write(i, shared.now());
    for (k, v) in changes {
        let v = match v {
            Value::Null => String::new(),
            Value::String(s) => s,
            other => other.to_string(),
        };
        if k == "Password" {
            inner.users[i].password = Some(super::state::PasswordHash::new(&v));
        } else {
            inner.users[i].set(&k, &v);
        }
    }
    inner.index(i);
    let user = inner.users[i].to_sim_user();
    shared.persist(&inner);
    (StatusCode::OK, Json(user)).into_response()
}

pub(crate) async fn requests(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.lock().requests.clone()).into_response()
}

pub(crate) async fn clear_requests(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.lock().requests.clear();
    StatusCode::NO_CONTENT
}

pub(crate) async fn get_faults(State(shared): State<Arc<Shared>>) -> Json<Faults> {
    Json(shared.lock().faults.clone())
}

pub(crate) async fn set_faults(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
    Json(faults): Json<Faults>,
) -> Response {
    if let Some(seed) = query_ci(query.as_deref()).get("seed") {
        match seed.parse::<u64>() {
            Ok(s) => shared.reseed(s),
            Err(_) => return (StatusCode::BAD_REQUEST, "seed must be an integer").into_response(),
        }
    }
    shared.lock().faults = faults.clone();
    Json(faults).into_response()
}

pub(crate) async fn expire_tokens(State(shared): State<Arc<Shared>>) -> StatusCode {
    expire_all(&shared);
    StatusCode::NO_CONTENT
}

pub(crate) fn expire_all(shared: &Shared) {
    let now = std::time::Instant::now();
    for t in shared.lock().access_tokens.values_mut() {
        t.expires = now;
    }
}

#[derive(Deserialize)]
pub(crate) struct Reject {
    employee_ids: Vec<String>,
    message: String,
}

pub(crate) async fn reject(State(shared): State<Arc<Shared>>, Json(r): Json<Reject>) -> StatusCode {
    let mut inner = shared.lock();
    for id in r.employee_ids {
        inner.rejects.insert(id, r.message.clone());
    }
    StatusCode::NO_CONTENT
}

pub(crate) async fn clear_rejects(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.lock().rejects.clear();
    StatusCode::NO_CONTENT
}

pub(crate) async fn attendees(State(shared): State<Arc<Shared>>) -> Json<Vec<Value>> {
    Json(super::attendees::snapshot(&shared))
}

pub(crate) async fn clock(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(json!({
        "now": model::timestamp(shared.now()),
        "offset_ms": u64::try_from(shared.clock_offset().as_millis()).unwrap_or(u64::MAX),
    }))
}

#[derive(Deserialize)]
pub(crate) struct Advance {
    advance_seconds: f64,
}

pub(crate) async fn advance_clock(
    State(shared): State<Arc<Shared>>,
    Json(a): Json<Advance>,
) -> Response {
    if !(a.advance_seconds.is_finite() && a.advance_seconds >= 0.0) {
        return (StatusCode::BAD_REQUEST, "advance_seconds must be 0 or more").into_response();
    }
    shared.advance_clock(std::time::Duration::from_secs_f64(a.advance_seconds));
    clock(State(shared)).await.into_response()
}

pub(crate) async fn v4_users(State(shared): State<Arc<Shared>>) -> Json<Vec<Value>> {
    let inner = shared.lock();
    Json(
        inner
            .users
            .iter()
            .map(|u| Value::Object(model::full_view(&inner, u.current(), &shared.base_url)))
            .collect(),
    )
}

pub(crate) async fn seed_v4_users(
    State(shared): State<Arc<Shared>>,
    Json(users): Json<Vec<Value>>,
) -> Response {
    let mut inner = shared.lock();
    let result = v4::seed(&mut inner, &users, shared.now());
    shared.persist(&inner);
    match result {
        Ok(ids) => Json(json!({"ids": ids})).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, Json(json!({"error": e}))).into_response(),
    }
}

pub(crate) async fn v4_provisions(State(shared): State<Arc<Shared>>) -> Json<Vec<Value>> {
    Json(status::snapshot(&shared.lock(), &shared.base_url))
}

pub(crate) async fn v4_deleted(State(shared): State<Arc<Shared>>) -> Json<Vec<v4::DeletedUser>> {
    Json(shared.lock().v4.deleted.clone())
}

pub(crate) async fn v4_settings(State(shared): State<Arc<Shared>>) -> Json<V4Settings> {
    Json(shared.lock().v4.settings.clone())
}

pub(crate) async fn set_v4_settings(
    State(shared): State<Arc<Shared>>,
    Json(settings): Json<V4Settings>,
) -> Json<V4Settings> {
    shared.lock().v4.settings = settings.clone();
    Json(settings)
}

#[derive(Deserialize)]
pub(crate) struct EmployeeNumbers {
    employee_numbers: Vec<String>,
    #[serde(default = "one")]
    times: u32,
}

fn one() -> u32 {
    1
}

pub(crate) async fn fail_spend(
    State(shared): State<Arc<Shared>>,
    Json(e): Json<EmployeeNumbers>,
) -> StatusCode {
    let mut inner = shared.lock();
    for id in e.employee_numbers {
        inner.v4.spend_failures.insert(id, e.times);
    }
    StatusCode::NO_CONTENT
}

pub(crate) async fn clear_fail_spend(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.lock().v4.spend_failures.clear();
    StatusCode::NO_CONTENT
}

pub(crate) async fn stick(
    State(shared): State<Arc<Shared>>,
    Json(e): Json<EmployeeNumbers>,
) -> StatusCode {
    shared.lock().v4.stuck.extend(e.employee_numbers);
    StatusCode::NO_CONTENT
}

pub(crate) async fn clear_stuck(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.lock().v4.stuck.clear();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
pub(crate) struct UserNames {
    user_names: Vec<String>,
}

pub(crate) async fn reserve_user_names(
    State(shared): State<Arc<Shared>>,
    Json(n): Json<UserNames>,
) -> StatusCode {
    let mut inner = shared.lock();
    for name in n.user_names {
        inner
            .v4
            .foreign_user_names
            .insert(name.to_ascii_lowercase());
    }
    StatusCode::NO_CONTENT
}
