//! Attendees v4: look attendees up by external id (at most ten per call, following `nextPage`),
//! create one (`POST`, answered 200 `{id, uri}`), update one partially (`PUT`, 204). v4 has no
//! delete. A refused write comes back as a [`V4Error`] carrying Concur's `errorMessage` and
//! `validationErrors`.

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::Value;

use super::body::{error_message, get_ci, text};
use super::client::{ConcurClient, Repeat};
use super::error::{ConcurError, excerpt};
use crate::http::retry::is_retryable_status;

pub const ATTENDEES_PATH: &str = "/v4/attendees";
/// At most this many external ids (or ids) per lookup.
pub const MAX_IDS_PER_LOOKUP: usize = 10;

/// An attendee as Concur returns it: v4 field name → value (custom fields flattened to their
/// `value`; empty and null values left out).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemoteAttendee {
    pub id: String,
    pub fields: BTreeMap<String, String>,
}

impl RemoteAttendee {
    pub fn get(&self, field: &str) -> &str {
        self.fields.get(field).map(String::as_str).unwrap_or("")
    }
}

/// One entry of a v4 `validationErrors` list.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ValidationError {
    pub id: String,
    pub message: String,
    pub source: String,
}

/// Concur's refusal of one attendee write.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct V4Error {
    pub status: u16,
    pub message: String,
    pub validation_errors: Vec<ValidationError>,
}

impl std::fmt::Display for V4Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}: {}", self.status, self.message)?;
        for v in &self.validation_errors {
            write!(f, "; {}: {}", v.id, v.message)?;
        }
        Ok(())
    }
}

/// Reads a v4 error body tolerantly; a body that is not one becomes its own excerpt.
pub fn decode_v4_error(status: u16, body: &str) -> V4Error {
    let value: Value = serde_json::from_str(body.trim()).unwrap_or(Value::Null);
    let mut message = text(get_ci(&value, "errorMessage"));
    if message.is_empty() {
        message = error_message(body).unwrap_or_else(|| excerpt(body, &[], 200));
    }
    let validation_errors = get_ci(&value, "validationErrors")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|v| ValidationError {
                    id: text(get_ci(v, "id")),
                    message: text(get_ci(v, "message")),
                    source: text(get_ci(v, "source")),
                })
                .collect()
        })
        .unwrap_or_default();
    V4Error {
        status,
        message,
        validation_errors,
    }
}

fn decode_attendee(v: &Value) -> Option<RemoteAttendee> {
    let obj = v.as_object()?;
    let mut a = RemoteAttendee::default();
    for (k, v) in obj {
        let value = match v {
            Value::Object(_) => text(get_ci(v, "value")),
            Value::Array(_) => continue,
            other => text(Some(other)),
        };
        if k.eq_ignore_ascii_case("id") {
            a.id = value;
        } else if !value.is_empty() {
            a.fields.insert(k.clone(), value);
        }
    }
    (!a.id.is_empty()).then_some(a)
}

/// Percent-encodes one query value.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The path and query of a `nextPage` URI, to be sent to the current base URL.
fn relative(next: &str) -> String {
    match reqwest::Url::parse(next) {
        Ok(u) => match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_owned(),
        },
        Err(_) => next.to_owned(),
    }
}

/// Every attendee whose external id is one of `external_ids`, whatever its type. Sends one
/// lookup per ten ids and follows `nextPage` within each. `page_size` is `attendees.page_size`,
/// which the configuration keeps within the v4 maximum.
pub async fn lookup_by_external_ids(
    client: &ConcurClient,
    external_ids: &[&str],
    page_size: usize,
) -> Result<Vec<RemoteAttendee>, ConcurError> {
    let limit = page_size.max(1);
    let mut out = Vec::new();
    for chunk in external_ids.chunks(MAX_IDS_PER_LOOKUP) {
        let ids: Vec<String> = chunk.iter().map(|s| encode(s)).collect();
        let mut next = Some(format!(
            "{ATTENDEES_PATH}?externalId={}&limit={limit}",
            ids.join(",")
        ));
        let mut pages = 0;
        while let Some(pq) = next.take() {
            pages += 1;
            let reply = client
                .send_authed(Method::GET, &pq, None, Repeat::Retry)
                .await?;
            if !(200..300).contains(&reply.status) {
                let e = decode_v4_error(reply.status, &reply.body);
                return Err(ConcurError::Http {
                    status: reply.status,
                    path: ATTENDEES_PATH.into(),
                    message: e.to_string(),
                });
            }
            let page: Value = serde_json::from_str(&reply.body).map_err(|e| {
                ConcurError::Decode(format!("{ATTENDEES_PATH}: not the expected JSON: {e}"))
            })?;
            if let Some(items) = get_ci(&page, "items").and_then(Value::as_array) {
                out.extend(items.iter().filter_map(decode_attendee));
            }
            next = get_ci(&page, "nextPage")
                .and_then(Value::as_str)
                .filter(|s| !s.trim().is_empty())
                .map(relative);
            if pages > 10_000 {
                return Err(ConcurError::Decode(
                    "attendee lookup: nextPage does not end".into(),
                ));
            }
        }
    }
    Ok(out)
}

/// `POST /v4/attendees`, sent once (a create is not idempotent). `Ok(Ok(id))` created,
/// `Ok(Err(_))` refused by Concur; `Err` when the outcome is unknown (no answer, 429, 5xx): the
/// caller looks the attendee up before sending again.
pub async fn create(
    client: &ConcurClient,
    body: &Value,
) -> Result<Result<String, V4Error>, ConcurError> {
    let reply = client
        .send_authed(Method::POST, ATTENDEES_PATH, Some(body), Repeat::Once)
        .await?;
    match reply.status {
        200..=299 => {
            let v: Value = serde_json::from_str(&reply.body).unwrap_or(Value::Null);
            let id = text(get_ci(&v, "id"));
            if id.is_empty() {
                return Err(ConcurError::Decode(
                    "attendee create: the answer carries no id".into(),
                ));
            }
            Ok(Ok(id))
        }
        s if is_retryable_status(s) => Err(ConcurError::Http {
            status: s,
            path: ATTENDEES_PATH.into(),
            message: decode_v4_error(s, &reply.body).message,
        }),
        s => Ok(Err(decode_v4_error(s, &reply.body))),
    }
}

/// `PUT /v4/attendees/{id}` with only the fields to change (idempotent, so retried).
pub async fn update(
    client: &ConcurClient,
    id: &str,
    body: &Value,
) -> Result<Result<(), V4Error>, ConcurError> {
    let path = format!("{ATTENDEES_PATH}/{}", encode(id));
    let reply = client
        .send_authed(Method::PUT, &path, Some(body), Repeat::Retry)
        .await?;
    match reply.status {
        200..=299 => Ok(Ok(())),
        s if is_retryable_status(s) => Err(ConcurError::Http {
            status: s,
            path: ATTENDEES_PATH.into(),
            message: decode_v4_error(s, &reply.body).message,
        }),
        s => Ok(Err(decode_v4_error(s, &reply.body))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attendee_and_error_decode() {
        let a = decode_attendee(&serde_json::json!({
            "id": "x1", "externalId": "E1", "firstName": null,
            "custom8": {"type": "Text", "value": "NYC"}, "versionNumber": 2
        }))
        .unwrap();
        assert_eq!(a.get("custom8"), "NYC");
        assert_eq!(a.get("firstName"), "");
        let e = decode_v4_error(
            400,
            r#"{"errorMessage":"Validation failed","validationErrors":[{"id":"lastName","message":"lastName is required","source":"NotBlank"}]}"#,
        );
        assert_eq!(e.validation_errors[0].id, "lastName");
        assert_eq!(
            relative("https://h/v4/attendees?limit=5&offset=ab"),
            "/v4/attendees?limit=5&offset=ab"
        );
        assert_eq!(encode("a b,c"), "a%20b%2Cc");
    }
}
