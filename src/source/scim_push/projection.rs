//! `attributes` and `excludedAttributes` (RFC 7644 §3.9): which attributes an answer carries.
//! `id` and `schemas` are always returned. Pure: no IO.

use serde_json::{Map, Value, json};

use super::filter::{AttrPath, get_ci};
use super::resource::key_ci;

/// `attributes` / `excludedAttributes` (RFC 7644 §3.9).
#[derive(Default)]
pub struct Projection {
    only: Vec<AttrPath>,
    without: Vec<AttrPath>,
}

impl Projection {
    pub fn from(attributes: Option<&str>, excluded: Option<&str>) -> Projection {
        let paths = |t: Option<&str>| -> Vec<AttrPath> {
            t.unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .filter_map(|p| {
                    if p.eq_ignore_ascii_case(crate::config::ENTERPRISE) {
                        // The whole extension.
                        return Some(AttrPath {
                            schema: None,
                            attr: crate::config::ENTERPRISE.to_owned(),
                            sub: None,
                        });
                    }
                    AttrPath::parse(p).ok()
                })
                .collect()
        };
        Projection {
            only: paths(attributes),
            without: paths(excluded),
        }
    }

    pub fn apply(&self, resource: Value) -> Value {
        let Value::Object(m) = resource else {
            return resource;
        };
        let always = |k: &str| ["id", "schemas"].iter().any(|a| k.eq_ignore_ascii_case(a));
        let mut out = if self.only.is_empty() {
            m
        } else {
            let mut kept: Map<String, Value> = m
                .iter()
                .filter(|(k, _)| always(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for p in &self.only {
                match extension(p) {
                    Some(s) => {
                        let k = key_ci(&m, s);
                        let Some(Value::Object(ext)) = m.get(&k) else {
                            continue;
                        };
                        if let Value::Object(slot) = kept.entry(k).or_insert_with(|| json!({})) {
                            pick(ext, p, slot);
                        }
                    }
                    None => pick(&m, p, &mut kept),
                }
            }
            kept
        };
        for p in &self.without {
            if always(&p.attr) && p.schema.is_none() {
                continue;
            }
            let target = match extension(p) {
                Some(s) => {
                    let k = key_ci(&out, s);
                    match out.get_mut(&k) {
                        Some(Value::Object(o)) => o,
                        _ => continue,
                    }
                }
                None => &mut out,
            };
            let k = key_ci(target, &p.attr);
            match (&p.sub, target.get_mut(&k)) {
                (None, _) => {
                    target.remove(&k);
                }
                (Some(sub), Some(Value::Object(o))) => {
                    let sk = key_ci(o, sub);
                    o.remove(&sk);
                }
                (Some(sub), Some(Value::Array(items))) => {
                    for i in items {
                        if let Value::Object(o) = i {
                            let sk = key_ci(o, sub);
                            o.remove(&sk);
                        }
                    }
                }
                _ => {}
            }
        }
        Value::Object(out)
    }
}

/// The extension schema a path names (`None` for the core schema).
fn extension(p: &AttrPath) -> Option<&str> {
    p.schema.as_deref().filter(|s| {
        !s.to_ascii_lowercase()
            .starts_with("urn:ietf:params:scim:schemas:core:")
    })
}

/// Copies the attribute (or sub-attribute) `p` names from `src` into `dst`.
fn pick(src: &Map<String, Value>, p: &AttrPath, dst: &mut Map<String, Value>) {
    let k = key_ci(src, &p.attr);
    let Some(v) = src.get(&k) else { return };
    let v = match (&p.sub, v) {
        (Some(sub), Value::Object(o)) => {
            let sk = key_ci(o, sub);
            match o.get(&sk) {
                Some(x) => json!({ sk: x }),
                None => return,
            }
        }
        (Some(sub), Value::Array(items)) => Value::from(
            items
                .iter()
                .filter_map(|i| get_ci(i, sub).map(|x| json!({ sub.clone(): x })))
                .collect::<Vec<_>>(),
        ),
        (Some(_), _) => return,
        (None, v) => v.clone(),
    };
    match (dst.get_mut(&k), v) {
        (Some(Value::Object(have)), Value::Object(more)) => have.extend(more),
        (_, v) => {
            dst.insert(k, v);
        }
    }
}
