//! SCIM PatchOp (RFC 7644 §3.5.2) on a resource-shaped JSON object: `add`, `replace`,
//! `remove`; paths with an extension URN prefix, sub-attributes and value filters
//! (`emails[type eq "work"].value`, `urn:…:spend:2.0:User:customData[id eq "custom2"].value`,
//! `urn:…:spend:2.0:Approver:report[approver.value eq "…"]`), and path-less values that set
//! whole extensions.
//!
//! Semantics where the RFC leaves room, as Concur documents them:
//! - `replace` of a multi-valued attribute without a filter replaces every value ("Updating
//!   Spend Custom fields (will remove all others)"); `add` appends.
//! - `replace`/`add` of a complex attribute or an extension merges the sub-attributes given.
//! - A value filter that matches nothing creates the element from the filter's `eq` terms,
//!   unless strict targets are asked for: then `replace` answers 400 `noTarget`.

use serde_json::{Map, Value};

use super::errors::Failure;
use super::filter::{self, Filter};
use super::model::{CORE, ENTERPRISE, known_urn};

pub(crate) const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Add,
    Replace,
    Remove,
}

/// Where an operation points.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Path {
    /// The extension (or enterprise) URN the path is inside; `None` for core attributes.
    pub urn: Option<&'static str>,
    /// The attribute; `None` when the path names the extension itself.
    pub attr: Option<String>,
    pub filter: Option<Filter>,
    pub sub: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PatchOp {
    pub kind: Kind,
    pub path: Option<Path>,
    pub raw_path: String,
    pub value: Option<Value>,
}

impl PatchOp {
    /// The part of the resource this operation writes: `None` for the identity (core and
    /// enterprise), or an extension URN. Path-less operations are split by [`split`] first.
    pub fn part(&self) -> Option<&'static str> {
        match &self.path {
            Some(Path { urn: Some(u), .. }) if *u != ENTERPRISE && *u != CORE => Some(u),
            Some(_) => None,
            None => self
                .value
                .as_ref()
                .and_then(Value::as_object)
                .and_then(|o| o.keys().next())
                .and_then(|k| known_urn(k))
                .filter(|u| *u != ENTERPRISE && *u != CORE),
        }
    }
}

impl PatchOp {
    /// The operation as JSON again (what a provision keeps until it runs).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        let op = match self.kind {
            Kind::Add => "add",
            Kind::Replace => "replace",
            Kind::Remove => "remove",
        };
        m.insert("op".into(), Value::String(op.into()));
        if !self.raw_path.is_empty() {
            m.insert("path".into(), Value::String(self.raw_path.clone()));
        }
        if let Some(v) = &self.value {
            m.insert("value".into(), v.clone());
        }
        Value::Object(m)
    }
}

/// Parses `path`: `[URN:]attr[.sub]`, `[URN:]attr[filter][.sub]`, or a URN alone.
pub(crate) fn parse_path(raw: &str) -> Result<Path, String> {
    let (head, filter, tail) = match raw.find('[') {
        Some(open) => {
            let close = raw.rfind(']').ok_or("missing ']'")?;
            if close < open {
                return Err("missing ']'".into());
            }
            let f = filter::parse(&raw[open + 1..close])?;
            (&raw[..open], Some(f), &raw[close + 1..])
        }
        None => (raw, None, ""),
    };
    let mut urn = None;
    let mut rest = head;
    if head.len() >= 4 && head[..4].eq_ignore_ascii_case("urn:") {
        let mut found = None;
        for (i, _) in head.match_indices(':').chain([(head.len(), "")]) {
            if let Some(u) = known_urn(&head[..i]) {
                found = Some((u, i));
            }
        }
        let (u, at) = found.ok_or_else(|| format!("unknown schema in path '{raw}'"))?;
        urn = Some(u).filter(|u| *u != CORE);
        rest = head[at..].trim_start_matches(':');
    }
    let (attr, sub) = match (filter.is_some(), rest.split_once('.')) {
        (false, Some((a, s))) => (a, Some(s.to_string())),
        _ => (rest, None),
    };
    let sub = match tail.strip_prefix('.') {
        Some(s) if !s.is_empty() => Some(s.to_string()),
        None if tail.is_empty() => sub,
        _ => return Err(format!("invalid path '{raw}'")),
    };
    if attr.is_empty() && (filter.is_some() || sub.is_some() || urn.is_none()) {
        return Err(format!("invalid path '{raw}'"));
    }
    Ok(Path {
        urn,
        attr: (!attr.is_empty()).then(|| attr.to_string()),
        filter,
        sub,
    })
}

fn syntax(message: String) -> Failure {
    Failure::invalid_input("invalidSyntax", message)
}

/// Reads a PatchOp request body.
pub(crate) fn parse_body(body: &Value) -> Result<Vec<PatchOp>, Failure> {
    let schemas = body.get("schemas").and_then(Value::as_array);
    if !schemas.is_some_and(|s| s.iter().any(|v| v.as_str() == Some(PATCH_OP))) {
        return Err(Failure::invalid_value(
            "schemas",
            format!("schemas must contain '{PATCH_OP}'"),
        ));
    }
    let ops = filter::member(body, "Operations")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| Failure::required("Operations"))?;
    ops.iter().map(parse_op).collect()
}

fn parse_op(op: &Value) -> Result<PatchOp, Failure> {
    let kind = match filter::member(op, "op")
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("add") => Kind::Add,
        Some("replace") => Kind::Replace,
        Some("remove") => Kind::Remove,
        other => {
            return Err(Failure::invalid_value(
                "op",
                format!("Invalid op '{}'", other.unwrap_or("")),
            ));
        }
    };
    let raw_path = filter::member(op, "path")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim()
        .to_string();
    let path = if raw_path.is_empty() {
        None
    } else {
        Some(parse_path(&raw_path).map_err(|e| {
            Failure::new(
                axum::http::StatusCode::BAD_REQUEST,
                Some("invalidPath"),
                "INVALID_INPUT",
                format!("Invalid attribute path [{raw_path}]: {e}"),
                raw_path.clone(),
            )
        })?)
    };
    let value = filter::member(op, "value").cloned();
    match (kind, &path, &value) {
        (Kind::Remove, None, _) => Err(Failure::new(
            axum::http::StatusCode::BAD_REQUEST,
            Some("noTarget"),
            "INVALID_INPUT",
            "remove needs a path",
            "",
        )),
        (Kind::Add | Kind::Replace, _, None) => Err(Failure::required("value")),
        (Kind::Add | Kind::Replace, None, Some(v)) if !v.is_object() => Err(syntax(
            "a path-less operation needs an object value".to_string(),
        )),
        _ => Ok(PatchOp {
            kind,
            path,
            raw_path,
            value,
        }),
    }
}

/// Splits path-less operations whose value spans several parts (core keys and extension
/// URNs) into one operation per part, so that each part can be applied on its own.
pub(crate) fn split(ops: Vec<PatchOp>) -> Result<Vec<PatchOp>, Failure> {
    let mut out = Vec::new();
    for op in ops {
        let Some(Value::Object(map)) = (op.path.is_none()).then(|| op.value.clone()).flatten()
        else {
            out.push(op);
            continue;
        };
        let mut identity = Map::new();
        for (k, v) in map {
            if k.len() >= 4 && k[..4].eq_ignore_ascii_case("urn:") {
                let urn = known_urn(&k).ok_or_else(|| {
                    Failure::invalid_value(&k, format!("Unknown schema extension '{k}'"))
                })?;
                if urn == ENTERPRISE || urn == CORE {
                    identity.insert(urn.to_string(), v);
                } else {
                    let mut one = Map::new();
                    one.insert(urn.to_string(), v);
                    out.push(PatchOp {
                        value: Some(Value::Object(one)),
                        ..op.clone()
                    });
                }
            } else {
                identity.insert(k, v);
            }
        }
        if !identity.is_empty() {
            out.push(PatchOp {
                value: Some(Value::Object(identity)),
                ..op.clone()
            });
        }
    }
    Ok(out)
}

/// The key of `map` equal to `name` in any letter case, or `name` itself.
fn key_of(map: &Map<String, Value>, name: &str) -> String {
    if map.contains_key(name) {
        return name.to_string();
    }
    map.keys()
        .find(|k| k.eq_ignore_ascii_case(name))
        .cloned()
        .unwrap_or_else(|| name.to_string())
}

/// Merges `value` into `target` with `kind`'s semantics (see the module doc).
fn merge(target: &mut Map<String, Value>, value: &Map<String, Value>, kind: Kind) {
    for (k, v) in value {
        let key = key_of(target, k);
        match (target.get_mut(&key), v) {
            (Some(Value::Array(have)), Value::Array(new)) if kind == Kind::Add => {
                for item in new {
                    if !have.contains(item) {
                        have.push(item.clone());
                    }
                }
            }
            (Some(Value::Object(have)), Value::Object(new)) => merge(have, new, kind),
            _ => {
                target.insert(key, v.clone());
            }
        }
    }
}

fn no_target(op: &PatchOp) -> Failure {
    Failure::new(
        axum::http::StatusCode::BAD_REQUEST,
        Some("noTarget"),
        "INVALID_VALUE",
        format!("No value matches the path [{}]", op.raw_path),
        op.raw_path.clone(),
    )
}

/// Applies one operation to `doc` (a resource with extensions under their URNs).
pub(crate) fn apply(
    doc: &mut Map<String, Value>,
    op: &PatchOp,
    strict: bool,
) -> Result<(), Failure> {
    let Some(path) = &op.path else {
        if let Some(Value::Object(v)) = &op.value {
            merge(doc, v, op.kind);
        }
        return Ok(());
    };
    let container: &mut Map<String, Value> = match path.urn {
        None => doc,
        Some(urn) => {
            if op.kind == Kind::Remove && path.attr.is_none() {
                doc.remove(urn);
                return Ok(());
            }
            let slot = doc
                .entry(urn.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            slot.as_object_mut().ok_or_else(|| no_target(op))?
        }
    };
    let Some(attr) = &path.attr else {
        // The path names an extension: its value is the extension's attributes.
        let Some(Value::Object(v)) = &op.value else {
            return Err(syntax(format!("[{}] needs an object value", op.raw_path)));
        };
        merge(container, v, op.kind);
        return Ok(());
    };
    let key = key_of(container, attr);
    match (&path.filter, &path.sub) {
        (None, None) => match op.kind {
            Kind::Remove => {
                container.remove(&key);
            }
            Kind::Replace => {
                let v = op.value.clone().unwrap_or(Value::Null);
                match (container.get_mut(&key), &v) {
                    (Some(Value::Object(have)), Value::Object(new)) => merge(have, new, op.kind),
                    _ => {
                        container.insert(key, v);
                    }
                }
            }
            Kind::Add => {
                let v = op.value.clone().unwrap_or(Value::Null);
                match (container.get_mut(&key), v) {
                    (Some(Value::Array(have)), Value::Array(new)) => {
                        for item in new {
                            if !have.contains(&item) {
                                have.push(item);
                            }
                        }
                    }
                    (Some(Value::Array(have)), item) => {
                        if !have.contains(&item) {
                            have.push(item);
                        }
                    }
                    (Some(Value::Object(have)), Value::Object(new)) => merge(have, &new, op.kind),
                    (_, v) => {
                        container.insert(key, v);
                    }
                }
            }
        },
        (None, Some(sub)) => {
            let slot = container
                .entry(key)
                .or_insert_with(|| Value::Object(Map::new()));
            let Some(obj) = slot.as_object_mut() else {
                return Err(no_target(op));
            };
            let sub_key = key_of(obj, sub);
            match op.kind {
                Kind::Remove => {
                    obj.remove(&sub_key);
                }
                _ => {
                    obj.insert(sub_key, op.value.clone().unwrap_or(Value::Null));
                }
            }
        }
        (Some(f), sub) => apply_filtered(container, key, f, sub.as_deref(), op, strict)?,
    }
    Ok(())
}

fn apply_filtered(
    container: &mut Map<String, Value>,
    key: String,
    f: &Filter,
    sub: Option<&str>,
    op: &PatchOp,
    strict: bool,
) -> Result<(), Failure> {
    let list = container
        .entry(key.clone())
        .or_insert_with(|| Value::Array(Vec::new()));
    if !list.is_array() {
        *list = Value::Array(vec![list.take()]);
    }
    let Some(items) = list.as_array_mut() else {
        return Err(no_target(op));
    };
    let hits: Vec<usize> = (0..items.len())
        .filter(|&i| filter::matches(f, &items[i]))
        .collect();
    match op.kind {
        Kind::Remove => {
            match sub {
                Some(s) => {
                    for &i in &hits {
                        if let Some(o) = items[i].as_object_mut() {
                            let k = key_of(o, s);
                            o.remove(&k);
                        }
                    }
                }
                None => {
                    let mut at = 0;
                    items.retain(|_| {
                        let keep = !hits.contains(&at);
                        at += 1;
                        keep
                    });
                }
            }
            if items.is_empty() {
                container.remove(&key);
            }
        }
        Kind::Add | Kind::Replace => {
            let value = op.value.clone().unwrap_or(Value::Null);
            if hits.is_empty() {
                if strict && op.kind == Kind::Replace {
                    return Err(no_target(op));
                }
                let pairs = filter::eq_pairs(f).ok_or_else(|| no_target(op))?;
                let mut item = Map::new();
                for (a, v) in pairs {
                    set_dotted(&mut item, &a, v);
                }
                match (sub, value.clone()) {
                    (Some(s), v) => {
                        item.insert(s.to_string(), v);
                    }
                    (None, Value::Object(o)) => merge(&mut item, &o, op.kind),
                    (None, _) => return Err(no_target(op)),
                }
                items.push(Value::Object(item));
            }
            for &i in &hits {
                let Some(o) = items[i].as_object_mut() else {
                    continue;
                };
                match (sub, &value) {
                    (Some(s), v) => {
                        let k = key_of(o, s);
                        o.insert(k, v.clone());
                    }
                    (None, Value::Object(new)) => merge(o, new, Kind::Replace),
                    (None, _) => return Err(no_target(op)),
                }
            }
        }
    }
    Ok(())
}

fn set_dotted(obj: &mut Map<String, Value>, path: &str, v: Value) {
    match path.split_once('.') {
        None => {
            obj.insert(path.to_string(), v);
        }
        Some((head, rest)) => {
            let slot = obj
                .entry(head.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(o) = slot.as_object_mut() {
                set_dotted(o, rest, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::v4::model::SPEND_USER;
    use serde_json::json;

    fn run(doc: Value, ops: Value) -> Result<Value, Failure> {
        let body = json!({"schemas": [PATCH_OP], "Operations": ops});
        let ops = split(parse_body(&body)?)?;
        let mut doc = doc.as_object().cloned().unwrap();
        for op in &ops {
            apply(&mut doc, op, false)?;
        }
        Ok(Value::Object(doc))
    }

    #[test]
    fn paths_parse_with_urns_filters_and_sub_attributes() {
        let p = parse_path(&format!("{SPEND_USER}:customData[id eq \"custom2\"].value")).unwrap();
        assert_eq!(p.urn, Some(SPEND_USER));
        assert_eq!(p.attr.as_deref(), Some("customData"));
        assert_eq!(p.sub.as_deref(), Some("value"));
        let p = parse_path("name.givenName").unwrap();
        assert_eq!(
            (p.attr.as_deref(), p.sub.as_deref()),
            (Some("name"), Some("givenName"))
        );
        let p = parse_path(&format!("{ENTERPRISE}:terminationDate")).unwrap();
        assert_eq!(p.urn, Some(ENTERPRISE));
        let p = parse_path(SPEND_USER).unwrap();
        assert_eq!((p.urn, p.attr), (Some(SPEND_USER), None));
        let p = parse_path(&format!("{CORE}:userName")).unwrap();
        assert_eq!((p.urn, p.attr.as_deref()), (None, Some("userName")));
        assert!(parse_path("urn:nope:x").is_err());
        assert!(parse_path("emails[type eq \"work\"").is_err());
    }

    #[test]
    fn filtered_custom_data_keeps_the_other_values_and_pathless_replace_replaces_all() {
        let doc = json!({SPEND_USER: {"customData": [{"id": "custom1", "value": "a"}, {"id": "custom2", "value": "b"}]}});
        let out = run(
            doc.clone(),
            json!([{"op": "replace", "path": format!("{SPEND_USER}:customData[id eq \"custom2\"].value"), "value": "B"},
                   {"op": "add", "path": format!("{SPEND_USER}:customData[id eq \"custom3\"].value"), "value": "C"}]),
        )
        .unwrap();
        assert_eq!(
            out[SPEND_USER]["customData"],
            json!([{"id": "custom1", "value": "a"}, {"id": "custom2", "value": "B"}, {"id": "custom3", "value": "C"}])
        );
        let out = run(
            doc,
            json!([{"op": "replace", "value": {SPEND_USER: {"customData": [{"id": "custom9", "value": "z"}]}}}]),
        )
        .unwrap();
        assert_eq!(
            out[SPEND_USER]["customData"],
            json!([{"id": "custom9", "value": "z"}])
        );
    }

    #[test]
    fn remove_add_and_strict_targets() {
        let doc = json!({"emails": [{"type": "work", "value": "a@x"}, {"type": "home", "value": "h@x"}], "active": true});
        let out = run(
            doc.clone(),
            json!([{"op": "remove", "path": "emails[type eq \"home\"]"},
                   {"op": "replace", "path": "active", "value": false},
                   {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "b@x"}]),
        )
        .unwrap();
        assert_eq!(out["emails"], json!([{"type": "work", "value": "b@x"}]));
        assert_eq!(out["active"], false);
        let body = json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "emails[type eq \"other\"].value", "value": "o@x"}]});
        let ops = parse_body(&body).unwrap();
        let mut d = doc.as_object().cloned().unwrap();
        assert_eq!(
            apply(&mut d, &ops[0], true).unwrap_err().scim_type,
            Some("noTarget")
        );
        assert!(parse_body(&json!({"schemas": [], "Operations": []})).is_err());
        assert!(
            parse_body(&json!({"schemas": [PATCH_OP], "Operations": [{"op": "remove"}]})).is_err()
        );
        assert!(
            parse_body(
                &json!({"schemas": [PATCH_OP], "Operations": [{"op": "move", "path": "a"}]})
            )
            .is_err()
        );
    }
}
