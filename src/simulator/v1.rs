//! User v1: batch upsert, GET user, FormFields, password batch.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::Dialect;
use super::faults::BatchSize;
use super::http_util::{NS, NS_I, auth_v1, error_xml, query_ci, xml_response};
use super::state::{Inner, PasswordHash, Principal, Shared, StoredUser};
use super::xml::{Element, parse, push_el};

const MAX_BATCH: usize = 500;
const MAX_ERRORS: usize = 10;

/// Kind of value an element holds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    YesNo,
    Int,
}

/// Every element a `UserProfile` may carry: canonical name, max length, kind.
fn element_specs() -> Vec<(String, usize, Kind)> {
    let mut v: Vec<(String, usize, Kind)> = [
        ("EmpId", 48, Kind::Text),
        ("FeedRecordNumber", 11, Kind::Int),
        ("LoginId", 128, Kind::Text),
        ("LocaleName", 5, Kind::Text),
        ("Active", 1, Kind::YesNo),
        ("Password", 255, Kind::Text),
        ("FirstName", 32, Kind::Text),
        ("LastName", 32, Kind::Text),
        ("Mi", 1, Kind::Text),
        ("EmailAddress", 255, Kind::Text),
        ("LedgerKey", 20, Kind::Text),
        ("CtryCode", 2, Kind::Text),
        ("CashAdvanceAccountCode", 20, Kind::Text),
        ("CrnKey", 3, Kind::Text),
        ("CtrySubCode", 6, Kind::Text),
        ("ExpenseUser", 1, Kind::YesNo),
        ("ExpenseApprover", 1, Kind::YesNo),
        ("TripUser", 1, Kind::YesNo),
        ("InvoiceUser", 1, Kind::YesNo),
        ("InvoiceApprover", 1, Kind::YesNo),
        ("IsTestEmp", 1, Kind::YesNo),
        ("ExpenseApproverEmployeeID", 48, Kind::Text),
        ("NewLoginID", 128, Kind::Text),
        ("NewEmployeeID", 48, Kind::Text),
        ("BiHierNodeKey", 48, Kind::Text),
    ]
    .into_iter()
    .map(|(n, l, k)| (n.to_string(), l, k))
    .collect();
    for i in 1..=6 {
        v.push((format!("OrgUnit{i}"), 48, Kind::Text));
    }
    for i in 1..=21 {
        v.push((format!("Custom{i}"), 48, Kind::Text));
    }
    v
}

/// Elements that steer the request rather than being stored.
const CONTROL_ELEMENTS: [&str; 4] = [
    "FeedRecordNumber",
    "Password",
    "NewLoginID",
    "NewEmployeeID",
];

fn canonical(specs: &[(String, usize, Kind)], name: &str) -> Option<(String, usize, Kind)> {
    specs
        .iter()
        .find(|(n, _, _)| n.eq_ignore_ascii_case(name))
        .cloned()
}

struct Outcome {
    emp_id: String,
    feed: String,
    result: Result<(), String>,
}

/// Validates and applies one record. Records apply in order, so later records see earlier ones.
fn apply_record(
    shared: &Shared,
    inner: &mut Inner,
    specs: &[(String, usize, Kind)],
    rec: &Element,
) -> Outcome {
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    let mut first_error: Option<String> = None;
    for child in &rec.children {
        match canonical(specs, &child.name) {
            Some((name, max, kind)) => {
                let v = child.text.trim().to_string();
                let invalid = v.chars().count() > max
                    || (kind == Kind::YesNo && !v.is_empty() && v != "Y" && v != "N")
                    || (kind == Kind::Int && !v.is_empty() && v.parse::<i32>().is_err());
                if invalid && first_error.is_none() {
                    first_error = Some(format!("Invalid Input: {name}"));
                }
                values.insert(name, v);
            }
            None => {
                if first_error.is_none() {
                    first_error = Some(format!("Invalid Input: {}", child.name));
                }
            }
        }
    }
    let get = |k: &str| values.get(k).map(String::as_str).unwrap_or("");
    let emp_id = get("EmpId").to_string();
    let feed = get("FeedRecordNumber").to_string();
    let fail = |m: String| Outcome {
        emp_id: emp_id.clone(),
        feed: feed.clone(),
        result: Err(m),
    };
    if emp_id.is_empty() {
        return fail("Missing Required Field: EmpId".to_string());
    }
    if feed.is_empty() {
        return fail("Missing Required Field: FeedRecordNumber".to_string());
    }
    if let Some(e) = first_error {
        return fail(e);
    }
    let login = get("LoginId").to_string();
    if login.is_empty() {
        return fail("Missing Required Field: LoginId".to_string());
    }
    if !login.contains('@') {
        return fail("Invalid Input: LoginId".to_string());
    }
    let new_login = get("NewLoginID").to_string();
    if !new_login.is_empty() && !new_login.contains('@') {
        return fail("Invalid Input: NewLoginID".to_string());
    }
    if let Some(message) = inner.rejects.get(&emp_id) {
        return fail(message.clone());
    }
    let new_emp = get("NewEmployeeID").to_string();
    let renaming = !new_login.is_empty() || !new_emp.is_empty();

    let existing = inner.user_by_emp(&emp_id).or_else(|| {
        if renaming {
            inner.user_by_login(&login)
        } else {
            None
        }
    });
    if renaming && existing.is_none() {
        return fail(format!(
            "Invalid Input: {}",
            if new_emp.is_empty() {
                "NewLoginID"
            } else {
                "NewEmployeeID"
            }
        ));
    }

    // Final identity after this record.
    let final_login = if new_login.is_empty() {
        login.clone()
    } else {
        new_login.clone()
    };
    let final_emp = if new_emp.is_empty() {
        existing.map_or(emp_id.clone(), |i| inner.users[i].get("EmpId").to_string())
    } else {
        new_emp.clone()
    };
    if let Some(other) = inner.user_by_login(&final_login)
        && Some(other) != existing
    {
        return fail(format!(
            "Invalid Input: LoginId {final_login} is already in use by another employee"
        ));
    }
    if let Some(other) = inner.user_by_emp(&final_emp)
        && Some(other) != existing
    {
        return fail(format!(
            "Invalid Input: NewEmployeeID {final_emp} is already in use by another employee"
        ));
    }
    let approver = get("ExpenseApproverEmployeeID");
    if !approver.is_empty() && approver != final_emp && inner.user_by_emp(approver).is_none() {
        return fail("Invalid Input: ExpenseApproverEmployeeID".to_string());
    }

    match existing {
        None => {
            for req in &shared.required_fields {
                if get(req).is_empty() {
                    return fail(format!("Missing Required Field: {req}"));
                }
            }
            let mut user = StoredUser::blank();
            for (k, v) in &values {
                if !CONTROL_ELEMENTS.contains(&k.as_str()) {
                    user.set(k, v);
                }
            }
            let password = get("Password");
            if !password.is_empty() {
                user.password = Some(PasswordHash::new(password));
            }
            user.set("EmpId", &final_emp);
            user.set("LoginId", &final_login);
            inner.add_user(user, shared.now());
        }
        Some(i) => {
            inner.begin_write(i, shared.now());
            let user = &mut inner.users[i];
            for (k, v) in &values {
                if !CONTROL_ELEMENTS.contains(&k.as_str()) && k != "EmpId" && k != "LoginId" {
                    user.set(k, v);
                }
            }
            user.set("EmpId", &final_emp);
            user.set("LoginId", &final_login);
            inner.index(i);
        }
    }
    Outcome {
        emp_id,
        feed,
        result: Ok(()),
    }
}

/// Authenticates a v1 batch request and parses its body, whose root must be `root_name`.
fn batch_root(
    shared: &Shared,
    headers: &HeaderMap,
    body: &[u8],
    root_name: &str,
) -> Result<Element, Response> {
    auth_v1(shared, headers)?;
    match parse(body) {
        Some(root) if root.name.eq_ignore_ascii_case(root_name) => Ok(root),
        _ => Err(error_xml(
            StatusCode::BAD_REQUEST,
            "The Request XML is invalid",
        )),
    }
}

/// The batch's `item` children, refusing empty batches and batches over the 500 limit.
fn batch_items<'a>(batch: &'a Element, item: &str) -> Result<Vec<&'a Element>, Response> {
    let items: Vec<&Element> = batch.children_named(item).collect();
    if items.len() > MAX_BATCH {
        let mut resp = error_xml(
            StatusCode::BAD_REQUEST,
            "Maximum User Records per Batch Exceeded",
        );
        resp.extensions_mut().insert(BatchSize(items.len()));
        return Err(resp);
    }
    if items.is_empty() {
        return Err(error_xml(
            StatusCode::BAD_REQUEST,
            "Missing Required Parameters",
        ));
    }
    Ok(items)
}

pub(crate) async fn post_users(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let batch = match batch_root(&shared, &headers, &body, "batch") {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let records = match batch_items(&batch, "UserProfile") {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let specs = element_specs();
    let outcomes: Vec<Outcome> = {
        let mut inner = shared.lock();
        let outcomes = records
            .iter()
            .map(|rec| apply_record(&shared, &mut inner, &specs, rec))
            .collect();
        shared.persist(&inner);
        outcomes
    };
    let succeeded = outcomes.iter().filter(|o| o.result.is_ok()).count();
    let failed = outcomes.len() - succeeded;
    let (details, message) = match shared.dialect {
        Dialect::Wire => ("UsersDetails", "message"),
        Dialect::Docs => ("UserDetails", "Message"),
    };
    let mut out = format!(r#"<user-batch-result xmlns="{NS}" xmlns:i="{NS_I}">"#);
    push_el(&mut out, "records-succeeded", &succeeded.to_string());
    push_el(&mut out, "records-failed", &failed.to_string());
    out.push_str("<errors>");
    for o in outcomes
        .iter()
        .filter(|o| o.result.is_err())
        .take(MAX_ERRORS)
    {
        if let Err(m) = &o.result {
            out.push_str("<error>");
            push_el(&mut out, "EmployeeID", &o.emp_id);
            push_el(&mut out, "FeedRecordNumber", &o.feed);
            push_el(&mut out, message, m);
            out.push_str("</error>");
        }
    }
    out.push_str("</errors>");
    out.push_str(&format!("<{details}>"));
    for o in outcomes.iter().filter(|o| o.result.is_ok()) {
        out.push_str("<UserInfo>");
        push_el(&mut out, "EmployeeID", &o.emp_id);
        push_el(&mut out, "FeedRecordNumber", &o.feed);
        push_el(&mut out, "Status", "SUCCESS");
        out.push_str("</UserInfo>");
    }
    out.push_str(&format!("</{details}>"));
    out.push_str("</user-batch-result>");
    let mut resp = xml_response(StatusCode::OK, out);
    resp.extensions_mut().insert(BatchSize(records.len()));
    resp
}

/// `UserProfile` for one user: alphabetical, empties omitted, `LedgerKey` shown as `LedgerName`.
fn user_profile_xml(user: &StoredUser) -> String {
    let mut fields: BTreeMap<&str, &str> = BTreeMap::new();
    for (k, v) in &user.fields {
        if v.is_empty() {
            continue;
        }
        let k = if k == "LedgerKey" {
            "LedgerName"
        } else {
            k.as_str()
        };
        fields.insert(k, v);
    }
    let mut out = format!(r#"<UserProfile xmlns="{NS}" xmlns:i="{NS_I}">"#);
    for (k, v) in fields {
        push_el(&mut out, k, v);
    }
    out.push_str("</UserProfile>");
    out
}

pub(crate) async fn get_user(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let principal = match auth_v1(&shared, &headers) {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    let q = query_ci(query.as_deref());
    let inner = shared.lock();
    let found = match q.get("loginid") {
        Some(login) => inner
            .user_by_login(login)
            .map(|i| &inner.users[i])
            .ok_or(login.clone()),
        None => match &principal {
            Principal::User(login) => inner
                .user_by_login(login)
                .map(|i| &inner.users[i])
                .ok_or(login.clone()),
            Principal::Company(company) => inner
                .sorted_users()
                .into_iter()
                .next()
                .ok_or(company.clone()),
        },
    };
    match found {
        Ok(user) => xml_response(StatusCode::OK, user_profile_xml(user)),
        Err(login) => error_xml(StatusCode::NOT_FOUND, &format!("Invalid User:{login}")),
    }
}

fn label(id: &str) -> String {
    match id {
        "LoginId" => "LogonID".to_string(),
        "EmpId" => "Employee ID".to_string(),
        "Mi" => "Middle Initial".to_string(),
        "LedgerKey" => "Ledger".to_string(),
        "CtryCode" => "Country Code".to_string(),
        "CrnKey" => "Reimbursement Currency".to_string(),
        "CtrySubCode" => "State/Province".to_string(),
        "Custom21" => "EmployeeAdministrationCountry".to_string(),
        other => other.to_string(),
    }
}

pub(crate) async fn form_fields(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(resp) = auth_v1(&shared, &headers) {
        return resp;
    }
    let mut out = format!(r#"<FormFieldsList xmlns="{NS}" xmlns:i="{NS_I}">"#);
    let specs = element_specs();
    let mut seq = 0;
    for (id, max, kind) in &specs {
        if matches!(
            id.as_str(),
            "FeedRecordNumber" | "NewLoginID" | "NewEmployeeID" | "BiHierNodeKey"
        ) {
            continue;
        }
        seq += 1;
        let custom = id.starts_with("Custom") || id.starts_with("OrgUnit");
        let required = id == "EmpId"
            || id == "LoginId"
            || shared
                .required_fields
                .iter()
                .any(|r| r.eq_ignore_ascii_case(id));
        let (control, data_type) = match kind {
            Kind::YesNo => ("checkbox", "BOOLEANCHAR"),
            Kind::Int => ("edit", "INTEGER"),
            Kind::Text if custom => ("edit", "VARCHAR"),
            Kind::Text => ("edit", "VARCHAR"),
        };
        out.push_str("<FormField>");
        push_el(&mut out, "Id", id);
        push_el(&mut out, "Label", &label(id));
        push_el(&mut out, "ControlType", control);
        push_el(&mut out, "DataType", data_type);
        push_el(&mut out, "MaxLength", &max.to_string());
        push_el(&mut out, "Required", if required { "Y" } else { "N" });
        push_el(&mut out, "Cols", "32");
        push_el(&mut out, "Access", "RW");
        push_el(&mut out, "Width", "32");
        push_el(&mut out, "Custom", if custom { "Y" } else { "N" });
        if custom {
            out.push_str(
                "<ParentFormTypeCode>EMPINFO</ParentFormTypeCode><ParentFieldId/><IsCopyDownSourceForOtherForms/><ListName/><HierLevel/>",
            );
        }
        push_el(&mut out, "Sequence", &seq.to_string());
        out.push_str("</FormField>");
    }
    out.push_str("</FormFieldsList>");
    xml_response(StatusCode::OK, out)
}

const NO_EMP_ID: &str = "This employee doesn't have an Employee ID. To update the password, the user must have an Employee ID.";

pub(crate) async fn post_passwords(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let batch = match batch_root(&shared, &headers, &body, "UserBatch") {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let users = match batch_items(&batch, "User") {
        Ok(u) => u,
        Err(resp) => return resp,
    };
    let mut statuses: Vec<(String, Result<(), String>)> = Vec::new();
    {
        let mut inner = shared.lock();
        for u in &users {
            let login = u.child_text("LoginID").unwrap_or("").trim().to_string();
            let password = u.child_text("Password").unwrap_or("").to_string();
            let result = if login.is_empty() {
                Err("Missing Required Field: LoginID".to_string())
            } else if !login.contains('@') {
                Err("Invalid Input: LoginID".to_string())
            } else if password.is_empty() {
                Err("Missing Required Field: Password".to_string())
            } else if password.chars().count() > 255 {
                Err("Invalid Input: Password".to_string())
            } else {
                match inner.user_by_login(&login) {
                    None => Err(format!("Invalid User:{login}")),
                    Some(i) if inner.users[i].get("EmpId").is_empty() => Err(NO_EMP_ID.to_string()),
                    Some(i) => {
                        inner.users[i].password = Some(PasswordHash::new(&password));
                        Ok(())
                    }
                }
            };
            statuses.push((login, result));
        }
        shared.persist(&inner);
    }
    let ok = statuses.iter().filter(|s| s.1.is_ok()).count();
    let mut out = format!(r#"<BatchResult xmlns="{NS}" xmlns:i="{NS_I}">"#);
    push_el(&mut out, "RecordsSucceeded", &ok.to_string());
    push_el(
        &mut out,
        "RecordsFailed",
        &(statuses.len() - ok).to_string(),
    );
    out.push_str("<UserPasswordStatusList>");
    for (login, result) in &statuses {
        out.push_str("<UserPasswordStatus>");
        push_el(&mut out, "LoginID", login);
        match result {
            Ok(()) => {
                push_el(&mut out, "Status", "Success");
                push_el(&mut out, "Message", "Password Updated.");
            }
            Err(m) => {
                push_el(&mut out, "Status", "Failed");
                push_el(&mut out, "Message", m);
            }
        }
        out.push_str("</UserPasswordStatus>");
    }
    out.push_str("</UserPasswordStatusList></BatchResult>");
    let mut resp = xml_response(StatusCode::OK, out);
    resp.extensions_mut().insert(BatchSize(users.len()));
    resp
}
