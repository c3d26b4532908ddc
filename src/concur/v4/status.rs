//! What UPS answers about provisioning: the 202 `Provision:Status` of a Bulk request, the
//! status with `attributes=operations` (paged), the 201 of `POST /Users`, and what one
//! operation's status means for the user ([`settle`]).
//!
//! How an operation settles (Concur's "Extension Failure Retry Strategy"): if the identity
//! (core or enterprise schema) failed or was not processed, nothing was applied and the whole
//! operation is to be sent again; once the identity stands, each other extension succeeded
//! (`success`, `no-op`), failed (`error`, with Concur's messages), was not processed, or is
//! still pending, and only a failed one needs another PATCH. The provision's own `completed`
//! is not relied on: Concur's examples contradict their counts, so each operation settles on
//! its own status.

use super::bulk::percent_encode;
use super::error::{Message, readable_messages};
use super::json::{Obj, parse};
use super::schema::{UPS_PROVISIONS_PATH, is_identity};
use crate::concur::error::ConcurError;

/// `operationsCount`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OperationsCount {
    pub total: u64,
    pub success: u64,
    pub failed: u64,
    pub pending: u64,
}

/// A `status` object (of the provision, an operation or an extension).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    pub completed: bool,
    /// `null` while pending.
    pub success: Option<bool>,
    /// The HTTP-like code, e.g. `"400"`.
    pub code: Option<String>,
    /// An extension's `result`.
    pub result: Option<ExtResult>,
}

/// An extension's `result`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExtResult {
    Success,
    Error,
    NoOp,
    NotProcessed,
    Processing,
    /// A value Concur did not document, as sent.
    Other(String),
}

impl ExtResult {
    pub fn parse(s: &str) -> ExtResult {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "success" => ExtResult::Success,
            "error" => ExtResult::Error,
            "no-op" | "noop" => ExtResult::NoOp,
            "not-processed" => ExtResult::NotProcessed,
            "processing" => ExtResult::Processing,
            _ => ExtResult::Other(s.to_owned()),
        }
    }
}

/// One extension's entry in an operation's status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExtensionStatus {
    /// The schema URN.
    pub name: String,
    pub status: State,
    pub messages: Vec<Message>,
}

/// One operation of a provision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OperationStatus {
    pub id: Option<String>,
    pub bulk_id: Option<String>,
    pub status: State,
    /// The user's UUID (`resource.id`), once Concur has one.
    pub resource_id: Option<String>,
    pub resource_type: Option<String>,
    pub extensions: Vec<ExtensionStatus>,
    /// Messages given on the operation itself (not documented, read when present).
    pub messages: Vec<Message>,
}

/// `meta` of a provision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProvisionMeta {
    pub location: Option<String>,
    pub created: Option<String>,
    pub last_modified: Option<String>,
    pub provision_type: Option<String>,
    pub correlation_id: Option<String>,
}

/// A `Provision:Status` body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProvisionStatus {
    /// The provision id.
    pub id: String,
    pub counts: Option<OperationsCount>,
    pub status: State,
    pub meta: ProvisionMeta,
    /// Paging of `operations`, when asked for.
    pub total_results: Option<u64>,
    pub items_per_page: Option<u64>,
    pub start_index: Option<u64>,
    pub operations: Vec<OperationStatus>,
}

impl ProvisionStatus {
    /// The `startIndex` of the next page of operations, if the answer says more follow.
    pub fn next_start_index(&self) -> Option<u64> {
        let (total, start) = (self.total_results?, self.start_index.unwrap_or(1));
        let next = start + self.operations.len() as u64;
        (!self.operations.is_empty() && next <= total).then_some(next)
    }
}

fn decode_state(obj: &Obj<'_>) -> Result<State, ConcurError> {
    Ok(State {
        completed: obj.bool("completed")?.unwrap_or(false),
        success: obj.bool("success")?,
        code: obj.string("code")?.filter(|c| !c.is_empty()),
        result: obj
            .string("result")?
            .filter(|r| !r.is_empty())
            .map(|r| ExtResult::parse(&r)),
    })
}

fn state_of(obj: &Obj<'_>) -> Result<State, ConcurError> {
    match obj.object("status")? {
        Some(s) => decode_state(&s),
        None => Ok(State::default()),
    }
}

fn decode_operation(op: &Obj<'_>) -> Result<OperationStatus, ConcurError> {
    let resource = op.object("resource")?;
    let mut extensions = Vec::new();
    for ext in op.objects("extensions")? {
        extensions.push(ExtensionStatus {
            name: ext.string("name")?.unwrap_or_default(),
            status: state_of(&ext)?,
            messages: Message::decode_all(&ext)?,
        });
    }
    Ok(OperationStatus {
        id: op.string("id")?,
        bulk_id: op.string("bulkId")?,
        status: state_of(op)?,
        resource_id: match &resource {
            Some(r) => r.string("id")?.filter(|s| !s.is_empty()),
            None => None,
        },
        resource_type: match &resource {
            Some(r) => r.string("type")?,
            None => None,
        },
        extensions,
        messages: Message::decode_all(op)?,
    })
}

/// Decodes a `Provision:Status` (the 202 of a Bulk request, or a status poll).
pub fn decode_provision_status(body: &str) -> Result<ProvisionStatus, ConcurError> {
    let value = parse(body, "the provision status")?;
    let root = Obj::root(&value);
    let id = root
        .string("id")?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ConcurError::Decode("id: missing from the provision status".into()))?;
    let counts = match root.object("operationsCount")? {
        Some(c) => Some(OperationsCount {
            total: c.count("total")?.unwrap_or(0),
            success: c.count("success")?.unwrap_or(0),
            failed: c.count("failed")?.unwrap_or(0),
            pending: c.count("pending")?.unwrap_or(0),
        }),
        None => None,
    };
    let meta = match root.object("meta")? {
        Some(m) => ProvisionMeta {
            location: m.string("location")?,
            created: m.string("created")?,
            last_modified: m.string("lastModified")?,
            provision_type: m.string("provisionType")?,
            correlation_id: m.string("correlationId")?,
        },
        None => ProvisionMeta::default(),
    };
    let operations = root
        .objects("operations")?
        .iter()
        .map(decode_operation)
        .collect::<Result<_, _>>()?;
    Ok(ProvisionStatus {
        id,
        counts,
        status: state_of(&root)?,
        meta,
        total_results: root.count("totalResults")?,
        items_per_page: root.count("itemsPerPage")?,
        start_index: root.count("startIndex")?,
        operations,
    })
}

/// The 201 of `POST /profile/v4/Users`: the identity exists; extensions follow under the
/// provision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CreatedUser {
    pub id: String,
    pub provision_id: Option<String>,
    pub status_url: Option<String>,
    pub location: Option<String>,
}

/// Decodes the 201 (or a PATCH's 200) of `/profile/v4/Users`.
pub fn decode_created_user(body: &str) -> Result<CreatedUser, ConcurError> {
    let value = parse(body, "the created user")?;
    let root = Obj::root(&value);
    let id = root
        .string("id")?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ConcurError::Decode("id: missing from the created user".into()))?;
    let meta = root.object("meta")?;
    let meta_string = |key: &str| match &meta {
        Some(m) => m.string(key),
        None => Ok(None),
    };
    Ok(CreatedUser {
        id,
        provision_id: meta_string("provisionId")?,
        status_url: meta_string("statusUrl")?,
        location: meta_string("location")?,
    })
}

/// `/profile/v4/provisions/{id}/status?attributes=operations&startIndex=…&count=…`.
pub fn provision_status_path(provision_id: &str, start_index: u64, count: u64) -> String {
    format!(
        "{UPS_PROVISIONS_PATH}/{}/status?attributes=operations&startIndex={}&count={}",
        percent_encode(provision_id),
        start_index.max(1),
        count.max(1)
    )
}

/// What one operation's status means for its user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settled {
    /// The identity is not done yet: poll again.
    Pending,
    /// The identity was not applied (failed, or not processed): nothing of the operation
    /// stands. `code` is the operation's (e.g. `409`), `message` Concur's messages in one line.
    IdentityFailed {
        code: Option<String>,
        message: String,
    },
    /// The identity stands; each other extension's result by schema URN.
    Applied(Applied),
}

/// The extensions of an operation whose identity stands.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// The user's UUID, when the status names it.
    pub uuid: Option<String>,
    /// Extensions that succeeded or had nothing to do (identity schemas included).
    pub succeeded: Vec<String>,
    /// Extensions that failed, with Concur's messages in one line.
    pub failed: Vec<(String, String)>,
    /// Extensions Concur did not process.
    pub not_processed: Vec<String>,
    /// Extensions still being processed.
    pub pending: Vec<String>,
}

impl Applied {
    /// Every extension has its result (none pending).
    pub fn is_final(&self) -> bool {
        self.pending.is_empty()
    }
}

fn is_done_ok(s: &State) -> bool {
    match &s.result {
        Some(ExtResult::Success | ExtResult::NoOp) => true,
        Some(ExtResult::Other(_)) | None => s.completed && s.success == Some(true),
        _ => false,
    }
}

fn is_failed(s: &State) -> bool {
    match &s.result {
        Some(ExtResult::Error) => true,
        Some(ExtResult::Other(_)) | None => s.completed && s.success == Some(false),
        _ => false,
    }
}

fn failure_text(messages: &[Message], code: Option<&str>, what: &str) -> String {
    let text = readable_messages(messages);
    if !text.is_empty() {
        return text;
    }
    match code {
        Some(c) => format!("{what} (code {c})"),
        None => what.to_owned(),
    }
}

/// What one operation's status means: see the module documentation.
pub fn settle(op: &OperationStatus) -> Settled {
    let identity: Vec<&ExtensionStatus> = op
        .extensions
        .iter()
        .filter(|e| is_identity(&e.name))
        .collect();
    let code = op.status.code.clone();
    if let Some(e) = identity.iter().find(|e| is_failed(&e.status)) {
        let mut messages = e.messages.clone();
        messages.extend(op.messages.iter().cloned());
        return Settled::IdentityFailed {
            code: code.or_else(|| e.status.code.clone()),
            message: failure_text(&messages, e.status.code.as_deref(), "the identity failed"),
        };
    }
    if let Some(e) = identity
        .iter()
        .find(|e| e.status.result == Some(ExtResult::NotProcessed))
    {
        let mut messages = e.messages.clone();
        messages.extend(op.messages.iter().cloned());
        return Settled::IdentityFailed {
            code,
            message: failure_text(&messages, None, "the identity was not processed"),
        };
    }
    let identity_done = if identity.is_empty() {
        // No entry for the identity: the operation's own status tells.
        if op.status.completed && op.status.success == Some(false) && op.resource_id.is_none() {
            let mut messages: Vec<Message> = op.messages.clone();
            for e in &op.extensions {
                messages.extend(e.messages.iter().cloned());
            }
            return Settled::IdentityFailed {
                code: code.clone(),
                message: failure_text(&messages, code.as_deref(), "the operation failed"),
            };
        }
        op.status.completed || op.resource_id.is_some()
    } else {
        identity.iter().all(|e| is_done_ok(&e.status))
    };
    if !identity_done {
        return Settled::Pending;
    }
    let mut applied = Applied {
        uuid: op.resource_id.clone(),
        ..Applied::default()
    };
    for e in &op.extensions {
        let name = e.name.clone();
        if is_done_ok(&e.status) {
            applied.succeeded.push(name);
        } else if is_failed(&e.status) {
            let text = failure_text(&e.messages, e.status.code.as_deref(), "failed");
            applied.failed.push((name, text));
        } else if e.status.result == Some(ExtResult::NotProcessed) {
            applied.not_processed.push(name);
        } else {
            applied.pending.push(name);
        }
    }
    Settled::Applied(applied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const CORE: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
    const SPEND: &str = "urn:ietf:params:scim:schemas:extension:spend:2.0:User";
    const ROLE: &str = "urn:ietf:params:scim:schemas:extension:spend:2.0:Role";
    const APPROVER: &str = "urn:ietf:params:scim:schemas:extension:spend:2.0:Approver";

    fn ext(name: &str, status: Value) -> Value {
        json!({"name": name, "status": status})
    }
    fn ok(result: &str) -> Value {
        json!({"completed": true, "success": true, "code": "200", "result": result})
    }
    fn failed(code: &str) -> Value {
        json!({"completed": true, "success": false, "code": code, "result": "error"})
    }
    fn pending() -> Value {
        json!({"completed": false, "success": null, "result": "processing"})
    }

    fn settle_json(op: Value) -> Settled {
        let body = json!({"id": "p", "operations": [op]}).to_string();
        let status = decode_provision_status(&body).expect("decodes");
        settle(&status.operations[0])
    }

    #[test]
    fn an_operation_settles_on_its_identity_then_each_extension() {
        // Still working on the identity.
        let op = json!({"id": "1", "bulkId": "emp-E1", "status": {"completed": false, "success": null},
                        "extensions": [ext(CORE, pending()), ext(SPEND, pending())]});
        assert_eq!(settle_json(op), Settled::Pending);

        // The identity failed: Concur's messages, the operation's code.
        let op = json!({"id": "1", "status": {"completed": true, "success": false, "code": 409},
            "extensions": [
                {"name": CORE, "status": failed("409"), "messages": [
                    {"code": "UNIQUENESS", "message": "Principal with lookup type 'companyId,employeeNumber' with provided value already exists",
                     "schemaPath": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber", "type": "error"}]},
                {"name": SPEND, "status": {"completed": true, "success": false, "result": "not-processed"}}]});
        assert_eq!(
            settle_json(op),
            Settled::IdentityFailed {
                code: Some("409".into()),
                message: "UNIQUENESS: Principal with lookup type 'companyId,employeeNumber' with provided value already exists \
                          (urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber)"
                    .into()
            }
        );

        // Timed out before the identity: not processed, with the reason.
        let op = json!({"id": "1", "status": {"completed": true, "success": false, "code": "500"},
            "extensions": [{"name": CORE, "status": {"completed": true, "success": false, "code": "500", "result": "not-processed"},
                            "messages": [{"code": "PROVISION_TIMEOUT", "message": "Provision request timed out after 120 minutes"}]}]});
        assert_eq!(
            settle_json(op),
            Settled::IdentityFailed {
                code: Some("500".into()),
                message: "PROVISION_TIMEOUT: Provision request timed out after 120 minutes".into()
            }
        );

        // The identity stands; each extension has its own fate.
        let op = json!({"id": "1", "status": {"completed": false, "success": null},
            "resource": {"id": "u-1", "type": "User"},
            "extensions": [ext(CORE, ok("success")), ext(SPEND, failed("400")),
                           ext(ROLE, ok("no-op")), ext(APPROVER, pending()),
                           ext("urn:x:Other", json!({"completed": true, "success": false, "result": "not-processed"}))]});
        let Settled::Applied(a) = settle_json(op) else {
            panic!("identity stands")
        };
        assert_eq!(a.uuid.as_deref(), Some("u-1"));
        assert_eq!(a.succeeded, [CORE, ROLE]);
        assert_eq!(
            a.failed,
            [(SPEND.to_owned(), "failed (code 400)".to_owned())]
        );
        assert_eq!(a.pending, [APPROVER]);
        assert_eq!(a.not_processed, ["urn:x:Other"]);
        assert!(!a.is_final());
    }

    #[test]
    fn without_extension_entries_the_operation_status_decides() {
        let op = json!({"id": "1", "status": {"completed": true, "success": false, "code": "400"},
                        "messages": [{"code": "INVALID_VALUE", "message": "bad userName", "schemaPath": "userName"}]});
        assert_eq!(
            settle_json(op),
            Settled::IdentityFailed {
                code: Some("400".into()),
                message: "INVALID_VALUE: bad userName (userName)".into()
            }
        );
        let op = json!({"id": "1", "status": {"completed": true, "success": false, "code": "400"}});
        assert!(
            matches!(settle_json(op), Settled::IdentityFailed { message, .. } if message == "the operation failed (code 400)")
        );
        let op = json!({"id": "1", "status": {"completed": true, "success": true, "code": "200"},
                        "resource": {"id": "u-2"}});
        assert!(
            matches!(settle_json(op), Settled::Applied(a) if a.uuid.as_deref() == Some("u-2") && a.is_final())
        );
        assert_eq!(settle_json(json!({"id": "1"})), Settled::Pending);
        // An undocumented result reads by its success flag.
        let op = json!({"id": "1", "resource": {"id": "u"}, "status": {"completed": true},
                        "extensions": [ext(CORE, json!({"completed": true, "success": true, "result": "Done"}))]});
        assert!(matches!(settle_json(op), Settled::Applied(a) if a.succeeded == [CORE]));
        assert_eq!(ExtResult::parse("NOT_PROCESSED"), ExtResult::NotProcessed);
        assert_eq!(ExtResult::parse("Done"), ExtResult::Other("Done".into()));
    }

    #[test]
    fn statuses_decode_tolerantly_and_name_wrong_types() {
        let body = "\u{feff}{\"ID\":\"p-1\",\"operationsCount\":{\"total\":\"3\",\"pending\":3},\
                    \"status\":{\"completed\":false,\"success\":null},\"extra\":[1,2],\
                    \"totalResults\":250,\"itemsPerPage\":100,\"startIndex\":101,\
                    \"operations\":[{\"id\":1,\"status\":{\"completed\":true,\"success\":true,\"code\":200}}]}";
        let s = decode_provision_status(body).expect("decodes");
        assert_eq!(s.id, "p-1");
        assert_eq!(
            s.counts.map(|c| (c.total, c.pending, c.failed)),
            Some((3, 3, 0))
        );
        assert_eq!(s.operations[0].id.as_deref(), Some("1"));
        assert_eq!(s.operations[0].status.code.as_deref(), Some("200"));
        assert_eq!(s.next_start_index(), Some(102));

        for (body, expected) in [
            (
                r#"{"id":"p","status":{"completed":"maybe"}}"#,
                "status.completed: expected a boolean",
            ),
            (
                r#"{"id":"p","operations":[{"status":{"success":1}}]}"#,
                "operations[0].status.success",
            ),
            (
                r#"{"id":"p","operations":[{"extensions":[{"messages":"x"}]}]}"#,
                "operations[0].extensions[0].messages",
            ),
            (
                r#"{"id":"p","operationsCount":{"total":-1}}"#,
                "operationsCount.total: expected a count",
            ),
            (r#"{"status":{}}"#, "id: missing"),
            ("<html/>", "not JSON"),
        ] {
            let e = decode_provision_status(body).unwrap_err().to_string();
            assert!(e.contains(expected), "{e} / {expected}");
        }
    }

    #[test]
    fn the_created_user_and_status_paths() {
        let created = decode_created_user(
            r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"id":"u-9","userName":"a@b",
               "meta":{"provisionId":"p-9","statusUrl":"https://us.api.concursolutions.com/profile/v4/provisions/p-9/status",
                       "location":"/profile/identity/v4/Users/u-9","resourceType":"User"}}"#,
        )
        .expect("decodes");
        assert_eq!(created.id, "u-9");
        assert_eq!(created.provision_id.as_deref(), Some("p-9"));
        assert!(
            created
                .status_url
                .as_deref()
                .is_some_and(|u| u.ends_with("/p-9/status"))
        );
        assert_eq!(
            created.location.as_deref(),
            Some("/profile/identity/v4/Users/u-9")
        );
        assert!(decode_created_user(r#"{"meta":{}}"#).is_err());
        assert_eq!(
            provision_status_path("p 1", 101, 100),
            "/profile/v4/provisions/p%201/status?attributes=operations&startIndex=101&count=100"
        );
    }
}
