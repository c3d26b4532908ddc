//! Shared response builders and authentication checks.

use std::collections::HashMap;
use std::time::Instant;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::state::{Principal, Shared, new_guid};
use super::xml::push_el;

pub(crate) const NS: &str = "http://www.concursolutions.com/api/user/2011/02";
pub(crate) const NS_I: &str = "http://www.w3.org/2001/XMLSchema-instance";

/// An XML response body with `application/xml`.
pub(crate) fn xml_response(status: StatusCode, body: String) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml; charset=utf-8"),
    );
    resp
}

/// The legacy `<Error>` body.
pub(crate) fn error_xml(status: StatusCode, message: &str) -> Response {
    let mut body = String::from("<Error>");
    push_el(&mut body, "Message", message);
    push_el(
        &mut body,
        "Server-Time",
        &chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string(),
    );
    push_el(&mut body, "Id", &new_guid());
    body.push_str("</Error>");
    xml_response(status, body)
}

/// The legacy error in its JSON form (Bulk User v3.1, Profile v1).
pub(crate) fn error_json(status: StatusCode, message: &str) -> Response {
    let body = json!({"Error": {
        "Message": message,
        "Server-Time": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string(),
        "Id": new_guid(),
    }});
    (status, axum::Json(body)).into_response()
}

/// One v4 validation error.
pub(crate) fn validation(id: &str, message: &str, source: &str) -> Value {
    json!({"id": id, "message": message, "source": source})
}

/// The v4 error body.
pub(crate) fn v4_error(
    status: StatusCode,
    message: &str,
    path: &str,
    validation_errors: Vec<Value>,
) -> Response {
    let body = json!({
        "errorId": uuid::Uuid::new_v4().to_string(),
        "errorMessage": message,
        "httpStatus": format!("{} - {}", status.as_u16(), status.canonical_reason().unwrap_or("Error")),
        "path": path,
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "validationErrors": validation_errors,
    });
    (status, axum::Json(body)).into_response()
}

/// Why a token was not accepted.
pub(crate) enum AuthFailure {
    /// No `Authorization` header at all.
    Missing,
    /// Wrong scheme, unknown token, or expired token.
    Invalid,
}

fn lookup(shared: &Shared, token: &str) -> Result<Principal, AuthFailure> {
    let inner = shared.lock();
    match inner.access_tokens.get(token) {
        Some(t) if t.expires > Instant::now() => Ok(t.principal.clone()),
        _ => Err(AuthFailure::Invalid),
    }
}

fn split_auth(headers: &HeaderMap) -> Result<(String, String), AuthFailure> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(AuthFailure::Missing)?
        .to_str()
        .map_err(|_| AuthFailure::Invalid)?;
    let (scheme, token) = value.trim().split_once(' ').ok_or(AuthFailure::Invalid)?;
    Ok((scheme.to_ascii_lowercase(), token.trim().to_string()))
}

/// User v1: `Bearer` or `OAuth`. Missing → 401; anything else wrong → 403 (legacy XML).
pub(crate) fn auth_v1(shared: &Shared, headers: &HeaderMap) -> Result<Principal, Response> {
    let result = split_auth(headers).and_then(|(scheme, token)| {
        if scheme == "bearer" || scheme == "oauth" {
            lookup(shared, &token)
        } else {
            Err(AuthFailure::Invalid)
        }
    });
    result.map_err(|f| match f {
        AuthFailure::Missing => error_xml(StatusCode::UNAUTHORIZED, "Authorization header missing"),
        AuthFailure::Invalid => error_xml(
            StatusCode::FORBIDDEN,
            "Invalid or expired token. Please obtain a new access token.",
        ),
    })
}

/// Bearer-only APIs: missing, invalid or expired → 401.
pub(crate) fn auth_bearer(shared: &Shared, headers: &HeaderMap) -> Result<Principal, AuthFailure> {
    let (scheme, token) = split_auth(headers)?;
    if scheme != "bearer" {
        return Err(AuthFailure::Invalid);
    }
    lookup(shared, &token)
}

/// Query parameters with lowercase keys (last value wins).
pub(crate) fn query_ci(raw: Option<&str>) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.insert(
            decode_component(k).to_ascii_lowercase(),
            decode_component(v),
        );
    }
    out
}

/// Decodes one `application/x-www-form-urlencoded` component.
pub(crate) fn decode_component(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' if i + 2 < bytes.len() => {
                let hex = |c: u8| char::from(c).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                        i += 3;
                    }
                    _ => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes a query component.
pub(crate) fn encode_component(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Parses a form-encoded body.
pub(crate) fn parse_form(body: &[u8]) -> HashMap<String, String> {
    let text = String::from_utf8_lossy(body);
    let mut out = HashMap::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.insert(decode_component(k), decode_component(v));
    }
    out
}
