//! The rules a v4 write must pass, per part of the resource: identity (core + enterprise:
//! required attributes, userName characters, lengths, dates, uniqueness, companyId) and each
//! modeled extension (spend User formats and lengths, create-only `testEmployee`, roles,
//! approvers holding their role).

use axum::http::StatusCode;
use chrono::NaiveDateTime;
use serde_json::{Map, Value};

use super::super::state::Inner;
use super::errors::Failure;
use super::model::{
    ENTERPRISE, ENTITLEMENTS, READ_ONLY, SAP, SPEND_APPROVER, SPEND_ROLE, SPEND_USER,
    custom_element, entitlement_name,
};

/// How an identity is being written.
pub(crate) enum Mode<'a> {
    Create,
    Replace,
    /// A PATCH: the identity before the operations were applied.
    Patch(&'a Map<String, Value>),
}

const CORE_ATTRS: [&str; 15] = [
    "userName",
    "active",
    "name",
    "emails",
    "externalId",
    "nickName",
    "title",
    "preferredLanguage",
    "timezone",
    "dateOfBirth",
    "addresses",
    "phoneNumbers",
    "emergencyContacts",
    "entitlements",
    "profileUrl",
];

const ENTERPRISE_ATTRS: [&str; 10] = [
    "companyId",
    "employeeNumber",
    "costCenter",
    "department",
    "division",
    "organization",
    "manager",
    "startDate",
    "terminationDate",
    "leavesOfAbsence",
];

const SPEND_USER_ATTRS: [&str; 16] = [
    "reimbursementCurrency",
    "country",
    "locale",
    "ledgerCode",
    "stateProvince",
    "budgetCountryCode",
    "cashAdvanceAccountCode",
    "reimbursementType",
    "nonEmployee",
    "testEmployee",
    "biManager",
    "biHierarchy",
    "customData",
    "officeLocationCountry",
    "officeLocationStateProvince",
    "officeLocationCity",
];

/// Characters `userName` may not contain.
const USERNAME_FORBIDDEN: &str = "%[#!*&()~'{^}\\/?><,;:+=]\"|";

const EMAIL_TYPES: [&str; 5] = ["work", "home", "work2", "other", "other2"];

fn size(path: &str) -> Failure {
    Failure::invalid_value(path, format!("Invalid '{path}' Size"))
}

fn bad(path: &str) -> Failure {
    Failure::invalid_value(path, format!("Invalid '{path}' Value"))
}

/// A string attribute: must be a string when present, at most `max` characters.
fn text<'a>(
    m: &'a Map<String, Value>,
    k: &str,
    max: usize,
    path: &str,
) -> Result<&'a str, Failure> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(""),
        Some(Value::String(s)) if s.chars().count() <= max => Ok(s),
        Some(Value::String(_)) => Err(size(path)),
        Some(_) => Err(bad(path)),
    }
}

fn date(m: &Map<String, Value>, k: &str, path: &str) -> Result<(), Failure> {
    let s = text(m, k, 20, path)?;
    if s.is_empty() {
        return Ok(());
    }
    let t = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%SZ").map_err(|_| bad(path))?;
    let in_range = t.format("%Y-%m-%d").to_string().as_str() >= "1900-01-01"
        && t.format("%Y-%m-%d").to_string().as_str() <= "2079-06-06";
    if in_range { Ok(()) } else { Err(bad(path)) }
}

fn unknown(m: &Map<String, Value>, allowed: &[&str], prefix: &str) -> Result<(), Failure> {
    for k in m.keys() {
        if !allowed.iter().any(|a| a.eq_ignore_ascii_case(k)) {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}:{k}")
            };
            return Err(Failure::invalid_value(
                &path,
                format!("Unknown attribute '{path}'"),
            ));
        }
    }
    Ok(())
}

fn ent_path(k: &str) -> String {
    format!("{ENTERPRISE}:{k}")
}

/// Checks an identity (core + enterprise) before it is written to `existing` (or created).
pub(crate) fn identity(
    inner: &Inner,
    m: &Map<String, Value>,
    existing: Option<usize>,
    mode: Mode<'_>,
) -> Result<(), Failure> {
    let full = !matches!(mode, Mode::Patch(_));
    let mut allowed: Vec<&str> = CORE_ATTRS.to_vec();
    allowed.extend(READ_ONLY);
    allowed.extend([ENTERPRISE, SAP]);
    unknown(m, &allowed, "")?;

    // Attributes every user must keep: required on create and replace, never removable.
    let before = match &mode {
        Mode::Patch(b) => Some(*b),
        _ => None,
    };
    let had = |k: &str| before.is_some_and(|b| b.get(k).is_some_and(|v| !v.is_null()));
    for k in ["userName", "active", "name", "emails"] {
        if m.get(k).is_none_or(Value::is_null) && (full || had(k)) {
            return Err(Failure::required(k));
        }
    }

    let user_name = text(m, "userName", 255, "userName")?;
    if !user_name.is_empty() {
        if user_name
            .chars()
            .any(|c| USERNAME_FORBIDDEN.contains(c) || c.is_control())
            || !user_name.contains('@')
        {
            return Err(Failure::invalid_value(
                "userName",
                format!(
                    "Invalid 'userName' Value: '{user_name}' contains characters that are not allowed"
                ),
            ));
        }
        let taken = inner
            .user_by_login(user_name)
            .is_some_and(|i| Some(i) != existing)
            || inner
                .v4
                .foreign_user_names
                .contains(&user_name.to_ascii_lowercase());
        if taken {
            return Err(Failure::conflict("userName", "userName"));
        }
    }
    if m.get("active")
        .is_some_and(|v| !v.is_boolean() && !v.is_null())
    {
        return Err(bad("active"));
    }

    if let Some(name) = m.get("name") {
        let name = name.as_object().ok_or_else(|| bad("name"))?;
        for (k, max) in [
            ("givenName", 32),
            ("familyName", 32),
            ("middleInitial", 1),
            ("middleName", 60),
            ("honorificPrefix", 60),
            ("honorificSuffix", 60),
            ("familyNamePrefix", 28),
            ("formatted", 255),
            ("academicTitle", 60),
        ] {
            let path = format!("name.{k}");
            let v = text(name, k, max, &path)?;
            let required = k == "givenName" || k == "familyName";
            if required && v.trim().is_empty() {
                return Err(Failure::required(&path));
            }
        }
    }

    if let Some(emails) = m.get("emails") {
        let list = emails.as_array().ok_or_else(|| bad("emails"))?;
        if list.is_empty() {
            return Err(Failure::required("emails"));
        }
        let mut seen = Vec::new();
        for e in list {
            let o = e.as_object().ok_or_else(|| bad("emails"))?;
            let v = text(o, "value", 255, "emails.value")?;
            if v.is_empty() {
                return Err(Failure::required("emails.value"));
            }
            let t = text(o, "type", 10, "emails.type")?.to_ascii_lowercase();
            if !EMAIL_TYPES.contains(&t.as_str()) {
                return Err(bad("emails.type"));
            }
            if seen.contains(&t) {
                return Err(Failure::invalid_value(
                    "emails.type",
                    format!("Only one e-mail of type '{t}' is allowed"),
                ));
            }
            seen.push(t);
        }
    }

    text(m, "nickName", 60, "nickName")?;
    text(m, "title", 255, "title")?;
    if let Some(ents) = m.get("entitlements") {
        for e in ents.as_array().ok_or_else(|| bad("entitlements"))? {
            let name = entitlement_name(e).ok_or_else(|| bad("entitlements"))?;
            let known = ENTITLEMENTS
                .iter()
                .map(|(n, _)| *n)
                .chain(["Request"])
                .any(|n| n.eq_ignore_ascii_case(&name));
            if !known {
                return Err(Failure::invalid_value(
                    "entitlements",
                    format!("Invalid entitlement '{name}' (Expense, Invoice, Request, Travel)"),
                ));
            }
        }
    }

    let external = text(m, "externalId", 255, "externalId")?;
    if !external.is_empty() {
        if inner
            .user_by_external(external)
            .is_some_and(|i| Some(i) != existing)
        {
            return Err(Failure::conflict("companyId,externalId", "externalId"));
        }
        let changed = before.is_none_or(|b| b.get("externalId") != m.get("externalId"));
        if changed
            && !inner
                .v4
                .settings
                .grants("identity.user.externalID.writeonly")
        {
            return Err(Failure::new(
                StatusCode::FORBIDDEN,
                None,
                "INSUFFICIENT_SCOPE",
                "Writing 'externalId' needs the scope 'identity.user.externalID.writeonly'",
                "externalId",
            ));
        }
    }

    let empty = Map::new();
    let ent = match m.get(ENTERPRISE) {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(o)) => o,
        Some(_) => return Err(bad(ENTERPRISE)),
    };
    unknown(ent, &ENTERPRISE_ATTRS, ENTERPRISE)?;
    let company = text(ent, "companyId", 64, &ent_path("companyId"))?;
    match before {
        None if company.is_empty() => return Err(Failure::required(&ent_path("companyId"))),
        None if !company.eq_ignore_ascii_case(&inner.v4.company_uuid) => {
            return Err(Failure::invalid_value(
                &ent_path("companyId"),
                format!("companyId '{company}' is not the company of the access token"),
            ));
        }
        Some(_) if !company.eq_ignore_ascii_case(&inner.v4.company_uuid) => {
            return Err(Failure::new(
                StatusCode::BAD_REQUEST,
                Some("mutability"),
                "INVALID_VALUE",
                "companyId is immutable",
                ent_path("companyId"),
            ));
        }
        _ => {}
    }
    let emp = text(ent, "employeeNumber", 48, &ent_path("employeeNumber"))?;
    if !emp.is_empty() && inner.user_by_emp(emp).is_some_and(|i| Some(i) != existing) {
        return Err(Failure::conflict(
            "companyId,employeeNumber",
            &ent_path("employeeNumber"),
        ));
    }
    text(ent, "costCenter", 25, &ent_path("costCenter"))?;
    text(ent, "division", 48, &ent_path("division"))?;
    text(ent, "department", 255, &ent_path("department"))?;
    date(ent, "startDate", &ent_path("startDate"))?;
    date(ent, "terminationDate", &ent_path("terminationDate"))?;
    if let Some(mgr) = ent.get("manager").filter(|v| !v.is_null()) {
        let path = ent_path("manager.value");
        let id = mgr.get("value").and_then(Value::as_str).unwrap_or("");
        if id.is_empty() {
            return Err(Failure::required(&path));
        }
        let found = inner.user_by_uuid(id);
        if found.is_none() || (found == existing && existing.is_some()) {
            return Err(bad(&path));
        }
    }
    if let Some(loa) = ent.get("leavesOfAbsence").filter(|v| !v.is_null()) {
        let list = loa
            .as_array()
            .ok_or_else(|| bad(&ent_path("leavesOfAbsence")))?;
        if list.len() > 100 {
            return Err(size(&ent_path("leavesOfAbsence")));
        }
        for l in list {
            let o = l
                .as_object()
                .ok_or_else(|| bad(&ent_path("leavesOfAbsence")))?;
            if text(o, "startDate", 20, &ent_path("leavesOfAbsence.startDate"))?.is_empty() {
                return Err(Failure::required(&ent_path("leavesOfAbsence.startDate")));
            }
        }
    }
    Ok(())
}

/// The role an approver of `kind` must hold, where the simulator checks one.
fn role_for(kind: &str) -> Option<&'static str> {
    match kind {
        "report" | "cashAdvance" => Some("EXP_APPROVER"),
        "invoice" => Some("INV_APPROVER"),
        "request" => Some("REQ_APPROVER"),
        _ => None,
    }
}

/// The approver kinds of the Spend approver extension.
pub(crate) const APPROVER_KINDS: [&str; 7] = [
    "report",
    "cashAdvance",
    "request",
    "invoice",
    "purchaseRequest",
    "statement",
    "budget",
];

/// Checks one extension's new value for the user at `idx`. `before` is its value before the
/// write; `creating` whether the user is being created by the same operation.
pub(crate) fn extension(
    inner: &Inner,
    urn: &str,
    value: &Map<String, Value>,
    before: &Map<String, Value>,
    idx: usize,
    creating: bool,
) -> Result<(), Failure> {
    match urn {
        SPEND_USER => spend_user(value, before, creating),
        SPEND_ROLE => {
            unknown(value, &["roles"], urn)?;
            let path = format!("{urn}:roles");
            let roles = match value.get("roles") {
                None | Some(Value::Null) => return Ok(()),
                Some(Value::Array(a)) => a,
                Some(_) => return Err(bad(&path)),
            };
            for r in roles {
                let name = r.get("roleName").and_then(Value::as_str).unwrap_or("");
                if name.is_empty() {
                    return Err(Failure::required(&format!("{path}.roleName")));
                }
                if ["EXP_USER", "REQ_USER", "INV_PMT_USER"].contains(&name) {
                    return Err(Failure::invalid_value(
                        &path,
                        format!(
                            "Role '{name}' cannot be modified through the Spend role extension, only through entitlements"
                        ),
                    ));
                }
            }
            Ok(())
        }
        SPEND_APPROVER => approvers(inner, value, idx),
        _ => Ok(()),
    }
}

fn approvers(inner: &Inner, value: &Map<String, Value>, idx: usize) -> Result<(), Failure> {
    unknown(value, &APPROVER_KINDS, SPEND_APPROVER)?;
    for (kind, list) in value {
        let path = format!("{SPEND_APPROVER}:{kind}");
        let list = match list {
            Value::Null => continue,
            Value::Array(a) => a,
            _ => return Err(bad(&path)),
        };
        let primaries = list
            .iter()
            .filter(|e| e.get("primary").and_then(Value::as_bool) == Some(true))
            .count();
        let multi = kind == "report" || kind == "request";
        if primaries > 1 || (!multi && (list.len() > 1 || primaries != list.len())) {
            return Err(Failure::invalid_value(
                &path,
                format!("'{kind}' takes exactly one primary approver"),
            ));
        }
        for entry in list {
            let who = entry.get("approver").cloned().unwrap_or(Value::Null);
            let Some(i) = resolve(inner, &who) else {
                return Err(Failure::new(
                    StatusCode::NOT_FOUND,
                    None,
                    "INVALID_USER",
                    "Employee does not exist",
                    path.clone(),
                ));
            };
            if i == idx {
                return Err(Failure::invalid_value(
                    &path,
                    "A user cannot approve for themselves",
                ));
            }
            if let Some(role) = role_for(kind) {
                let u = &inner.users[i];
                let holds = super::model::ext_view(inner, u.current(), SPEND_ROLE)
                    .get("roles")
                    .and_then(Value::as_array)
                    .is_some_and(|rs| {
                        rs.iter()
                            .any(|r| r.get("roleName").and_then(Value::as_str) == Some(role))
                    });
                if !holds {
                    return Err(Failure::invalid_value(
                        &path,
                        format!(
                            "Approver '{}' does not hold the role {role}",
                            u.get("EmpId")
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The user an approver/delegate reference (`{"value": uuid}` or `{"employeeNumber": …}`)
/// names.
pub(crate) fn resolve(inner: &Inner, who: &Value) -> Option<usize> {
    if let Some(id) = who
        .get("value")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        return inner.user_by_uuid(id);
    }
    who.get("employeeNumber")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .and_then(|e| inner.user_by_emp(e))
}

fn spend_user(
    value: &Map<String, Value>,
    before: &Map<String, Value>,
    creating: bool,
) -> Result<(), Failure> {
    let p = |k: &str| format!("{SPEND_USER}:{k}");
    unknown(value, &SPEND_USER_ATTRS, SPEND_USER)?;
    if value.is_empty() {
        return Ok(());
    }
    for k in ["reimbursementCurrency", "country", "locale"] {
        if value.get(k).is_none_or(Value::is_null) {
            return Err(Failure::required(&p(k)));
        }
    }
    let exact = |k: &str, len: usize, ok: &dyn Fn(&str) -> bool| -> Result<(), Failure> {
        let v = text(value, k, len, &p(k))?;
        if v.is_empty() {
            return Ok(());
        }
        if v.chars().count() != len {
            return Err(size(&p(k)));
        }
        if ok(v) { Ok(()) } else { Err(bad(&p(k))) }
    };
    let upper = |s: &str| s.chars().all(|c| c.is_ascii_uppercase());
    exact("reimbursementCurrency", 3, &upper)?;
    exact("country", 2, &upper)?;
    exact("budgetCountryCode", 2, &upper)?;
    exact("locale", 5, &|s: &str| {
        let b = s.as_bytes();
        b[..2].iter().all(u8::is_ascii_lowercase)
            && b[2] == b'-'
            && b[3..].iter().all(u8::is_ascii_uppercase)
    })?;
    text(value, "stateProvince", 2, &p("stateProvince"))?;
    text(value, "ledgerCode", 20, &p("ledgerCode"))?;
    text(
        value,
        "cashAdvanceAccountCode",
        20,
        &p("cashAdvanceAccountCode"),
    )?;
    let rt = text(value, "reimbursementType", 20, &p("reimbursementType"))?;
    if !rt.is_empty() && !["ACCOUNTS_PAYABLE", "ADP_PAYROLL", "CONCUR_PAY", "OTHER"].contains(&rt) {
        return Err(bad(&p("reimbursementType")));
    }
    for k in ["nonEmployee", "testEmployee"] {
        if value
            .get(k)
            .is_some_and(|v| !v.is_boolean() && !v.is_null())
        {
            return Err(bad(&p(k)));
        }
    }
    if !creating && value.get("testEmployee") != before.get("testEmployee") {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            Some("mutability"),
            "INVALID_VALUE",
            "testEmployee can be set only at creation",
            p("testEmployee"),
        ));
    }
    if let Some(list) = value.get("customData").filter(|v| !v.is_null()) {
        let path = p("customData");
        let list = list.as_array().ok_or_else(|| bad(&path))?;
        let mut seen: Vec<String> = Vec::new();
        for e in list {
            let o = e.as_object().ok_or_else(|| bad(&path))?;
            let id = text(o, "id", 20, &format!("{path}.id"))?;
            let known = custom_element(id).is_some() || id.eq_ignore_ascii_case("custom22");
            if !known {
                return Err(Failure::invalid_value(
                    &format!("{path}.id"),
                    format!("Invalid '{path}.id' Value: '{id}'"),
                ));
            }
            if seen.iter().any(|s| s.eq_ignore_ascii_case(id)) {
                return Err(Failure::invalid_value(
                    &format!("{path}.id"),
                    format!("'{id}' appears twice"),
                ));
            }
            seen.push(id.to_string());
            text(o, "value", 48, &format!("{path}[id eq \"{id}\"].value"))?;
        }
    }
    Ok(())
}
