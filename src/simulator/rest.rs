//! Bulk User v3.1 (`GET /users`) and Profile v1 (`GET /profile/v1/me`).

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::http_util::{AuthFailure, auth_bearer, error_json, query_ci};
use super::state::{Principal, Shared, StoredUser};

const MAX_LIMIT: usize = 100;

fn unauthorized(f: AuthFailure) -> Response {
    let msg = match f {
        AuthFailure::Missing => "Authorization Required",
        AuthFailure::Invalid => "Invalid or expired access token",
    };
    error_json(StatusCode::UNAUTHORIZED, msg)
}

fn opt(u: &StoredUser, k: &str) -> Value {
    match u.get(k) {
        "" => Value::Null,
        v => Value::String(v.to_string()),
    }
}

fn bulk_item(u: &StoredUser) -> Value {
    let email = u.get("EmailAddress");
    json!({
        "ID": u.id,
        "Active": u.get("Active") != "N",
        "CountryCode": opt(u, "CtryCode"),
        "CellPhoneNumber": Value::Null,
        "PrimaryEmail": opt(u, "EmailAddress"),
        "EmployeeID": u.get("EmpId"),
        "OrganizationUnit": opt(u, "OrgUnit1"),
        "FirstName": u.get("FirstName"),
        "MiddleName": u.get("Mi"),
        "LastName": u.get("LastName"),
        "LoginID": u.get("LoginId"),
        "Emails": if email.is_empty() { vec![] } else { vec![email.to_string()] },
    })
}

fn matches_filter(u: &StoredUser, key: &str, want: &str) -> Result<bool, String> {
    let eq = |field: &str| u.get(field).eq_ignore_ascii_case(want);
    Ok(match key {
        "isactive" => match want.to_ascii_lowercase().as_str() {
            "true" => u.get("Active") != "N",
            "false" => u.get("Active") == "N",
            _ => return Err(format!("Invalid value for isactive: {want}")),
        },
        "loginid" => eq("LoginId"),
        "employeeid" => eq("EmpId"),
        "lastname" => eq("LastName"),
        "primaryemail" => eq("EmailAddress"),
        "countrycode" => eq("CtryCode"),
        "id" => u.id.eq_ignore_ascii_case(want),
        _ => true,
    })
}

pub(crate) async fn bulk_users(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if let Err(f) = auth_bearer(&shared, &headers) {
        return unauthorized(f);
    }
    let q = query_ci(query.as_deref());
    let parse = |k: &str, default: usize| -> Result<usize, String> {
        match q.get(k) {
            None => Ok(default),
            Some(v) if v.is_empty() => Ok(default),
            Some(v) => v
                .parse::<usize>()
                .map_err(|_| format!("Invalid value for {k}: {v}")),
        }
    };
    let offset = match parse("offset", 0) {
        Ok(v) => v,
        Err(m) => return error_json(StatusCode::BAD_REQUEST, &m),
    };
    let limit = match parse("limit", MAX_LIMIT) {
        Ok(v) if (1..=MAX_LIMIT).contains(&v) => v,
        Ok(v) => {
            return error_json(
                StatusCode::BAD_REQUEST,
                &format!("Invalid value for limit: {v}. Maximum: {MAX_LIMIT}"),
            );
        }
        Err(m) => return error_json(StatusCode::BAD_REQUEST, &m),
    };
    let filters: Vec<(&str, &String)> = [
        "isactive",
        "loginid",
        "employeeid",
        "lastname",
        "primaryemail",
        "countrycode",
        "id",
    ]
    .into_iter()
    .filter_map(|k| q.get(k).map(|v| (k, v)))
    .collect();
    let inner = shared.lock();
    let mut selected = Vec::new();
    for u in inner.sorted_users() {
        let mut keep = true;
        for (k, v) in &filters {
            match matches_filter(u, k, v) {
                Ok(m) => keep &= m,
                Err(msg) => return error_json(StatusCode::BAD_REQUEST, &msg),
            }
        }
        if keep {
            selected.push(u);
        }
    }
    let total = selected.len();
    let items: Vec<Value> = selected
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(bulk_item)
        .collect();
    let body = json!({
        "total": total,
        "offset": offset,
        "limit": limit,
        "company": {
            "name": shared.company_name,
            "address": "601 108th Ave NE",
            "city": "Bellevue",
            "state": "WA",
            "zip": "98004",
            "country": "US",
        },
        "Items": items,
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}

pub(crate) async fn profile_me(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let principal = match auth_bearer(&shared, &headers) {
        Ok(p) => p,
        Err(f) => return unauthorized(f),
    };
    let inner = shared.lock();
    let now = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3f")
        .to_string();
    let body = match principal {
        Principal::Company(company) => json!({
            "active": true,
            "id": shared.company_uuid,
            "userType": "Company",
            "meta": {"created": now, "lastModified": now, "principalType": "company", "resourceType": "Company"},
            "displayName": shared.company_name,
            "emails": [],
            "com:concur:Employee:1.0": {
                "companyUUID": shared.company_uuid,
                "companyId": company,
                "employeeId": "",
            },
        }),
        Principal::User(login) => {
            let Some(u) = inner.user_by_login(&login).map(|i| &inner.users[i]) else {
                return error_json(StatusCode::NOT_FOUND, "User not found");
            };
            json!({
                "active": u.get("Active") != "N",
                "id": u.id.to_lowercase(),
                "userType": "Enterprise",
                "meta": {"created": now, "lastModified": now, "principalType": "user", "resourceType": "EnterpriseUser"},
                "preferredLanguage": u.get("LocaleName").split('_').next().unwrap_or(""),
                "userName": u.get("LoginId"),
                "name": {"givenName": u.get("FirstName"), "familyName": u.get("LastName"), "middleInitial": u.get("Mi")},
                "emails": [{"value": u.get("EmailAddress"), "type": "Business", "notifications": true, "verified": false}],
                "com:concur:Employee:1.0": {
                    "companyUUID": shared.company_uuid,
                    "employeeId": u.get("EmpId"),
                },
            })
        }
    };
    (StatusCode::OK, axum::Json(body)).into_response()
}
