//! The wire layer of Concur's v4 user APIs: the User Provisioning Service v4 (UPS: `POST
//! /profile/v4/Bulk`, provision status, `PATCH /Users/{uuid}`) for writes, Identity v4/v4.1
//! and Spend User v4.1 for reads. Pure but for `read`: types, builders and tolerant decoders;
//! no network, no store, no clock (dates are arguments).
//!
//! - `schema`: URNs, paths, limits, and where each canonical field lives in a v4 user.
//! - `mapping`: a canonical user → the v4 user a create sends; a v4 user as Identity and
//!   Spend return it → a canonical user with its UUID and the fields that were not readable.
//! - `patch`: a planned update → a SCIM PatchOp of only the changed attributes.
//! - `bulk`: Bulk operations, `bulkId`s, and packing them into requests within the limits.
//! - `status`: the 202 and status of a provision, the 201 of `POST /Users`, and [`settle`],
//!   what one operation's status means for its user.
//! - `list`: Identity list pages, look-up filters, the v4.1 `.search` request.
//! - `error`: the SCIM + Concur error body as one readable line.
//! - `rules`: the v4 rules a user must meet before it is sent.
//! - `read`: IO: every user read back through Identity v4.1 and
//!   Spend User v4.1, joined by UUID, and the discovery reads of `check`.
//! - `target`: IO: Bulk requests, provision status polls and look-ups behind the seam.
//!
//! Readings of what the documentation leaves open (§1.14 of the v4 notes), each made here:
//! - `failOnErrors` is left out of Bulk requests: under RFC 7644 any value stops the request
//!   after that many errors, and read as a flag any non-zero value does the same, so only
//!   leaving it out cannot make one user's failure skip the independent users after it.
//! - "400KB" is read as 400,000 bytes, the smaller reading; the real serialized request is
//!   measured.
//! - Cross-operation `bulkId:` references are not used: a manager is referenced by
//!   `employeeNumber`, and approvers go in an earlier request than their reports.
//! - No DELETE is ever built, in a Bulk request or otherwise.
//! - The Identity v4 `filter` names `employeeNumber` without the URN prefix (Concur's own
//!   example); the v4.1 `.search` with it (Concur's Postman collection).
//! - Neither `companyId` query nor `concur-company-id` header is built: the company token
//!   names the company; the enterprise `companyId` of a create is the company UUID.
//! - A provision's `completed` is not trusted alone (the documented examples contradict
//!   their counts): each operation settles on its own status.
//! - The manager is the primary `report` approver; a change replaces `report[primary eq
//!   true]`, leaving other approvers alone.
//! - The spend User extension needs `reimbursementCurrency`, `country` and `locale` once
//!   used (§1.7). A user with spend values (a spend field, an approver role, a manager) that
//!   lacks one of them is rejected by [`violations`], naming each missing attribute, and is
//!   not sent; sending the identity without its spend data would silently drop values.
//! - A flag read from Concur (`active`, an entitlement, a role) is `Y` or `N` when the part
//!   of the resource holding it was read, and unreadable otherwise; `entitlements` counts as
//!   read only when Concur shows the list (it is returned on request and left out when empty).

pub mod bulk;
pub mod error;
mod json;
pub mod list;
pub mod mapping;
pub mod patch;
pub mod read;
pub mod rules;
pub mod schema;
pub mod status;
mod target;

pub use bulk::{
    BulkLimits, BulkOperation, BulkRequest, Method, Oversized, Packed, Unsendable, bulk_id,
    employee_id_of, operation_for, pack, request_body,
};
pub use error::{Message, ScimError, decode_error, error_text};
pub use list::{
    SearchRequest, UserPage, decode_user_list, employee_number_filter, identity_lookup_path,
    user_name_filter,
};
pub use mapping::{ReadUser, read_user, user_body};
pub use patch::{PatchKind, PatchOp, PatchOperation, patch_for, termination_date};
pub use rules::violations;
pub use status::{
    Applied, CreatedUser, ExtResult, ExtensionStatus, OperationStatus, ProvisionStatus, Settled,
    decode_created_user, decode_provision_status, provision_status_path, settle,
};
pub use target::V4Target;

#[cfg(test)]
mod tests;
