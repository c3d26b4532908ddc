//! The SCIM error body with Concur's extension, which every 4xx and 5xx of the v4 routes carries,
//! and the `messages[]` entries that provision statuses reuse.
//!
//! ```json
//! {"schemas":["urn:ietf:params:scim:api:messages:2.0:Error",
//!             "urn:ietf:params:scim:api:messages:concur:2.0:Error"],
//!  "status":"400","scimType":"invalidValue","detail":"…",
//!  "urn:ietf:params:scim:api:messages:concur:2.0:Error":
//!    {"messages":[{"code":"INVALID_VALUE","message":"…","schemaPath":"…","type":"error"}]}}
//! ```

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub(crate) const SCIM_ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub(crate) const CONCUR_ERROR: &str = "urn:ietf:params:scim:api:messages:concur:2.0:Error";

/// One entry of `messages[]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Msg {
    pub code: String,
    pub message: String,
    #[serde(rename = "schemaPath")]
    pub schema_path: String,
    #[serde(rename = "type")]
    pub kind: String,
}

impl Msg {
    pub fn error(code: &str, message: impl Into<String>, schema_path: impl Into<String>) -> Self {
        Self {
            code: code.to_string(),
            message: message.into(),
            schema_path: schema_path.into(),
            kind: "error".to_string(),
        }
    }
}

/// A refused request or operation: HTTP status, SCIM `scimType`, Concur messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub status: StatusCode,
    pub scim_type: Option<&'static str>,
    pub messages: Vec<Msg>,
}

impl Failure {
    pub fn new(
        status: StatusCode,
        scim_type: Option<&'static str>,
        code: &str,
        message: impl Into<String>,
        schema_path: impl Into<String>,
    ) -> Self {
        Self {
            status,
            scim_type,
            messages: vec![Msg::error(code, message, schema_path)],
        }
    }

    /// 400 `invalidValue` / `INVALID_VALUE`.
    pub fn invalid_value(path: &str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            Some("invalidValue"),
            "INVALID_VALUE",
            message,
            path,
        )
    }

    /// 400 `INVALID_INPUT`: a request the API cannot read (syntax, unsupported filter, paging).
    pub fn invalid_input(scim_type: &'static str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            Some(scim_type),
            "INVALID_INPUT",
            message,
            "",
        )
    }

    /// 400 `REQUIRED_FIELD` for a missing required attribute.
    pub fn required(path: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            Some("invalidValue"),
            "REQUIRED_FIELD",
            format!("Missing required '{path}'"),
            path,
        )
    }

    /// 409 `uniqueness` with Concur's text, e.g. lookup `companyId,employeeNumber`.
    pub fn conflict(lookup: &str, path: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            Some("uniqueness"),
            "DUPLICATE_PRINCIPAL",
            format!("Principal with lookup type '{lookup}' with provided value already exists"),
            path,
        )
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, None, "NOT_FOUND", what, "")
    }

    /// The error body.
    pub fn body(&self) -> Value {
        let mut body = json!({
            "schemas": [SCIM_ERROR, CONCUR_ERROR],
            "status": self.status.as_u16().to_string(),
            "detail": self.messages.first().map(|m| m.message.as_str()).unwrap_or(""),
            CONCUR_ERROR: {"messages": self.messages},
        });
        if let Some(t) = self.scim_type {
            body["scimType"] = json!(t);
        }
        body
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}

/// The error response for a status the fault injection chose (429, 5xx).
pub(crate) fn fault(status: StatusCode, message: &str) -> Response {
    let code = if status == StatusCode::TOO_MANY_REQUESTS {
        "RATE_LIMIT_EXCEEDED"
    } else {
        "SERVICE_UNAVAILABLE"
    };
    let mut resp = Failure::new(status, None, code, message, "").into_response();
    resp.headers_mut().insert(
        "concur-correlationid",
        HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()).unwrap_or(
            HeaderValue::from_static("00000000-0000-0000-0000-000000000000"),
        ),
    );
    resp
}
