//! Discovery: `/Schemas[/{id}]`, `/ResourceTypes[/{id}]` (the enterprise extension is
//! required) and `/ServiceProviderConfig` (PATCH, Bulk 100 operations / 400 KB, filter, no
//! password change), served under UPS and Identity. Attribute lengths and required flags are
//! the ones the simulator enforces.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{Value, json};

use super::super::state::Shared;
use super::bulk::{MAX_BYTES, MAX_OPERATIONS};
use super::errors::Failure;
use super::identity::LIST_RESPONSE;
use super::model::{
    CORE, ENTERPRISE, MODELED, OPAQUE, SAP, SPEND_APPROVER, SPEND_ROLE, SPEND_USER,
};
use super::validate::APPROVER_KINDS;
use super::{Scope, authorize, respond};

const SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";
const RESOURCE_TYPE: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
const SPC: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";

/// One attribute: name, type, required, multi-valued, max length (0: none), mutability.
fn attr(
    name: &str,
    kind: &str,
    required: bool,
    multi: bool,
    max: usize,
    mutability: &str,
) -> Value {
    let mut a = json!({
        "name": name, "type": kind, "multiValued": multi, "required": required,
        "mutability": mutability, "returned": "default", "caseExact": false, "uniqueness": "none",
    });
    if max > 0 {
        a["maxLength"] = json!(max);
    }
    a
}

fn s(name: &str, max: usize) -> Value {
    attr(name, "string", false, false, max, "readWrite")
}

fn req(name: &str, max: usize) -> Value {
    attr(name, "string", true, false, max, "readWrite")
}

fn complex(name: &str, required: bool, multi: bool, subs: Vec<Value>) -> Value {
    let mut a = attr(name, "complex", required, multi, 0, "readWrite");
    a["subAttributes"] = Value::Array(subs);
    a
}

fn with(mut a: Value, k: &str, v: Value) -> Value {
    a[k] = v;
    a
}

fn approver_list(name: &str) -> Value {
    complex(
        name,
        false,
        true,
        vec![
            complex(
                "approver",
                true,
                false,
                vec![s("value", 36), s("employeeNumber", 48)],
            ),
            attr("primary", "boolean", false, false, 0, "readWrite"),
        ],
    )
}

fn definitions() -> Vec<(&'static str, &'static str, Vec<Value>)> {
    let core = vec![
        attr("id", "string", false, false, 36, "readOnly"),
        with(req("userName", 0), "uniqueness", json!("global")),
        attr("active", "boolean", true, false, 0, "readWrite"),
        complex(
            "name",
            true,
            false,
            vec![
                req("givenName", 32),
                req("familyName", 32),
                s("middleName", 60),
                s("middleInitial", 1),
                s("honorificPrefix", 60),
                s("honorificSuffix", 60),
                s("familyNamePrefix", 28),
                s("formatted", 255),
                s("academicTitle", 60),
                attr("legalName", "string", false, false, 0, "readOnly"),
            ],
        ),
        attr("displayName", "string", false, false, 60, "readOnly"),
        s("nickName", 60),
        s("title", 255),
        with(s("externalId", 255), "uniqueness", json!("server")),
        s("preferredLanguage", 0),
        s("timezone", 0),
        attr("dateOfBirth", "dateTime", false, false, 0, "readWrite"),
        complex(
            "emails",
            true,
            true,
            vec![
                req("value", 255),
                with(
                    req("type", 0),
                    "canonicalValues",
                    json!(["work", "home", "work2", "other", "other2"]),
                ),
                attr("verified", "boolean", false, false, 0, "readWrite"),
                attr("notifications", "boolean", false, false, 0, "readWrite"),
            ],
        ),
        complex(
            "phoneNumbers",
            false,
            true,
            vec![
                s("value", 0),
                s("type", 0),
                attr("primary", "boolean", false, false, 0, "readWrite"),
            ],
        ),
        complex(
            "addresses",
            false,
            true,
            vec![
                s("type", 0),
                s("streetAddress", 0),
                s("locality", 30),
                s("region", 30),
                s("postalCode", 20),
                s("country", 2),
            ],
        ),
        with(
            attr("entitlements", "string", false, true, 0, "readWrite"),
            "canonicalValues",
            json!(["Expense", "Invoice", "Request", "Travel"]),
        ),
        complex(
            "emergencyContacts",
            false,
            true,
            vec![s("name", 0), s("relationship", 0)],
        ),
    ];
    let date = |n: &str| attr(n, "dateTime", false, false, 0, "readWrite");
    let enterprise = vec![
        attr("companyId", "string", true, false, 36, "immutable"),
        with(s("employeeNumber", 48), "uniqueness", json!("server")),
        s("costCenter", 25),
        s("department", 0),
        s("division", 48),
        attr("organization", "string", false, false, 0, "readOnly"),
        complex(
            "manager",
            false,
            false,
            vec![
                req("value", 36),
                s("employeeNumber", 48),
                s("displayName", 0),
                s("$ref", 0),
            ],
        ),
        date("startDate"),
        date("terminationDate"),
        complex(
            "leavesOfAbsence",
            false,
            true,
            vec![
                with(date("startDate"), "required", json!(true)),
                date("endDate"),
                s("type", 0),
            ],
        ),
    ];
    let spend_user = vec![
        req("reimbursementCurrency", 3),
        req("country", 2),
        req("locale", 5),
        s("ledgerCode", 20),
        s("stateProvince", 2),
        s("budgetCountryCode", 2),
        s("cashAdvanceAccountCode", 20),
        with(
            s("reimbursementType", 0),
            "canonicalValues",
            json!(["ACCOUNTS_PAYABLE", "ADP_PAYROLL", "CONCUR_PAY", "OTHER"]),
        ),
        attr("nonEmployee", "boolean", false, false, 0, "readWrite"),
        attr("testEmployee", "boolean", false, false, 0, "immutable"),
        complex(
            "biManager",
            false,
            false,
            vec![s("value", 36), s("employeeNumber", 48)],
        ),
        complex(
            "customData",
            false,
            true,
            vec![req("id", 0), s("value", 48)],
        ),
    ];
    let role = vec![complex(
        "roles",
        false,
        true,
        vec![
            req("roleName", 0),
            attr("roleGroups", "string", false, true, 0, "readWrite"),
        ],
    )];
    let approver = APPROVER_KINDS.iter().map(|k| approver_list(k)).collect();
    vec![
        (CORE, "User", core),
        (ENTERPRISE, "EnterpriseUser", enterprise),
        (
            SAP,
            "SapUser",
            vec![attr("userUuid", "string", false, false, 36, "readOnly")],
        ),
        (SPEND_USER, "SpendUser", spend_user),
        (SPEND_ROLE, "SpendRole", role),
        (SPEND_APPROVER, "SpendApprover", approver),
    ]
}

fn schema(base: &str, prefix: &str, id: &str, name: &str, attributes: Vec<Value>) -> Value {
    json!({
        "schemas": [SCHEMA], "id": id, "name": name, "attributes": attributes,
        "meta": {"resourceType": "Schema", "location": format!("{base}{prefix}/Schemas/{id}")},
    })
}

fn resource_type(base: &str, prefix: &str) -> Value {
    let mut ext = vec![
        json!({"schema": ENTERPRISE, "required": true}),
        json!({"schema": SAP, "required": false}),
    ];
    ext.extend(
        MODELED
            .iter()
            .chain(OPAQUE.iter())
            .map(|u| json!({"schema": u, "required": false})),
    );
    json!({
        "schemas": [RESOURCE_TYPE], "id": "User", "name": "User", "endpoint": "/Users",
        "description": "User Account", "schema": CORE, "schemaExtensions": ext,
        "meta": {"resourceType": "ResourceType", "location": format!("{base}{prefix}/ResourceTypes/User")},
    })
}

fn list(items: Vec<Value>) -> Value {
    json!({"schemas": [LIST_RESPONSE], "totalResults": items.len(), "itemsPerPage": items.len(), "startIndex": 1, "Resources": items})
}

fn config(base: &str, prefix: &str) -> Value {
    json!({
        "schemas": [SPC],
        "documentationUri": "https://developer.concur.com/api-reference/user-provisioning/v4.user-provisioning.html",
        "patch": {"supported": true},
        "bulk": {"supported": true, "maxOperations": MAX_OPERATIONS, "maxPayloadSize": MAX_BYTES},
        "filter": {"supported": true, "maxResults": 1000},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": false},
        "authenticationSchemes": [{"type": "oauthbearertoken", "name": "OAuth Bearer Token", "description": "Company JWT", "primary": true}],
        "meta": {"resourceType": "ServiceProviderConfig", "location": format!("{base}{prefix}/ServiceProviderConfig")},
    })
}

/// Adds the discovery routes under `prefix` (lowercase paths, as `normalize` leaves them).
pub(crate) fn routes(
    r: Router<Arc<Shared>>,
    prefix: &'static str,
    scope: Scope,
) -> Router<Arc<Shared>> {
    r.route(
        &format!("{prefix}/schemas"),
        get(move |State(shared): State<Arc<Shared>>, headers: HeaderMap| async move {
            if let Err(resp) = authorize(&shared, &headers, scope) {
                return resp;
            }
            let items = definitions()
                .into_iter()
                .map(|(id, name, a)| schema(&shared.base_url, prefix, id, name, a))
                .collect();
            respond(StatusCode::OK, list(items))
        }),
    )
    .route(
        &format!("{prefix}/schemas/{{id}}"),
        get(move |State(shared): State<Arc<Shared>>, headers: HeaderMap, Path(id): Path<String>| async move {
            if let Err(resp) = authorize(&shared, &headers, scope) {
                return resp;
            }
            match definitions().into_iter().find(|(u, _, _)| u.eq_ignore_ascii_case(&id)) {
                Some((u, name, a)) => respond(StatusCode::OK, schema(&shared.base_url, prefix, u, name, a)),
                None => Failure::not_found("Schema not found").into_response(),
            }
        }),
    )
    .route(
        &format!("{prefix}/resourcetypes"),
        get(move |State(shared): State<Arc<Shared>>, headers: HeaderMap| async move {
            if let Err(resp) = authorize(&shared, &headers, scope) {
                return resp;
            }
            respond(StatusCode::OK, list(vec![resource_type(&shared.base_url, prefix)]))
        }),
    )
    .route(
        &format!("{prefix}/resourcetypes/{{id}}"),
        get(move |State(shared): State<Arc<Shared>>, headers: HeaderMap, Path(id): Path<String>| async move {
            if let Err(resp) = authorize(&shared, &headers, scope) {
                return resp;
            }
            if id.eq_ignore_ascii_case("user") {
                respond(StatusCode::OK, resource_type(&shared.base_url, prefix))
            } else {
                Failure::not_found("Resource type not found").into_response()
            }
        }),
    )
    .route(
        &format!("{prefix}/serviceproviderconfig"),
        get(move |State(shared): State<Arc<Shared>>, headers: HeaderMap| async move {
            if let Err(resp) = authorize(&shared, &headers, scope) {
                return resp;
            }
            respond(StatusCode::OK, config(&shared.base_url, prefix))
        }),
    )
}
