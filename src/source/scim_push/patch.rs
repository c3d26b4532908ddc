//! SCIM PATCH (RFC 7644 §3.5.2) applied to a stored resource's JSON, with the habits of real
//! clients accepted: Entra ID's capitalised `op` ("Replace", "Add"), booleans as strings,
//! `emails[type eq "work"].value` paths (a missing work email is created), an enterprise
//! `manager` given as a bare id, a path-less `replace` whose value maps attribute paths to
//! values, and a group `remove` of `members` that lists the members to drop. Pure: no IO; the
//! caller normalizes and checks the result before storing it.

use serde_json::{Map, Value};

use super::filter::{AttrPath, Filter, Op, parse_patch_path};
use super::resource::{PATCH_OP, Problem, key_ci};
use crate::config::ENTERPRISE;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Add,
    Replace,
    Remove,
}

/// Applies the PatchOp `body` to `resource`; on an error nothing of it is kept by the caller.
pub fn apply(resource: &mut Value, body: &Value) -> Result<(), Problem> {
    let schemas_ok = super::filter::get_ci(body, "schemas")
        .and_then(Value::as_array)
        .is_some_and(|a| {
            a.iter()
                .any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(PATCH_OP)))
        });
    if !schemas_ok {
        return Err(Problem::bad(
            "invalidSyntax",
            format!("schemas: a PATCH body must list {PATCH_OP}"),
        ));
    }
    let Some(Value::Array(ops)) = super::filter::get_ci(body, "Operations") else {
        return Err(Problem::bad(
            "invalidSyntax",
            "Operations: required, a list of operations",
        ));
    };
    for (i, op) in ops.iter().enumerate() {
        let at = |m: String| format!("Operations[{i}]: {m}");
        let kind = match super::filter::get_ci(op, "op")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("add") => Kind::Add,
            Some("replace") => Kind::Replace,
            Some("remove") => Kind::Remove,
            _ => {
                return Err(Problem::bad(
                    "invalidSyntax",
                    at("op must be add, replace or remove".into()),
                ));
            }
        };
        let value = super::filter::get_ci(op, "value")
            .cloned()
            .unwrap_or(Value::Null);
        let path = super::filter::get_ci(op, "path")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|p| !p.is_empty());
        match path {
            Some(p) => one(resource, kind, p, value).map_err(|mut e| {
                e.detail = at(e.detail);
                e
            })?,
            None if kind == Kind::Remove => {
                return Err(Problem::bad("noTarget", at("remove needs a path".into())));
            }
            None => {
                let Value::Object(members) = value else {
                    return Err(Problem::bad(
                        "invalidValue",
                        at("without a path, value must be an object of attributes".into()),
                    ));
                };
                for (k, v) in members {
                    one(resource, kind, &k, v).map_err(|mut e| {
                        e.detail = at(e.detail);
                        e
                    })?;
                }
            }
        }
    }
    Ok(())
}

/// The object an attribute lives in: the resource, or its extension object (created on demand).
fn container<'a>(
    resource: &'a mut Value,
    path: &AttrPath,
    create: bool,
) -> Option<&'a mut Map<String, Value>> {
    let Value::Object(root) = resource else {
        return None;
    };
    let schema = match &path.schema {
        Some(s)
            if !s
                .to_ascii_lowercase()
                .starts_with("urn:ietf:params:scim:schemas:core:") =>
        {
            s
        }
        _ => return Some(root),
    };
    let key = key_ci(root, schema);
    if !root.contains_key(&key) {
        if !create {
            return None;
        }
        root.insert(key.clone(), Value::Object(Map::new()));
    }
    match root.get_mut(&key) {
        Some(Value::Object(m)) => Some(m),
        _ => None,
    }
}

fn one(resource: &mut Value, kind: Kind, path: &str, value: Value) -> Result<(), Problem> {
    if path.eq_ignore_ascii_case(ENTERPRISE) {
        // The whole extension: its attributes one by one, or all of it removed.
        return match (kind, value) {
            (Kind::Remove, _) => {
                if let Value::Object(root) = resource {
                    let k = key_ci(root, ENTERPRISE);
                    root.remove(&k);
                }
                Ok(())
            }
            (_, Value::Object(members)) => {
                for (k, v) in members {
                    one(resource, kind, &format!("{ENTERPRISE}:{k}"), v)?;
                }
                Ok(())
            }
            _ => Err(Problem::bad(
                "invalidValue",
                format!("path {path:?}: value must be an object of the extension's attributes"),
            )),
        };
    }
    let pp = parse_patch_path(path)
        .map_err(|e| Problem::bad("invalidPath", format!("path {path:?}: {e}")))?;
    let attr = pp.path.attr.as_str();
    if ["id", "meta", "schemas"]
        .iter()
        .any(|a| attr.eq_ignore_ascii_case(a))
        && pp.path.schema.is_none()
    {
        return Err(Problem::bad(
            "mutability",
            format!("path {path:?}: {attr} cannot be changed"),
        ));
    }
    if kind != Kind::Remove && value.is_null() {
        return Err(Problem::bad(
            "invalidValue",
            format!("path {path:?}: value is missing"),
        ));
    }
    let create = kind != Kind::Remove;
    let Some(m) = container(resource, &pp.path, create) else {
        return Ok(());
    };
    let key = key_ci(m, attr);
    match (&pp.filter, &pp.path.sub) {
        (None, None) => plain(m, &key, kind, value),
        (None, Some(sub)) => {
            let target = m
                .entry(key.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            match target {
                Value::Array(items) => {
                    for item in items.iter_mut() {
                        if let Value::Object(o) = item {
                            let k = key_ci(o, sub);
                            plain(o, &k, kind, value.clone());
                        }
                    }
                }
                Value::Object(o) => {
                    let k = key_ci(o, sub);
                    plain(o, &k, kind, value);
                }
                _ if kind == Kind::Remove => {}
                other => {
                    let mut o = Map::new();
                    o.insert(sub.clone(), value);
                    *other = Value::Object(o);
                }
            }
            tidy(m, &key);
        }
        (Some(filter), _) => filtered(m, &key, kind, filter, pp.sub.as_deref(), value, path)?,
    }
    Ok(())
}

/// add/replace/remove of a whole attribute.
fn plain(m: &mut Map<String, Value>, key: &str, kind: Kind, value: Value) {
    match kind {
        Kind::Remove => {
            // A group's `remove` of `members` may list the members to drop.
            if let (Some(Value::Array(items)), Value::Array(drop)) = (m.get_mut(key), &value) {
                let ids: Vec<&Value> = drop
                    .iter()
                    .filter_map(|d| super::filter::get_ci(d, "value"))
                    .collect();
                items.retain(|i| {
                    !super::filter::get_ci(i, "value").is_some_and(|v| ids.contains(&v))
                });
                tidy(m, key);
                return;
            }
            m.remove(key);
        }
        Kind::Add => match (m.get_mut(key), value) {
            (Some(Value::Array(items)), Value::Array(more)) => {
                for v in more {
                    if !items.contains(&v) {
                        items.push(v);
                    }
                }
            }
            (Some(Value::Array(items)), v) => {
                if !items.contains(&v) {
                    items.push(v);
                }
            }
            (Some(Value::Object(o)), Value::Object(more)) => merge(o, more),
            (_, v) => {
                m.insert(key.to_owned(), v);
            }
        },
        Kind::Replace => match (m.get_mut(key), value) {
            (Some(Value::Object(o)), Value::Object(more)) => merge(o, more),
            (_, v) => {
                m.insert(key.to_owned(), v);
            }
        },
    }
}

fn merge(into: &mut Map<String, Value>, from: Map<String, Value>) {
    for (k, v) in from {
        let key = key_ci(into, &k);
        into.insert(key, v);
    }
}

/// Drops an attribute left as an empty list or object.
fn tidy(m: &mut Map<String, Value>, key: &str) {
    let empty = match m.get(key) {
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
        _ => false,
    };
    if empty {
        m.remove(key);
    }
}

/// The equalities a filter states (`type eq "work"`), to build the value a path names when no
/// value matches yet.
fn equalities(f: &Filter, out: &mut Map<String, Value>) {
    match f {
        Filter::Compare(p, Op::Eq, v) if p.sub.is_none() && p.schema.is_none() => {
            out.insert(p.attr.clone(), v.clone());
        }
        Filter::And(a, b) => {
            equalities(a, out);
            equalities(b, out);
        }
        _ => {}
    }
}

/// add/replace/remove of the values a filter selects (`emails[type eq "work"].value`).
fn filtered(
    m: &mut Map<String, Value>,
    key: &str,
    kind: Kind,
    filter: &Filter,
    sub: Option<&str>,
    value: Value,
    path: &str,
) -> Result<(), Problem> {
    let items = match m.get_mut(key) {
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(Problem::bad(
                "invalidPath",
                format!("path {path:?}: {key} is not multi-valued"),
            ));
        }
        None if kind == Kind::Remove => return Ok(()),
        None => {
            m.insert(key.to_owned(), Value::Array(Vec::new()));
            match m.get_mut(key) {
                Some(Value::Array(items)) => items,
                _ => return Ok(()),
            }
        }
    };
    let hits: Vec<usize> = items
        .iter()
        .enumerate()
        .filter(|(_, v)| filter.matches(v))
        .map(|(i, _)| i)
        .collect();
    match (kind, sub) {
        (Kind::Remove, None) => {
            let mut i = 0;
            items.retain(|_| {
                let keep = !hits.contains(&i);
                i += 1;
                keep
            });
        }
        (Kind::Remove, Some(sub)) => {
            for &i in &hits {
                if let Value::Object(o) = &mut items[i] {
                    let k = key_ci(o, sub);
                    o.remove(&k);
                }
            }
        }
        (_, Some(sub)) => {
            if hits.is_empty() {
                let mut fresh = Map::new();
                equalities(filter, &mut fresh);
                fresh.insert(sub.to_owned(), value);
                items.push(Value::Object(fresh));
            } else {
                for &i in &hits {
                    if let Value::Object(o) = &mut items[i] {
                        let k = key_ci(o, sub);
                        o.insert(k, value.clone());
                    }
                }
            }
        }
        (_, None) => {
            let Value::Object(v) = value else {
                return Err(Problem::bad(
                    "invalidValue",
                    format!("path {path:?}: value must be an object"),
                ));
            };
            if hits.is_empty() {
                let mut fresh = Map::new();
                equalities(filter, &mut fresh);
                merge(&mut fresh, v);
                items.push(Value::Object(fresh));
            } else {
                for &i in &hits {
                    if let Value::Object(o) = &mut items[i] {
                        merge(o, v.clone());
                    }
                }
            }
        }
    }
    tidy(m, key);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

    fn patch(resource: Value, ops: Value) -> Result<Value, Problem> {
        let mut r = resource;
        apply(&mut r, &json!({"schemas": [PATCH_OP], "Operations": ops}))?;
        Ok(r)
    }

    #[test]
    fn entra_operations() {
        let u = json!({"userName": "a@x", "active": true,
                       "emails": [{"type": "work", "value": "a@x", "primary": true}],
                       "name": {"givenName": "Ann", "familyName": "Lee"}});
        let r = patch(
            u.clone(),
            json!([
                {"op": "Replace", "path": "active", "value": "False"},
                {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "ann@x"},
                {"op": "Add", "path": format!("{ENT}:manager"), "value": "m-1"},
                {"op": "Add", "path": format!("{ENT}:employeeNumber"), "value": "E1"},
                {"op": "Replace", "path": "name.givenName", "value": "Anne"},
            ]),
        )
        .unwrap();
        assert_eq!(r["active"], json!("False"), "normalized later");
        assert_eq!(
            r["emails"],
            json!([{"type": "work", "value": "ann@x", "primary": true}])
        );
        assert_eq!(r[ENT], json!({"manager": "m-1", "employeeNumber": "E1"}));
        assert_eq!(r["name"], json!({"givenName": "Anne", "familyName": "Lee"}));
        // A work email that does not exist yet is created.
        let r = patch(
            json!({"userName": "b"}),
            json!([
            {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "b@x"}]),
        )
        .unwrap();
        assert_eq!(r["emails"], json!([{"type": "work", "value": "b@x"}]));
        // No path: a map of attribute paths, and of a schema's attributes.
        let r = patch(
            u.clone(),
            json!([{"op": "replace", "value": {
            "active": false, "name.familyName": "Li", ENT: {"department": "R&D"}}}]),
        )
        .unwrap();
        assert_eq!(
            (r["active"].clone(), r["name"]["familyName"].clone()),
            (json!(false), json!("Li"))
        );
        assert_eq!(r[ENT]["department"], json!("R&D"));
        let r = patch(
            u,
            json!([{"op": "remove", "path": "emails[type eq \"work\"]"}]),
        )
        .unwrap();
        assert!(r.get("emails").is_none());
    }

    #[test]
    fn groups_and_errors() {
        let g = json!({"displayName": "g", "members": [{"value": "1"}, {"value": "2"}]});
        let r = patch(
            g.clone(),
            json!([{"op": "Remove", "path": "members", "value": [{"value": "1"}]}]),
        )
        .unwrap();
        assert_eq!(r["members"], json!([{"value": "2"}]));
        let r = patch(
            g.clone(),
            json!([{"op": "remove", "path": "members[value eq \"2\"]"}]),
        )
        .unwrap();
        assert_eq!(r["members"], json!([{"value": "1"}]));
        let r = patch(
            g.clone(),
            json!([{"op": "add", "path": "members", "value": [{"value": "3"}, {"value": "1"}]}]),
        )
        .unwrap();
        assert_eq!(r["members"].as_array().unwrap().len(), 3);
        for (ops, scim_type) in [
            (json!([{"op": "frob", "path": "a"}]), "invalidSyntax"),
            (json!([{"op": "remove"}]), "noTarget"),
            (
                json!([{"op": "replace", "path": "id", "value": "x"}]),
                "mutability",
            ),
            (
                json!([{"op": "replace", "path": "displayName[", "value": "x"}]),
                "invalidPath",
            ),
            (
                json!([{"op": "replace", "path": "displayName[value eq \"1\"]", "value": {}}]),
                "invalidPath",
            ),
            (json!([{"op": "add", "value": "x"}]), "invalidValue"),
        ] {
            let e = patch(g.clone(), ops.clone()).unwrap_err();
            assert_eq!(e.scim_type, Some(scim_type), "{ops}: {e:?}");
            assert!(e.detail.starts_with("Operations[0]:"), "{e:?}");
        }
        let e = apply(&mut g.clone(), &json!({"Operations": []})).unwrap_err();
        assert_eq!(e.scim_type, Some("invalidSyntax"));
    }
}
