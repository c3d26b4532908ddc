//! What a read returns of each resource: `attributes` / `excludedAttributes` (top-level,
//! `name.givenName`, URN-prefixed extension attributes, whole extensions) and the attributes
//! the granted read scopes leave out.

use serde_json::{Map, Value};

use super::super::state::Inner;
use super::model::{CORE, ENTERPRISE, known_urn};

/// Attribute selection (`attributes`, `excludedAttributes`) and scope-based omission.
pub(crate) struct Shape {
    only: Vec<String>,
    without: Vec<String>,
}

fn split_attr(spec: &str) -> (Option<&'static str>, String) {
    if spec.len() > 4 && spec[..4].eq_ignore_ascii_case("urn:") {
        if let Some(u) = known_urn(spec) {
            return (Some(u), String::new());
        }
        if let Some((head, attr)) = spec.rsplit_once(':')
            && let Some(u) = known_urn(head)
        {
            return (Some(u).filter(|u| *u != CORE), attr.to_string());
        }
    }
    (None, spec.to_string())
}

fn take(from: &Map<String, Value>, to: &mut Map<String, Value>, spec: &str) {
    let (urn, attr) = split_attr(spec);
    let (src, dst) = match urn {
        Some(u) => {
            let Some(Value::Object(src)) = from.get(u) else {
                return;
            };
            if attr.is_empty() {
                to.insert(u.to_string(), Value::Object(src.clone()));
                return;
            }
            let dst = to
                .entry(u.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            match dst.as_object_mut() {
                Some(d) => (src, d),
                None => return,
            }
        }
        None => (from, to),
    };
    let (top, sub) = attr
        .split_once('.')
        .map_or((attr.as_str(), None), |(a, s)| (a, Some(s)));
    let Some((key, value)) = src.iter().find(|(k, _)| k.eq_ignore_ascii_case(top)) else {
        return;
    };
    match (sub, value) {
        (Some(s), Value::Object(o)) => {
            if let Some((sk, sv)) = o.iter().find(|(k, _)| k.eq_ignore_ascii_case(s)) {
                let d = dst
                    .entry(key.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Some(d) = d.as_object_mut() {
                    d.insert(sk.clone(), sv.clone());
                }
            }
        }
        _ => {
            dst.insert(key.clone(), value.clone());
        }
    }
}

fn drop_attr(m: &mut Map<String, Value>, spec: &str) {
    let (urn, attr) = split_attr(spec);
    let target = match urn {
        Some(u) if attr.is_empty() => {
            m.remove(u);
            return;
        }
        Some(u) => match m.get_mut(u).and_then(Value::as_object_mut) {
            Some(t) => t,
            None => return,
        },
        None => m,
    };
    let (top, sub) = attr
        .split_once('.')
        .map_or((attr.as_str(), None), |(a, s)| (a, Some(s)));
    let Some(key) = target.keys().find(|k| k.eq_ignore_ascii_case(top)).cloned() else {
        return;
    };
    match sub {
        None => {
            target.remove(&key);
        }
        Some(s) => {
            if let Some(o) = target.get_mut(&key).and_then(Value::as_object_mut)
                && let Some(sk) = o.keys().find(|k| k.eq_ignore_ascii_case(s)).cloned()
            {
                o.remove(&sk);
            }
        }
    }
}

impl Shape {
    pub fn from_lists(only: &str, without: &str) -> Self {
        let list = |s: &str| {
            s.split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_string)
                .collect()
        };
        Self {
            only: list(only),
            without: list(without),
        }
    }

    pub fn apply(&self, inner: &Inner, mut m: Map<String, Value>) -> Map<String, Value> {
        let s = &inner.v4.settings;
        if !s.grants("identity.user.coresensitive.read") {
            for k in ["emails", "addresses", "phoneNumbers", "dateOfBirth"] {
                m.remove(k);
            }
        }
        if !s.grants("identity.user.ids.read") {
            m.remove("externalId");
        }
        if !s.grants("identity.user.enterprise.read") {
            m.remove(ENTERPRISE);
        }
        if !self.only.is_empty() {
            let mut out = Map::new();
            for k in ["id", "schemas"] {
                if let Some(v) = m.get(k) {
                    out.insert(k.into(), v.clone());
                }
            }
            for spec in &self.only {
                take(&m, &mut out, spec);
            }
            m = out;
        }
        for spec in &self.without {
            if spec != "id" {
                drop_attr(&mut m, spec);
            }
        }
        m
    }
}
