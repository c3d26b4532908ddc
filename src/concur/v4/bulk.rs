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
//!   pass `max_operations`, the byte limit (the real serialized body is measured), repeat a
//!   `bulkId` of the request, or name as its report approver an employee whose own operation
//!   is in the request (Concur documents no order within a Bulk request, so an approver is
//!   created, and given its role, in an earlier request than its reports). An operation too
//!   large for any request is reported, not sent.

use chrono::NaiveDate;
use serde_json::Value;

use super::mapping::user_body;
use super::patch::{PatchOp, patch_for};
use super::schema::{BULK_REQUEST, MAX_BULK_BYTES, MAX_BULK_OPERATIONS, SPEND_APPROVER};
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

    /// The operation as it is sent (its `data` written in place, not copied).
    pub fn to_json(&self) -> String {
        #[derive(serde::Serialize)]
        struct Wire<'a> {
            method: &'static str,
            path: &'a str,
            #[serde(rename = "bulkId")]
            bulk_id: &'a str,
            data: &'a Value,
        }
        serde_json::to_string(&Wire {
            method: self.method.as_str(),
            path: &self.path,
            bulk_id: &self.bulk_id,
            data: &self.data,
        })
        .unwrap_or_default()
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
    let parts: Vec<String> = ops.iter().map(BulkOperation::to_json).collect();
    format!("{}{}{SUFFIX}", prefix(), parts.join(","))
}

/// The employee numbers an operation names as report approver (in a created user, or in a
/// PATCH value of the Approver extension).
fn approvers_named(op: &BulkOperation) -> Vec<&str> {
    fn named(v: &Value) -> Vec<&str> {
        let entries = match v {
            Value::Array(items) => items.iter().collect(),
            one => vec![one],
        };
        entries
            .into_iter()
            .filter_map(|e| e.pointer("/approver/employeeNumber")?.as_str())
            .collect()
    }
    match op.method {
        Method::Post => op
            .data
            .get(SPEND_APPROVER)
            .and_then(|a| a.get("report"))
            .map(named),
        Method::Patch => op
            .data
            .get("Operations")
            .and_then(Value::as_array)
            .map(|ops| {
                ops.iter()
                    .filter(|o| {
                        o.get("path")
                            .and_then(Value::as_str)
                            .is_some_and(|p| p.starts_with(SPEND_APPROVER))
                    })
                    .filter_map(|o| o.get("value"))
                    .flat_map(named)
                    .collect()
            }),
    }
    .unwrap_or_default()
}

/// Packs operations into Bulk requests within `limits`, keeping their order.
pub fn pack(ops: &[BulkOperation], limits: BulkLimits) -> Packed {
    let prefix = prefix();
    let frame = prefix.len() + SUFFIX.len();
    let mut packed = Packed::default();
    let mut body = prefix.clone();
    let mut members: Vec<usize> = Vec::new();
    let mut ids: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut employees: std::collections::HashSet<String> = std::collections::HashSet::new();
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
        let text = op.to_json();
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
                || ids.contains(op.bulk_id.as_str())
                || approvers_named(op).iter().any(|a| employees.contains(*a)))
        {
            flush(&mut body, &mut members, &mut packed);
            ids.clear();
            employees.clear();
        }
        if !members.is_empty() {
            body.push(',');
        }
        body.push_str(&text);
        members.push(index);
        ids.insert(&op.bulk_id);
        employees.extend(employee_id_of(&op.bulk_id));
    }
    flush(&mut body, &mut members, &mut packed);
    packed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Field;
    use serde_json::json;

    /// An operation whose serialized form is exactly `bytes` long.
    fn sized(i: usize, bytes: usize) -> BulkOperation {
        let mut op = BulkOperation {
            method: Method::Patch,
            path: format!("/Users/u-{i}"),
            bulk_id: bulk_id(&format!("E{i}")),
            data: json!({ "pad": "" }),
        };
        let base = op.to_json().len();
        assert!(bytes >= base, "{bytes} < {base}");
        op.data = json!({ "pad": "x".repeat(bytes - base) });
        assert_eq!(op.to_json().len(), bytes);
        op
    }

    /// The operation size that makes a request of `n` equal operations exactly `total` bytes.
    fn each(n: usize, total: usize) -> usize {
        let frame = prefix().len() + SUFFIX.len() + (n - 1);
        assert_eq!((total - frame) % n, 0, "pick sizes that divide");
        (total - frame) / n
    }

    fn check_bodies(ops: &[BulkOperation], packed: &Packed, limits: BulkLimits) {
        let mut seen = Vec::new();
        for r in &packed.requests {
            assert!(r.members.len() <= limits.max_operations);
            assert!(r.body.len() <= limits.max_bytes, "{}", r.body.len());
            let members: Vec<BulkOperation> = r.members.iter().map(|&i| ops[i].clone()).collect();
            assert_eq!(r.body, request_body(&members));
            let parsed: Value = serde_json::from_str(&r.body).expect("JSON");
            assert_eq!(parsed["schemas"], json!([BULK_REQUEST]));
            assert!(parsed.get("failOnErrors").is_none());
            assert_eq!(
                parsed["Operations"].as_array().map(Vec::len),
                Some(r.members.len())
            );
            seen.extend(&r.members);
        }
        seen.extend(packed.oversized.iter().map(|o| o.index));
        seen.sort_unstable();
        assert_eq!(
            seen,
            (0..ops.len()).collect::<Vec<_>>(),
            "every operation once"
        );
    }

    #[test]
    fn exactly_one_hundred_operations_make_one_request() {
        let limits = BulkLimits::default();
        let ops: Vec<BulkOperation> = (0..100).map(|i| sized(i, 200)).collect();
        let packed = pack(&ops, limits);
        assert_eq!(packed.requests.len(), 1);
        check_bodies(&ops, &packed, limits);
        let ops: Vec<BulkOperation> = (0..201).map(|i| sized(i, 200)).collect();
        let packed = pack(&ops, limits);
        let sizes: Vec<usize> = packed.requests.iter().map(|r| r.members.len()).collect();
        assert_eq!(sizes, [100, 100, 1]);
        check_bodies(&ops, &packed, limits);
        assert!(pack(&[], limits).requests.is_empty());
    }

    #[test]
    fn the_byte_limit_is_measured_on_the_real_body() {
        let limits = BulkLimits::default();
        // 399 KB in four operations: one request.
        let ops: Vec<BulkOperation> = (0..4).map(|i| sized(i, each(4, 399_000))).collect();
        let packed = pack(&ops, limits);
        assert_eq!(packed.requests.len(), 1);
        assert_eq!(packed.requests[0].body.len(), 399_000);
        check_bodies(&ops, &packed, limits);
        // Exactly the limit still fits.
        let ops: Vec<BulkOperation> = (0..4).map(|i| sized(i, each(4, 400_000))).collect();
        assert_eq!(pack(&ops, limits).requests.len(), 1);
        // 401 KB would be one request too many bytes: split, in order.
        let ops: Vec<BulkOperation> = (0..4).map(|i| sized(i, each(4, 401_000))).collect();
        let packed = pack(&ops, limits);
        let members: Vec<Vec<usize>> = packed.requests.iter().map(|r| r.members.clone()).collect();
        assert_eq!(members, [vec![0, 1, 2], vec![3]]);
        check_bodies(&ops, &packed, limits);
    }

    #[test]
    fn an_oversized_operation_is_reported_not_sent() {
        let limits = BulkLimits::default();
        let frame = prefix().len() + SUFFIX.len();
        let ops = vec![
            sized(0, 1_000),
            sized(1, MAX_BULK_BYTES - frame + 1),
            sized(2, MAX_BULK_BYTES - frame),
            sized(3, 1_000),
        ];
        let packed = pack(&ops, limits);
        assert_eq!(packed.oversized.len(), 1);
        let o = &packed.oversized[0];
        assert_eq!((o.index, o.bytes), (1, MAX_BULK_BYTES + 1));
        assert!(o.message.contains("400001 bytes") && o.message.contains("not sent"));
        let members: Vec<Vec<usize>> = packed.requests.iter().map(|r| r.members.clone()).collect();
        assert_eq!(members, [vec![0], vec![2], vec![3]]);
        check_bodies(&ops, &packed, limits);
    }

    #[test]
    fn limits_stay_within_concurs_and_bulk_ids_stay_unique() {
        assert_eq!(BulkLimits::new(500, 1 << 30), BulkLimits::default());
        assert_eq!(BulkLimits::new(0, 10).max_operations, 1);
        let limits = BulkLimits::new(3, 100_000);
        let mut ops: Vec<BulkOperation> = (0..7).map(|i| sized(i, 300)).collect();
        ops[2].bulk_id = ops[1].bulk_id.clone();
        let packed = pack(&ops, limits);
        let members: Vec<Vec<usize>> = packed.requests.iter().map(|r| r.members.clone()).collect();
        assert_eq!(members, [vec![0, 1], vec![2, 3, 4], vec![5, 6]]);
        check_bodies(&ops, &packed, limits);
    }

    #[test]
    fn a_report_goes_in_a_later_request_than_its_approver() {
        let date = NaiveDate::from_ymd_opt(2026, 1, 2).expect("date");
        let person = |id: &str, manager: Option<&str>| {
            let mut u = User::new();
            u.set(Field::EMPLOYEE_ID, id);
            u.set(Field::LOGIN_ID, format!("{id}@example.com"));
            if let Some(m) = manager {
                u.set(Field::MANAGER_EMPLOYEE_ID, m);
                u.set(Field::EXPENSE_APPROVER, "Y");
            }
            u
        };
        let create = |u: &User| BulkOperation::create(u, "c-1");
        let moved = {
            let old = person("R2", Some("X"));
            let new = person("R2", Some("M 1"));
            let op = Op {
                kind: OpKind::Update,
                employee_id: "R2".into(),
                changes: new.changes_from(&old),
                user: new,
                old_login_id: None,
                old_employee_id: None,
                password: None,
                origin: String::new(),
            };
            operation_for(&op, Some("u-r2"), "c-1", date).expect("patch")
        };
        let ops = [
            create(&person("M 1", None)),
            create(&person("A", Some("Z"))),
            create(&person("R1", Some("M 1"))),
            moved,
            create(&person("M2", None)),
        ];
        assert_eq!(approvers_named(&ops[2]), ["M 1"]);
        assert_eq!(approvers_named(&ops[3]), ["M 1"]);
        let packed = pack(&ops, BulkLimits::default());
        let members: Vec<Vec<usize>> = packed.requests.iter().map(|r| r.members.clone()).collect();
        assert_eq!(members, [vec![0, 1], vec![2, 3, 4]]);
    }

    #[test]
    fn bulk_ids_are_plain_stable_and_reversible() {
        assert_eq!(bulk_id("E123"), "emp-E123");
        assert_eq!(bulk_id("a b/\"c\"%"), "emp-a%20b%2F%22c%22%25");
        assert_eq!(bulk_id("Zoë"), "emp-Zo%C3%AB");
        let ids = ["E1", "E 1", "E%201", "e1", "E1 ", "", "😀", "a:b", "]"];
        let made: std::collections::HashSet<String> = ids.iter().map(|i| bulk_id(i)).collect();
        assert_eq!(made.len(), ids.len());
        for id in ids {
            assert_eq!(employee_id_of(&bulk_id(id)).as_deref(), Some(id));
        }
        for foreign in ["E1", "emp-%", "emp-%zz", "emp-a b", "emp-%FF"] {
            assert_eq!(employee_id_of(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn planned_operations_become_posts_and_patches() {
        let date = NaiveDate::from_ymd_opt(2026, 1, 2).expect("date");
        let mut user = User::new();
        user.set(Field::EMPLOYEE_ID, "E/1");
        user.set(Field::LOGIN_ID, "a@example.com");
        let mut op = Op {
            kind: OpKind::Create,
            employee_id: "E/1".into(),
            changes: user.changes_from(&User::new()),
            user: user.clone(),
            old_login_id: None,
            old_employee_id: None,
            password: None,
            origin: String::new(),
        };
        let post = operation_for(&op, None, "c-1", date).expect("create");
        assert_eq!((post.method, post.path.as_str()), (Method::Post, "/Users"));
        assert_eq!(post.bulk_id, "emp-E%2F1");
        assert_eq!(post.data["userName"], "a@example.com");

        op.kind = OpKind::Update;
        assert_eq!(
            operation_for(&op, None, "c-1", date),
            Err(Unsendable::NoUuid)
        );
        let patch = operation_for(&op, Some("u/../x"), "c-1", date).expect("patch");
        assert_eq!(patch.method, Method::Patch);
        assert_eq!(patch.path, "/Users/u%2F..%2Fx");
        let sent: Value = serde_json::from_str(&patch.to_json()).unwrap();
        assert_eq!(
            (&sent["method"], &sent["path"], &sent["bulkId"]),
            (
                &json!("PATCH"),
                &json!("/Users/u%2F..%2Fx"),
                &json!(patch.bulk_id)
            )
        );
        op.changes.clear();
        assert_eq!(
            operation_for(&op, Some("u"), "c-1", date),
            Err(Unsendable::NoChange)
        );
        op.kind = OpKind::Password;
        let refused = operation_for(&op, Some("u"), "c-1", date).unwrap_err();
        assert!(refused.to_string().contains("single sign-on"));
    }
}
