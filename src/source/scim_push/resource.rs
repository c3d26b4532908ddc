//! What a pushed resource must be before it is stored: the SCIM error an answer carries
//! ([`Problem`]), the clients' habits smoothed out ([`normalize`]: `"True"`/`"False"` for
//! booleans, a bare manager id), and the checks a User or Group passes ([`check`]), the
//! attribute mapping's included, so that a user the cycle could not read is refused at the door
//! with the field and the rule. Pure: no IO.

use serde_json::{Map, Value};

use super::filter::get_ci;
use crate::config::ENTERPRISE;

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// The two resource types the endpoint serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    User,
    Group,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::User => "User",
            Kind::Group => "Group",
        }
    }
    pub fn endpoint(self) -> &'static str {
        match self {
            Kind::User => "Users",
            Kind::Group => "Groups",
        }
    }
    fn schema(self) -> &'static str {
        match self {
            Kind::User => USER_SCHEMA,
            Kind::Group => GROUP_SCHEMA,
        }
    }
    /// The attribute that names a resource uniquely: `userName` or `displayName`.
    pub fn name_attr(self) -> &'static str {
        match self {
            Kind::User => "userName",
            Kind::Group => "displayName",
        }
    }
}

/// A SCIM error answer (RFC 7644 §3.12): the status, the `scimType` where one applies, and a
/// detail that names the field and the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub status: u16,
    pub scim_type: Option<&'static str>,
    pub detail: String,
}

impl Problem {
    pub fn bad(scim_type: &'static str, detail: impl Into<String>) -> Problem {
        Problem {
            status: 400,
            scim_type: Some(scim_type),
            detail: detail.into(),
        }
    }
    pub fn new(status: u16, detail: impl Into<String>) -> Problem {
        Problem {
            status,
            scim_type: None,
            detail: detail.into(),
        }
    }
    pub fn not_found(kind: Kind, id: &str) -> Problem {
        Problem::new(404, format!("{} {id:?} not found", kind.as_str()))
    }
    pub fn body(&self) -> Value {
        let mut m = Map::new();
        m.insert("schemas".into(), Value::from(vec![ERROR_SCHEMA]));
        m.insert("status".into(), Value::from(self.status.to_string()));
        if let Some(t) = self.scim_type {
            m.insert("scimType".into(), Value::from(t));
        }
        m.insert("detail".into(), Value::from(self.detail.clone()));
        Value::Object(m)
    }
}

/// The key of `name` in `m`, matched ignoring case (`name` itself when absent).
pub fn key_ci(m: &Map<String, Value>, name: &str) -> String {
    m.keys()
        .find(|k| k.eq_ignore_ascii_case(name))
        .cloned()
        .unwrap_or_else(|| name.to_owned())
}

/// Smooths the clients' habits: `active` (and `primary`) given as `"True"`/`"False"` become
/// booleans, an enterprise `manager` given as a bare id becomes `{"value": id}` (an empty one
/// is removed), and the schema URNs the resource uses are listed in `schemas`. What the server
/// owns (`id`, `meta`) is dropped: the store sets it.
pub fn normalize(kind: Kind, resource: &mut Value) -> Result<(), Problem> {
    let Value::Object(m) = resource else {
        return Err(Problem::bad(
            "invalidSyntax",
            "the body must be a JSON object",
        ));
    };
    for owned in ["id", "meta"] {
        let k = key_ci(m, owned);
        m.remove(&k);
    }
    let active = key_ci(m, "active");
    if let Some(v) = m.get_mut(&active) {
        *v = boolean("active", v)?;
    }
    for (_, v) in m.iter_mut() {
        if let Value::Array(items) = v {
            for item in items.iter_mut() {
                if let Value::Object(o) = item {
                    let k = key_ci(o, "primary");
                    if let Some(p) = o.get_mut(&k) {
                        *p = boolean("primary", p)?;
                    }
                }
            }
        }
    }
    let ent = key_ci(m, ENTERPRISE);
    if let Some(Value::Object(e)) = m.get_mut(&ent) {
        let k = key_ci(e, "manager");
        match e.get(&k) {
            Some(Value::String(s)) if s.trim().is_empty() => {
                e.remove(&k);
            }
            Some(Value::String(s)) => {
                let id = s.trim().to_owned();
                e.insert(k, serde_json::json!({ "value": id }));
            }
            Some(Value::Null) => {
                e.remove(&k);
            }
            Some(Value::Object(o))
                if get_ci(&Value::Object(o.clone()), "value")
                    .is_none_or(|v| v.as_str().is_some_and(|s| s.trim().is_empty())) =>
            {
                e.remove(&k);
            }
            _ => {}
        }
    }
    let schemas = key_ci(m, "schemas");
    let mut list: Vec<String> = match m.get(&schemas) {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    let mut want = vec![kind.schema().to_owned()];
    let extended = m.keys().any(|k| k.eq_ignore_ascii_case(ENTERPRISE));
    if kind == Kind::User && extended {
        want.push(ENTERPRISE.to_owned());
    }
    if !extended {
        list.retain(|s| !s.eq_ignore_ascii_case(ENTERPRISE));
    }
    for w in want {
        if !list.iter().any(|s| s.eq_ignore_ascii_case(&w)) {
            list.push(w);
        }
    }
    m.remove(&schemas);
    m.insert("schemas".into(), Value::from(list));
    Ok(())
}

fn boolean(name: &str, v: &Value) -> Result<Value, Problem> {
    match v {
        Value::Bool(_) => Ok(v.clone()),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(Value::Bool(true)),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(Value::Bool(false)),
        other => Err(Problem::bad(
            "invalidValue",
            format!("{name}: must be a boolean (true or false), not {other}"),
        )),
    }
}

/// Checks a normalized resource: the attributes the endpoint reads have their SCIM types, the
/// unique name is there, and (for a user) the attribute mapping reads it without a shape
/// error. A user without an employee id is accepted: the cycle reports it as a rejection.
pub fn check(
    kind: Kind,
    resource: &Value,
    mapping: &crate::source::scim::Mapping,
) -> Result<(), Problem> {
    let name = kind.name_attr();
    match get_ci(resource, name) {
        Some(Value::String(s)) if !s.trim().is_empty() => {}
        None | Some(Value::String(_) | Value::Null) => {
            return Err(Problem::bad(
                "invalidValue",
                format!("{name}: required, a non-empty string"),
            ));
        }
        Some(other) => {
            return Err(Problem::bad(
                "invalidValue",
                format!("{name}: must be a string, not {other}"),
            ));
        }
    }
    let expect = |attr: &str, want: &str, ok: fn(&Value) -> bool| -> Result<(), Problem> {
        match get_ci(resource, attr) {
            None | Some(Value::Null) => Ok(()),
            Some(v) if ok(v) => Ok(()),
            Some(v) => Err(Problem::bad(
                "invalidValue",
                format!("{attr}: must be {want}, not {v}"),
            )),
        }
    };
    expect("externalId", "a string", Value::is_string)?;
    expect("schemas", "a list of schema URNs", Value::is_array)?;
    if kind == Kind::Group {
        expect("members", "a list of {\"value\": id} objects", |v| {
            v.as_array().is_some_and(|a| a.iter().all(Value::is_object))
        })?;
        return Ok(());
    }
    expect("active", "a boolean", Value::is_boolean)?;
    expect(
        "name",
        "an object (givenName, familyName, …)",
        Value::is_object,
    )?;
    for multi in ["emails", "phoneNumbers", "addresses"] {
        expect(multi, "a list of objects", |v| {
            v.as_array().is_some_and(|a| a.iter().all(Value::is_object))
        })?;
    }
    expect(ENTERPRISE, "an object", Value::is_object)?;
    let mut with_id = resource.clone();
    if let Value::Object(m) = &mut with_id {
        m.insert("id".into(), Value::from("pending"));
    }
    if let Err(rejections) = mapping.map(&with_id, 1)
        && let Some(r) = rejections
            .iter()
            .find(|r| !r.message.starts_with("no employee id"))
    {
        return Err(Problem::bad(
            "invalidValue",
            format!(
                "{} (Concur field {}): {}",
                attribute_of(&r.message),
                r.field,
                r.message
            ),
        ));
    }
    Ok(())
}

/// The attribute a mapping message names (`attribute emails.value: …`), or `a value`.
fn attribute_of(message: &str) -> &str {
    message
        .strip_prefix("attribute ")
        .and_then(|m| m.split(':').next())
        .unwrap_or("a value")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mapping() -> crate::source::scim::Mapping {
        crate::source::scim::Mapping::new(&crate::config::ScimConfig::default()).unwrap()
    }

    #[test]
    fn client_habits_are_smoothed_and_shapes_checked() {
        let mut u = json!({"id": "forged", "userName": "a@x", "active": "False",
            "emails": [{"value": "a@x", "primary": "True"}],
            ENTERPRISE: {"manager": "m-1", "employeeNumber": "E1"}});
        normalize(Kind::User, &mut u).unwrap();
        assert_eq!(u["active"], json!(false));
        assert_eq!(u["emails"][0]["primary"], json!(true));
        assert_eq!(u[ENTERPRISE]["manager"], json!({"value": "m-1"}));
        assert!(u.get("id").is_none());
        assert_eq!(u["schemas"], json!([USER_SCHEMA, ENTERPRISE]));
        check(Kind::User, &u, &mapping()).unwrap();

        let mut bad = json!({"userName": "a@x", "active": "maybe"});
        let e = normalize(Kind::User, &mut bad).unwrap_err();
        assert_eq!((e.status, e.scim_type), (400, Some("invalidValue")));
        assert!(e.detail.starts_with("active:"), "{e:?}");
        for (resource, field) in [
            (json!({"active": true}), "userName"),
            (json!({"userName": ""}), "userName"),
            (json!({"userName": "a", "name": "Ann"}), "name"),
            (json!({"userName": "a", "emails": "a@x"}), "emails"),
            (json!({"userName": "a", "externalId": 7}), "externalId"),
        ] {
            let e = check(Kind::User, &resource, &mapping()).unwrap_err();
            assert!(e.detail.starts_with(field), "{resource}: {e:?}");
        }
        let e = check(Kind::Group, &json!({"members": []}), &mapping()).unwrap_err();
        assert!(e.detail.starts_with("displayName"), "{e:?}");
        assert_eq!(
            Problem::bad("uniqueness", "userName taken").body(),
            json!({"schemas": [ERROR_SCHEMA], "status": "400", "scimType": "uniqueness",
                   "detail": "userName taken"})
        );
    }
}
