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
use super::state::{Shared, SimUser};

/// Endpoint index, served at `GET /_sim/`.
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
";

pub(crate) async fn index() -> &'static str {
    INDEX
}

pub(crate) async fn users(State(shared): State<Arc<Shared>>) -> Json<Vec<SimUser>> {
    let inner = shared.lock();
    Json(
        inner
            .sorted_users()
            .into_iter()
            .map(|u| u.to_sim_user())
            .collect(),
    )
}

pub(crate) async fn seed(
    State(shared): State<Arc<Shared>>,
    Json(users): Json<Vec<SimUser>>,
) -> Response {
    let n = users.len();
    let mut inner = shared.lock();
    inner.seed(users);
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
