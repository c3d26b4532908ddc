//! Writing a v4 resource back into the stored user: the attributes with a User v1 element go
//! to the element (`en-US` → `en_US`, `WA` with `US` → `US-WA`, roles and entitlements → Y/N
//! flags, the primary report approver → `ExpenseApproverEmployeeID`), the rest to
//! `V4Attrs`. Callers validate first (`validate.rs`).

use serde_json::{Map, Value, json};

use super::super::state::StoredUser;
use super::model::{
    ENTERPRISE, ENTITLEMENTS, READ_ONLY, SPEND_APPROVER, SPEND_PLAIN, SPEND_ROLE, SPEND_USER,
    V1_ROLES, custom_element, entitlement_name, is_work, spend_elements,
};

fn str_of<'a>(m: &'a Map<String, Value>, k: &str) -> &'a str {
    m.get(k).and_then(Value::as_str).unwrap_or("")
}

/// Sets a Y/N element from presence, leaving an unset element unset when absent.
fn set_flag(u: &mut StoredUser, el: &str, present: bool) {
    if present {
        u.set(el, "Y");
    } else if !u.get(el).is_empty() {
        u.set(el, "N");
    }
}

/// Writes a validated identity resource (core + enterprise) into the user, replacing what the
/// identity held before.
pub(crate) fn write_identity(u: &mut StoredUser, identity: Map<String, Value>) {
    let mut core = Map::new();
    let mut ent = Map::new();
    for (k, v) in identity {
        if k == ENTERPRISE {
            if let Value::Object(o) = v {
                ent = o;
            }
            continue;
        }
        if READ_ONLY.contains(&k.as_str()) || k.starts_with("urn:") {
            continue;
        }
        core.insert(k, v);
    }
    u.set("LoginId", str_of(&core, "userName"));
    core.remove("userName");
    match core.remove("active").and_then(|v| v.as_bool()) {
        Some(true) => u.set("Active", "Y"),
        Some(false) => u.set("Active", "N"),
        None => {}
    }
    let mut name = match core.remove("name") {
        Some(Value::Object(o)) => o,
        _ => Map::new(),
    };
    for (attr, el) in [
        ("givenName", "FirstName"),
        ("familyName", "LastName"),
        ("middleInitial", "Mi"),
    ] {
        u.set(el, str_of(&name, attr));
        name.remove(attr);
    }
    name.remove("legalName");
    if !name.is_empty() {
        core.insert("name".into(), Value::Object(name));
    }
    let mut emails = Vec::new();
    let mut work = String::new();
    let given = match core.remove("emails") {
        Some(Value::Array(a)) => a,
        _ => Vec::new(),
    };
    for mut e in given {
        if is_work(&e) && work.is_empty() {
            work = e.get("value").and_then(Value::as_str).unwrap_or("").into();
            if let Some(o) = e.as_object_mut() {
                o.remove("value");
            }
            emails.push(e);
        } else {
            emails.push(e);
        }
    }
    u.set("EmailAddress", &work);
    if !emails.is_empty() {
        core.insert("emails".into(), Value::Array(emails));
    }
    let given: Vec<String> = match core.remove("entitlements") {
        Some(Value::Array(a)) => a.iter().filter_map(entitlement_name).collect(),
        _ => Vec::new(),
    };
    let mut rest = Vec::new();
    for name in &given {
        if !ENTITLEMENTS
            .iter()
            .any(|(e, _)| e.eq_ignore_ascii_case(name))
        {
            rest.push(json!(name));
        }
    }
    for (e, el) in ENTITLEMENTS {
        set_flag(u, el, given.iter().any(|g| g.eq_ignore_ascii_case(e)));
    }
    if !rest.is_empty() {
        core.insert("entitlements".into(), Value::Array(rest));
    }
    u.set("EmpId", str_of(&ent, "employeeNumber"));
    ent.remove("employeeNumber");
    ent.remove("companyId");
    ent.remove("organization");
    u.v4.core = core;
    u.v4.enterprise = ent;
}

/// Writes one validated extension value, replacing what the extension held. Approver
/// references carry their `employeeNumber` (the caller resolves them first).
pub(crate) fn write_ext(u: &mut StoredUser, urn: &str, value: Map<String, Value>) {
    match urn {
        SPEND_USER => write_spend_user(u, &value),
        SPEND_ROLE => {
            let mut value = value;
            let roles = match value.remove("roles") {
                Some(Value::Array(a)) => a,
                _ => Vec::new(),
            };
            for (role, el) in V1_ROLES {
                let held = roles
                    .iter()
                    .any(|r| r.get("roleName").and_then(Value::as_str) == Some(role));
                set_flag(u, el, held);
            }
            u.v4.roles = roles;
        }
        SPEND_APPROVER => {
            let mut rest = value;
            let mut primary = String::new();
            let mut others = Vec::new();
            let report = match rest.remove("report") {
                Some(Value::Array(a)) => a,
                _ => Vec::new(),
            };
            for entry in report {
                let emp = entry
                    .get("approver")
                    .and_then(|a| a.get("employeeNumber"))
                    .and_then(Value::as_str)
                    .filter(|e| !e.is_empty())
                    .map(str::to_string);
                let is_primary = entry.get("primary").and_then(Value::as_bool) == Some(true);
                match emp {
                    Some(emp) if is_primary && primary.is_empty() => primary = emp,
                    _ => others.push(entry),
                }
            }
            u.set("ExpenseApproverEmployeeID", &primary);
            if !others.is_empty() {
                rest.insert("report".into(), Value::Array(others));
            }
            u.v4.approver = rest;
        }
        other => {
            if value.is_empty() {
                u.v4.other.remove(other);
            } else {
                u.v4.other.insert(other.to_string(), Value::Object(value));
            }
        }
    }
}

/// Spend User attributes kept in v1 elements (`customData` only for its mapped ids).
const SPEND_MAPPED: [&str; 8] = [
    "ledgerCode",
    "country",
    "reimbursementCurrency",
    "cashAdvanceAccountCode",
    "locale",
    "stateProvince",
    "testEmployee",
    "customData",
];

fn write_spend_user(u: &mut StoredUser, value: &Map<String, Value>) {
    let mut rest: Map<String, Value> = value
        .iter()
        .filter(|(k, _)| !SPEND_MAPPED.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for el in spend_elements() {
        u.set(el, "");
    }
    for (attr, el) in SPEND_PLAIN {
        u.set(el, str_of(value, attr));
    }
    u.set("LocaleName", &str_of(value, "locale").replace('-', "_"));
    let state = str_of(value, "stateProvince");
    let country = str_of(value, "country");
    let sub = match (country.is_empty(), state.is_empty()) {
        (_, true) => String::new(),
        (true, false) => state.to_string(),
        (false, false) => format!("{country}-{state}"),
    };
    u.set("CtrySubCode", &sub);
    match value.get("testEmployee").and_then(Value::as_bool) {
        Some(true) => u.set("IsTestEmp", "Y"),
        Some(false) => u.set("IsTestEmp", "N"),
        None => {}
    }
    let mut unmapped = Vec::new();
    for entry in value
        .get("customData")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let id = entry.get("id").and_then(Value::as_str).unwrap_or("");
        let v = entry.get("value").and_then(Value::as_str).unwrap_or("");
        match custom_element(id) {
            Some(el) => u.set(&el, v),
            None => unmapped.push(entry.clone()),
        }
    }
    if !unmapped.is_empty() {
        rest.insert("customData".into(), Value::Array(unmapped));
    }
    u.v4.spend_user = rest;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::v4::model::spend_user_view;

    #[test]
    fn v1_elements_round_trip_through_the_spend_view() {
        let mut u = StoredUser::blank();
        for (k, v) in [
            ("LocaleName", "en_US"),
            ("CtryCode", "US"),
            ("CtrySubCode", "US-WA"),
            ("CrnKey", "USD"),
            ("LedgerKey", "DEFAULT"),
            ("OrgUnit1", "R&D"),
            ("Custom2", "x"),
        ] {
            u.set(k, v);
        }
        let view = spend_user_view(u.current());
        assert_eq!(view["locale"], "en-US");
        assert_eq!(view["stateProvince"], "WA");
        assert_eq!(view["country"], "US");
        assert_eq!(view["customData"].as_array().unwrap().len(), 2);
        let before = u.fields.clone();
        write_spend_user(&mut u, &view);
        assert_eq!(u.fields, before);
        assert!(u.v4.spend_user.is_empty());
    }
}
