//! The v4 view of the tenant: one stored user, two API views.
//!
//! A user is stored once: its User v1 elements (`StoredUser::fields`) hold every attribute
//! that has a v1 element, and [`V4Attrs`] holds the rest (externalId, terminationDate,
//! manager, other e-mails, roles and approvers beyond the v1 ones, other custom data, opaque
//! extensions). The v4 resource is built from both here ([`identity_view`], [`ext_view`]) and
//! written back into both by `store.rs`, following Concur's v1 → v4 table:
//!
//! | v1 element | v4 attribute |
//! |---|---|
//! | `LoginId` | `userName` |
//! | `Active` Y/N | `active` |
//! | `FirstName`, `LastName`, `Mi` | `name.givenName`, `name.familyName`, `name.middleInitial` |
//! | `EmailAddress` | `emails[type eq "work"].value` |
//! | `EmpId` | enterprise `employeeNumber` |
//! | `ExpenseUser`, `TripUser`, `InvoiceUser` Y | `entitlements` `Expense`, `Travel`, `Invoice` |
//! | `LedgerKey` | spend `ledgerCode` |
//! | `LocaleName` `en_US` | spend `locale` `en-US` |
//! | `CtryCode` | spend `country` |
//! | `CtrySubCode` `US-WA` | spend `stateProvince` `WA` (with `country` `US`) |
//! | `CrnKey` | spend `reimbursementCurrency` |
//! | `CashAdvanceAccountCode` | spend `cashAdvanceAccountCode` |
//! | `IsTestEmp` Y/N | spend `testEmployee` |
//! | `OrgUnit1-6`, `Custom1-21` | spend `customData[id eq "orgUnitN" / "customN"]` |
//! | `ExpenseApprover`, `InvoiceApprover` Y | spend Role `EXP_APPROVER`, `INV_APPROVER` |
//! | `ExpenseApproverEmployeeID` | spend Approver `report[primary eq true].approver` |

use std::collections::BTreeMap;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::super::state::{Inner, StoredUser};

pub(crate) const CORE: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub(crate) const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub(crate) const SAP: &str = "urn:ietf:params:scim:schemas:extension:sap:2.0:User";
pub(crate) const SPEND_USER: &str = "urn:ietf:params:scim:schemas:extension:spend:2.0:User";
pub(crate) const SPEND_ROLE: &str = "urn:ietf:params:scim:schemas:extension:spend:2.0:Role";
pub(crate) const SPEND_APPROVER: &str = "urn:ietf:params:scim:schemas:extension:spend:2.0:Approver";

/// Extensions every operation reports a result for, in processing order.
pub(crate) const MODELED: [&str; 3] = [SPEND_USER, SPEND_ROLE, SPEND_APPROVER];

/// Extensions stored as sent (no v1 element, no rules beyond being an object).
pub(crate) const OPAQUE: [&str; 7] = [
    "urn:ietf:params:scim:schemas:extension:spend:2.0:ApproverLimit",
    "urn:ietf:params:scim:schemas:extension:spend:2.0:Delegate",
    "urn:ietf:params:scim:schemas:extension:spend:2.0:UserPreference",
    "urn:ietf:params:scim:schemas:extension:spend:2.0:WorkflowPreference",
    "urn:ietf:params:scim:schemas:extension:spend:2.0:InvoicePreference",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:Payroll",
    "urn:ietf:params:scim:schemas:extension:travel:2.0:User",
];

/// The canonical spelling of an extension URN other than core, enterprise and SAP.
pub(crate) fn extension_urn(name: &str) -> Option<&'static str> {
    MODELED
        .iter()
        .chain(OPAQUE.iter())
        .find(|u| u.eq_ignore_ascii_case(name))
        .copied()
}

/// Every schema URN a resource or a PATCH path may name.
pub(crate) fn known_urn(name: &str) -> Option<&'static str> {
    [CORE, ENTERPRISE, SAP]
        .iter()
        .find(|u| u.eq_ignore_ascii_case(name))
        .copied()
        .or_else(|| extension_urn(name))
}

/// v4 attributes without a User v1 element, and the v4 timestamps.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct V4Attrs {
    pub created: DateTime<Utc>,
    pub last_modified: DateTime<Utc>,
    /// When the current version becomes visible to `.search` and the v4.1 list.
    #[serde(skip)]
    pub visible_from: DateTime<Utc>,
    /// Core attributes (and the parts of `name`, `emails`, `entitlements`) with no v1 element.
    pub core: Map<String, Value>,
    /// Enterprise attributes other than `employeeNumber` and `companyId`.
    pub enterprise: Map<String, Value>,
    /// Spend User attributes (and `customData` entries) with no v1 element.
    pub spend_user: Map<String, Value>,
    /// Spend roles as last written; `EXP_APPROVER`/`INV_APPROVER` presence follows v1.
    pub roles: Vec<Value>,
    /// Spend approvers other than the primary report approver.
    pub approver: Map<String, Value>,
    /// Opaque extensions by URN.
    pub other: BTreeMap<String, Value>,
}

impl V4Attrs {
    pub fn external_id(&self) -> &str {
        self.core
            .get("externalId")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
}

/// A user's data as one version (current, or what the search index shows).
#[derive(Clone, Copy)]
pub(crate) struct UserRef<'a> {
    pub id: &'a str,
    pub seq: u64,
    pub fields: &'a BTreeMap<String, String>,
    pub v4: &'a V4Attrs,
}

impl StoredUser {
    pub fn current(&self) -> UserRef<'_> {
        UserRef {
            id: &self.id,
            seq: self.seq,
            fields: &self.fields,
            v4: &self.v4,
        }
    }

    /// The version `.search` and the v4.1 list show at `now`, if any.
    pub fn searchable(&self, now: DateTime<Utc>) -> Option<UserRef<'_>> {
        if now >= self.v4.visible_from {
            return Some(self.current());
        }
        self.search_prev.as_ref().map(|p| UserRef {
            id: &self.id,
            seq: self.seq,
            fields: &p.fields,
            v4: &p.v4,
        })
    }
}

impl UserRef<'_> {
    pub fn get(&self, k: &str) -> &str {
        self.fields.get(k).map(String::as_str).unwrap_or("")
    }

    pub fn uuid(&self) -> String {
        self.id.to_ascii_lowercase()
    }

    fn flag(&self, k: &str) -> bool {
        self.get(k) == "Y"
    }
}

/// A User resource's `meta`: created, last modified and where it lives.
pub(crate) fn meta(u: &UserRef<'_>, location: String) -> Value {
    json!({
        "resourceType": "User",
        "created": timestamp(u.v4.created),
        "lastModified": timestamp(u.v4.last_modified),
        "location": location,
    })
}

pub(crate) fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Entitlement ↔ v1 element.
pub(crate) const ENTITLEMENTS: [(&str, &str); 3] = [
    ("Expense", "ExpenseUser"),
    ("Travel", "TripUser"),
    ("Invoice", "InvoiceUser"),
];

/// Spend role ↔ v1 element.
pub(crate) const V1_ROLES: [(&str, &str); 2] = [
    ("EXP_APPROVER", "ExpenseApprover"),
    ("INV_APPROVER", "InvoiceApprover"),
];

/// Spend User attribute ↔ v1 element, for the plain ones.
pub(crate) const SPEND_PLAIN: [(&str, &str); 4] = [
    ("ledgerCode", "LedgerKey"),
    ("country", "CtryCode"),
    ("reimbursementCurrency", "CrnKey"),
    ("cashAdvanceAccountCode", "CashAdvanceAccountCode"),
];

/// `customData` id ↔ v1 element (`orgUnit1-6`, `custom1-21`).
pub(crate) fn custom_element(id: &str) -> Option<String> {
    let lower = id.to_ascii_lowercase();
    let (prefix, element, max) = if let Some(n) = lower.strip_prefix("orgunit") {
        (n, "OrgUnit", 6)
    } else if let Some(n) = lower.strip_prefix("custom") {
        (n, "Custom", 21)
    } else {
        return None;
    };
    let n: u32 = prefix.parse().ok()?;
    (1..=max)
        .contains(&n)
        .then(|| format!("{element}{n}"))
        .filter(|_| !prefix.starts_with('0'))
}

/// The v1 elements of `customData` (`OrgUnit1-6`, `Custom1-21`) with their ids, in order.
fn custom_elements() -> &'static [(String, String)] {
    static TABLE: LazyLock<Vec<(String, String)>> = LazyLock::new(|| {
        (1..=6)
            .map(|i| format!("OrgUnit{i}"))
            .chain((1..=21).map(|i| format!("Custom{i}")))
            .map(|el| {
                let id = custom_id_of(&el);
                (el, id)
            })
            .collect()
    });
    &TABLE
}

/// Every v1 element the spend User extension maps.
pub(crate) fn spend_elements() -> impl Iterator<Item = &'static str> {
    SPEND_PLAIN
        .iter()
        .map(|(_, e)| *e)
        .chain(["LocaleName", "CtrySubCode", "IsTestEmp"])
        .chain(custom_elements().iter().map(|(el, _)| el.as_str()))
}

fn custom_id_of(element: &str) -> String {
    if let Some(n) = element.strip_prefix("OrgUnit") {
        format!("orgUnit{n}")
    } else {
        element.replacen("Custom", "custom", 1)
    }
}

/// The identity resource (core + enterprise + SAP), without `meta.location` prefix choices.
pub(crate) fn identity_view(inner: &Inner, u: UserRef<'_>, base_url: &str) -> Map<String, Value> {
    let mut m = u.v4.core.clone();
    let uuid = u.uuid();
    m.insert("schemas".into(), json!([CORE, ENTERPRISE, SAP]));
    m.insert("id".into(), json!(uuid));
    if !u.get("LoginId").is_empty() {
        m.insert("userName".into(), json!(u.get("LoginId")));
    }
    m.insert("active".into(), json!(u.get("Active") != "N"));

    let mut name = m
        .get("name")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for (attr, el) in [
        ("givenName", "FirstName"),
        ("familyName", "LastName"),
        ("middleInitial", "Mi"),
    ] {
        if !u.get(el).is_empty() {
            name.insert(attr.into(), json!(u.get(el)));
        }
    }
    let first = name
        .get("givenName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let nick = m
        .get("nickName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let given = if nick.is_empty() { first } else { nick };
    let display = format!("{given} {}", u.get("LastName")).trim().to_string();
    if !display.is_empty() {
        m.insert("displayName".into(), json!(display));
    }
    if name.is_empty() {
        m.remove("name");
    } else {
        m.insert("name".into(), Value::Object(name));
    }

    let email = u.get("EmailAddress");
    let mut emails = Vec::new();
    let mut work_seen = false;
    for e in m
        .get("emails")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if is_work(e) {
            if !email.is_empty() && !work_seen {
                let mut e = e.clone();
                e["value"] = json!(email);
                emails.push(e);
                work_seen = true;
            }
        } else {
            emails.push(e.clone());
        }
    }
    if !work_seen && !email.is_empty() {
        emails.insert(0, json!({"value": email, "type": "work"}));
    }
    if emails.is_empty() {
        m.remove("emails");
    } else {
        m.insert("emails".into(), Value::Array(emails));
    }

    let mut entitlements: Vec<Value> = ENTITLEMENTS
        .iter()
        .filter(|(_, el)| u.flag(el))
        .map(|(name, _)| json!(name))
        .collect();
    entitlements.extend(
        m.get("entitlements")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .cloned(),
    );
    if entitlements.is_empty() {
        m.remove("entitlements");
    } else {
        m.insert("entitlements".into(), Value::Array(entitlements));
    }

    let mut ent = u.v4.enterprise.clone();
    ent.insert("companyId".into(), json!(inner.v4.company_uuid));
    if !u.get("EmpId").is_empty() {
        ent.insert("employeeNumber".into(), json!(u.get("EmpId")));
    }
    m.insert(ENTERPRISE.into(), Value::Object(ent));
    m.insert(SAP.into(), json!({"userUuid": uuid}));
    m.insert(
        "meta".into(),
        meta(&u, format!("{base_url}/profile/identity/v4/Users/{uuid}")),
    );
    m
}

pub(crate) fn is_work(email: &Value) -> bool {
    email
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| t.eq_ignore_ascii_case("work"))
}

/// One extension's value for the user; an empty object when it holds nothing.
pub(crate) fn ext_view(inner: &Inner, u: UserRef<'_>, urn: &str) -> Map<String, Value> {
    match urn {
        SPEND_USER => spend_user_view(u),
        SPEND_ROLE => {
            let mut roles: Vec<Value> =
                u.v4.roles
                    .iter()
                    .filter(|r| {
                        let name = r.get("roleName").and_then(Value::as_str).unwrap_or("");
                        V1_ROLES
                            .iter()
                            .all(|(role, el)| role != &name || u.flag(el))
                    })
                    .cloned()
                    .collect();
            for (role, el) in V1_ROLES {
                let held = roles
                    .iter()
                    .any(|r| r.get("roleName").and_then(Value::as_str) == Some(role));
                if u.flag(el) && !held {
                    roles.push(json!({"roleName": role}));
                }
            }
            let mut m = Map::new();
            if !roles.is_empty() {
                m.insert("roles".into(), Value::Array(roles));
            }
            m
        }
        SPEND_APPROVER => {
            let mut m = u.v4.approver.clone();
            let emp = u.get("ExpenseApproverEmployeeID");
            if !emp.is_empty() {
                let mut approver = json!({"employeeNumber": emp});
                if let Some(i) = inner.user_by_emp(emp) {
                    approver["value"] = json!(inner.users[i].id.to_ascii_lowercase());
                }
                let mut report = vec![json!({"approver": approver, "primary": true})];
                report.extend(
                    m.get("report")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .cloned(),
                );
                m.insert("report".into(), Value::Array(report));
            }
            m
        }
        other => {
            u.v4.other
                .get(other)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
        }
    }
}

pub(crate) fn spend_user_view(u: UserRef<'_>) -> Map<String, Value> {
    let mut m = u.v4.spend_user.clone();
    for (attr, el) in SPEND_PLAIN {
        if !u.get(el).is_empty() {
            m.insert(attr.into(), json!(u.get(el)));
        }
    }
    if !u.get("LocaleName").is_empty() {
        m.insert(
            "locale".into(),
            json!(u.get("LocaleName").replace('_', "-")),
        );
    }
    let sub = u.get("CtrySubCode");
    if !sub.is_empty() {
        let state = sub.split_once('-').map_or(sub, |(_, s)| s);
        m.insert("stateProvince".into(), json!(state));
    }
    match u.get("IsTestEmp") {
        "Y" => {
            m.insert("testEmployee".into(), json!(true));
        }
        "N" => {
            m.insert("testEmployee".into(), json!(false));
        }
        _ => {}
    }
    let mut custom: Vec<Value> = custom_elements()
        .iter()
        .filter(|(el, _)| !u.get(el).is_empty())
        .map(|(el, id)| json!({"id": id, "value": u.get(el)}))
        .collect();
    custom.extend(
        m.get("customData")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .cloned(),
    );
    if custom.is_empty() {
        m.remove("customData");
    } else {
        m.insert("customData".into(), Value::Array(custom));
    }
    m
}

/// The whole resource: identity and every extension that holds something.
pub(crate) fn full_view(inner: &Inner, u: UserRef<'_>, base_url: &str) -> Map<String, Value> {
    let mut m = identity_view(inner, u, base_url);
    let mut schemas = vec![json!(CORE), json!(ENTERPRISE), json!(SAP)];
    let mut urns: Vec<&str> = MODELED.to_vec();
    urns.extend(u.v4.other.keys().filter_map(|k| extension_urn(k)));
    for urn in urns {
        let v = ext_view(inner, u, urn);
        if !v.is_empty() {
            schemas.push(json!(urn));
            m.insert(urn.into(), Value::Object(v));
        }
    }
    m.insert("schemas".into(), Value::Array(schemas));
    m
}

/// An entitlement as a string (`"Expense"` or `{"value": "Expense"}`).
pub(crate) fn entitlement_name(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("value").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

/// Attributes a client cannot write; ignored in request bodies.
pub(crate) const READ_ONLY: [&str; 5] = ["id", "meta", "schemas", "displayName", "localeOverrides"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_ids_map_to_v1_elements() {
        assert_eq!(custom_element("orgUnit1").as_deref(), Some("OrgUnit1"));
        assert_eq!(custom_element("custom21").as_deref(), Some("Custom21"));
        assert_eq!(custom_element("CUSTOM2").as_deref(), Some("Custom2"));
        assert_eq!(custom_element("custom22"), None);
        assert_eq!(custom_element("orgUnit7"), None);
        assert_eq!(custom_element("custom02"), None);
        assert_eq!(custom_id_of("OrgUnit3"), "orgUnit3");
        assert_eq!(custom_id_of("Custom12"), "custom12");
    }
}
