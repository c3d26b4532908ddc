//! The admin HTTP endpoint (axum) of the daemon: `/healthz`, `/readyz`, `/metrics`, `/status`.

use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::metrics::Metrics;
use crate::concur::ConcurClient;
use crate::store::{CycleOutcome, Store, StoreError};

/// What the endpoints read: their own state-DB connection, the metrics, the client's counters.
pub struct AdminState {
    pub store: Mutex<Store>,
    pub metrics: Arc<Metrics>,
    pub client: Option<ConcurClient>,
}

pub fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .with_state(state)
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
    match st {
        Ok(st) => json_response(StatusCode::OK, serde_json::to_value(st).unwrap_or_default()),
        Err(e) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": e.to_string()}),
        ),
    }
}

fn json_response(code: StatusCode, body: serde_json::Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{body:#}\n"),
    )
        .into_response()
}
