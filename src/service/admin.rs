//! The admin HTTP endpoint (axum) of the daemon: `/healthz`, `/readyz`, `/metrics`, `/status`
//! and the status page at `/` (rendered by `page`). Every route is a GET; nothing here changes
//! anything.
//!
//! With a token (`admin.token` / `admin.token_file`; required when `admin.listen` is not a
//! loopback address) every path but the probes' and the scraper's (`/healthz`, `/readyz`,
//! `/metrics`) answers 401 unless the request carries it: `Authorization: Bearer TOKEN`, or
//! HTTP Basic with the token as the password, which lets a browser ask for it. The comparison
//! takes the same time whatever the token sent.

use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::metrics::Metrics;
use super::page;
use crate::concur::ConcurClient;
use crate::model::Secret;
use crate::store::{CycleOutcome, Store, StoreError};

/// Cycles the status page charts.
const PAGE_CYCLES: usize = 30;

/// What the endpoints read: their own state-DB connection, the metrics, the client's counters,
/// and the token the protected paths require.
pub struct AdminState {
    pub store: Mutex<Store>,
    pub metrics: Arc<Metrics>,
    pub client: Option<ConcurClient>,
    /// `None`: no token configured (only allowed on a loopback address); every path is open.
    pub token: Option<Secret>,
}

pub fn router(state: Arc<AdminState>) -> Router {
    let protected = Router::new()
        .route("/", get(status_page))
        .route("/status", get(status))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(protected)
        .with_state(state)
}

/// Lets a request through when no token is configured or it carries the token.
async fn require_token(State(s): State<Arc<AdminState>>, req: Request, next: Next) -> Response {
    match &s.token {
        Some(token) if !authorized(req.headers(), token) => {
            tracing::debug!(path = %req.uri().path(), "admin endpoint: request without the admin token refused");
            let mut resp = (
                StatusCode::UNAUTHORIZED,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "401 Unauthorized: this path needs the admin token (admin.token or admin.token_file): send `Authorization: Bearer TOKEN`\n",
            )
                .into_response();
            let headers = resp.headers_mut();
            headers.append(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"concur-sync\""),
            );
            headers.append(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"concur-sync\", charset=\"UTF-8\""),
            );
            resp
        }
        _ => next.run(req).await,
    }
}

/// Whether the request's `Authorization` header carries `token`: as a bearer token, or as the
/// password of HTTP Basic (any user name).
fn authorized(headers: &HeaderMap, token: &Secret) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let (scheme, credentials) = value.trim().split_once(' ').unwrap_or((value, ""));
    let credentials = credentials.trim();
    let offered: Option<String> = if scheme.eq_ignore_ascii_case("bearer") {
        Some(credentials.to_owned())
    } else if scheme.eq_ignore_ascii_case("basic") {
        base64::engine::general_purpose::STANDARD
            .decode(credentials)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|pair| {
                pair.split_once(':')
                    .map(|(_, password)| password.to_owned())
            })
    } else {
        None
    };
    offered.is_some_and(|offered| same_token(&offered, token.expose()))
}

/// Compares digests, so that neither the content nor the length of the token sent changes how
/// long the comparison takes.
fn same_token(offered: &str, token: &str) -> bool {
    let a = Sha256::digest(offered.as_bytes());
    let b = Sha256::digest(token.as_bytes());
    bool::from(a.as_slice().ct_eq(b.as_slice()))
}

/// Headers of every answer that names people: not cached, not sniffed, not framed, no referrer.
fn private_headers(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

async fn status_page(State(s): State<Arc<AdminState>>) -> Response {
    let read = tokio::task::block_in_place(|| {
        let store = s.store.lock().unwrap_or_else(PoisonError::into_inner);
        Ok::<_, StoreError>((store.status()?, store.overview(PAGE_CYCLES)?))
    });
    let mut resp = match read {
        Ok((status, overview)) => {
            let html = page::render(&page::PageData {
                status: &status,
                overview: &overview,
                now: chrono::Utc::now(),
                version: env!("CARGO_PKG_VERSION"),
            });
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                html,
            )
                .into_response()
        }
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("state database unusable: {e}\n"),
        )
            .into_response(),
    };
    private_headers(&mut resp);
    resp.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    resp
}

async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, "ok\n")
}

async fn readyz(State(s): State<Arc<AdminState>>) -> Response {
    let result = tokio::task::block_in_place(|| {
        let store = s.store.lock().unwrap_or_else(PoisonError::into_inner);
        store.ping().map_err(|e| match e {
            StoreError::Sqlite(e) => format!("state database unusable: {e}"),
            e => format!("state database unusable: {e}"),
        })?;
        store
            .status()
            .map_err(|e| format!("state database unusable: {e}"))
    });
    match result {
        Err(reason) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"ready": false, "reason": reason}),
        ),
        Ok(st) => {
            let last = st.last_cycle.as_ref();
            if let Some(c) = last.filter(|c| c.outcome == CycleOutcome::Failed) {
                return json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({
                        "ready": false,
                        "reason": format!("last cycle {} failed: {}", c.id, c.message.clone().unwrap_or_default()),
                        "last_cycle": c,
                    }),
                );
            }
            // A drop-folder alert newer than the last cycle that applied its source.
            let since = st.last_success.as_ref().and_then(|c| c.finished_at.clone());
            if let Some(a) = st
                .alerts
                .iter()
                .find(|a| since.as_deref().is_none_or(|t| a.at.as_str() > t))
            {
                return json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({
                        "ready": false,
                        "reason": format!("drop folder: {}: {}", a.file, a.message),
                        "alerts": st.alerts,
                        "last_cycle": last,
                    }),
                );
            }
            let held = last
                .filter(|c| c.outcome == CycleOutcome::Held && st.outbox.held > 0)
                .map(|c| {
                    json!({
                        "cycle_id": c.id,
                        "deactivations": st.outbox.held,
                        "approve": format!("concur-sync approve {}", c.id),
                        "reject": format!("concur-sync reject {}", c.id),
                    })
                });
            json_response(
                StatusCode::OK,
                json!({"ready": true, "last_cycle": last, "held_plan": held}),
            )
        }
    }
}

async fn metrics(State(s): State<Arc<AdminState>>) -> Response {
    let status = tokio::task::block_in_place(|| {
        let store = s.store.lock().unwrap_or_else(PoisonError::into_inner);
        store.status().ok()
    });
    let client = s.client.as_ref().map(ConcurClient::stats);
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(status.as_ref(), client.as_ref()),
    )
        .into_response()
}

async fn status(State(s): State<Arc<AdminState>>) -> Response {
    let st = tokio::task::block_in_place(|| {
        let store = s.store.lock().unwrap_or_else(PoisonError::into_inner);
        store.status()
    });
    let mut resp = match st {
        Ok(st) => json_response(StatusCode::OK, serde_json::to_value(st).unwrap_or_default()),
        Err(e) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": e.to_string()}),
        ),
    };
    private_headers(&mut resp);
    resp
}

fn json_response(code: StatusCode, body: serde_json::Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{body:#}\n"),
    )
        .into_response()
}
