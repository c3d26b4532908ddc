//! SCIM filter expressions (RFC 7644 §3.4.2.2): a parser for the full grammar, evaluation
//! against a JSON value (PATCH value paths), and the subset the Identity look-ups accept.
//!
//! Precedence is NOT > AND > OR; attribute names and string comparisons are case-insensitive;
//! a value may be a quoted string, `true`, `false`, `null`, a number, or an unquoted word (the
//! docs allow unquoted UUIDs).

use std::cmp::Ordering;

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
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

impl CmpOp {
    fn parse(word: &str) -> Option<Self> {
        Some(match word.to_ascii_lowercase().as_str() {
            "eq" => Self::Eq,
            "ne" => Self::Ne,
            "co" => Self::Co,
            "sw" => Self::Sw,
            "ew" => Self::Ew,
            "gt" => Self::Gt,
            "ge" => Self::Ge,
            "lt" => Self::Lt,
            "le" => Self::Le,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Filter {
    Or(Box<Filter>, Box<Filter>),
    And(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    Present(String),
    Compare(String, CmpOp, Value),
    /// `attr[filter]` on a multi-valued attribute.
    Complex(String, Box<Filter>),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Open,
    Close,
    OpenBracket,
    CloseBracket,
    Word(String),
    Str(String),
}

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
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
                out.push(Tok::OpenBracket);
                i += 1;
            }
            ']' => {
                out.push(Tok::CloseBracket);
                i += 1;
            }
            '"' => {
                let start = i;
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
                if i >= chars.len() {
                    return Err("unterminated string".to_string());
                }
                i += 1;
                let literal: String = chars[start..i].iter().collect();
                let text: String = serde_json::from_str(&literal)
                    .map_err(|_| format!("invalid string {literal}"))?;
                out.push(Tok::Str(text));
            }
            _ => {
                let start = i;
                while i < chars.len()
                    && !chars[i].is_whitespace()
                    && !matches!(chars[i], '(' | ')' | '[' | ']' | '"')
                {
                    i += 1;
                }
                out.push(Tok::Word(chars[start..i].iter().collect()));
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn or(&mut self) -> Result<Filter, String> {
        let mut left = self.and()?;
        while self.keyword("or") {
            self.at += 1;
            let right = self.and()?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, String> {
        let mut left = self.not()?;
        while self.keyword("and") {
            self.at += 1;
            let right = self.not()?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Filter, String> {
        if self.keyword("not") {
            self.at += 1;
            if self.next() != Some(Tok::Open) {
                return Err("'not' must be followed by '('".to_string());
            }
            let inner = self.or()?;
            if self.next() != Some(Tok::Close) {
                return Err("missing ')'".to_string());
            }
            return Ok(Filter::Not(Box::new(inner)));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Filter, String> {
        match self.next() {
            Some(Tok::Open) => {
                let inner = self.or()?;
                if self.next() != Some(Tok::Close) {
                    return Err("missing ')'".to_string());
                }
                Ok(inner)
            }
            Some(Tok::Word(attr)) => {
                if self.peek() == Some(&Tok::OpenBracket) {
                    self.at += 1;
                    let inner = self.or()?;
                    if self.next() != Some(Tok::CloseBracket) {
                        return Err("missing ']'".to_string());
                    }
                    return Ok(Filter::Complex(attr, Box::new(inner)));
                }
                let op = match self.next() {
                    Some(Tok::Word(w)) if w.eq_ignore_ascii_case("pr") => {
                        return Ok(Filter::Present(attr));
                    }
                    Some(Tok::Word(w)) => {
                        CmpOp::parse(&w).ok_or_else(|| format!("unknown operator '{w}'"))?
                    }
                    _ => return Err(format!("missing operator after '{attr}'")),
                };
                let value = match self.next() {
                    Some(Tok::Str(s)) => Value::String(s),
                    Some(Tok::Word(w)) => match w.to_ascii_lowercase().as_str() {
                        "true" => Value::Bool(true),
                        "false" => Value::Bool(false),
                        "null" => Value::Null,
                        _ => serde_json::from_str::<serde_json::Number>(&w)
                            .map(Value::Number)
                            .unwrap_or(Value::String(w)),
                    },
                    _ => return Err(format!("missing value after '{attr}'")),
                };
                Ok(Filter::Compare(attr, op, value))
            }
            Some(t) => Err(format!("unexpected {t:?}")),
            None => Err("unexpected end of filter".to_string()),
        }
    }
}

/// Parses a whole filter expression.
pub(crate) fn parse(s: &str) -> Result<Filter, String> {
    let toks = tokenize(s)?;
    if toks.is_empty() {
        return Err("empty filter".to_string());
    }
    let mut p = Parser { toks, at: 0 };
    let f = p.or()?;
    match p.peek() {
        None => Ok(f),
        Some(t) => Err(format!("unexpected {t:?}")),
    }
}

/// The member of `obj` named `name` in any letter case.
pub(crate) fn member<'a>(obj: &'a Value, name: &str) -> Option<&'a Value> {
    let map = obj.as_object()?;
    map.get(name).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// The value at a dotted attribute path (`approver.value`) inside `obj`. `value` of an element
/// that is not an object (a multi-valued simple attribute such as `entitlements`) is the
/// element itself (RFC 7644 §3.5.2).
fn lookup<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    if path.eq_ignore_ascii_case("value") && !obj.is_object() {
        return Some(obj);
    }
    path.split('.').try_fold(obj, member)
}

fn compare(have: &Value, op: CmpOp, want: &Value) -> bool {
    if let Value::Array(items) = have {
        return items.iter().any(|v| compare(v, op, want));
    }
    match (have, want) {
        (Value::String(h), Value::String(w)) => {
            let (h, w) = (h.to_lowercase(), w.to_lowercase());
            match op {
                CmpOp::Eq => h == w,
                CmpOp::Ne => h != w,
                CmpOp::Co => h.contains(&w),
                CmpOp::Sw => h.starts_with(&w),
                CmpOp::Ew => h.ends_with(&w),
                CmpOp::Gt => h > w,
                CmpOp::Ge => h >= w,
                CmpOp::Lt => h < w,
                CmpOp::Le => h <= w,
            }
        }
        (Value::Number(h), Value::Number(w)) => {
            let ord = h
                .as_f64()
                .zip(w.as_f64())
                .and_then(|(a, b)| a.partial_cmp(&b));
            match (op, ord) {
                (CmpOp::Eq, Some(o)) => o == Ordering::Equal,
                (CmpOp::Ne, Some(o)) => o != Ordering::Equal,
                (CmpOp::Gt, Some(o)) => o == Ordering::Greater,
                (CmpOp::Ge, Some(o)) => o != Ordering::Less,
                (CmpOp::Lt, Some(o)) => o == Ordering::Less,
                (CmpOp::Le, Some(o)) => o != Ordering::Greater,
                _ => false,
            }
        }
        (h, w) => match op {
            CmpOp::Eq => h == w,
            CmpOp::Ne => h != w,
            _ => false,
        },
    }
}

/// Whether the JSON value `v` (one element of a multi-valued attribute, or a resource)
/// satisfies `f`.
pub(crate) fn matches(f: &Filter, v: &Value) -> bool {
    match f {
        Filter::Or(a, b) => matches(a, v) || matches(b, v),
        Filter::And(a, b) => matches(a, v) && matches(b, v),
        Filter::Not(a) => !matches(a, v),
        Filter::Present(attr) => {
            lookup(v, attr).is_some_and(|x| !x.is_null() && x != &Value::String(String::new()))
        }
        Filter::Compare(attr, op, want) => match lookup(v, attr) {
            Some(have) => compare(have, *op, want),
            None => *op == CmpOp::Ne || (*op == CmpOp::Eq && want.is_null()),
        },
        Filter::Complex(attr, inner) => match lookup(v, attr) {
            Some(Value::Array(items)) => items.iter().any(|i| matches(inner, i)),
            Some(other) => matches(inner, other),
            None => false,
        },
    }
}

/// The `attr eq value` pairs a filter made only of `eq` joined by `and` pins down (what a new
/// element created for an unmatched PATCH value path starts from). `None` for any other shape.
pub(crate) fn eq_pairs(f: &Filter) -> Option<Vec<(String, Value)>> {
    match f {
        Filter::Compare(attr, CmpOp::Eq, v) => Some(vec![(attr.clone(), v.clone())]),
        Filter::And(a, b) => {
            let mut out = eq_pairs(a)?;
            out.extend(eq_pairs(b)?);
            Some(out)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn precedence_and_values() {
        let f = parse(r#"a eq "x" or b eq 1 and not (c pr)"#).unwrap();
        match f {
            Filter::Or(_, right) => assert!(matches!(*right, Filter::And(_, _))),
            other => panic!("{other:?}"),
        }
        let f = parse("id eq 9f3c2a80-0000-4000-8000-000000000001").unwrap();
        assert_eq!(
            f,
            Filter::Compare(
                "id".into(),
                CmpOp::Eq,
                json!("9f3c2a80-0000-4000-8000-000000000001")
            )
        );
        assert!(parse(r"userName eq ").is_err());
        assert!(parse(r#"userName xx "a""#).is_err());
        assert!(parse(r#"(userName eq "a""#).is_err());
        assert!(parse(r#"userName eq "a\"b""#).is_ok());
    }

    #[test]
    fn evaluation_on_json() {
        assert!(matches(
            &parse(r#"value eq "Expense""#).unwrap(),
            &json!("Expense")
        ));
        assert!(!matches(
            &parse(r#"value eq "Travel""#).unwrap(),
            &json!("Expense")
        ));
        let el = json!({"approver": {"value": "U1"}, "primary": true, "id": "custom2"});
        assert!(matches(&parse(r#"approver.value eq "u1""#).unwrap(), &el));
        assert!(matches(&parse(r#"ID eq "Custom2""#).unwrap(), &el));
        assert!(matches(&parse("primary eq true").unwrap(), &el));
        assert!(!matches(&parse(r#"id eq "custom3""#).unwrap(), &el));
        assert!(matches(
            &parse(r#"approvalType eq "report" and approvalGroup eq "g1""#).unwrap(),
            &json!({"approvalType": "report", "approvalGroup": "g1"})
        ));
        let pairs = eq_pairs(&parse(r#"a eq "1" and b eq "2""#).unwrap()).unwrap();
        assert_eq!(pairs.len(), 2);
        assert!(eq_pairs(&parse(r#"a eq "1" or b eq "2""#).unwrap()).is_none());
    }
}
