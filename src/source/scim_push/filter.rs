//! SCIM filters (RFC 7644 §3.4.2.2) and PATCH paths (§3.5.2): parsed into a small tree and
//! evaluated against a resource's JSON. Pure: no IO.
//!
//! Supported: `eq ne co sw ew gt ge lt le pr`, `and`, `or`, `not (…)`, parentheses, value
//! paths (`emails[type eq "work"]`), and a value path followed by a sub-attribute and a
//! comparison (`emails[type eq "work"].value eq "a@x"`, which Entra ID sends). Text compares
//! ignoring case except for `id`, `externalId` and `meta` (RFC 7643 `caseExact`).

use serde_json::Value;

/// An attribute path: `[schema:]attr[.sub]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    /// The schema URN when the path names one (`urn:…:enterprise:2.0:User`).
    pub schema: Option<String>,
    pub attr: String,
    pub sub: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Compare(AttrPath, Op, Value),
    Present(AttrPath),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    /// `attr[filter]`, optionally followed by `.sub op value` (or `.sub pr`).
    ValuePath {
        path: AttrPath,
        filter: Box<Filter>,
        then: Option<Box<Filter>>,
    },
}

/// A PATCH `path`: an attribute, optionally narrowed by a value filter and a sub-attribute.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    pub path: AttrPath,
    pub filter: Option<Filter>,
    /// The sub-attribute after a value filter (`emails[type eq "work"].value`).
    pub sub: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Open,
    Close,
    LBracket,
    RBracket,
}

fn tokens(text: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push(Tok::Open);
                i += 1;
            }
            ')' => {
                out.push(Tok::Close);
                i += 1;
            }
            '[' => {
                out.push(Tok::LBracket);
                i += 1;
            }
            ']' => {
                out.push(Tok::RBracket);
                i += 1;
            }
            '"' => {
                let start = i;
                i += 1;
                let mut escaped = false;
                while i < chars.len() && (escaped || chars[i] != '"') {
                    escaped = !escaped && chars[i] == '\\';
                    i += 1;
                }
                if i >= chars.len() {
                    return Err("a quoted value is not closed".into());
                }
                i += 1;
                let raw: String = chars[start..i].iter().collect();
                let s: String = serde_json::from_str(&raw)
                    .map_err(|e| format!("bad quoted value {raw}: {e}"))?;
                out.push(Tok::Str(s));
            }
            _ => {
                let start = i;
                while i < chars.len() && !chars[i].is_whitespace() && !"()[]\"".contains(chars[i]) {
                    i += 1;
                }
                out.push(Tok::Word(chars[start..i].iter().collect()));
            }
        }
    }
    Ok(out)
}

impl AttrPath {
    /// Parses `attr`, `attr.sub`, `urn:…:attr` or `urn:…:attr.sub`.
    pub fn parse(text: &str) -> Result<AttrPath, String> {
        let (schema, rest) = if text.len() > 4 && text[..4].eq_ignore_ascii_case("urn:") {
            match text.rfind(':') {
                Some(i) => (Some(text[..i].to_owned()), &text[i + 1..]),
                None => (None, text),
            }
        } else {
            (None, text)
        };
        let (attr, sub) = match rest.split_once('.') {
            Some((a, s)) => (a, Some(s.to_owned())),
            None => (rest, None),
        };
        let name_ok = |s: &str| {
            s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$')
        };
        if !name_ok(attr) || sub.as_deref().is_some_and(|s| !name_ok(s)) {
            return Err(format!("{text:?} is not an attribute path"));
        }
        Ok(AttrPath {
            schema,
            attr: attr.to_owned(),
            sub,
        })
    }

    /// Whether text values at this path compare with case (RFC 7643 `caseExact`).
    fn case_exact(&self) -> bool {
        ["id", "externalId", "meta"]
            .iter()
            .any(|a| self.attr.eq_ignore_ascii_case(a))
    }

    /// Whether this is `name` (no schema, or the core User/Group schema) without a sub-attribute.
    pub fn is(&self, name: &str) -> bool {
        self.sub.is_none() && self.attr.eq_ignore_ascii_case(name) && self.core()
    }

    fn core(&self) -> bool {
        self.schema.as_deref().is_none_or(|s| {
            s.to_ascii_lowercase()
                .starts_with("urn:ietf:params:scim:schemas:core:")
        })
    }
}

struct Parser {
    toks: Vec<Tok>,
    at: usize,
}

impl Parser {
    fn peek_word(&self) -> Option<String> {
        match self.toks.get(self.at) {
            Some(Tok::Word(w)) => Some(w.to_ascii_lowercase()),
            _ => None,
        }
    }

    fn or(&mut self) -> Result<Filter, String> {
        let mut left = self.and()?;
        while self.peek_word().as_deref() == Some("or") {
            self.at += 1;
            left = Filter::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, String> {
        let mut left = self.unary()?;
        while self.peek_word().as_deref() == Some("and") {
            self.at += 1;
            left = Filter::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Filter, String> {
        if self.peek_word().as_deref() == Some("not") {
            self.at += 1;
            if self.toks.get(self.at) != Some(&Tok::Open) {
                return Err("`not` must be followed by a parenthesised filter".into());
            }
            return Ok(Filter::Not(Box::new(self.unary()?)));
        }
        if self.toks.get(self.at) == Some(&Tok::Open) {
            self.at += 1;
            let f = self.or()?;
            if self.toks.get(self.at) != Some(&Tok::Close) {
                return Err("a parenthesis is not closed".into());
            }
            self.at += 1;
            return Ok(f);
        }
        let Some(Tok::Word(word)) = self.toks.get(self.at).cloned() else {
            return Err("expected an attribute path".into());
        };
        self.at += 1;
        let path = AttrPath::parse(&word)?;
        if self.toks.get(self.at) == Some(&Tok::LBracket) {
            self.at += 1;
            let inner = self.or()?;
            if self.toks.get(self.at) != Some(&Tok::RBracket) {
                return Err(format!("{word}[…]: the bracket is not closed"));
            }
            self.at += 1;
            // `].sub op value`
            let then = match self.toks.get(self.at) {
                Some(Tok::Word(w)) if w.starts_with('.') => {
                    let sub = w[1..].to_owned();
                    self.at += 1;
                    let rel = AttrPath::parse(&sub)?;
                    Some(Box::new(self.comparison(rel, &sub)?))
                }
                _ => None,
            };
            return Ok(Filter::ValuePath {
                path,
                filter: Box::new(inner),
                then,
            });
        }
        self.comparison(path, &word)
    }

    fn comparison(&mut self, path: AttrPath, word: &str) -> Result<Filter, String> {
        let Some(op) = self.peek_word() else {
            return Err(format!(
                "{word}: expected an operator (eq, ne, co, sw, ew, gt, ge, lt, le, pr)"
            ));
        };
        self.at += 1;
        let op = match op.as_str() {
            "pr" => return Ok(Filter::Present(path)),
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "co" => Op::Co,
            "sw" => Op::Sw,
            "ew" => Op::Ew,
            "gt" => Op::Gt,
            "ge" => Op::Ge,
            "lt" => Op::Lt,
            "le" => Op::Le,
            other => return Err(format!("{other:?} is not a SCIM filter operator")),
        };
        let value = match self.toks.get(self.at).cloned() {
            Some(Tok::Str(s)) => Value::String(s),
            Some(Tok::Word(w)) => match w.to_ascii_lowercase().as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                "null" => Value::Null,
                _ => serde_json::from_str::<serde_json::Number>(&w)
                    .map(Value::Number)
                    .map_err(|_| format!("{w:?} is not a value: quote text (\"…\")"))?,
            },
            _ => return Err(format!("{word}: a value is missing after the operator")),
        };
        self.at += 1;
        Ok(Filter::Compare(path, op, value))
    }
}

/// Parses a whole filter.
pub fn parse(text: &str) -> Result<Filter, String> {
    let mut p = Parser {
        toks: tokens(text)?,
        at: 0,
    };
    let f = p.or()?;
    if p.at != p.toks.len() {
        return Err("unexpected text after the end of the filter".into());
    }
    Ok(f)
}

/// Parses a PATCH path: `attr`, `attr.sub`, `urn:…:attr`, `attr[filter]` or `attr[filter].sub`.
pub fn parse_patch_path(text: &str) -> Result<PatchPath, String> {
    let text = text.trim();
    let Some(open) = text.find('[') else {
        return Ok(PatchPath {
            path: AttrPath::parse(text)?,
            filter: None,
            sub: None,
        });
    };
    let close = text
        .rfind(']')
        .ok_or_else(|| format!("{text:?}: the bracket is not closed"))?;
    let path = AttrPath::parse(&text[..open])?;
    let filter = parse(&text[open + 1..close])?;
    let rest = &text[close + 1..];
    let sub = match rest.strip_prefix('.') {
        Some(s) if !s.is_empty() => Some(s.to_owned()),
        None if rest.is_empty() => None,
        _ => return Err(format!("{text:?}: unexpected text after ']'")),
    };
    Ok(PatchPath {
        path,
        filter: Some(filter),
        sub,
    })
}

/// A member of an object by name, ignoring ASCII case (SCIM names are case-insensitive).
pub fn get_ci<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    let Value::Object(m) = v else { return None };
    m.get(key).or_else(|| {
        m.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// The values at `path` in `resource` (several for a multi-valued attribute).
fn values<'a>(path: &AttrPath, resource: &'a Value) -> Vec<&'a Value> {
    let base = match &path.schema {
        Some(s) if !path.core() => match get_ci(resource, s) {
            Some(v) => v,
            None => return Vec::new(),
        },
        _ => resource,
    };
    let Some(v) = get_ci(base, &path.attr) else {
        return Vec::new();
    };
    let items: Vec<&Value> = match v {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    items
        .into_iter()
        .filter_map(|item| match (&path.sub, item) {
            (Some(sub), o) => get_ci(o, sub),
            (None, o @ Value::Object(_)) => get_ci(o, "value"),
            (None, o) => Some(o),
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn compare(have: &Value, op: Op, want: &Value, exact: bool) -> bool {
    use std::cmp::Ordering;
    let ord: Option<Ordering> = match (have, want) {
        (Value::String(a), Value::String(b)) => {
            let (a, b) = if exact {
                (a.clone(), b.clone())
            } else {
                (a.to_lowercase(), b.to_lowercase())
            };
            match op {
                Op::Co => return a.contains(&b),
                Op::Sw => return a.starts_with(&b),
                Op::Ew => return a.ends_with(&b),
                _ => Some(a.cmp(&b)),
            }
        }
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        (Value::Number(a), Value::Number(b)) => a
            .as_f64()
            .zip(b.as_f64())
            .and_then(|(a, b)| a.partial_cmp(&b)),
        _ => None,
    };
    match (op, ord) {
        (Op::Eq, Some(o)) => o == Ordering::Equal,
        (Op::Ne, Some(o)) => o != Ordering::Equal,
        (Op::Ne, None) => true,
        (Op::Gt, Some(o)) => o == Ordering::Greater,
        (Op::Ge, Some(o)) => o != Ordering::Less,
        (Op::Lt, Some(o)) => o == Ordering::Less,
        (Op::Le, Some(o)) => o != Ordering::Greater,
        _ => false,
    }
}

impl Filter {
    /// Whether `resource` matches.
    pub fn matches(&self, resource: &Value) -> bool {
        match self {
            Filter::Compare(path, op, want) => {
                let have = values(path, resource);
                if want.is_null() {
                    return match op {
                        Op::Eq => have.is_empty(),
                        Op::Ne => !have.is_empty(),
                        _ => false,
                    };
                }
                if *op == Op::Ne {
                    return have
                        .iter()
                        .all(|h| compare(h, Op::Ne, want, path.case_exact()));
                }
                have.iter()
                    .any(|h| compare(h, *op, want, path.case_exact()))
            }
            Filter::Present(path) => values(path, resource).iter().any(|v| match v {
                Value::String(s) => !s.is_empty(),
                Value::Array(a) => !a.is_empty(),
                _ => true,
            }),
            Filter::And(a, b) => a.matches(resource) && b.matches(resource),
            Filter::Or(a, b) => a.matches(resource) || b.matches(resource),
            Filter::Not(f) => !f.matches(resource),
            Filter::ValuePath { path, filter, then } => {
                let whole = AttrPath {
                    sub: None,
                    ..path.clone()
                };
                let base = match &whole.schema {
                    Some(s) if !whole.core() => get_ci(resource, s),
                    _ => Some(resource),
                };
                let Some(v) = base.and_then(|b| get_ci(b, &whole.attr)) else {
                    return false;
                };
                let items: Vec<&Value> = match v {
                    Value::Array(a) => a.iter().collect(),
                    other => vec![other],
                };
                items.into_iter().any(|item| {
                    filter.matches(item) && then.as_ref().is_none_or(|t| t.matches(item))
                })
            }
        }
    }

    /// A value the filter requires `attr` (`userName`, `externalId` or `id`) to equal, when
    /// it does (an `eq` alone or under `and`): the store looks such users up by index.
    pub fn required(&self, attr: &str) -> Option<&str> {
        match self {
            Filter::Compare(p, Op::Eq, Value::String(s)) if p.is(attr) => Some(s),
            Filter::And(a, b) => a.required(attr).or_else(|| b.required(attr)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

    fn check(filter: &str, resource: &Value, want: bool) {
        let f = parse(filter).unwrap_or_else(|e| panic!("{filter}: {e}"));
        assert_eq!(f.matches(resource), want, "{filter}");
    }

    #[test]
    fn filters_match_with_the_case_rules_of_rfc_7643() {
        let u = json!({
            "id": "a1", "userName": "Ann.Lee@Example.com", "externalId": "Ext-1", "active": true,
            "name": {"givenName": "Ann"},
            "emails": [{"type": "home", "value": "ann@home"}, {"type": "work", "value": "ann@work.com"}],
            ENT: {"employeeNumber": "E1", "manager": {"value": "m1"}},
            "meta": {"lastModified": "2026-01-02T00:00:00Z"}
        });
        check("userName eq \"ann.lee@example.com\"", &u, true);
        check("USERNAME Eq \"ANN.LEE@EXAMPLE.COM\"", &u, true);
        check("externalId eq \"ext-1\"", &u, false);
        check("externalId eq \"Ext-1\"", &u, true);
        check(
            "emails[type eq \"work\"].value eq \"ANN@work.com\"",
            &u,
            true,
        );
        check(
            "emails[type eq \"home\"].value eq \"ann@work.com\"",
            &u,
            false,
        );
        check("emails[type eq \"work\" and value co \"work\"]", &u, true);
        check("emails.value eq \"ann@home\"", &u, true);
        check("emails eq \"ann@home\"", &u, true);
        check(
            "userName eq \"ann.lee@example.com\" and active eq true",
            &u,
            true,
        );
        check("userName eq \"x\" or name.givenName sw \"an\"", &u, true);
        check("not (active eq true)", &u, false);
        check("title pr", &u, false);
        check("name.givenName pr", &u, true);
        check(&format!("{ENT}:employeeNumber eq \"E1\""), &u, true);
        check(&format!("{ENT}:manager.value eq \"m1\""), &u, true);
        check(&format!("{ENT}:manager eq \"m1\""), &u, true);
        check("meta.lastModified gt \"2026-01-01T00:00:00Z\"", &u, true);
        check("userName ne \"x\"", &u, true);
        check("title eq null", &u, true);
        check(
            "(userName eq \"x\" or userName ew \"example.com\") and id eq \"a1\"",
            &u,
            true,
        );
        for bad in [
            "userName",
            "userName eq",
            "userName zz \"x\"",
            "userName eq bob",
            "emails[type eq \"work\"",
            "userName eq \"x\" )",
            "not userName eq \"x\"",
            "\"x\" eq userName",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lookups_and_patch_paths() {
        let f = parse("userName eq \"A\" and active eq true").unwrap();
        assert_eq!(f.required("userName"), Some("A"));
        assert_eq!(f.required("externalId"), None);
        assert_eq!(
            parse("userName eq \"A\" or id eq \"b\"")
                .unwrap()
                .required("userName"),
            None
        );
        let p = parse_patch_path("emails[type eq \"work\"].value").unwrap();
        assert_eq!(p.path.attr, "emails");
        assert_eq!(p.sub.as_deref(), Some("value"));
        assert!(p.filter.is_some());
        let p = parse_patch_path(&format!("{ENT}:manager")).unwrap();
        assert_eq!(p.path.schema.as_deref(), Some(ENT));
        assert_eq!(p.path.attr, "manager");
        let p = parse_patch_path("name.givenName").unwrap();
        assert_eq!(
            (p.path.attr.as_str(), p.path.sub.as_deref()),
            ("name", Some("givenName"))
        );
        assert!(parse_patch_path("emails[type eq \"work\"]x").is_err());
        assert!(parse_patch_path("").is_err());
    }
}
