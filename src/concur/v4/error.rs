//! The v4 error body: a SCIM error (`status`, `scimType`, `detail`) with Concur's extension
//! `urn:ietf:params:scim:api:messages:concur:2.0:Error` holding `messages[]{code, message,
//! schemaPath, type}`, the same entries a provision status gives per extension. Each becomes
//! one readable line, "CODE: message (schemaPath)".

use serde_json::Value;

use super::json::{Obj, parse};
use super::schema::CONCUR_ERROR;
use crate::concur::error::{ConcurError, excerpt};

/// Longest excerpt of a body that is not a readable error, in characters.
const EXCERPT_CHARS: usize = 300;

/// One entry of Concur's `messages[]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message {
    pub code: String,
    pub message: String,
    pub schema_path: String,
    /// `error` or `warning` (empty when absent).
    pub kind: String,
}

impl Message {
    pub fn is_warning(&self) -> bool {
        self.kind.eq_ignore_ascii_case("warning")
    }

    /// "CODE: message (schemaPath)", leaving out the parts Concur left empty.
    pub fn readable(&self) -> String {
        let mut out = String::new();
        if !self.code.is_empty() {
            out.push_str(&self.code);
        }
        if !self.message.is_empty() {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&self.message);
        }
        if !self.schema_path.is_empty() {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push('(');
            out.push_str(&self.schema_path);
            out.push(')');
        }
        out
    }

    pub(super) fn decode(obj: &Obj<'_>) -> Result<Message, ConcurError> {
        Ok(Message {
            code: obj.string("code")?.unwrap_or_default(),
            message: obj.string("message")?.unwrap_or_default(),
            schema_path: obj.string("schemaPath")?.unwrap_or_default(),
            kind: obj.string("type")?.unwrap_or_default(),
        })
    }

    /// The `messages[]` of an object.
    pub(super) fn decode_all(obj: &Obj<'_>) -> Result<Vec<Message>, ConcurError> {
        obj.objects("messages")?
            .iter()
            .map(Message::decode)
            .collect()
    }
}

/// The messages as one line: the errors (or, when there are none, every message) joined by
/// "; ". Empty when there are no messages.
pub fn readable_messages(messages: &[Message]) -> String {
    let errors: Vec<&Message> = messages.iter().filter(|m| !m.is_warning()).collect();
    let shown: Vec<&Message> = if errors.is_empty() {
        messages.iter().collect()
    } else {
        errors
    };
    shown
        .iter()
        .map(|m| m.readable())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// A decoded SCIM error body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScimError {
    /// The HTTP status the body states (a string in SCIM, sometimes a number).
    pub status: Option<String>,
    pub scim_type: Option<String>,
    pub detail: Option<String>,
    /// Concur's extension messages.
    pub messages: Vec<Message>,
}

impl ScimError {
    /// One readable line: the Concur messages, else `detail` (with `scimType`), else empty.
    pub fn readable(&self) -> String {
        let messages = readable_messages(&self.messages);
        if !messages.is_empty() {
            return messages;
        }
        match (self.detail.as_deref(), self.scim_type.as_deref()) {
            (Some(d), Some(t)) if !d.is_empty() && !t.is_empty() => format!("{t}: {d}"),
            (Some(d), _) if !d.is_empty() => d.to_owned(),
            _ => String::new(),
        }
    }
}

/// Decodes a SCIM error body, tolerantly; a wrong type is an error naming the member.
pub fn decode_error(body: &str) -> Result<ScimError, ConcurError> {
    let root = parse(body, "the error body")?;
    let root = Obj::root(&root);
    let messages = match root.object(CONCUR_ERROR)? {
        Some(ext) => Message::decode_all(&ext)?,
        // Some answers put the messages at the top level.
        None => Message::decode_all(&root)?,
    };
    Ok(ScimError {
        status: root.string("status")?,
        scim_type: root.string("scimType")?,
        detail: root.string("detail")?,
        messages,
    })
}

/// What an error answer says, in one line: "CODE: message (schemaPath)" per Concur message,
/// else the SCIM `detail`, else any message the body carries, else a short excerpt of the
/// body (whitespace collapsed, at most 300 characters). Never empty unless the body is.
pub fn error_text(body: &str) -> String {
    if let Ok(error) = decode_error(body) {
        let text = error.readable();
        if !text.is_empty() {
            return text;
        }
    }
    if let Some(m) = crate::concur::error_message(body) {
        return m;
    }
    excerpt(body, &[], EXCERPT_CHARS)
}

/// Whether `v` is a SCIM error body (its `schemas` name the SCIM or Concur error).
pub fn is_error_body(v: &Value) -> bool {
    super::json::member(v, "schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| {
            s.iter().filter_map(Value::as_str).any(|s| {
                s.eq_ignore_ascii_case(super::schema::SCIM_ERROR)
                    || s.eq_ignore_ascii_case(CONCUR_ERROR)
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCUMENTED: &str = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error","urn:ietf:params:scim:api:messages:concur:2.0:Error"],"status":"400","urn:ietf:params:scim:api:messages:concur:2.0:Error":{"messages":[{"code":"INVALID_VALUE","message":"Invalid 'urn:ietf:params:scim:schemas:extension:spend:2.0:User:reimbursementCurrency' Size","schemaPath":"urn:ietf:params:scim:schemas:extension:spend:2.0:User:reimbursementCurrency","type":"error"}]}}"#;

    fn check(body: &str, expected: &str) {
        assert_eq!(error_text(body), expected, "{body}");
    }

    #[test]
    fn error_bodies_become_one_readable_line() {
        check(
            DOCUMENTED,
            "INVALID_VALUE: Invalid 'urn:ietf:params:scim:schemas:extension:spend:2.0:User:reimbursementCurrency' Size \
             (urn:ietf:params:scim:schemas:extension:spend:2.0:User:reimbursementCurrency)",
        );
        // Two errors and a warning: the errors, in order.
        check(
            r#"{"status":409,"urn:ietf:params:scim:api:messages:concur:2.0:error":{"messages":[
                {"code":"W","message":"ignored","type":"warning"},
                {"code":"UNIQUENESS","message":"Principal with lookup type 'companyId,employeeNumber' with provided value already exists","type":"error"},
                {"code":"INVALID_INPUT","message":"Invalid attribute path [:test]","schemaPath":""}]}}"#,
            "UNIQUENESS: Principal with lookup type 'companyId,employeeNumber' with provided value already exists; \
             INVALID_INPUT: Invalid attribute path [:test]",
        );
        // Only warnings: shown rather than nothing.
        check(
            r#"{"messages":[{"code":"W1","message":"careful","type":"warning"}]}"#,
            "W1: careful",
        );
        // No Concur messages: the SCIM detail.
        check(
            r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"400","scimType":"invalidFilter","detail":"bad filter"}"#,
            "invalidFilter: bad filter",
        );
        check(
            r#"{"status":"404","detail":"User not found"}"#,
            "User not found",
        );
        // Another error shape Concur uses elsewhere.
        check(
            r#"{"error":{"id":"security.rate.limit.reached","message":"Too many requests"}}"#,
            "Too many requests",
        );
        // Not a readable error: a capped excerpt.
        check(
            "<html>\n  <b>502</b>   Bad gateway</html>",
            "<html> <b>502</b> Bad gateway</html>",
        );
        let long = "x".repeat(1000);
        assert_eq!(error_text(&long).chars().count(), EXCERPT_CHARS + 1);
    }

    #[test]
    fn decodes_the_parts_and_rejects_wrong_types() {
        let e = decode_error(DOCUMENTED).expect("decodes");
        assert_eq!(e.status.as_deref(), Some("400"));
        assert_eq!(e.messages.len(), 1);
        assert_eq!(e.messages[0].kind, "error");
        let v: Value = serde_json::from_str(DOCUMENTED).expect("json");
        assert!(is_error_body(&v));
        let bad = decode_error(r#"{"messages":[{"code":{"x":1}}]}"#).unwrap_err();
        assert!(
            bad.to_string()
                .contains("messages[0].code: expected a string"),
            "{bad}"
        );
        // A wrong type still yields a readable line for an operator.
        assert_eq!(error_text(r#"{"detail":["a"]}"#), r#"{"detail":["a"]}"#);
    }
}
