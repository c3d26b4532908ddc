//! `source.ldap.filter` applied to LDIF entries, so that an export selects the same users a live
//! search with the same filter would: `&`, `|`, `!`, equality, presence (`attr=*`), substrings
//! (`attr=ab*c`), `>=`, `<=` and `~=` (as equality), values compared without regard to case.
//! `objectCategory=person` matches Active Directory's `CN=Person,CN=Schema,…` value, as it does
//! on a domain controller. Extensible matches (`:=`) are not supported.

use super::ldap_map::Entry;

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    Present(String),
    Equal(String, String),
    /// Attribute and the pieces between `*`s (the first and last may be empty).
    Substring(String, Vec<String>),
    GreaterOrEqual(String, String),
    LessOrEqual(String, String),
}

impl Filter {
    /// Parses RFC 4515 text; the error says what is wrong and where.
    pub fn parse(text: &str) -> Result<Filter, String> {
        let t = text.trim();
        let b = t.as_bytes();
        let (f, end) = parse_at(b, 0)?;
        if end != b.len() {
            return Err(format!("unexpected text after position {end}"));
        }
        Ok(f)
    }

    /// True when the entry matches.
    pub fn matches(&self, e: &Entry) -> bool {
        match self {
            Filter::And(fs) => fs.iter().all(|f| f.matches(e)),
            Filter::Or(fs) => fs.iter().any(|f| f.matches(e)),
            Filter::Not(f) => !f.matches(e),
            Filter::Present(a) => {
                (a.eq_ignore_ascii_case("objectclass") && !e.dn.is_empty()) || e.first(a).is_some()
            }
            Filter::Equal(a, v) => e.all(a).any(|x| equal(a, &text(x), v)),
            Filter::Substring(a, parts) => e.all(a).any(|x| substring(&text(x), parts)),
            Filter::GreaterOrEqual(a, v) => e.all(a).any(|x| compare(&text(x), v).is_ge()),
            Filter::LessOrEqual(a, v) => e.all(a).any(|x| compare(&text(x), v).is_le()),
        }
    }
}

fn text(v: &[u8]) -> String {
    String::from_utf8_lossy(v).trim().to_lowercase()
}

fn equal(attr: &str, value: &str, want: &str) -> bool {
    if value == want {
        return true;
    }
    // AD: objectCategory holds the DN of a schema class; `person` names its first RDN.
    attr.eq_ignore_ascii_case("objectcategory")
        && !want.contains('=')
        && value
            .split(',')
            .next()
            .and_then(|rdn| rdn.split_once('='))
            .is_some_and(|(_, v)| v.trim() == want)
}

fn substring(value: &str, parts: &[String]) -> bool {
    let Some((first, rest)) = parts.split_first() else {
        return true;
    };
    let Some(mut tail) = value.strip_prefix(first.as_str()) else {
        return false;
    };
    let Some((last, middle)) = rest.split_last() else {
        return tail.is_empty();
    };
    for m in middle {
        match tail.find(m.as_str()) {
            Some(i) => tail = &tail[i + m.len()..],
            None => return false,
        }
    }
    tail.ends_with(last.as_str())
}

fn compare(value: &str, want: &str) -> std::cmp::Ordering {
    match (value.parse::<i64>(), want.parse::<i64>()) {
        (Ok(a), Ok(b)) => a.cmp(&b),
        _ => value.cmp(want),
    }
}

fn parse_at(b: &[u8], mut i: usize) -> Result<(Filter, usize), String> {
    while b.get(i) == Some(&b' ') {
        i += 1;
    }
    if b.get(i) != Some(&b'(') {
        return Err(format!("expected \"(\" at position {i}"));
    }
    i += 1;
    let f = match b.get(i) {
        Some(b'&') | Some(b'|') => {
            let and = b[i] == b'&';
            i += 1;
            let mut list = Vec::new();
            while b.get(i) == Some(&b'(') || b.get(i) == Some(&b' ') {
                if b[i] == b' ' {
                    i += 1;
                    continue;
                }
                let (f, next) = parse_at(b, i)?;
                list.push(f);
                i = next;
            }
            if and {
                Filter::And(list)
            } else {
                Filter::Or(list)
            }
        }
        Some(b'!') => {
            let (f, next) = parse_at(b, i + 1)?;
            i = next;
            Filter::Not(Box::new(f))
        }
        _ => {
            let start = i;
            let mut depth_escape = false;
            while let Some(&c) = b.get(i) {
                if c == b')' && !depth_escape {
                    break;
                }
                depth_escape = false;
                if c == b'\\' {
                    depth_escape = true;
                }
                i += 1;
            }
            item(&b[start..i], start)?
        }
    };
    if b.get(i) != Some(&b')') {
        return Err(format!("expected \")\" at position {i}"));
    }
    Ok((f, i + 1))
}

fn item(b: &[u8], at: usize) -> Result<Filter, String> {
    let s = std::str::from_utf8(b).map_err(|_| format!("not UTF-8 at position {at}"))?;
    let eq = s
        .find('=')
        .ok_or_else(|| format!("no \"=\" in the item at position {at}"))?;
    let (mut attr, value) = (&s[..eq], &s[eq + 1..]);
    let op = attr.chars().last();
    if matches!(op, Some('>' | '<' | '~' | ':')) {
        attr = &attr[..attr.len() - 1];
    }
    let attr = attr.trim().to_owned();
    if attr.is_empty() || attr.contains(':') || op == Some(':') {
        return Err(format!(
            "extensible or empty attribute in the item at position {at} is not supported"
        ));
    }
    let unescape = |v: &str| -> Result<String, String> {
        let vb = v.as_bytes();
        let mut out = Vec::with_capacity(vb.len());
        let mut j = 0;
        while j < vb.len() {
            if vb[j] == b'\\' {
                let hex = vb
                    .get(j + 1..j + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad escape in the item at position {at}"))?;
                out.push(hex);
                j += 3;
            } else {
                out.push(vb[j]);
                j += 1;
            }
        }
        Ok(String::from_utf8_lossy(&out).trim().to_lowercase())
    };
    Ok(match op {
        Some('>') => Filter::GreaterOrEqual(attr, unescape(value)?),
        Some('<') => Filter::LessOrEqual(attr, unescape(value)?),
        _ if value == "*" => Filter::Present(attr),
        _ if value.contains('*') => Filter::Substring(
            attr,
            value
                .split('*')
                .map(&unescape)
                .collect::<Result<Vec<_>, _>>()?,
        ),
        _ => Filter::Equal(attr, unescape(value)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(attrs: &[(&str, &str)]) -> Entry {
        Entry {
            dn: "cn=x".into(),
            origin: "x".into(),
            values: attrs
                .iter()
                .map(|(a, v)| (a.to_ascii_lowercase(), v.as_bytes().to_vec()))
                .collect(),
            problems: vec![],
        }
    }

    #[test]
    fn filters_select_like_a_directory_would() {
        let person = entry(&[
            ("objectClass", "top"),
            ("objectClass", "inetOrgPerson"),
            ("mail", "Ann.Lee@Example.com"),
            ("employeeNumber", "42"),
        ]);
        let ad = entry(&[
            ("objectClass", "user"),
            (
                "objectCategory",
                "CN=Person,CN=Schema,CN=Configuration,DC=corp,DC=example,DC=com",
            ),
        ]);
        let m = |f: &str, e: &Entry| Filter::parse(f).unwrap().matches(e);
        assert!(m("(objectClass=inetorgperson)", &person));
        assert!(!m("(objectClass=inetOrgPerson)", &ad));
        assert!(m("(&(objectClass=user)(objectCategory=person))", &ad));
        assert!(m("(&(objectClass=user)(!(objectClass=computer)))", &ad));
        assert!(m("(|(mail=*@example.com)(uid=x))", &person));
        assert!(m("(mail=ann*lee*)", &person));
        assert!(!m("(mail=bob*)", &person));
        assert!(m("(employeeNumber>=40)", &person));
        assert!(!m("(employeeNumber<=40)", &person));
        assert!(m("(mail=*)", &person) && !m("(uid=*)", &person));
        assert!(m(r"(mail=ann.lee\40example.com)", &person));
        for bad in [
            "objectClass=x",
            "(objectClass=x",
            "(cn:dn:=x)",
            "(=x)",
            "(a=b))",
        ] {
            assert!(Filter::parse(bad).is_err(), "{bad}");
        }
    }
}
