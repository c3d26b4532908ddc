//! The names and limits of the v4 APIs: schema URNs, paths, request limits, and where each
//! canonical field lives in a v4 user (which schema, which attribute), following Concur's own
//! User v1 → v4 table.

use crate::model::Field;

/// The SCIM core user schema; with [`ENTERPRISE`] it is the *identity* Concur creates inline.
pub const CORE: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// The enterprise extension (`companyId`, `employeeNumber`, `terminationDate`).
pub const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// The spend User extension: needed before any other spend extension works.
pub const SPEND_USER: &str = "urn:ietf:params:scim:schemas:extension:spend:2.0:User";
/// Spend roles (`EXP_APPROVER`, `INV_APPROVER`, …).
pub const SPEND_ROLE: &str = "urn:ietf:params:scim:schemas:extension:spend:2.0:Role";
/// Spend approvers (`report`, `invoice`, …).
pub const SPEND_APPROVER: &str = "urn:ietf:params:scim:schemas:extension:spend:2.0:Approver";

pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const SEARCH_REQUEST: &str = "urn:ietf:params:scim:api:messages:concur:2.0:SearchRequest";
pub const PROVISION_STATUS: &str =
    "urn:ietf:params:scim:schemas:extension:concur:2.0:Provision:Status";
pub const SCIM_ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
/// The Concur extension of the SCIM error body, holding `messages[]`.
pub const CONCUR_ERROR: &str = "urn:ietf:params:scim:api:messages:concur:2.0:Error";

/// What v4 requests are sent as (Concur accepts and produces it and `application/json`).
pub const CONTENT_TYPE: &str = "application/scim+json";

/// User Provisioning Service: one user (`POST` → 201, `PATCH /{uuid}`).
pub const UPS_USERS_PATH: &str = "/profile/v4/Users";
/// User Provisioning Service: `POST` → 202 and a provision to poll.
pub const UPS_BULK_PATH: &str = "/profile/v4/Bulk";
/// User Provisioning Service: `GET {this}/{provisionId}/status`.
pub const UPS_PROVISIONS_PATH: &str = "/profile/v4/provisions";
/// Identity v4 users: `filter` on `userName`/`employeeNumber`/`externalId`, `startIndex` paging.
pub const IDENTITY_V4_USERS_PATH: &str = "/profile/identity/v4/Users";
/// Identity v4.1 users: cursor paging, no `filter`.
pub const IDENTITY_V41_USERS_PATH: &str = "/profile/identity/v4.1/Users";
/// Identity v4.1 search (a [`SEARCH_REQUEST`] body).
pub const IDENTITY_V41_SEARCH_PATH: &str = "/profile/identity/v4.1/Users/.search";
/// Spend User v4.1 reads.
pub const SPEND_V41_USERS_PATH: &str = "/profile/spend/v4.1/Users";

/// Most operations in one Bulk request.
pub const MAX_BULK_OPERATIONS: usize = 100;
/// Largest Bulk request body, in bytes. Concur says "400KB"; the decimal reading is the
/// smaller one, so a request within it is within either reading.
pub const MAX_BULK_BYTES: usize = 400_000;
/// Largest `count` of an Identity v4 list page.
pub const MAX_V4_COUNT: u32 = 100;
/// Largest `count` of an Identity v4.1 list page or search.
pub const MAX_V41_COUNT: u32 = 1_000;
/// Largest search request body ("10 KB", read decimally for the same reason).
pub const MAX_SEARCH_BYTES: usize = 10_000;

/// Characters a `userName` must not contain (§1.5), in the order Concur lists them.
pub const USER_NAME_FORBIDDEN: &[char] = &[
    '%', '[', '#', '!', '*', '&', '(', ')', '~', '\'', '{', '^', '}', '\\', '/', '?', '>', '<',
    ',', ';', ':', '+', '=', ']', '"', '|',
];

/// The spend `customData` id of every canonical org unit and custom field.
pub const CUSTOM_DATA: [(Field, &str); 27] = [
    (Field::ORG_UNIT1, "orgUnit1"),
    (Field::ORG_UNIT2, "orgUnit2"),
    (Field::ORG_UNIT3, "orgUnit3"),
    (Field::ORG_UNIT4, "orgUnit4"),
    (Field::ORG_UNIT5, "orgUnit5"),
    (Field::ORG_UNIT6, "orgUnit6"),
    (Field::CUSTOM1, "custom1"),
    (Field::CUSTOM2, "custom2"),
    (Field::CUSTOM3, "custom3"),
    (Field::CUSTOM4, "custom4"),
    (Field::CUSTOM5, "custom5"),
    (Field::CUSTOM6, "custom6"),
    (Field::CUSTOM7, "custom7"),
    (Field::CUSTOM8, "custom8"),
    (Field::CUSTOM9, "custom9"),
    (Field::CUSTOM10, "custom10"),
    (Field::CUSTOM11, "custom11"),
    (Field::CUSTOM12, "custom12"),
    (Field::CUSTOM13, "custom13"),
    (Field::CUSTOM14, "custom14"),
    (Field::CUSTOM15, "custom15"),
    (Field::CUSTOM16, "custom16"),
    (Field::CUSTOM17, "custom17"),
    (Field::CUSTOM18, "custom18"),
    (Field::CUSTOM19, "custom19"),
    (Field::CUSTOM20, "custom20"),
    (Field::CUSTOM21, "custom21"),
];

/// The `entitlements` value each user flag grants.
pub const ENTITLEMENTS: [(Field, &str); 3] = [
    (Field::EXPENSE_USER, "Expense"),
    (Field::TRIP_USER, "Travel"),
    (Field::INVOICE_USER, "Invoice"),
];

/// The spend role each approver flag grants.
pub const ROLES: [(Field, &str); 2] = [
    (Field::EXPENSE_APPROVER, "EXP_APPROVER"),
    (Field::INVOICE_APPROVER, "INV_APPROVER"),
];

/// The plain attributes of the spend User extension (values converted where noted).
pub const SPEND_PLAIN: [(Field, &str); 6] = [
    (Field::LOCALE, "locale"),
    (Field::COUNTRY, "country"),
    (Field::COUNTRY_SUBDIVISION, "stateProvince"),
    (Field::CURRENCY, "reimbursementCurrency"),
    (Field::LEDGER, "ledgerCode"),
    (Field::CASH_ADVANCE_ACCOUNT_CODE, "cashAdvanceAccountCode"),
];

/// Where a canonical field lives in a v4 user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Home {
    /// A core attribute: `userName`, `active`, `name.givenName`, … (the path as PATCH names it).
    Core(&'static str),
    /// The work e-mail, `emails[type eq "work"].value`.
    WorkEmail,
    /// An enterprise attribute (`employeeNumber`).
    Enterprise(&'static str),
    /// A plain spend User attribute.
    Spend(&'static str),
    /// A spend `customData` entry, by id.
    CustomData(&'static str),
    /// One value of `entitlements`.
    Entitlement(&'static str),
    /// One spend role, by `roleName`.
    Role(&'static str),
    /// The primary `report` approver, referenced by `employeeNumber`.
    ReportApprover,
}

/// Where `field` lives in a v4 user.
pub fn home(field: Field) -> Home {
    let find = |table: &[(Field, &'static str)]| {
        table
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, name)| *name)
    };
    match field {
        Field::EMPLOYEE_ID => Home::Enterprise("employeeNumber"),
        Field::LOGIN_ID => Home::Core("userName"),
        Field::ACTIVE => Home::Core("active"),
        Field::FIRST_NAME => Home::Core("name.givenName"),
        Field::LAST_NAME => Home::Core("name.familyName"),
        Field::MIDDLE_INITIAL => Home::Core("name.middleInitial"),
        Field::EMAIL => Home::WorkEmail,
        Field::MANAGER_EMPLOYEE_ID => Home::ReportApprover,
        f => {
            if let Some(name) = find(&SPEND_PLAIN) {
                Home::Spend(name)
            } else if let Some(id) = find(&CUSTOM_DATA) {
                Home::CustomData(id)
            } else if let Some(value) = find(&ENTITLEMENTS) {
                Home::Entitlement(value)
            } else if let Some(role) = find(&ROLES) {
                Home::Role(role)
            } else {
                unreachable!("canonical field {f} has no v4 home")
            }
        }
    }
}

impl Home {
    /// The schema URN whose result in a provision status covers this attribute.
    pub fn schema(self) -> &'static str {
        match self {
            Home::Core(_) | Home::WorkEmail | Home::Entitlement(_) => CORE,
            Home::Enterprise(_) => ENTERPRISE,
            Home::Spend(_) | Home::CustomData(_) => SPEND_USER,
            Home::Role(_) => SPEND_ROLE,
            Home::ReportApprover => SPEND_APPROVER,
        }
    }

    /// The attribute as a message names it, e.g. `name.givenName`,
    /// `customData[id eq "custom2"]`, `roles[roleName eq "EXP_APPROVER"]`.
    pub fn attribute(self) -> String {
        match self {
            Home::Core(p) | Home::Enterprise(p) | Home::Spend(p) => p.to_owned(),
            Home::WorkEmail => "emails[type eq \"work\"].value".to_owned(),
            Home::CustomData(id) => format!("customData[id eq \"{id}\"]"),
            Home::Entitlement(v) => format!("entitlements \"{v}\""),
            Home::Role(r) => format!("roles[roleName eq \"{r}\"]"),
            Home::ReportApprover => "report[primary eq true].approver.employeeNumber".to_owned(),
        }
    }
}

/// Whether `schema` is part of the identity (core or enterprise), which Concur stores inline;
/// every other extension is applied asynchronously.
pub fn is_identity(schema: &str) -> bool {
    schema.eq_ignore_ascii_case(CORE) || schema.eq_ignore_ascii_case(ENTERPRISE)
}

/// The canonical fields whose attributes a schema carries (compared ignoring case), in field
/// order: what a success of that schema in a provision status confirms.
pub fn fields_of(schema: &str) -> Vec<Field> {
    Field::all()
        .filter(|f| home(*f).schema().eq_ignore_ascii_case(schema))
        .collect()
}

/// A locale as spend `locale` holds it: `en_US` → `en-US`.
pub fn v4_locale(canonical: &str) -> String {
    canonical.replace('_', "-")
}

/// A country subdivision as spend `stateProvince` holds it: `US-WA` → `WA`.
pub fn state_province(subdivision: &str) -> &str {
    subdivision
        .split_once('-')
        .map_or(subdivision, |(_, state)| state)
}

/// A value as a SCIM filter compares it (RFC 7644 §3.4.2.2: a JSON string): quoted, with `"`,
/// `\` and control characters escaped, e.g. `E"1` → `"E\"1"`.
pub fn filter_literal(value: &str) -> String {
    serde_json::Value::String(value.to_owned()).to_string()
}

/// A v4 user flag value: `Y` is set, anything else (`N`, absent) is not.
pub fn is_yes(value: Option<&str>) -> bool {
    value == Some("Y")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_has_one_home_and_schema() {
        for f in Field::all() {
            let h = home(f);
            assert!(!h.attribute().is_empty(), "{f}");
            assert!(fields_of(h.schema()).contains(&f), "{f}");
        }
        assert_eq!(
            fields_of(SPEND_ROLE),
            [Field::EXPENSE_APPROVER, Field::INVOICE_APPROVER]
        );
        assert_eq!(fields_of(ENTERPRISE), [Field::EMPLOYEE_ID]);
        assert_eq!(
            fields_of(&SPEND_APPROVER.to_uppercase()),
            [Field::MANAGER_EMPLOYEE_ID]
        );
        assert_eq!(fields_of(SPEND_USER).len(), 6 + 27);
        assert_eq!(home(Field::CUSTOM2), Home::CustomData("custom2"));
        assert!(is_identity(&CORE.to_uppercase()) && !is_identity(SPEND_USER));
    }

    #[test]
    fn value_conversions() {
        assert_eq!(v4_locale("en_US"), "en-US");
        assert_eq!(state_province("US-WA"), "WA");
        assert_eq!(state_province("GB-ENG"), "ENG");
        assert_eq!(state_province("WA"), "WA");
        assert_eq!(filter_literal("custom2"), r#""custom2""#);
        assert_eq!(filter_literal(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(filter_literal("tab\tx"), r#""tab\tx""#);
        assert_eq!(filter_literal("Zoë]"), r#""Zoë]""#);
    }
}
