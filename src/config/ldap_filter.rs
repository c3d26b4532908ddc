//! `source.ldap.filter` as the LDIF source reads it (RFC 4515 text): `&`, `|`, `!`, equality,
//! presence (`attr=*`), substrings (`attr=ab*c`), `>=`, `<=` and `~=` (as equality), values
//! lowercased for comparison without regard to case. Extensible matches (`:=`) are not
//! supported. Pure syntax: matching entries is the source's business.

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum LdapFilter {
    And(Vec<LdapFilter>),
    Or(Vec<LdapFilter>),
    Not(Box<LdapFilter>),
    Present(String),
    Equal(String, String),
    /// Attribute and the pieces between `*`s (the first and last may be empty).
    Substring(String, Vec<String>),
    GreaterOrEqual(String, String),
    LessOrEqual(String, String),
}

impl LdapFilter {
    /// Parses RFC 4515 text; the error says what is wrong and where.
    pub fn parse(text: &str) -> Result<LdapFilter, String> {
        let t = text.trim();
        let b = t.as_bytes();
        let (f, end) = parse_at(b, 0)?;
        if end != b.len() {
            return Err(format!("unexpected text after position {end}"));
        }
        Ok(f)
    }
}

fn parse_at(b: &[u8], mut i: usize) -> Result<(LdapFilter, usize), String> {
    while b.get(i) == Some(&b' ') {
        i += 1;
    }
    if b.get(i) != Some(&b'(') {
        return Err(format!("expected \"(\" at position {i}"));
    }
    i += 1;
    let f = match b.get(i) {
        Some(b'&' | b'|') => {
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
                LdapFilter::And(list)
            } else {
                LdapFilter::Or(list)
            }
        }
        Some(b'!') => {
            let (f, next) = parse_at(b, i + 1)?;
            i = next;
            LdapFilter::Not(Box::new(f))
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

fn item(b: &[u8], at: usize) -> Result<LdapFilter, String> {
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
        Some('>') => LdapFilter::GreaterOrEqual(attr, unescape(value)?),
        Some('<') => LdapFilter::LessOrEqual(attr, unescape(value)?),
        _ if value == "*" => LdapFilter::Present(attr),
        _ if value.contains('*') => LdapFilter::Substring(
            attr,
            value
                .split('*')
                .map(&unescape)
                .collect::<Result<Vec<_>, _>>()?,
        ),
        _ => LdapFilter::Equal(attr, unescape(value)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_and_nonsense_is_refused() {
        assert_eq!(
            LdapFilter::parse("(&(objectClass=user)(!(cn=A*b)))").unwrap(),
            LdapFilter::And(vec![
                LdapFilter::Equal("objectClass".into(), "user".into()),
                LdapFilter::Not(Box::new(LdapFilter::Substring(
                    "cn".into(),
                    vec!["a".into(), "b".into()]
                ))),
            ])
        );
        assert_eq!(
            LdapFilter::parse(r"(mail=ann.lee\40example.com)").unwrap(),
            LdapFilter::Equal("mail".into(), "ann.lee@example.com".into())
        );
        for bad in [
            "objectClass=x",
            "(objectClass=x",
            "(cn:dn:=x)",
            "(=x)",
            "(a=b))",
        ] {
            assert!(LdapFilter::parse(bad).is_err(), "{bad}");
        }
    }
}
