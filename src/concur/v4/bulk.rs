//! Bulk requests (`POST /profile/v4/Bulk`): one operation per planned user operation, and the
//! packing of operations into requests within Concur's limits.
//!
//! - A create is a `POST /Users` with the full user; anything else a `PATCH /Users/{uuid}`
//!   with the changed attributes only. A password change has no v4 form.
//! - `bulkId` is `emp-` and the employee id with every character outside `A-Z a-z 0-9 . _ ~ -`
//!   percent-encoded (UTF-8): stable across runs, plain ASCII, and different for different
//!   employee ids, so [`employee_id_of`] gives the id back. It is sent on PATCHes too, so
//!   every operation of a provision status names its user.
//! - `failOnErrors` is left out. Its semantics are undocumented (§1.14): read as RFC 7644 says
//!   (stop after that many errors) any value lets one user's failure skip the independent
//!   operations after it, and read as a flag any non-zero value does the same; leaving it out
//!   means "process every operation" under either reading.
//! - [`pack`] keeps the input order and starts a new request when the next operation would
//!   pass `max_operations`, the byte limit (the real serialized body is measured), or repeat a
//!   `bulkId` of the request. An operation too large for any request is reported, not sent.

use chrono::NaiveDate;
use serde_json::{Value, json};

use super::mapping::user_body;
use super::patch::{PatchOp, patch_for};
use super::schema::{BULK_REQUEST, MAX_BULK_BYTES, MAX_BULK_OPERATIONS};
use crate::model::{Op, OpKind, User};

/// The method of a Bulk operation (concur-sync sends no PUT and never DELETE).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Post,
    Patch,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Patch => "PATCH",
        }
    }
}

/// One operation of a Bulk request.
#[derive(Clone, Debug, PartialEq)]
pub struct BulkOperation {
    pub method: Method,
    /// `/Users` or `/Users/{uuid}`.
    pub path: String,
    pub bulk_id: String,
    pub data: Value,
}

impl BulkOperation {
    /// A create: `POST /Users` with the full user.
    pub fn create(user: &User, company_id: &str) -> BulkOperation {
        BulkOperation {
            method: Method::Post,
            path: "/Users".into(),
            bulk_id: bulk_id(user.employee_id()),
            data: user_body(user, company_id),
        }
    }

    /// A PATCH of the user Concur knows as `uuid`.
    pub fn patch(uuid: &str, employee_id: &str, patch: &PatchOp) -> BulkOperation {
        BulkOperation {
            method: Method::Patch,
            path: user_path(uuid),
            bulk_id: bulk_id(employee_id),
            data: patch.to_value(),
        }
    }

    pub fn to_value(&self) -> Value {
        json!({
            "method": self.method.as_str(),
            "path": self.path,
            "bulkId": self.bulk_id,
            "data": self.data,
        })
    }
}

/// Why a planned operation has no Bulk operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unsendable {
    /// v4 has no password attribute.
    Password,
    /// An update of a user whose Concur UUID is unknown.
    NoUuid,
    /// The change touches nothing v4 holds.
    NoChange,
}

impl std::fmt::Display for Unsendable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unsendable::Password => {
                "the User Provisioning Service v4 sets no passwords; use single sign-on"
            }
            Unsendable::NoUuid => "the user's Concur UUID is not known; it must be looked up first",
            Unsendable::NoChange => "nothing to change in Concur",
        })
    }
}

/// The Bulk operation of a planned operation: a create is a POST of the full user, anything
/// else a PATCH of `uuid` with the changed attributes (`termination` dates a deactivation).
pub fn operation_for(
    op: &Op,
    uuid: Option<&str>,
    company_id: &str,
    termination: NaiveDate,
) -> Result<BulkOperation, Unsendable> {
    match op.kind {
        OpKind::Password => Err(Unsendable::Password),
        OpKind::Create => Ok(BulkOperation::create(&op.user, company_id)),
        _ => {
            let uuid = uuid.filter(|u| !u.is_empty()).ok_or(Unsendable::NoUuid)?;
            let patch = patch_for(op, termination);
            if patch.is_empty() {
                return Err(Unsendable::NoChange);
            }
            Ok(BulkOperation::patch(uuid, &op.employee_id, &patch))
        }
    }
}

fn is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-')
}

/// Percent-encodes every byte outside `A-Z a-z 0-9 . _ ~ -`.
pub(super) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if is_plain(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

const BULK_ID_PREFIX: &str = "emp-";

/// The `bulkId` of an employee's operation.
pub fn bulk_id(employee_id: &str) -> String {
    format!("{BULK_ID_PREFIX}{}", percent_encode(employee_id))
}

/// The employee id a [`bulk_id`] was made from; `None` for a `bulkId` concur-sync did not make.
pub fn employee_id_of(bulk_id: &str) -> Option<String> {
    let rest = bulk_id.strip_prefix(BULK_ID_PREFIX)?.as_bytes();
    let mut bytes = Vec::with_capacity(rest.len());
    let mut i = 0;
    while i < rest.len() {
        match rest[i] {
            b'%' => {
                let hex = std::str::from_utf8(rest.get(i + 1..i + 3)?).ok()?;
                bytes.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b if is_plain(b) => {
                bytes.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(bytes).ok()
}

/// `/Users/{uuid}`, the id percent-encoded so that it stays one path segment.
pub fn user_path(uuid: &str) -> String {
    format!("/Users/{}", percent_encode(uuid))
}

/// How much one Bulk request may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BulkLimits {
    pub max_operations: usize,
    pub max_bytes: usize,
}

impl BulkLimits {
    /// Limits within Concur's (at most 100 operations and 400,000 bytes, at least one
    /// operation).
    pub fn new(max_operations: usize, max_bytes: usize) -> BulkLimits {
        BulkLimits {
            max_operations: max_operations.clamp(1, MAX_BULK_OPERATIONS),
            max_bytes: max_bytes.min(MAX_BULK_BYTES),
        }
    }
}

impl Default for BulkLimits {
    fn default() -> Self {
        BulkLimits::new(MAX_BULK_OPERATIONS, MAX_BULK_BYTES)
    }
}

/// One request body and which input operations it carries (their indexes, in order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BulkRequest {
    pub body: String,
    pub members: Vec<usize>,
}

/// An operation that alone makes a request over the byte limit: never sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Oversized {
    pub index: usize,
    /// The size of a request holding only this operation.
    pub bytes: usize,
    pub message: String,
}

/// Requests in input order, and the operations no request can carry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Packed {
    pub requests: Vec<BulkRequest>,
    pub oversized: Vec<Oversized>,
}

fn prefix() -> String {
    format!("{{\"schemas\":[\"{BULK_REQUEST}\"],\"Operations\":[")
}
const SUFFIX: &str = "]}";

/// The body of one request holding `ops`, exactly as [`pack`] builds it.
pub fn request_body(ops: &[BulkOperation]) -> String {
    let parts: Vec<String> = ops.iter().map(|o| o.to_value().to_string()).collect();
    format!("{}{}{SUFFIX}", prefix(), parts.join(","))
}

/// Packs operations into Bulk requests within `limits`, keeping their order.
pub fn pack(ops: &[BulkOperation], limits: BulkLimits) -> Packed {
    let prefix = prefix();
    let frame = prefix.len() + SUFFIX.len();
    let mut packed = Packed::default();
    let mut body = prefix.clone();
    let mut members: Vec<usize> = Vec::new();
    let mut ids: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let flush = |body: &mut String, members: &mut Vec<usize>, packed: &mut Packed| {
        if !members.is_empty() {
            body.push_str(SUFFIX);
            packed.requests.push(BulkRequest {
                body: std::mem::replace(body, prefix.clone()),
                members: std::mem::take(members),
            });
        }
    };
    for (index, op) in ops.iter().enumerate() {
        let text = op.to_value().to_string();
        if frame + text.len() > limits.max_bytes {
            packed.oversized.push(Oversized {
                index,
                bytes: frame + text.len(),
                message: format!(
                    "the operation alone makes a Bulk request of {} bytes, over the limit of {} bytes per request; it was not sent",
                    frame + text.len(),
                    limits.max_bytes
                ),
            });
            continue;
        }
        let comma = usize::from(!members.is_empty());
        if !members.is_empty()
            && (members.len() >= limits.max_operations
                || body.len() + comma + text.len() + SUFFIX.len() > limits.max_bytes
                || ids.contains(op.bulk_id.as_str()))
        {
            flush(&mut body, &mut members, &mut packed);
            ids.clear();
        }
        if !members.is_empty() {
            body.push(',');
        }
        body.push_str(&text);
        members.push(index);
        ids.insert(&op.bulk_id);
    }
    flush(&mut body, &mut members, &mut packed);
    packed
}
