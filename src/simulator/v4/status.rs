//! The `Provision:Status` answer of `GET /provisions/{id}/status` (and of the 202 to a write),
//! serialized straight from the provision: a Bulk's status lists every operation with a
//! result per extension, and clients poll it after each Bulk.
//!
//! Members are declared in the order `serde_json` prints a map (by name), so the answer reads
//! the same whether it is sent from here or rebuilt as a `Value` (control API).

use std::sync::Arc;

use axum::extract::{OriginalUri, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;

use super::super::http_util::query_ci;
use super::super::state::{Inner, Shared};
use super::errors::{Failure, Msg};
use super::model::timestamp;
use super::provisions::{ExtResult, Operation, Outcome, Provision, ProvisionType, STATUS_SCHEMA};
use super::{Scope, authorize, prefix_of};

/// Which operations a status page lists.
pub(crate) struct Page {
    pub start: usize,
    pub count: usize,
    pub state: Option<String>,
}

/// `{"completed", "success"}` of a provision or an operation, with its code once done.
#[derive(Serialize)]
struct Done<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'a str>,
    completed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<Outcome>,
    success: Option<bool>,
}

#[derive(Serialize)]
struct ExtJson<'a> {
    #[serde(skip_serializing_if = "<[Msg]>::is_empty")]
    messages: &'a [Msg],
    name: &'a str,
    status: Done<'a>,
}

impl<'a> From<&'a ExtResult> for ExtJson<'a> {
    fn from(e: &'a ExtResult) -> Self {
        let status = match e.result {
            Outcome::Processing => Done {
                code: None,
                completed: false,
                result: Some(Outcome::Processing),
                success: None,
            },
            r => Done {
                code: Some(&e.code),
                completed: true,
                result: Some(r),
                success: Some(matches!(r, Outcome::Success | Outcome::NoOp)),
            },
        };
        Self {
            messages: &e.messages,
            name: &e.name,
            status,
        }
    }
}

#[derive(Serialize)]
struct Resource<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct OpJson<'a> {
    #[serde(rename = "bulkId", skip_serializing_if = "Option::is_none")]
    bulk_id: Option<&'a str>,
    extensions: Vec<ExtJson<'a>>,
    id: &'a str,
    method: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource: Option<Resource<'a>>,
    status: Done<'a>,
}

impl<'a> From<&'a Operation> for OpJson<'a> {
    fn from(op: &'a Operation) -> Self {
        let status = match &op.done {
            Some((ok, code)) => Done {
                code: Some(code),
                completed: true,
                result: None,
                success: Some(*ok),
            },
            None => Done {
                code: None,
                completed: false,
                result: None,
                success: None,
            },
        };
        Self {
            bulk_id: op.bulk_id.as_deref(),
            extensions: op.extensions.iter().map(ExtJson::from).collect(),
            id: &op.id,
            method: &op.method,
            resource: op
                .resource
                .as_deref()
                .map(|id| Resource { id, kind: "User" }),
            status,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Meta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    completed: Option<String>,
    correlation_id: &'a str,
    created: String,
    last_modified: String,
    location: &'a str,
    provision_type: ProvisionType,
    resource_type: &'static str,
}

#[derive(Serialize)]
struct Counts {
    failed: usize,
    pending: usize,
    success: usize,
    total: usize,
}

/// The `Provision:Status` body; with a page, the operations it selects.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StatusBody<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    items_per_page: Option<usize>,
    meta: Meta<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    operations: Option<Vec<OpJson<'a>>>,
    operations_count: Counts,
    schemas: [&'static str; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    start_index: Option<usize>,
    status: Done<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    total_results: Option<usize>,
}

impl StatusBody<'_> {
    pub(crate) fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// The `Provision:Status` body of `p`; with `page`, the operations it selects.
pub(crate) fn status_body<'a>(
    p: &'a Provision,
    location: &'a str,
    page: Option<&Page>,
) -> StatusBody<'a> {
    let (ok, failed, pending) = p.counts();
    let completed = pending == 0;
    let meta = Meta {
        completed: p.completed.filter(|_| completed).map(timestamp),
        correlation_id: &p.correlation_id,
        created: timestamp(p.created),
        last_modified: timestamp(p.last_modified),
        location,
        provision_type: p.kind,
        resource_type: "ProvisionRequest",
    };
    let mut body = StatusBody {
        id: &p.id,
        items_per_page: None,
        meta,
        operations: None,
        operations_count: Counts {
            failed,
            pending,
            success: ok,
            total: p.ops.len(),
        },
        schemas: [STATUS_SCHEMA],
        start_index: None,
        status: Done {
            code: None,
            completed,
            result: None,
            success: completed.then_some(failed == 0),
        },
        total_results: None,
    };
    if let Some(page) = page {
        let selected: Vec<&Operation> = p
            .ops
            .iter()
            .filter(|op| match page.state.as_deref() {
                Some("pending") => op.done.is_none(),
                Some("success") => matches!(op.done, Some((true, _))),
                Some("failed") => matches!(op.done, Some((false, _))),
                _ => true,
            })
            .collect();
        let items: Vec<OpJson<'_>> = selected
            .iter()
            .skip(page.start.saturating_sub(1))
            .take(page.count)
            .map(|op| OpJson::from(*op))
            .collect();
        body.total_results = Some(selected.len());
        body.items_per_page = Some(items.len());
        body.start_index = Some(page.start);
        body.operations = Some(items);
    }
    body
}

/// Every provision with all its operations (control API, `SimHandle::provisions`).
pub(crate) fn snapshot(inner: &Inner, base_url: &str) -> Vec<Value> {
    super::provisions::persisted(inner)
        .iter()
        .map(|p| {
            let page = Page {
                start: 1,
                count: usize::MAX,
                state: None,
            };
            let location = format!("{base_url}/profile/v4/provisions/{}/status", p.id);
            status_body(p, &location, Some(&page)).to_value()
        })
        .collect()
}

/// `GET {prefix}/provisions/{id}/status[?attributes=operations&startIndex&count&state]`.
pub(crate) async fn status(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    if let Err(resp) = authorize(&shared, &headers, Scope::ProvisionRead) {
        return resp;
    }
    let q = query_ci(query.as_deref());
    let with_ops = q.get("attributes").is_some_and(|a| {
        a.split(',')
            .any(|x| x.trim().eq_ignore_ascii_case("operations"))
    });
    let number = |k: &str, default: usize| -> Result<usize, Failure> {
        match q.get(k).map(String::as_str) {
            None | Some("") => Ok(default),
            Some(v) => v.parse().map_err(|_| {
                Failure::invalid_input("invalidValue", format!("Invalid value for {k}: {v}"))
            }),
        }
    };
    let page = match (number("startindex", 1), number("count", 100)) {
        (Ok(start), Ok(count)) if count <= 1000 => Page {
            start: start.max(1),
            count,
            state: q.get("state").map(|s| s.to_ascii_lowercase()),
        },
        (Err(f), _) | (_, Err(f)) => return f.into_response(),
        (_, Ok(count)) => {
            return Failure::invalid_input("tooMany", format!("count {count} is over 1000"))
                .into_response();
        }
    };
    if let Some(s) = &page.state
        && !["pending", "success", "failed"].contains(&s.as_str())
    {
        return Failure::invalid_value(
            "state",
            format!("Invalid state '{s}' (pending, success, failed)"),
        )
        .into_response();
    }
    let inner = shared.lock();
    let Some(p) = inner.v4.provisions.get(&id.to_ascii_lowercase()) else {
        return Failure::not_found("Provision request not found").into_response();
    };
    let location = format!(
        "{}{}/provisions/{}/status",
        shared.base_url,
        prefix_of(uri.path()),
        p.id
    );
    let body = status_body(p, &location, with_ops.then_some(&page));
    (StatusCode::OK, axum::Json(body)).into_response()
}
