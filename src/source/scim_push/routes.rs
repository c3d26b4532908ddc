//! The HTTP side of the endpoint (axum): `/scim/v2/Users` and `/Groups` (list with filter and
//! paging, create, get, replace, modify, delete, `.search`) and the discovery documents. Every
//! request needs the bearer token (compared in constant time; 401 otherwise, before anything is
//! read or stored). Every answer is `application/scim+json`; errors are SCIM error bodies.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use serde_json::{Value, json};

use super::discovery::{self, MAX_RESULTS};
use super::filter::{self, get_ci};
use super::projection::Projection;
use super::resource::{self, Kind, LIST_RESPONSE, Problem};
use super::store::{PushStore, Stored};
use crate::model::Secret;
use crate::source::scim::Mapping;

/// What the handlers share.
pub struct PushState {
    pub store: Mutex<PushStore>,
    pub token: Secret,
    pub mapping: Mapping,
    /// `https` or `http`, for `meta.location`.
    pub scheme: &'static str,
    /// Called after every stored change to a user (the daemon schedules a cycle).
    pub changed: Box<dyn Fn() + Send + Sync>,
}

type Route = MethodRouter<Arc<PushState>>;

pub fn router(state: Arc<PushState>) -> Router {
    let resource = |kind: Kind| -> [Route; 3] {
        [
            get(move |s, q, h| list(s, q, h, kind))
                .post(move |s, h, b| create(s, h, b, kind))
                .fallback(not_allowed),
            get(move |s, p, q, h| read(s, p, q, h, kind))
                .put(move |s, p, h, b| replace(s, p, h, b, kind))
                .patch(move |s, p, h, b| modify(s, p, h, b, kind))
                .delete(move |s, p| remove(s, p, kind))
                .fallback(not_allowed),
            post(move |s, h, b| search(s, h, b, kind)).fallback(not_allowed),
        ]
    };
    let [users, user, user_search] = resource(Kind::User);
    let [groups, group, group_search] = resource(Kind::Group);
    let doc = |v: fn() -> Value| {
        get(move || async move { scim(StatusCode::OK, &v()) }).fallback(not_allowed)
    };
    let scim_routes = Router::new()
        .route("/Users", users)
        .route("/Users/.search", user_search)
        .route("/Users/{id}", user)
        .route("/Groups", groups)
        .route("/Groups/.search", group_search)
        .route("/Groups/{id}", group)
        .route("/.search", post(search_all).fallback(not_allowed))
        .route(
            "/ServiceProviderConfig",
            doc(discovery::service_provider_config),
        )
        .route(
            "/ResourceTypes",
            doc(|| list_of(discovery::resource_types())),
        )
        .route(
            "/ResourceTypes/{id}",
            get(|Path(id): Path<String>| async move { one_of(discovery::resource_types(), &id) })
                .fallback(not_allowed),
        )
        .route("/Schemas", doc(|| list_of(discovery::schemas())))
        .route(
            "/Schemas/{id}",
            get(|Path(id): Path<String>| async move { one_of(discovery::schemas(), &id) })
                .fallback(not_allowed),
        )
        .fallback(|| async {
            problem(&Problem::new(
                404,
                "no such SCIM endpoint (the base is /scim/v2)",
            ))
        });
    Router::new()
        .nest("/scim/v2", scim_routes)
        .fallback(|| async {
            problem(&Problem::new(
                404,
                "no such SCIM endpoint (the base is /scim/v2)",
            ))
        })
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

async fn not_allowed(method: Method) -> Response {
    problem(&Problem::new(405, format!("{method} is not allowed here")))
}

fn list_of(items: Vec<Value>) -> Value {
    json!({"schemas": [LIST_RESPONSE], "totalResults": items.len(), "startIndex": 1,
           "itemsPerPage": items.len(), "Resources": items})
}

fn one_of(items: Vec<Value>, id: &str) -> Response {
    match items.into_iter().find(|i| i["id"].as_str() == Some(id)) {
        Some(v) => scim(StatusCode::OK, &v),
        None => problem(&Problem::new(404, format!("{id:?} not found"))),
    }
}

async fn require_token(State(s): State<Arc<PushState>>, req: Request, next: Next) -> Response {
    if crate::http::bearer::authorized(req.headers(), &s.token) {
        return next.run(req).await;
    }
    tracing::warn!(path = %req.uri().path(), "SCIM push: request without the right bearer token refused");
    let mut resp = problem(&Problem::new(
        401,
        "the bearer token is missing or wrong (source.scim_push.token); nothing was read or stored",
    ));
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"concur-sync SCIM\""),
    );
    resp
}

fn scim(status: StatusCode, body: &Value) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/scim+json"),
    );
    resp
}

fn problem(p: &Problem) -> Response {
    scim(
        StatusCode::from_u16(p.status).unwrap_or(StatusCode::BAD_REQUEST),
        &p.body(),
    )
}

/// The base URL the client used, for `meta.location`.
fn base(s: &PushState, headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("{}://{host}/scim/v2", s.scheme)
}

fn with_location(kind: Kind, stored: &Stored, base: &str) -> Value {
    let mut v = stored.resource.clone();
    if let Some(Value::Object(meta)) = v.get_mut("meta") {
        meta.insert(
            "location".into(),
            Value::from(format!("{base}/{}/{}", kind.endpoint(), stored.id)),
        );
    }
    v
}

/// The answer to an accepted write (`what`: created, replaced, …): logged, a changed user
/// wakes the cycle, the resource as stored.
fn stored_answer(
    s: &PushState,
    headers: &HeaderMap,
    kind: Kind,
    stored: &Stored,
    status: StatusCode,
    what: &str,
) -> Response {
    tracing::info!(kind = kind.as_str(), id = %stored.id, "SCIM push: {what}");
    if kind == Kind::User {
        (s.changed)();
    }
    answer(
        status,
        kind,
        stored,
        &base(s, headers),
        &Projection::default(),
    )
}

fn answer(
    status: StatusCode,
    kind: Kind,
    stored: &Stored,
    base: &str,
    projection: &Projection,
) -> Response {
    let body = projection.apply(with_location(kind, stored, base));
    let mut resp = scim(status, &body);
    if let Ok(etag) = HeaderValue::from_str(&stored.etag()) {
        resp.headers_mut().insert(header::ETAG, etag);
    }
    if status == StatusCode::CREATED
        && let Ok(loc) = HeaderValue::from_str(&format!("{base}/{}/{}", kind.endpoint(), stored.id))
    {
        resp.headers_mut().insert(header::LOCATION, loc);
    }
    resp
}

/// Runs a store operation on the blocking pool.
async fn blocking<T: Send + 'static>(
    s: &Arc<PushState>,
    f: impl FnOnce(&mut PushStore) -> Result<T, Problem> + Send + 'static,
) -> Result<T, Problem> {
    let s = s.clone();
    tokio::task::spawn_blocking(move || {
        let mut store = s.store.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut store)
    })
    .await
    .unwrap_or_else(|_| Err(Problem::new(500, "the request failed; nothing was stored")))
}

fn body_json(body: &Bytes) -> Result<Value, Problem> {
    serde_json::from_slice(body)
        .map_err(|e| Problem::bad("invalidSyntax", format!("the body is not JSON: {e}")))
}

/// The list query: filter, paging, projection.
struct ListQuery {
    filter: Option<String>,
    start: usize,
    count: usize,
    projection: Projection,
}

fn number(v: Option<&Value>, name: &str) -> Result<Option<i64>, Problem> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_i64()),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| Problem::bad("invalidValue", format!("{name}: must be an integer"))),
        Some(_) => Err(Problem::bad(
            "invalidValue",
            format!("{name}: must be an integer"),
        )),
    }
}

fn text_param(v: Option<&Value>) -> Option<String> {
    match v {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Array(a)) => Some(
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(","),
        ),
        _ => None,
    }
}

impl ListQuery {
    fn from(q: &Value) -> Result<ListQuery, Problem> {
        let start = number(get_ci(q, "startIndex"), "startIndex")?
            .unwrap_or(1)
            .max(1) as usize;
        let count = number(get_ci(q, "count"), "count")?
            .map_or(100, |c| c.max(0) as usize)
            .min(MAX_RESULTS);
        Ok(ListQuery {
            filter: text_param(get_ci(q, "filter")).filter(|f| !f.trim().is_empty()),
            start,
            count,
            projection: Projection::from(
                text_param(get_ci(q, "attributes")).as_deref(),
                text_param(get_ci(q, "excludedAttributes")).as_deref(),
            ),
        })
    }
}

async fn run_list(s: Arc<PushState>, headers: HeaderMap, q: ListQuery, kind: Kind) -> Response {
    let parsed = match q.filter.as_deref().map(filter::parse).transpose() {
        Ok(f) => f,
        Err(e) => return problem(&Problem::bad("invalidFilter", format!("filter: {e}"))),
    };
    let lookup = parsed.as_ref().and_then(|f| {
        [kind.name_attr(), "externalId", "id"]
            .into_iter()
            .find_map(|a| f.required(a).map(|v| (a, v.to_owned())))
    });
    let found = blocking(&s, move |store| {
        store.list(kind, lookup.as_ref().map(|(a, v)| (*a, v.as_str())))
    })
    .await;
    let all = match found {
        Ok(all) => all,
        Err(p) => return problem(&p),
    };
    let hits: Vec<&Stored> = all
        .iter()
        .filter(|r| parsed.as_ref().is_none_or(|f| f.matches(&r.resource)))
        .collect();
    let base = base(&s, &headers);
    let page: Vec<Value> = hits
        .iter()
        .skip(q.start - 1)
        .take(q.count)
        .map(|r| q.projection.apply(with_location(kind, r, &base)))
        .collect();
    scim(
        StatusCode::OK,
        &json!({"schemas": [LIST_RESPONSE], "totalResults": hits.len(), "startIndex": q.start,
                "itemsPerPage": page.len(), "Resources": page}),
    )
}

async fn list(
    State(s): State<Arc<PushState>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    kind: Kind,
) -> Response {
    let q = Value::from(
        q.into_iter()
            .map(|(k, v)| (k, Value::from(v)))
            .collect::<serde_json::Map<_, _>>(),
    );
    match ListQuery::from(&q) {
        Ok(q) => run_list(s, headers, q, kind).await,
        Err(p) => problem(&p),
    }
}

async fn search(
    State(s): State<Arc<PushState>>,
    headers: HeaderMap,
    body: Bytes,
    kind: Kind,
) -> Response {
    match body_json(&body).and_then(|b| ListQuery::from(&b)) {
        Ok(q) => run_list(s, headers, q, kind).await,
        Err(p) => problem(&p),
    }
}

/// `POST /.search` at the root: users and groups alike.
async fn search_all(State(s): State<Arc<PushState>>, headers: HeaderMap, body: Bytes) -> Response {
    let q = match body_json(&body).and_then(|b| ListQuery::from(&b)) {
        Ok(q) => q,
        Err(p) => return problem(&p),
    };
    let parsed = match q.filter.as_deref().map(filter::parse).transpose() {
        Ok(f) => f,
        Err(e) => return problem(&Problem::bad("invalidFilter", format!("filter: {e}"))),
    };
    let found = blocking(&s, |store| {
        let mut all: Vec<(Kind, Stored)> = Vec::new();
        for kind in [Kind::User, Kind::Group] {
            all.extend(store.list(kind, None)?.into_iter().map(|r| (kind, r)));
        }
        Ok(all)
    })
    .await;
    let all = match found {
        Ok(all) => all,
        Err(p) => return problem(&p),
    };
    let base = base(&s, &headers);
    let hits: Vec<&(Kind, Stored)> = all
        .iter()
        .filter(|(_, r)| parsed.as_ref().is_none_or(|f| f.matches(&r.resource)))
        .collect();
    let page: Vec<Value> = hits
        .iter()
        .skip(q.start - 1)
        .take(q.count)
        .map(|(kind, r)| q.projection.apply(with_location(*kind, r, &base)))
        .collect();
    scim(
        StatusCode::OK,
        &json!({"schemas": [LIST_RESPONSE], "totalResults": hits.len(), "startIndex": q.start,
                "itemsPerPage": page.len(), "Resources": page}),
    )
}

fn prepared(kind: Kind, mapping: &Mapping, mut v: Value) -> Result<Value, Problem> {
    resource::normalize(kind, &mut v)?;
    resource::check(kind, &v, mapping)?;
    Ok(v)
}

fn projection_of(q: &HashMap<String, String>) -> Projection {
    Projection::from(
        q.get("attributes").map(String::as_str),
        q.get("excludedAttributes").map(String::as_str),
    )
}

async fn create(
    State(s): State<Arc<PushState>>,
    headers: HeaderMap,
    body: Bytes,
    kind: Kind,
) -> Response {
    let v = match body_json(&body).and_then(|v| prepared(kind, &s.mapping, v)) {
        Ok(v) => v,
        Err(p) => return problem(&p),
    };
    match blocking(&s, move |store| store.create(kind, v)).await {
        Ok(stored) => stored_answer(&s, &headers, kind, &stored, StatusCode::CREATED, "created"),
        Err(p) => problem(&p),
    }
}

async fn read(
    State(s): State<Arc<PushState>>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    kind: Kind,
) -> Response {
    let wanted = id.clone();
    match blocking(&s, move |store| store.get(kind, &wanted)).await {
        Ok(Some(stored)) => answer(
            StatusCode::OK,
            kind,
            &stored,
            &base(&s, &headers),
            &projection_of(&q),
        ),
        Ok(None) => problem(&Problem::not_found(kind, &id)),
        Err(p) => problem(&p),
    }
}

fn if_match(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn replace(
    State(s): State<Arc<PushState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
    kind: Kind,
) -> Response {
    let v = match body_json(&body).and_then(|v| prepared(kind, &s.mapping, v)) {
        Ok(v) => v,
        Err(p) => return problem(&p),
    };
    let precondition = if_match(&headers);
    let target = id.clone();
    match blocking(&s, move |store| {
        store.update(kind, &target, precondition.as_deref(), |_| Ok(v))
    })
    .await
    {
        Ok(stored) => stored_answer(&s, &headers, kind, &stored, StatusCode::OK, "replaced"),
        Err(p) => problem(&p),
    }
}

async fn modify(
    State(s): State<Arc<PushState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
    kind: Kind,
) -> Response {
    let ops = match body_json(&body) {
        Ok(v) => v,
        Err(p) => return problem(&p),
    };
    let precondition = if_match(&headers);
    let target = id.clone();
    let state = s.clone();
    let result = blocking(&s, move |store| {
        store.update(kind, &target, precondition.as_deref(), |current| {
            let mut next = current.clone();
            super::patch::apply(&mut next, &ops)?;
            prepared(kind, &state.mapping, next)
        })
    })
    .await;
    match result {
        Ok(stored) => {
            tracing::info!(kind = kind.as_str(), id = %id, "SCIM push: modified");
            if kind == Kind::User {
                (s.changed)();
            }
            answer(
                StatusCode::OK,
                kind,
                &stored,
                &base(&s, &headers),
                &Projection::default(),
            )
        }
        Err(p) => problem(&p),
    }
}

async fn remove(State(s): State<Arc<PushState>>, Path(id): Path<String>, kind: Kind) -> Response {
    let target = id.clone();
    match blocking(&s, move |store| store.delete(kind, &target)).await {
        Ok(true) => {
            tracing::info!(kind = kind.as_str(), id = %id, "SCIM push: deleted");
            if kind == Kind::User {
                (s.changed)();
            }
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(false) => problem(&Problem::not_found(kind, &id)),
        Err(p) => problem(&p),
    }
}
