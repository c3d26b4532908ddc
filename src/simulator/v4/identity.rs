//! Identity v4 and v4.1 reads.
//!
//! - v4 `GET /Users?filter&startIndex&count` (count default 10, max 100): `filter` is one
//!   `eq` on `userName`, `employeeNumber` or `externalId`;
//! - v4.1 `GET /Users?count&cursor&attributes` (count default 100, max 1,000, opaque cursor,
//!   no `nextCursor` on the last page) and `POST /Users/.search` (a SearchRequest: `eq` on
//!   `userName`, `externalId`, `id`, `employeeNumber`, `active`; `meta.lastModified`
//!   `gt|ge|lt|le`; `and`, `or`, parentheses; anything else is 400 `INVALID_INPUT`);
//! - `GET /Users/{id}` on both.
//!
//! Filters are answered by `search.rs` (look-ups by key use the state's indexes), the
//! attribute selection by `attributes.rs`. The v4.1 list and `.search` see each user as of
//! the search lag (a write younger than it is not there yet); GET by id sees every write.
//! Without `identity.user.coresensitive.read` e-mails, addresses, phone numbers and birth
//! dates are left out, without `identity.user.ids.read` the `externalId`, without
//! `identity.user.enterprise.read` the enterprise extension.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::super::http_util::query_ci;
use super::super::state::Shared;
use super::attributes::Shape;
use super::errors::Failure;
use super::model::{UserRef, identity_view};
use super::search::{Query, parse_filter, select};
use super::{Scope, authorize, json_body, respond};

pub(crate) const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const SEARCH_REQUESTS: [&str; 2] = [
    "urn:ietf:params:scim:api:messages:concur:2.0:SearchRequest",
    "urn:ietf:params:scim:api:messages:2.0:SearchRequest",
];

fn number(
    q: &std::collections::HashMap<String, String>,
    k: &str,
    default: usize,
    max: usize,
) -> Result<usize, Failure> {
    match q.get(k).map(String::as_str) {
        None | Some("") => Ok(default),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n <= max => Ok(n),
            Ok(n) => Err(Failure::invalid_input(
                "tooMany",
                format!("{k} {n} is over the maximum of {max}"),
            )),
            Err(_) => Err(Failure::invalid_input(
                "invalidValue",
                format!("Invalid value for {k}: {v}"),
            )),
        },
    }
}

fn encode_cursor(seq: u64) -> String {
    hex::encode(format!("c:{seq}"))
}

fn decode_cursor(c: &str) -> Result<u64, Failure> {
    hex::decode(c)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix("c:").and_then(|n| n.parse().ok()))
        .ok_or_else(|| Failure::invalid_input("invalidValue", format!("Invalid cursor '{c}'")))
}

/// A v4.1 page: `count` users after `after`, with `nextCursor` when more follow.
fn cursor_page(
    shared: &Shared,
    q: Option<&Query>,
    count: usize,
    after: u64,
    shape: &Shape,
) -> Response {
    let now = shared.now();
    let inner = shared.lock();
    let lagged = (!inner.v4.settings.search_lag.is_zero()).then_some(now);
    let all = select(&inner, q, lagged, 0);
    let rest: Vec<&UserRef<'_>> = all.iter().filter(|u| u.seq > after).collect();
    let page: Vec<Value> = rest
        .iter()
        .take(count)
        .map(|u| Value::Object(shape.apply(&inner, identity_view(&inner, **u, &shared.base_url))))
        .collect();
    let mut body = json!({
        "schemas": [LIST_RESPONSE],
        "totalResults": all.len(),
        "itemsPerPage": page.len(),
        "Resources": page,
    });
    if rest.len() > count
        && let Some(last) = rest.get(count.saturating_sub(1))
        && count > 0
    {
        body["nextCursor"] = json!(encode_cursor(last.seq));
    }
    respond(StatusCode::OK, body)
}

/// `GET /profile/identity/v4/Users?filter&startIndex&count`.
pub(crate) async fn list_v4(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if let Err(resp) = authorize(&shared, &headers, Scope::IdentityRead) {
        return resp;
    }
    let q = query_ci(query.as_deref());
    let (start, count) = match (
        number(&q, "startindex", 1, usize::MAX),
        number(&q, "count", 10, 100),
    ) {
        (Ok(s), Ok(c)) => (s.max(1), c),
        (Err(f), _) | (_, Err(f)) => return f.into_response(),
    };
    let settings = shared.lock().v4.settings.clone();
    let query = match q.get("filter").filter(|f| !f.trim().is_empty()) {
        Some(f) => match parse_filter(f, settings.employee_number_filter, true) {
            Ok(query) => Some(query),
            Err(f) => return f.into_response(),
        },
        None => None,
    };
    let company = shared.lock().v4.company_uuid.clone();
    if let Some(c) = q.get("companyid")
        && !c.is_empty()
        && !c.eq_ignore_ascii_case(&company)
    {
        return Failure::invalid_value(
            "companyId",
            format!("companyId '{c}' is not the company of the access token"),
        )
        .into_response();
    }
    let shape = Shape::from_lists(
        q.get("attributes").map_or("", String::as_str),
        q.get("excludedattributes").map_or("", String::as_str),
    );
    let now = shared.now();
    let inner = shared.lock();
    let lagged =
        (settings.lag_applies_to_v4_filter && !settings.search_lag.is_zero()).then_some(now);
    let all = select(&inner, query.as_ref(), lagged, 0);
    let page: Vec<Value> = all
        .iter()
        .skip(start - 1)
        .take(count)
        .map(|u| Value::Object(shape.apply(&inner, identity_view(&inner, *u, &shared.base_url))))
        .collect();
    respond(
        StatusCode::OK,
        json!({
            "schemas": [LIST_RESPONSE],
            "totalResults": all.len(),
            "itemsPerPage": page.len(),
            "startIndex": start,
            "Resources": page,
        }),
    )
}

/// `GET /profile/identity/v4.1/Users?count&cursor&attributes&excludedAttributes`.
pub(crate) async fn list_v41(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if let Err(resp) = authorize(&shared, &headers, Scope::IdentityRead) {
        return resp;
    }
    let q = query_ci(query.as_deref());
    if q.contains_key("startindex") || q.contains_key("filter") {
        return Failure::invalid_input(
            "invalidValue",
            "startIndex and filter are not supported; use cursor, or POST /Users/.search",
        )
        .into_response();
    }
    let count = match number(&q, "count", 100, 1000) {
        Ok(c) => c,
        Err(f) => return f.into_response(),
    };
    let after = match q.get("cursor").filter(|c| !c.is_empty()) {
        Some(c) => match decode_cursor(c) {
            Ok(s) => s,
            Err(f) => return f.into_response(),
        },
        None => 0,
    };
    let shape = Shape::from_lists(
        q.get("attributes").map_or("", String::as_str),
        q.get("excludedattributes").map_or("", String::as_str),
    );
    cursor_page(&shared, None, count, after, &shape)
}

fn string_list(v: Option<&Value>) -> Result<String, Failure> {
    match v {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(a)) => Ok(a
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(",")),
        Some(_) => Err(Failure::invalid_input(
            "invalidValue",
            "attributes must be a list of names",
        )),
    }
}

/// `POST /profile/identity/v4.1/Users/.search`.
pub(crate) async fn search(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(resp) = authorize(&shared, &headers, Scope::IdentityRead) {
        return resp;
    }
    let req = match json_body(&body) {
        Ok(v) => v,
        Err(f) => return f.into_response(),
    };
    let schemas = req
        .get("schemas")
        .and_then(Value::as_array)
        .filter(|s| !s.is_empty());
    let Some(schemas) = schemas else {
        return Failure::invalid_input("invalidValue", "schemas is required and must not be empty")
            .into_response();
    };
    if !schemas.iter().any(|s| {
        s.as_str()
            .is_some_and(|s| SEARCH_REQUESTS.iter().any(|r| r.eq_ignore_ascii_case(s)))
    }) {
        return Failure::invalid_input(
            "invalidValue",
            format!("schemas must contain '{}'", SEARCH_REQUESTS[0]),
        )
        .into_response();
    }
    if req.get("startIndex").is_some() {
        return Failure::invalid_input("invalidValue", "startIndex is not supported; use cursor")
            .into_response();
    }
    let count = match req.get("count") {
        None | Some(Value::Null) => 100,
        Some(v) => match v.as_u64() {
            Some(n) if n <= 1000 => usize::try_from(n).unwrap_or(1000),
            _ => {
                return Failure::invalid_input("tooMany", "count must be a number up to 1000")
                    .into_response();
            }
        },
    };
    let after = match req
        .get("cursor")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
    {
        Some(c) => match decode_cursor(c) {
            Ok(s) => s,
            Err(f) => return f.into_response(),
        },
        None => 0,
    };
    let spelling = shared.lock().v4.settings.employee_number_filter;
    let query = match req.get("filter") {
        None | Some(Value::Null) => None,
        Some(Value::String(f)) if f.trim().is_empty() => None,
        Some(Value::String(f)) => match parse_filter(f, spelling, false) {
            Ok(q) => Some(q),
            Err(f) => return f.into_response(),
        },
        Some(_) => {
            return Failure::invalid_input("invalidFilter", "filter must be a string")
                .into_response();
        }
    };
    let shape = match (
        string_list(req.get("attributes")),
        string_list(req.get("excludedAttributes")),
    ) {
        (Ok(a), Ok(e)) => Shape::from_lists(&a, &e),
        (Err(f), _) | (_, Err(f)) => return f.into_response(),
    };
    cursor_page(&shared, query.as_ref(), count, after, &shape)
}

/// `GET /profile/identity/v4[.1]/Users/{id}`: the current identity, whatever the search lag.
pub(crate) async fn get_one(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    if let Err(resp) = authorize(&shared, &headers, Scope::IdentityRead) {
        return resp;
    }
    let q = query_ci(query.as_deref());
    let shape = Shape::from_lists(
        q.get("attributes").map_or("", String::as_str),
        q.get("excludedattributes").map_or("", String::as_str),
    );
    let inner = shared.lock();
    match inner.user_by_uuid(&id) {
        Some(i) => {
            let view = identity_view(&inner, inner.users[i].current(), &shared.base_url);
            respond(StatusCode::OK, Value::Object(shape.apply(&inner, view)))
        }
        None => Failure::not_found("User not found").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_are_opaque_and_checked() {
        assert_eq!(decode_cursor(&encode_cursor(42)).unwrap(), 42);
        assert!(decode_cursor("zz").is_err());
        assert!(decode_cursor(&hex::encode("42")).is_err());
    }
}
