//! The discovery documents (RFC 7644 §4, RFC 7643 §5–7): `ServiceProviderConfig`,
//! `ResourceTypes` and `Schemas` (core User with the enterprise extension, and Group). They
//! describe what the endpoint does: PATCH and filtering yes (ETags too); bulk, sorting and
//! password changes no.

use serde_json::{Value, json};

use super::resource::{GROUP_SCHEMA, USER_SCHEMA};
use crate::config::ENTERPRISE;

/// Largest page a list answers.
pub const MAX_RESULTS: usize = 1000;

pub fn service_provider_config() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "The token configured as source.scim_push.token",
            "primary": true
        }],
        "meta": {"resourceType": "ServiceProviderConfig", "location": "/scim/v2/ServiceProviderConfig"}
    })
}

pub fn resource_types() -> Vec<Value> {
    vec![
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": "User", "name": "User", "endpoint": "/Users",
            "description": "User accounts, carried to SAP Concur",
            "schema": USER_SCHEMA,
            "schemaExtensions": [{"schema": ENTERPRISE, "required": false}],
            "meta": {"resourceType": "ResourceType", "location": "/scim/v2/ResourceTypes/User"}
        }),
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": "Group", "name": "Group", "endpoint": "/Groups",
            "description": "Groups, kept but not carried to SAP Concur",
            "schema": GROUP_SCHEMA,
            "meta": {"resourceType": "ResourceType", "location": "/scim/v2/ResourceTypes/Group"}
        }),
    ]
}

fn attr(name: &str, kind: &str, multi: bool, required: bool, subs: Vec<Value>) -> Value {
    let mut a = json!({
        "name": name, "type": kind, "multiValued": multi, "required": required,
        "caseExact": false, "mutability": "readWrite", "returned": "default",
        "uniqueness": "none", "description": name,
    });
    if kind == "complex" {
        a["subAttributes"] = Value::from(subs);
    }
    a
}

fn text(name: &str) -> Value {
    attr(name, "string", false, false, vec![])
}

fn boolean(name: &str) -> Value {
    attr(name, "boolean", false, false, vec![])
}

fn multi(name: &str, extra: Vec<Value>) -> Value {
    let mut subs = vec![
        text("value"),
        text("type"),
        boolean("primary"),
        text("display"),
    ];
    subs.extend(extra);
    attr(name, "complex", true, false, subs)
}

fn schema(id: &str, name: &str, attributes: Vec<Value>) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": id, "name": name, "description": name,
        "attributes": attributes,
        "meta": {"resourceType": "Schema", "location": format!("/scim/v2/Schemas/{id}")}
    })
}

pub fn schemas() -> Vec<Value> {
    let mut user_name = attr("userName", "string", false, true, vec![]);
    user_name["uniqueness"] = json!("server");
    let mut display = attr("displayName", "string", false, true, vec![]);
    display["uniqueness"] = json!("none");
    let mut member_value = text("value");
    member_value["mutability"] = json!("immutable");
    let mut manager_value = text("value");
    manager_value["description"] = json!("The id of the manager's User resource");
    vec![
        schema(
            USER_SCHEMA,
            "User",
            vec![
                user_name,
                attr(
                    "name",
                    "complex",
                    false,
                    false,
                    [
                        "formatted",
                        "familyName",
                        "givenName",
                        "middleName",
                        "honorificPrefix",
                        "honorificSuffix",
                    ]
                    .into_iter()
                    .map(text)
                    .collect(),
                ),
                text("displayName"),
                text("nickName"),
                text("title"),
                text("userType"),
                text("preferredLanguage"),
                text("locale"),
                text("timezone"),
                boolean("active"),
                multi("emails", vec![]),
                multi("phoneNumbers", vec![]),
                attr(
                    "addresses",
                    "complex",
                    true,
                    false,
                    [
                        "formatted",
                        "streetAddress",
                        "locality",
                        "region",
                        "postalCode",
                        "country",
                        "type",
                    ]
                    .into_iter()
                    .map(text)
                    .chain([boolean("primary")])
                    .collect(),
                ),
            ],
        ),
        schema(
            ENTERPRISE,
            "EnterpriseUser",
            vec![
                text("employeeNumber"),
                text("costCenter"),
                text("organization"),
                text("division"),
                text("department"),
                attr(
                    "manager",
                    "complex",
                    false,
                    false,
                    vec![manager_value, text("displayName")],
                ),
            ],
        ),
        schema(
            GROUP_SCHEMA,
            "Group",
            vec![
                display,
                attr(
                    "members",
                    "complex",
                    true,
                    false,
                    vec![member_value, text("display"), text("type")],
                ),
            ],
        ),
    ]
}
