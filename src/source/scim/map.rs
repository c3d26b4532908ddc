//! The mapping of a SCIM User resource onto canonical fields: the value at an attribute path
//! (`config::AttrPath`, parsed with the configuration) and the compiled mapping of
//! `[source.scim.attributes]` (`config::ScimMapping`) applied to a resource. Pure: no IO.

use serde_json::Value;

use crate::config::{AttrPath, CORE_USER, ConfigError, FilterValue, ScimConfig};
use crate::model::Field;

/// The value at this path as text: `Ok(None)` when absent or null, `Err` (a message) when
/// the resource has the wrong shape for it.
pub fn text_in(path: &AttrPath, resource: &Value) -> Result<Option<String>, String> {
    let base = match path.schema() {
        Some(s) if !s.eq_ignore_ascii_case(CORE_USER) => match get_ci(resource, s) {
            None | Some(Value::Null) => return Ok(None),
            Some(v @ Value::Object(_)) => v,
            Some(v) => return Err(format!("{s} is {}, not an object", kind(v))),
        },
        _ => resource,
    };
    let Some(mut v) = get_ci(base, path.attr()) else {
        return Ok(None);
    };
    if let Value::Array(items) = v {
        let mut pick = None;
        for item in items {
            let Value::Object(_) = item else {
                if path.filter().is_none() && path.sub().is_none() {
                    pick = pick.or(Some(item));
                    continue;
                }
                return Err(format!(
                    "{} holds {}, not complex values",
                    path.attr(),
                    kind(item)
                ));
            };
            let wanted = match path.filter() {
                Some((key, want)) => matches(get_ci(item, key), want),
                None => get_ci(item, "primary") == Some(&Value::Bool(true)),
            };
            if wanted {
                pick = Some(item);
                break;
            }
        }
        if pick.is_none() && path.filter().is_none() {
            pick = items.first();
        }
        match pick {
            Some(p) => v = p,
            None => return Ok(None),
        }
    } else if path.filter().is_some() {
        return Err(format!("{} is {}, not multi-valued", path.attr(), kind(v)));
    }
    let v = match (path.sub(), v) {
        (Some(sub), Value::Object(_)) => match get_ci(v, sub) {
            Some(x) => x,
            None => return Ok(None),
        },
        (Some(_), Value::Null) => return Ok(None),
        (Some(sub), other) => {
            return Err(format!(
                "{} is {}, so it has no {sub}",
                path.attr(),
                kind(other)
            ));
        }
        (None, Value::Object(_)) if path.is_manager_reference() => match get_ci(v, "value") {
            Some(x) => x,
            None => return Ok(None),
        },
        (None, v) => v,
    };
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Bool(b) => Ok(Some(b.to_string())),
        Value::Number(n) => Ok(Some(n.to_string())),
        other => Err(format!("is {}, expected a single value", kind(other))),
    }
}

fn matches(v: Option<&Value>, want: &FilterValue) -> bool {
    match (v, want) {
        (Some(Value::String(s)), FilterValue::Text(w)) => s.eq_ignore_ascii_case(w),
        (Some(Value::Bool(b)), FilterValue::Bool(w)) => b == w,
        (None, FilterValue::Bool(false)) => true,
        _ => false,
    }
}

/// A member of an object by name, ignoring ASCII case (SCIM names are case-insensitive).
fn get_ci<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    let Value::Object(m) = v else { return None };
    m.get(key).or_else(|| {
        m.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Canonical field → SCIM paths, defaults merged with `[source.scim.attributes]`.
#[derive(Clone, Debug)]
pub struct Mapping {
    fields: Vec<(Field, Vec<AttrPath>, bool)>,
}

/// A resource mapped onto canonical fields, before manager resolution.
#[derive(Debug)]
pub struct Mapped {
    pub id: String,
    pub origin: String,
    pub values: Vec<(Field, String)>,
    /// The manager's SCIM id, still to be resolved to an employee id.
    pub manager_ref: Option<String>,
}

impl From<crate::config::ScimMapping> for Mapping {
    fn from(m: crate::config::ScimMapping) -> Mapping {
        Mapping { fields: m.fields }
    }
}

impl Mapping {
    /// The mapping `[source.scim]` configures (see `ScimConfig::mapping`).
    pub fn new(cfg: &ScimConfig) -> Result<Mapping, ConfigError> {
        Ok(Mapping {
            fields: cfg.mapping()?.fields,
        })
    }

    /// The paths of the employee id, to read a manager's id from its resource.
    pub fn employee_id(&self, resource: &Value) -> Result<Option<String>, String> {
        for (f, paths, _) in &self.fields {
            if *f == Field::EMPLOYEE_ID {
                return first_text(paths, resource).map(|o| o.map(|(v, _)| v));
            }
        }
        Ok(None)
    }

    /// The path text the employee id comes from, for messages.
    pub fn employee_id_path(&self) -> String {
        self.fields
            .iter()
            .find(|(f, _, _)| *f == Field::EMPLOYEE_ID)
            .map(|(_, p, _)| {
                p.iter()
                    .map(AttrPath::as_str)
                    .collect::<Vec<_>>()
                    .join(" or ")
            })
            .unwrap_or_else(|| "(unmapped)".into())
    }

    /// Maps one resource. A resource without `id`, without an employee id or with values of
    /// the wrong shape comes back as rejections naming its id, the field and the attribute.
    pub fn map(
        &self,
        resource: &Value,
        position: u64,
    ) -> Result<Mapped, Vec<crate::model::Rejection>> {
        use crate::model::Rejection;
        let id = match get_ci(resource, "id") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => {
                return Err(vec![Rejection {
                    source: format!("scim:Resources[{position}]"),
                    employee_id: None,
                    identity: Default::default(),
                    field: "id".into(),
                    message: if resource.is_object() {
                        "the resource has no id".into()
                    } else {
                        format!("the resource is {}, not an object", kind(resource))
                    },
                }]);
            }
        };
        let origin = match get_ci(resource, "userName") {
            Some(Value::String(u)) => format!("scim:{id} ({u})"),
            _ => format!("scim:{id}"),
        };
        let mut values = Vec::with_capacity(self.fields.len());
        let mut manager_ref = None;
        let mut problems: Vec<(Field, String)> = Vec::new();
        for (f, paths, default) in &self.fields {
            let found = match first_text(paths, resource) {
                Ok(v) => v,
                Err(e) => {
                    problems.push((*f, e));
                    continue;
                }
            };
            let Some((mut v, path)) = found else { continue };
            if *f == Field::MIDDLE_INITIAL {
                v = v
                    .trim()
                    .chars()
                    .next()
                    .map(String::from)
                    .unwrap_or_default();
            }
            if *f == Field::LOCALE && *default {
                match default_locale(&v) {
                    Some(l) => v = l,
                    None => {
                        tracing::debug!(origin = %origin, attribute = path.as_str(), value = %v, "ignoring a locale without a country part");
                        continue;
                    }
                }
            }
            if *f == Field::MANAGER_EMPLOYEE_ID && path.is_manager_reference() {
                if !v.trim().is_empty() {
                    manager_ref = Some(v.trim().to_owned());
                }
                continue;
            }
            values.push((*f, v));
        }
        let employee_id = values
            .iter()
            .find(|(f, _)| *f == Field::EMPLOYEE_ID)
            .map(|(_, v)| v.trim().to_owned())
            .filter(|v| !v.is_empty());
        if employee_id.is_none() && !problems.iter().any(|(f, _)| *f == Field::EMPLOYEE_ID) {
            problems.insert(
                0,
                (
                    Field::EMPLOYEE_ID,
                    format!("no employee id: {} is missing", self.employee_id_path()),
                ),
            );
        }
        if !problems.is_empty() {
            let mut identity = crate::model::RowIdentity::from_values(
                values.iter().map(|(f, v)| (*f, v.as_str())),
            );
            if let Some(Value::String(u)) = get_ci(resource, "userName") {
                identity.push(u);
            }
            return Err(problems
                .into_iter()
                .map(|(f, message)| Rejection {
                    source: origin.clone(),
                    employee_id: employee_id.clone(),
                    identity: identity.clone(),
                    field: f.name().into(),
                    message,
                })
                .collect());
        }
        Ok(Mapped {
            id,
            origin,
            values,
            manager_ref,
        })
    }
}

/// The first path that yields a non-empty value; a shape error on any path is an error.
fn first_text<'p>(
    paths: &'p [AttrPath],
    resource: &Value,
) -> Result<Option<(String, &'p AttrPath)>, String> {
    for p in paths {
        match text_in(p, resource) {
            Ok(Some(v)) if !v.trim().is_empty() => return Ok(Some((v, p))),
            Ok(_) => {}
            Err(e) => return Err(format!("attribute {}: {e}", p.as_str())),
        }
    }
    Ok(None)
}

/// A SCIM locale or `preferredLanguage` (`en-US`, `en_US`, `en-US,en;q=0.8`) as `ll-CC`, or
/// `None` when it names no country (`en`), which Concur cannot use.
fn default_locale(v: &str) -> Option<String> {
    let tag = v.split([',', ';']).next()?.trim();
    let mut parts = tag.split(['-', '_']);
    let lang = parts.next()?;
    let region = parts.find(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_alphabetic()))?;
    (lang.len() == 2 && lang.chars().all(|c| c.is_ascii_alphabetic()))
        .then(|| format!("{lang}-{region}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ENTERPRISE;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn text(path: &str, v: &Value) -> Result<Option<String>, String> {
        text_in(&AttrPath::parse(path).unwrap(), v)
    }

    fn mapping(overrides: &[(&str, &str)]) -> Result<Mapping, ConfigError> {
        Mapping::new(&ScimConfig {
            attributes: overrides
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..ScimConfig::default()
        })
    }

    #[test]
    fn values_are_found_case_insensitively_with_filters_and_primary() {
        let u = json!({
            "id": "1", "USERNAME": "a@x",
            "emails": [{"value": "home@x", "type": "home"}, {"value": "work@x", "type": "Work"},
                       {"value": "p@x", "primary": true}],
            "addresses": [{"type": "work", "country": "DE"}],
            ENTERPRISE: {"employeeNumber": 42, "manager": {"value": "m1"}}
        });
        assert_eq!(text("userName", &u).unwrap().as_deref(), Some("a@x"));
        assert_eq!(text("emails.value", &u).unwrap().as_deref(), Some("p@x"));
        assert_eq!(
            text("emails[type eq \"work\"].value", &u)
                .unwrap()
                .as_deref(),
            Some("work@x")
        );
        assert_eq!(text("emails[type eq \"other\"].value", &u).unwrap(), None);
        assert_eq!(
            text("addresses[type eq \"work\"].country", &u)
                .unwrap()
                .as_deref(),
            Some("DE")
        );
        assert_eq!(
            text(&format!("{ENTERPRISE}:employeeNumber"), &u)
                .unwrap()
                .as_deref(),
            Some("42")
        );
        assert_eq!(
            text(&format!("{ENTERPRISE}:manager"), &u)
                .unwrap()
                .as_deref(),
            Some("m1")
        );
        assert_eq!(text("name.givenName", &u).unwrap(), None);
        assert!(text("userName.x", &u).is_err());
    }

    #[test]
    fn default_mapping_and_malformed_resources() {
        let m = mapping(&[]).unwrap();
        let u = json!({
            "id": "abc", "userName": "ann@x", "active": false, "locale": "en-US",
            "name": {"givenName": "Ann", "familyName": "Lee", "middleName": "Marie"},
            "emails": [{"value": "ann@x", "type": "work"}],
            "addresses": [{"type": "work", "country": "US"}],
            ENTERPRISE: {"employeeNumber": "E1", "department": "R&D", "costCenter": "CC",
                         "division": "D", "manager": {"value": "boss"}}
        });
        let r = m.map(&u, 1).unwrap();
        assert_eq!(r.origin, "scim:abc (ann@x)");
        assert_eq!(r.manager_ref.as_deref(), Some("boss"));
        let got: BTreeMap<&str, &str> = r
            .values
            .iter()
            .map(|(f, v)| (f.name(), v.as_str()))
            .collect();
        let want: BTreeMap<&str, &str> = [
            ("employee_id", "E1"),
            ("login_id", "ann@x"),
            ("email", "ann@x"),
            ("first_name", "Ann"),
            ("last_name", "Lee"),
            ("middle_initial", "M"),
            ("active", "false"),
            ("locale", "en-US"),
            ("country", "US"),
            ("org_unit1", "R&D"),
            ("org_unit2", "CC"),
            ("org_unit3", "D"),
        ]
        .into();
        assert_eq!(got, want);

        // Wrong types: every problem is named, with the resource's id.
        let bad = json!({"id": "x1", "userName": "b@x", "name": "Bob",
                         "emails": "b@x", ENTERPRISE: {"employeeNumber": "E2"}});
        let rej = m.map(&bad, 3).unwrap_err();
        let msgs: Vec<String> = rej.iter().map(ToString::to_string).collect();
        assert!(
            msgs.iter()
                .all(|m| m.starts_with("scim:x1 (b@x): employee E2: ")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.contains("field first_name") && m.contains("name is text")),
            "{msgs:?}"
        );
        assert!(msgs.iter().any(|m| m.contains("field email")), "{msgs:?}");
        // No key, no id, not an object.
        let rej = m
            .map(&json!({"id": "x2", "userName": "c@x"}), 4)
            .unwrap_err();
        assert_eq!(rej[0].field, "employee_id");
        assert!(
            rej[0].message.contains("employeeNumber is missing"),
            "{rej:?}"
        );
        let rej = m.map(&json!({"userName": "d@x"}), 5).unwrap_err();
        assert_eq!(rej[0].source, "scim:Resources[5]");
        assert!(m.map(&json!("text"), 6).is_err());
    }

    #[test]
    fn overrides_replace_and_unmap_defaults() {
        let m = mapping(&[
            ("employee_id", "externalId"),
            ("country", ""),
            ("custom1", "title"),
            ("locale", "preferredLanguage"),
        ])
        .unwrap();
        let u = json!({"id": "i", "externalId": "X9", "title": "Boss", "preferredLanguage": "en",
                       "addresses": [{"type": "work", "country": "US"}]});
        let r = m.map(&u, 1).unwrap();
        let got: BTreeMap<&str, &str> = r
            .values
            .iter()
            .map(|(f, v)| (f.name(), v.as_str()))
            .collect();
        assert_eq!(
            got,
            [("employee_id", "X9"), ("custom1", "Boss"), ("locale", "en")].into()
        );
        let e = mapping(&[("bogus", "x")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "configuration key source.scim.attributes.bogus: not a canonical field name"
        );
        assert!(default_locale("en").is_none());
        assert_eq!(default_locale("de-DE,de;q=0.9").as_deref(), Some("de-DE"));
    }
}
