//! SCIM attribute paths (`userName`, `name.givenName`, `emails[type eq "work"].value`,
//! `urn:…:enterprise:2.0:User:costCenter`) and the mapping of a User resource onto canonical
//! fields. Pure: no IO.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::model::Field;

/// The core User schema: its attributes sit at the top of a resource.
pub const CORE_USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// The enterprise User extension (RFC 7643 §4.3).
pub const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// A value in a value filter: `type eq "work"`, `primary eq true`.
#[derive(Clone, Debug, PartialEq)]
enum FilterValue {
    Text(String),
    Bool(bool),
}

/// One parsed attribute path: `[schema:]attr[[sub eq value]][.sub]`.
#[derive(Clone, Debug, PartialEq)]
pub struct AttrPath {
    text: String,
    schema: Option<String>,
    attr: String,
    filter: Option<(String, FilterValue)>,
    sub: Option<String>,
}

impl AttrPath {
    /// Parses a path; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<AttrPath, String> {
        let t = text.trim();
        if t.is_empty() {
            return Err("empty attribute path".into());
        }
        let (schema, rest) = if t.len() > 4 && t[..4].eq_ignore_ascii_case("urn:") {
            let head_end = t.find('[').unwrap_or(t.len());
            let head = &t[..head_end];
            // The attribute starts after the last ':' (before any '.' of a sub-attribute).
            let dot = head
                .rfind(':')
                .map_or(0, |c| head[c..].find('.').map_or(head.len(), |d| c + d));
            let colon = head[..dot.max(1)]
                .rfind(':')
                .ok_or_else(|| format!("{t:?}: a schema URN must be followed by :attribute"))?;
            (Some(t[..colon].to_owned()), &t[colon + 1..])
        } else {
            (None, t)
        };
        let name_end = rest.find(['[', '.']).unwrap_or(rest.len());
        let attr = &rest[..name_end];
        if !valid_name(attr) {
            return Err(format!("{t:?}: {attr:?} is not an attribute name"));
        }
        let mut tail = &rest[name_end..];
        let mut filter = None;
        if let Some(f) = tail.strip_prefix('[') {
            let close = f
                .find(']')
                .ok_or_else(|| format!("{t:?}: '[' without a closing ']'"))?;
            filter = Some(parse_filter(&f[..close]).map_err(|e| format!("{t:?}: {e}"))?);
            tail = &f[close + 1..];
        }
        let sub = match tail.strip_prefix('.') {
            Some(s) if valid_name(s) => Some(s.to_owned()),
            Some(s) => return Err(format!("{t:?}: {s:?} is not a sub-attribute name")),
            None if tail.is_empty() => None,
            None => return Err(format!("{t:?}: unexpected {tail:?}")),
        };
        Ok(AttrPath {
            text: t.to_owned(),
            schema,
            attr: attr.to_owned(),
            filter,
            sub,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True for the enterprise `manager` (or `manager.value`): its value is the manager's SCIM
    /// id, which the reader resolves to the manager's employee id.
    pub fn is_manager_reference(&self) -> bool {
        self.attr.eq_ignore_ascii_case("manager")
            && self
                .sub
                .as_deref()
                .is_none_or(|s| s.eq_ignore_ascii_case("value"))
    }

    /// The value at this path as text: `Ok(None)` when absent or null, `Err` (a message) when
    /// the resource has the wrong shape for it.
    pub fn text_in(&self, resource: &Value) -> Result<Option<String>, String> {
        let base = match &self.schema {
            Some(s) if !s.eq_ignore_ascii_case(CORE_USER) => match get_ci(resource, s) {
                None | Some(Value::Null) => return Ok(None),
                Some(v @ Value::Object(_)) => v,
                Some(v) => return Err(format!("{s} is {}, not an object", kind(v))),
            },
            _ => resource,
        };
        let Some(mut v) = get_ci(base, &self.attr) else {
            return Ok(None);
        };
        if let Value::Array(items) = v {
            let mut pick = None;
            for item in items {
                let Value::Object(_) = item else {
                    if self.filter.is_none() && self.sub.is_none() {
                        pick = pick.or(Some(item));
                        continue;
                    }
                    return Err(format!(
                        "{} holds {}, not complex values",
                        self.attr,
                        kind(item)
                    ));
                };
                let wanted = match &self.filter {
                    Some((key, want)) => matches(get_ci(item, key), want),
                    None => get_ci(item, "primary") == Some(&Value::Bool(true)),
                };
                if wanted {
                    pick = Some(item);
                    break;
                }
            }
            if pick.is_none() && self.filter.is_none() {
                pick = items.first();
            }
            match pick {
                Some(p) => v = p,
                None => return Ok(None),
            }
        } else if self.filter.is_some() {
            return Err(format!("{} is {}, not multi-valued", self.attr, kind(v)));
        }
        let v = match (&self.sub, v) {
            (Some(sub), Value::Object(_)) => match get_ci(v, sub) {
                Some(x) => x,
                None => return Ok(None),
            },
            (Some(_), Value::Null) => return Ok(None),
            (Some(sub), other) => {
                return Err(format!(
                    "{} is {}, so it has no {sub}",
                    self.attr,
                    kind(other)
                ));
            }
            (None, Value::Object(_)) if self.is_manager_reference() => match get_ci(v, "value") {
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
}

fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$')
}

fn parse_filter(f: &str) -> Result<(String, FilterValue), String> {
    let f = f.trim();
    let lower = f.to_ascii_lowercase();
    let at = lower
        .find(" eq ")
        .ok_or_else(|| format!("value filter [{f}] must have the form [attribute eq value]"))?;
    let key = f[..at].trim();
    let raw = f[at + 4..].trim();
    if !valid_name(key) {
        return Err(format!("{key:?} is not an attribute name"));
    }
    let value = if let Some(s) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        FilterValue::Text(s.to_owned())
    } else if raw.eq_ignore_ascii_case("true") {
        FilterValue::Bool(true)
    } else if raw.eq_ignore_ascii_case("false") {
        FilterValue::Bool(false)
    } else {
        return Err(format!(
            "value filter [{f}]: the value must be \"quoted text\", true or false"
        ));
    };
    Ok((key.to_owned(), value))
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

/// The default mapping: each canonical field with its SCIM paths, tried in order.
fn default_paths() -> Vec<(Field, Vec<&'static str>)> {
    vec![
        (
            Field::EMPLOYEE_ID,
            vec!["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber"],
        ),
        (Field::LOGIN_ID, vec!["userName"]),
        (
            Field::EMAIL,
            vec![
                "emails[primary eq true].value",
                "emails[type eq \"work\"].value",
                "emails.value",
            ],
        ),
        (Field::FIRST_NAME, vec!["name.givenName"]),
        (Field::LAST_NAME, vec!["name.familyName"]),
        (Field::MIDDLE_INITIAL, vec!["name.middleName"]),
        (Field::ACTIVE, vec!["active"]),
        (Field::LOCALE, vec!["locale", "preferredLanguage"]),
        (
            Field::COUNTRY,
            vec![
                "addresses[type eq \"work\"].country",
                "addresses[primary eq true].country",
            ],
        ),
        (
            Field::ORG_UNIT1,
            vec!["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"],
        ),
        (
            Field::ORG_UNIT2,
            vec!["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter"],
        ),
        (
            Field::ORG_UNIT3,
            vec!["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:division"],
        ),
        (
            Field::MANAGER_EMPLOYEE_ID,
            vec!["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value"],
        ),
    ]
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

impl Mapping {
    /// Builds the mapping; `overrides` is canonical field name → SCIM path (`""` unmaps the
    /// field). The error names the key and the problem.
    pub fn new(overrides: &BTreeMap<String, String>) -> Result<Mapping, (String, String)> {
        let mut by_field: BTreeMap<Field, (Vec<AttrPath>, bool)> = BTreeMap::new();
        for (f, paths) in default_paths() {
            let parsed = paths
                .iter()
                .map(|p| AttrPath::parse(p).map_err(|e| (f.name().to_owned(), e)))
                .collect::<Result<Vec<_>, _>>()?;
            by_field.insert(f, (parsed, true));
        }
        for (name, path) in overrides {
            let Some(f) = Field::from_name(name) else {
                return Err((name.clone(), "not a canonical field name".into()));
            };
            if path.trim().is_empty() {
                by_field.remove(&f);
                continue;
            }
            let p = AttrPath::parse(path).map_err(|e| (name.clone(), e))?;
            by_field.insert(f, (vec![p], false));
        }
        Ok(Mapping {
            fields: by_field
                .into_iter()
                .map(|(f, (p, default))| (f, p, default))
                .collect(),
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
        match p.text_in(resource) {
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
    use serde_json::json;

    fn text(path: &str, v: &Value) -> Result<Option<String>, String> {
        AttrPath::parse(path).unwrap().text_in(v)
    }

    #[test]
    fn paths_parse_and_reject_nonsense() {
        let p = AttrPath::parse(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
        )
        .unwrap();
        assert_eq!(p.schema.as_deref(), Some(ENTERPRISE));
        assert_eq!(p.attr, "manager");
        assert_eq!(p.sub.as_deref(), Some("value"));
        assert!(p.is_manager_reference());
        let p = AttrPath::parse("emails[type eq \"work\"].value").unwrap();
        assert_eq!(
            p.filter,
            Some(("type".into(), FilterValue::Text("work".into())))
        );
        for bad in [
            "",
            "emails[type]",
            "emails[type eq work]",
            "a b",
            "emails[x eq \"y\"",
        ] {
            assert!(AttrPath::parse(bad).is_err(), "{bad}");
        }
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
        let m = Mapping::new(&BTreeMap::new()).unwrap();
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
        let msgs: Vec<String> = rej.iter().map(|r| r.to_string()).collect();
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
        let o: BTreeMap<String, String> = [
            ("employee_id".to_owned(), "externalId".to_owned()),
            ("country".to_owned(), String::new()),
            ("custom1".to_owned(), "title".to_owned()),
            ("locale".to_owned(), "preferredLanguage".to_owned()),
        ]
        .into();
        let m = Mapping::new(&o).unwrap();
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
        let e = Mapping::new(&[("bogus".to_owned(), "x".to_owned())].into()).unwrap_err();
        assert_eq!(e.0, "bogus");
        assert!(default_locale("en").is_none());
        assert_eq!(default_locale("de-DE,de;q=0.9").as_deref(), Some("de-DE"));
    }
}
