//! Attendees v4: list, lookup by ids / external ids, get, create, partial update. No DELETE.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::http_util::{
    AuthFailure, auth_bearer, encode_component, query_ci, v4_error, validation,
};
use super::state::{Attendee, Shared};

const DEFAULT_LIMIT: usize = 25;
const MAX_LIMIT: usize = 100;
const MAX_IDS: usize = 10;
const REFUSED_TYPES: [&str; 2] = ["NOSHOWS", "SYSEMP"];

fn max_len(field: &str) -> Option<usize> {
    let fixed = match field {
        "attendeeTypeCode" => Some(8),
        "lastName" => Some(132),
        "firstName" => Some(50),
        "company" => Some(150),
        "externalId" => Some(48),
        "middleInitial" => Some(1),
        "suffix" | "title" => Some(32),
        "currencyCode" => Some(3),
        _ => None,
    };
    fixed.or_else(|| {
        let n: usize = field.strip_prefix("custom")?.parse().ok()?;
        match n {
            1..=20 => Some(100),
            21..=25 => Some(48),
            _ => None,
        }
    })
}

fn auth(shared: &Shared, headers: &HeaderMap, path: &str) -> Result<(), Response> {
    auth_bearer(shared, headers).map(|_| ()).map_err(|f| {
        let msg = match f {
            AuthFailure::Missing => "Access denied, authentication is required",
            AuthFailure::Invalid => "Access denied, invalid or expired token",
        };
        v4_error(StatusCode::UNAUTHORIZED, msg, path, Vec::new())
    })
}

fn to_json(shared: &Shared, a: &Attendee) -> Value {
    let mut m = Map::new();
    let g = |k: &str| a.fields.get(k).cloned().unwrap_or_default();
    m.insert("attendeeTypeCode".into(), json!(g("attendeeTypeCode")));
    for k in [
        "firstName",
        "lastName",
        "middleInitial",
        "suffix",
        "company",
        "title",
        "externalId",
    ] {
        m.insert(k.into(), a.fields.get(k).map_or(Value::Null, |v| json!(v)));
    }
    m.insert("hasExceptionsPrevYear".into(), json!(false));
    m.insert("hasExceptionsYtd".into(), json!(false));
    m.insert("totalAmountPrevYear".into(), json!(0));
    m.insert("totalAmountYtd".into(), json!(0));
    m.insert("versionNumber".into(), json!(a.version));
    m.insert("ownerName".into(), json!("Administrator, Simulator"));
    m.insert("ownerUserId".into(), json!(shared.owner_user_id));
    let currency = a
        .fields
        .get("currencyCode")
        .cloned()
        .unwrap_or_else(|| "USD".into());
    m.insert("currencyCode".into(), json!(currency));
    for i in 1..=25 {
        let k = format!("custom{i}");
        if let Some(v) = a.fields.get(&k) {
            m.insert(
                k,
                json!({"type": "Text", "value": v, "code": null, "listItemId": null}),
            );
        }
    }
    m.insert("id".into(), json!(a.id));
    m.insert(
        "uri".into(),
        json!(format!("{}/v4/attendees/{}", shared.base_url, a.id)),
    );
    Value::Object(m)
}

/// Validates a POST/PUT body; returns the string fields to store.
fn validate(body: &[u8], create: bool) -> Result<BTreeMap<String, String>, Vec<Value>> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| vec![validation("body", &format!("Malformed JSON: {e}"), "JSON")])?;
    let Value::Object(obj) = value else {
        return Err(vec![validation(
            "body",
            "The request body must be a JSON object",
            "JSON",
        )]);
    };
    let mut errors = Vec::new();
    let mut out = BTreeMap::new();
    for (k, v) in obj {
        let Some(max) = max_len(&k) else {
            // Unknown or read-only fields are not honoured.
            continue;
        };
        if !create && k == "attendeeTypeCode" {
            continue;
        }
        let s = match v {
            Value::String(s) => s,
            Value::Null => String::new(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            _ => {
                errors.push(validation(&k, &format!("{k} must be a string"), "Type"));
                continue;
            }
        };
        if s.chars().count() > max {
            errors.push(validation(
                &k,
                &format!("{k} exceeds the maximum length of {max}"),
                "Size",
            ));
        }
        out.insert(k, s);
    }
    let required: &[&str] = if create {
        &["attendeeTypeCode", "lastName"]
    } else {
        &[]
    };
    for r in required {
        if out.get(*r).is_none_or(|v| v.trim().is_empty()) {
            errors.push(validation(r, &format!("{r} is required"), "NotBlank"));
        }
    }
    if !create && out.get("lastName").is_some_and(|v| v.trim().is_empty()) {
        errors.push(validation(
            "lastName",
            "lastName must not be blank",
            "NotBlank",
        ));
    }
    if let Some(t) = out.get("attendeeTypeCode")
        && REFUSED_TYPES.contains(&t.to_ascii_uppercase().as_str())
    {
        errors.push(validation(
            "attendeeTypeCode",
            &format!(
                "Attendees of type {} cannot be created or updated",
                t.to_ascii_uppercase()
            ),
            "AttendeeType",
        ));
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

pub(crate) async fn list(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    RawQuery(query): RawQuery,
) -> Response {
    let path = uri.path().to_string();
    if let Err(r) = auth(&shared, &headers, &path) {
        return r;
    }
    let q = query_ci(query.as_deref());
    let bad = |m: &str, id: &str| {
        v4_error(
            StatusCode::BAD_REQUEST,
            m,
            &path,
            vec![validation(id, m, "Parameter")],
        )
    };
    let split = |v: &String| -> Vec<String> {
        v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    let ids = q.get("id").map(split);
    let external = q.get("externalid").map(split);
    for (name, list) in [("id", &ids), ("externalId", &external)] {
        if list.as_ref().is_some_and(|l| l.len() > MAX_IDS) {
            return bad(
                &format!("At most {MAX_IDS} values may be given in {name}"),
                name,
            );
        }
    }
    let limit = match q.get("limit") {
        None => DEFAULT_LIMIT,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => return bad(&format!("limit must be between 1 and {MAX_LIMIT}"), "limit"),
        },
    };
    let offset = match q.get("offset").filter(|v| !v.is_empty()) {
        None => 0,
        Some(v) => match decode_offset(v) {
            Some(n) => n,
            None => return bad("Invalid offset", "offset"),
        },
    };
    let type_filter = q.get("attendeetypecode");
    let inner = shared.lock();
    let selected: Vec<&Attendee> = inner
        .attendees
        .iter()
        .filter(|a| {
            ids.as_ref()
                .is_none_or(|l| l.iter().any(|i| i.eq_ignore_ascii_case(&a.id)))
        })
        .filter(|a| {
            external
                .as_ref()
                .is_none_or(|l| a.fields.get("externalId").is_some_and(|e| l.contains(e)))
        })
        .filter(|a| {
            type_filter.is_none_or(|t| {
                a.fields
                    .get("attendeeTypeCode")
                    .is_some_and(|c| c.eq_ignore_ascii_case(t))
            })
        })
        .collect();
    let items: Vec<Value> = selected
        .iter()
        .skip(offset)
        .take(limit)
        .map(|a| to_json(&shared, a))
        .collect();
    let mut body = json!({"items": items});
    if offset + limit < selected.len() {
        let mut next = format!(
            "{}/v4/attendees?limit={limit}&offset={}",
            shared.base_url,
            encode_offset(offset + limit)
        );
        for (k, v) in [
            ("attendeeTypeCode", q.get("attendeetypecode")),
            ("id", q.get("id")),
            ("externalId", q.get("externalid")),
        ] {
            if let Some(v) = v {
                next.push_str(&format!("&{k}={}", encode_component(v)));
            }
        }
        body["nextPage"] = json!(next);
    }
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// Offsets are opaque to clients.
fn encode_offset(n: usize) -> String {
    hex::encode(format!("o:{n}"))
}

fn decode_offset(s: &str) -> Option<usize> {
    let bytes = hex::decode(s).ok()?;
    String::from_utf8(bytes)
        .ok()?
        .strip_prefix("o:")?
        .parse()
        .ok()
}

pub(crate) async fn get_one(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    Path(id): Path<String>,
) -> Response {
    let path = uri.path().to_string();
    if let Err(r) = auth(&shared, &headers, &path) {
        return r;
    }
    let inner = shared.lock();
    match inner
        .attendees
        .iter()
        .find(|a| a.id.eq_ignore_ascii_case(&id))
    {
        Some(a) => (
            StatusCode::OK,
            axum::Json(json!({"items": [to_json(&shared, a)]})),
        )
            .into_response(),
        None => v4_error(
            StatusCode::NOT_FOUND,
            "Attendee not found",
            &path,
            Vec::new(),
        ),
    }
}

pub(crate) async fn create(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    if let Err(r) = auth(&shared, &headers, &path) {
        return r;
    }
    let fields = match validate(&body, true) {
        Ok(f) => f,
        Err(errors) => {
            return v4_error(StatusCode::BAD_REQUEST, "Validation failed", &path, errors);
        }
    };
    let id = uuid::Uuid::new_v4().to_string();
    let fields = fields.into_iter().filter(|(_, v)| !v.is_empty()).collect();
    {
        let mut inner = shared.lock();
        inner.attendees.push(Attendee {
            id: id.clone(),
            version: 1,
            fields,
        });
        shared.persist(&inner);
    }
    let uri = format!("{}/v4/attendees/{id}", shared.base_url);
    (StatusCode::OK, axum::Json(json!({"id": id, "uri": uri}))).into_response()
}

pub(crate) async fn update(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    if let Err(r) = auth(&shared, &headers, &path) {
        return r;
    }
    let fields = match validate(&body, false) {
        Ok(f) => f,
        Err(errors) => {
            return v4_error(StatusCode::BAD_REQUEST, "Validation failed", &path, errors);
        }
    };
    let mut inner = shared.lock();
    let Some(a) = inner
        .attendees
        .iter_mut()
        .find(|a| a.id.eq_ignore_ascii_case(&id))
    else {
        return v4_error(
            StatusCode::NOT_FOUND,
            "Attendee not found",
            &path,
            Vec::new(),
        );
    };
    let kind = a
        .fields
        .get("attendeeTypeCode")
        .cloned()
        .unwrap_or_default()
        .to_ascii_uppercase();
    if REFUSED_TYPES.contains(&kind.as_str()) {
        let m = format!("Attendees of type {kind} cannot be updated");
        return v4_error(
            StatusCode::BAD_REQUEST,
            &m,
            &path,
            vec![validation("attendeeTypeCode", &m, "AttendeeType")],
        );
    }
    for (k, v) in fields {
        if v.is_empty() {
            a.fields.remove(&k);
        } else {
            a.fields.insert(k, v);
        }
    }
    a.version += 1;
    shared.persist(&inner);
    StatusCode::NO_CONTENT.into_response()
}

/// Snapshot for `/_sim/attendees`.
pub(crate) fn snapshot(shared: &Shared) -> Vec<Value> {
    let inner = shared.lock();
    inner.attendees.iter().map(|a| to_json(shared, a)).collect()
}
