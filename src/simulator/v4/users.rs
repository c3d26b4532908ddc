//! UPS `/Users`: `POST` (201), `GET`, `PATCH`, `PUT` (200) and `DELETE` (204) of one user.
//!
//! The identity (core + enterprise) is validated and written before the answer; the
//! extensions go to a provision (`meta.provisionId`, `meta.statusUrl`) and are applied when it
//! runs. The answer carries the identity only: whether Concur's PATCH answer reflects spend
//! changes is not documented, and here they are not applied yet when it is sent.

use std::sync::{Arc, MutexGuard};

use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::super::state::{Inner, Shared};
use super::errors::Failure;
use super::model::{MODELED, SPEND_USER, full_view, identity_view};
use super::patch::{self, PatchOp};
use super::provisions::{self, ExtWork, IdentityWork, Operation, Outcome, ProvisionType, Work};
use super::{
    Scope, apply, authorize, correlation_id, json_body, prefix_of, respond, split_resource,
};

/// The fault draws of one submission: whether its provision sticks, and per operation whether
/// its Spend part fails.
pub(crate) type Draws = (bool, Vec<bool>);

/// Draws of the v4 fault rates for one submission.
pub(crate) fn draws(shared: &Shared, ops: usize) -> Draws {
    let faults = shared.lock().faults.clone();
    let draw = |rate: f64| rate > 0.0 && shared.roll() < rate;
    let stuck = draw(faults.rate_stuck);
    (
        stuck,
        (0..ops).map(|_| draw(faults.rate_spend_failure)).collect(),
    )
}

/// Groups PATCH operations by the part they write: identity first, then each extension.
pub(crate) fn group(ops: Vec<PatchOp>) -> (Vec<Value>, Vec<(String, ExtWork)>) {
    let mut identity = Vec::new();
    let mut exts: Vec<(String, Vec<Value>)> = Vec::new();
    for op in ops {
        match op.part() {
            None => identity.push(op.to_json()),
            Some(urn) => match exts.iter_mut().find(|(u, _)| u == urn) {
                Some((_, list)) => list.push(op.to_json()),
                None => exts.push((urn.to_string(), vec![op.to_json()])),
            },
        }
    }
    let exts = exts
        .into_iter()
        .map(|(u, list)| (u, ExtWork::Patch(list)))
        .collect();
    (identity, exts)
}

/// The one operation of a `/Users` provision, whose identity part is done.
struct UserOp<'a> {
    method: &'a str,
    /// The identity's result and code.
    core: (Outcome, &'a str),
    extensions: Vec<(String, ExtWork)>,
    creating: bool,
    draws: Draws,
}

/// Submits the provision of `u` on user `i`, persists the tenant and answers with the user's
/// identity and the provision's status link (201 for a create, else 200).
impl<'a> UserOp<'a> {
    /// A write by `method`; a `POST` creates the user.
    fn new(
        method: &'a str,
        core: (Outcome, &'a str),
        extensions: Vec<(String, ExtWork)>,
        draws: Draws,
    ) -> Self {
        UserOp {
            method,
            core,
            extensions,
            creating: method == "POST",
            draws,
        }
    }
}

fn submit(
    shared: &Shared,
    inner: &mut Inner,
    headers: &HeaderMap,
    uri_path: &str,
    i: usize,
    u: UserOp<'_>,
) -> Response {
    let status = if u.creating {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let id = inner.users[i].id.to_ascii_lowercase();
    let pid = submit_user(shared, inner, headers, id, u);
    shared.persist(inner);
    answer(shared, inner, uri_path, i, &pid, status)
}

fn submit_user(
    shared: &Shared,
    inner: &mut Inner,
    headers: &HeaderMap,
    id: String,
    u: UserOp<'_>,
) -> String {
    let UserOp {
        method,
        core,
        extensions,
        creating,
        draws,
    } = u;
    let names: Vec<String> = extensions.iter().map(|(u, _)| u.clone()).collect();
    let mut results = provisions::initial_results(&names);
    if let Some(e) = results.first_mut() {
        e.set(core.0, core.1, Vec::new());
    }
    let spend = extensions.iter().any(|(u, _)| u == SPEND_USER);
    let op = Operation {
        id: "1".into(),
        bulk_id: None,
        method: method.into(),
        resource: Some(id.clone()),
        work: Some(Work {
            target: Some(id),
            identity: None,
            extensions,
            delete: false,
            creating,
        }),
        spend_failure: spend && draws.1.first().copied().unwrap_or(false),
        done: None,
        extensions: results,
    };
    provisions::submit(
        inner,
        ProvisionType::User,
        vec![op],
        shared.now(),
        draws.0,
        None,
        correlation_id(headers),
    )
}

/// The identity answer with the provision's `meta` entries.
fn answer(
    shared: &Shared,
    inner: &Inner,
    uri_path: &str,
    i: usize,
    provision: &str,
    status: StatusCode,
) -> Response {
    let mut body = identity_view(inner, inner.users[i].current(), &shared.base_url);
    let location = body["meta"]["location"].clone();
    if let Some(Value::Object(meta)) = body.get_mut("meta") {
        meta.insert("provisionId".into(), json!(provision));
        meta.insert(
            "statusUrl".into(),
            json!(format!(
                "{}{}/provisions/{provision}/status",
                shared.base_url,
                prefix_of(uri_path)
            )),
        );
    }
    let mut resp = respond(status, Value::Object(body));
    if status == StatusCode::CREATED
        && let Some(l) = location
            .as_str()
            .and_then(|l| HeaderValue::from_str(l).ok())
    {
        resp.headers_mut().insert(header::LOCATION, l);
    }
    resp
}

fn find(inner: &Inner, id: &str) -> Result<usize, Response> {
    inner
        .user_by_uuid(id)
        .ok_or_else(|| Failure::not_found("User not found").into_response())
}

/// The fault draws of one write, the tenant (locked) and the index of the user `id` names.
fn locked_user<'s>(
    shared: &'s Shared,
    id: &str,
) -> Result<(Draws, MutexGuard<'s, Inner>, usize), Response> {
    let draws = draws(shared, 1);
    let inner = shared.lock();
    let i = find(&inner, id)?;
    Ok((draws, inner, i))
}

/// `POST /Users`: 201 with the identity and the provision of its extensions.
pub(crate) async fn create(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    body: Bytes,
) -> Response {
    if let Err(resp) = authorize(&shared, &headers, Scope::ProvisionWrite) {
        return resp;
    }
    let (identity, exts) = match json_body(&body).and_then(split_resource) {
        Ok(parts) => parts,
        Err(f) => return f.into_response(),
    };
    let draws = draws(&shared, 1);
    let mut inner = shared.lock();
    let i = match apply::create(&mut inner, identity, shared.now()) {
        Ok(i) => i,
        Err(f) => return f.into_response(),
    };
    let works = exts
        .into_iter()
        .map(|(u, m)| (u, ExtWork::Replace(m)))
        .collect();
    let op = UserOp::new("POST", (Outcome::Success, "201"), works, draws);
    submit(&shared, &mut inner, &headers, uri.path(), i, op)
}

/// `GET /Users/{id}` on UPS: the whole resource, extensions included.
pub(crate) async fn get_one(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(resp) = authorize(&shared, &headers, Scope::ProvisionWrite) {
        return resp;
    }
    let inner = shared.lock();
    match find(&inner, &id) {
        Ok(i) => respond(
            StatusCode::OK,
            Value::Object(full_view(
                &inner,
                inner.users[i].current(),
                &shared.base_url,
            )),
        ),
        Err(resp) => resp,
    }
}

/// `PATCH /Users/{id}`: identity operations now, extension operations in a provision.
pub(crate) async fn patch(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if let Err(resp) = authorize(&shared, &headers, Scope::ProvisionWrite) {
        return resp;
    }
    let ops = match json_body(&body)
        .and_then(|v| patch::parse_body(&v))
        .and_then(patch::split)
    {
        Ok(ops) => ops,
        Err(f) => return f.into_response(),
    };
    let (identity, exts) = group(ops);
    let (draws, mut inner, i) = match locked_user(&shared, &id) {
        Ok(found) => found,
        Err(resp) => return resp,
    };
    let core = if identity.is_empty() {
        Outcome::NoOp
    } else {
        match apply::update(&mut inner, i, &IdentityWork::Patch(identity), shared.now()) {
            Ok(true) => Outcome::Success,
            Ok(false) => Outcome::NoOp,
            Err(f) => return f.into_response(),
        }
    };
    let op = UserOp::new("PATCH", (core, "200"), exts, draws);
    submit(&shared, &mut inner, &headers, uri.path(), i, op)
}

/// The extension work of a full replace: every modeled extension, every extension in `held`
/// (what the user holds) and every extension of the body is replaced, an absent one by nothing.
pub(crate) fn replace_all(
    held: &[String],
    exts: Vec<(String, Map<String, Value>)>,
) -> Vec<(String, ExtWork)> {
    let mut names: Vec<String> = MODELED.iter().map(ToString::to_string).collect();
    names.extend(held.iter().cloned());
    names.extend(exts.iter().map(|(u, _)| u.clone()));
    let mut out: Vec<(String, ExtWork)> = Vec::new();
    for n in names {
        if out.iter().any(|(u, _)| *u == n) {
            continue;
        }
        let value = exts
            .iter()
            .find(|(u, _)| *u == n)
            .map(|(_, m)| m.clone())
            .unwrap_or_default();
        out.push((n, ExtWork::Replace(value)));
    }
    out
}

/// `PUT /Users/{id}`: a full replace; every attribute left out is removed.
pub(crate) async fn put(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if let Err(resp) = authorize(&shared, &headers, Scope::ProvisionWrite) {
        return resp;
    }
    let (identity, exts) = match json_body(&body).and_then(split_resource) {
        Ok(parts) => parts,
        Err(f) => return f.into_response(),
    };
    if let Some(given) = identity.get("id").and_then(Value::as_str)
        && !given.eq_ignore_ascii_case(&id)
    {
        return Failure::invalid_value("id", "id does not match the path").into_response();
    }
    let (draws, mut inner, i) = match locked_user(&shared, &id) {
        Ok(found) => found,
        Err(resp) => return resp,
    };
    let core = match apply::update(
        &mut inner,
        i,
        &IdentityWork::Replace(identity),
        shared.now(),
    ) {
        Ok(true) => Outcome::Success,
        Ok(false) => Outcome::NoOp,
        Err(f) => return f.into_response(),
    };
    let held: Vec<String> = inner.users[i].v4.other.keys().cloned().collect();
    let works = replace_all(&held, exts);
    let op = UserOp::new("PUT", (core, "200"), works, draws);
    submit(&shared, &mut inner, &headers, uri.path(), i, op)
}

/// `DELETE /Users/{id}`: a hard delete (204), recorded for `GET /_sim/v4/deleted`.
pub(crate) async fn delete(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(resp) = authorize(&shared, &headers, Scope::Delete) {
        return resp;
    }
    let mut inner = shared.lock();
    let i = match find(&inner, &id) {
        Ok(i) => i,
        Err(resp) => return resp,
    };
    apply::delete(&mut inner, i, shared.now());
    shared.persist(&inner);
    StatusCode::NO_CONTENT.into_response()
}
