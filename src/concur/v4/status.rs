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
