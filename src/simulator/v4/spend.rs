//! Spend User v4.1 reads: `GET /profile/spend/v4.1/Users[?startIndex&count]` (count default
//! and max 100) and `GET /profile/spend/v4.1/Users/{id}`: the spend extensions (User, Role,
//! Approver and any other stored) of each user. `filter` is not served (400).

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::super::http_util::query_ci;
use super::super::state::{Inner, Shared};
use super::errors::Failure;
use super::identity::LIST_RESPONSE;
use super::model::{MODELED, UserRef, ext_view, extension_urn, meta};
use super::{Scope, authorize, respond};

fn resource(inner: &Inner, u: UserRef<'_>, base_url: &str) -> Value {
    let uuid = u.uuid();
    let mut m = Map::new();
    let mut schemas = Vec::new();
    let mut urns: Vec<&str> = MODELED.to_vec();
    urns.extend(u.v4.other.keys().filter_map(|k| extension_urn(k)));
    for urn in urns.into_iter().filter(|u| u.contains(":spend:")) {
        let v = ext_view(inner, u, urn);
        if !v.is_empty() {
            schemas.push(json!(urn));
            m.insert(urn.to_string(), Value::Object(v));
        }
    }
    m.insert("schemas".into(), Value::Array(schemas));
    m.insert("id".into(), json!(uuid));
    m.insert(
        "meta".into(),
        meta(&u, format!("{base_url}/profile/spend/v4.1/Users/{uuid}")),
    );
    Value::Object(m)
}

/// `GET /profile/spend/v4.1/Users`.
pub(crate) async fn list(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if let Err(resp) = authorize(&shared, &headers, Scope::SpendRead) {
        return resp;
    }
    let q = query_ci(query.as_deref());
    if q.contains_key("filter") {
        return Failure::invalid_input("invalidFilter", "filter is not supported by this server")
            .into_response();
    }
    let number = |k: &str, default: usize| -> Result<usize, Failure> {
        match q.get(k).map(String::as_str) {
            None | Some("") => Ok(default),
            Some(v) => v.parse().map_err(|_| {
                Failure::invalid_input("invalidValue", format!("Invalid value for {k}: {v}"))
            }),
        }
    };
    let (start, count) = match (number("startindex", 1), number("count", 100)) {
        (Ok(s), Ok(c)) if c <= 100 => (s.max(1), c),
        (Err(f), _) | (_, Err(f)) => return f.into_response(),
        (_, Ok(c)) => {
            return Failure::invalid_input(
                "tooMany",
                format!("count {c} is over the maximum of 100"),
            )
            .into_response();
        }
    };
    let inner = shared.lock();
    let page: Vec<Value> = inner
        .users
        .iter()
        .skip(start - 1)
        .take(count)
        .map(|u| resource(&inner, u.current(), &shared.base_url))
        .collect();
    respond(
        StatusCode::OK,
        json!({
            "schemas": [LIST_RESPONSE],
            "totalResults": inner.users.len(),
            "itemsPerPage": page.len(),
            "startIndex": start,
            "Resources": page,
        }),
    )
}

/// `GET /profile/spend/v4.1/Users/{id}`.
pub(crate) async fn get_one(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(resp) = authorize(&shared, &headers, Scope::SpendRead) {
        return resp;
    }
    let inner = shared.lock();
    match inner.user_by_uuid(&id) {
        Some(i) => respond(
            StatusCode::OK,
            resource(&inner, inner.users[i].current(), &shared.base_url),
        ),
        None => Failure::not_found("User not found").into_response(),
    }
}
