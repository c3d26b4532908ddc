//! UPS `POST /Bulk`: up to 100 operations or 400 KB, answered 202 with a `Provision:Status`
//! whose work runs later (see `provisions.rs`).
//!
//! The request's shape is checked before the 202 and refuses the whole request with 400 and
//! the Concur error body naming the operation: over the limits, `schemas` without
//! `BulkRequest`, a method other than POST/PUT/PATCH (DELETE only when enabled), a path other
//! than `/Users` (POST) or `/Users/{id}`, a POST without `bulkId`, a `bulkId` used twice, a
//! PUT whose `data.id` differs from the path, a `data` that is not a User or PatchOp, a
//! `companyId` query for another company. Attribute rules are checked when the operation runs
//! and fail that operation alone.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{OriginalUri, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::super::faults::{BatchSize, BodySize};
use super::super::http_util::query_ci;
use super::super::state::Shared;
use super::errors::Failure;
use super::filter::member;
use super::patch;
use super::provisions::{self, ExtWork, IdentityWork, Operation, ProvisionType, Work};
use super::status::status_body;
use super::users::{draws, group, replace_all};
use super::{Scope, authorize, correlation_id, json_body, prefix_of, respond, split_resource};

/// Most operations in one request.
pub(crate) const MAX_OPERATIONS: usize = 100;
/// Largest request body ("400KB").
pub(crate) const MAX_BYTES: usize = 400 * 1024;
/// What the server reads before refusing (so that an oversized body gets the Concur answer).
pub(crate) const MAX_READ_BYTES: usize = 16 * 1024 * 1024;

const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
const LIMITS: &str = "Limited to 100 operations or record size of 400KB per request";

fn refuse(at: usize, path: &str, message: impl Into<String>) -> Failure {
    Failure::invalid_value(
        &format!("Operations[{at}].{path}"),
        format!("Operation {}: {}", at + 1, message.into()),
    )
}

/// The user id in `/Users/{id}`.
fn target_of(path: &str) -> Option<&str> {
    let rest = path.trim_end_matches('/');
    let lower = rest.to_ascii_lowercase();
    let id = lower.strip_prefix("/users/").map(|_| &rest[7..])?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

fn is_collection(path: &str) -> bool {
    path.trim_end_matches('/').eq_ignore_ascii_case("/users")
}

/// Moves the member of `obj` named `name` (in any letter case, as [`member`] finds it) out.
fn take_member(obj: &mut Value, name: &str) -> Value {
    let Some(map) = obj.as_object_mut() else {
        return Value::Null;
    };
    let key = if map.contains_key(name) {
        Some(name.to_string())
    } else {
        map.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned()
    };
    key.and_then(|k| map.remove(&k)).unwrap_or(Value::Null)
}

/// One operation of the request, checked for shape.
fn operation(
    at: usize,
    mut raw: Value,
    seen: &mut Vec<String>,
    settings: &super::V4Settings,
) -> Result<Operation, Failure> {
    let method = member(&raw, "method")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_ascii_uppercase();
    let path = member(&raw, "path").and_then(Value::as_str).unwrap_or("");
    let bulk_id = member(&raw, "bulkId")
        .and_then(Value::as_str)
        .filter(|b| !b.is_empty())
        .map(str::to_string);
    if let Some(b) = &bulk_id {
        if seen.contains(b) {
            return Err(refuse(at, "bulkId", format!("bulkId '{b}' is used twice")));
        }
        seen.push(b.clone());
    }
    let target = if method == "POST" {
        if !is_collection(path) {
            return Err(refuse(at, "path", "POST takes the path /Users"));
        }
        if bulk_id.is_none() {
            return Err(refuse(at, "bulkId", "bulkId is required for POST"));
        }
        None
    } else {
        let id = target_of(path)
            .ok_or_else(|| refuse(at, "path", format!("{method} takes the path /Users/{{id}}")))?;
        if id.starts_with("bulkId:") && !settings.bulk_id_references {
            return Err(refuse(at, "path", "bulkId references are not supported"));
        }
        Some(id.to_string())
    };
    let data = take_member(&mut raw, "data");
    let with_op = |e: Failure| {
        let mut e = e;
        for m in &mut e.messages {
            m.message = format!("Operation {}: {}", at + 1, m.message);
            m.schema_path = format!("Operations[{at}].data.{}", m.schema_path);
        }
        e
    };
    let work = match method.as_str() {
        "POST" => {
            let (identity, exts) = split_resource(data).map_err(with_op)?;
            Work {
                target: None,
                identity: Some(IdentityWork::Create(identity)),
                extensions: exts
                    .into_iter()
                    .map(|(u, m)| (u, ExtWork::Replace(m)))
                    .collect(),
                delete: false,
                creating: true,
            }
        }
        "PUT" => {
            let (identity, exts) = split_resource(data).map_err(with_op)?;
            let id = target.clone().unwrap_or_default();
            let same = identity
                .get("id")
                .and_then(Value::as_str)
                .is_some_and(|d| d.eq_ignore_ascii_case(&id));
            if !same {
                return Err(refuse(
                    at,
                    "data.id",
                    "PUT needs data.id equal to the id in the path",
                ));
            }
            let extensions = replace_all(&[], exts);
            Work {
                target,
                identity: Some(IdentityWork::Replace(identity)),
                extensions,
                delete: false,
                creating: false,
            }
        }
        "PATCH" => {
            let ops = patch::parse_body(&data)
                .and_then(patch::split)
                .map_err(with_op)?;
            let (identity, extensions) = group(ops);
            Work {
                target,
                identity: (!identity.is_empty()).then_some(IdentityWork::Patch(identity)),
                extensions,
                delete: false,
                creating: false,
            }
        }
        "DELETE" if settings.bulk_delete => Work {
            target,
            identity: None,
            extensions: Vec::new(),
            delete: true,
            creating: false,
        },
        other => {
            let allowed = if settings.bulk_delete {
                "POST, PUT, PATCH or DELETE"
            } else {
                "POST, PUT or PATCH"
            };
            return Err(refuse(
                at,
                "method",
                format!("method '{other}' is not supported ({allowed})"),
            ));
        }
    };
    let names: Vec<String> = work.extensions.iter().map(|(u, _)| u.clone()).collect();
    Ok(Operation {
        id: (at + 1).to_string(),
        bulk_id,
        method,
        resource: None,
        work: Some(work),
        spend_failure: false,
        done: None,
        extensions: provisions::initial_results(&names),
    })
}

/// A checked request: its operations and `failOnErrors`.
type Parsed = (Vec<Operation>, Option<u64>);

/// A refused request, with its operation count when it could be read.
type Refused = (Failure, Option<usize>);

fn parse(shared: &Shared, query: Option<&str>, body: &[u8]) -> Result<Parsed, Refused> {
    let mut value = json_body(body).map_err(|f| (f, None))?;
    let ops = member(&value, "Operations").and_then(Value::as_array);
    let count = ops.map(Vec::len);
    let fail = |f: Failure| (f, count);
    if body.len() > MAX_BYTES {
        return Err(fail(Failure::new(
            StatusCode::BAD_REQUEST,
            Some("tooLarge"),
            "INVALID_REQUEST",
            LIMITS,
            "",
        )));
    }
    let schemas = value.get("schemas").and_then(Value::as_array);
    if !schemas.is_some_and(|s| {
        s.iter().any(|v| {
            v.as_str()
                .is_some_and(|u| u.eq_ignore_ascii_case(BULK_REQUEST))
        })
    }) {
        return Err(fail(Failure::invalid_value(
            "schemas",
            format!("schemas must contain '{BULK_REQUEST}'"),
        )));
    }
    let ops = ops
        .filter(|o| !o.is_empty())
        .ok_or_else(|| fail(Failure::required("Operations")))?;
    if ops.len() > MAX_OPERATIONS {
        return Err(fail(Failure::new(
            StatusCode::BAD_REQUEST,
            Some("tooMany"),
            "INVALID_REQUEST",
            LIMITS,
            "Operations",
        )));
    }
    let company = shared.lock().v4.company_uuid.clone();
    if let Some(c) = query_ci(query).get("companyid")
        && !c.eq_ignore_ascii_case(&company)
    {
        return Err(fail(Failure::invalid_value(
            "companyId",
            format!("companyId '{c}' is not the company of the access token"),
        )));
    }
    let fail_on_errors = match member(&value, "failOnErrors") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().ok_or_else(|| {
            fail(Failure::invalid_value(
                "failOnErrors",
                "failOnErrors must be a whole number",
            ))
        })?),
    };
    let settings = shared.lock().v4.settings.clone();
    let Value::Array(ops) = take_member(&mut value, "Operations") else {
        return Err(fail(Failure::required("Operations")));
    };
    let mut seen = Vec::new();
    let parsed = ops
        .into_iter()
        .enumerate()
        .map(|(at, raw)| operation(at, raw, &mut seen, &settings))
        .collect::<Result<Vec<_>, _>>()
        .map_err(fail)?;
    Ok((parsed, fail_on_errors))
}

/// `POST /Bulk`.
pub(crate) async fn post(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let mut resp = handle(&shared, &headers, uri.path(), query.as_deref(), &body);
    resp.extensions_mut().insert(BodySize(body.len()));
    resp
}

fn handle(
    shared: &Shared,
    headers: &HeaderMap,
    path: &str,
    query: Option<&str>,
    body: &[u8],
) -> Response {
    if let Err(resp) = authorize(shared, headers, Scope::ProvisionWrite) {
        return resp;
    }
    let (mut ops, fail_on_errors) = match parse(shared, query, body) {
        Ok(parsed) => parsed,
        Err((f, count)) => {
            let mut resp = f.into_response();
            if let Some(n) = count {
                resp.extensions_mut().insert(BatchSize(n));
            }
            return resp;
        }
    };
    let n = ops.len();
    let (stuck, spend) = draws(shared, n);
    for (op, fail) in ops.iter_mut().zip(spend) {
        let carries_spend = op.work.as_ref().is_some_and(|w| {
            w.extensions
                .iter()
                .any(|(u, _)| u == super::model::SPEND_USER)
        });
        op.spend_failure = fail && carries_spend;
    }
    let mut inner = shared.lock();
    let id = provisions::submit(
        &mut inner,
        ProvisionType::Bulk,
        ops,
        shared.now(),
        stuck,
        fail_on_errors,
        correlation_id(headers),
    );
    shared.persist(&inner);
    let location = format!(
        "{}{}/provisions/{id}/status",
        shared.base_url,
        prefix_of(path)
    );
    let body = match inner.v4.provisions.get(&id) {
        Some(p) => status_body(p, &location, None).to_value(),
        None => Value::Null,
    };
    drop(inner);
    let mut resp = respond(StatusCode::ACCEPTED, body);
    if let Ok(l) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, l);
    }
    resp.extensions_mut().insert(BatchSize(n));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_the_collection_or_one_user() {
        assert!(is_collection("/Users") && is_collection("/users/"));
        assert_eq!(target_of("/Users/AbC-1"), Some("AbC-1"));
        assert_eq!(target_of("/Users/"), None);
        assert_eq!(target_of("/Groups/x"), None);
        assert_eq!(target_of("/Users/a/b"), None);
    }
}
