//! `source.ldap.filter` (parsed by `config::LdapFilter`) applied to LDIF entries, so that an
//! export selects the same users a live search with the same filter would; values are compared
//! without regard to case. `objectCategory=person` matches Active Directory's
//! `CN=Person,CN=Schema,…` value, as it does on a domain controller.

use super::ldap_map::Entry;
use crate::config::LdapFilter;

/// True when the entry matches the filter.
pub fn matches(filter: &LdapFilter, e: &Entry) -> bool {
    match filter {
        LdapFilter::And(fs) => fs.iter().all(|f| matches(f, e)),
        LdapFilter::Or(fs) => fs.iter().any(|f| matches(f, e)),
        LdapFilter::Not(f) => !matches(f, e),
        LdapFilter::Present(a) => {
            (a.eq_ignore_ascii_case("objectclass") && !e.dn.is_empty()) || e.first(a).is_some()
        }
        LdapFilter::Equal(a, v) => e.all(a).any(|x| equal(a, &text(x), v)),
        LdapFilter::Substring(a, parts) => e.all(a).any(|x| substring(&text(x), parts)),
        LdapFilter::GreaterOrEqual(a, v) => e.all(a).any(|x| compare(&text(x), v).is_ge()),
        LdapFilter::LessOrEqual(a, v) => e.all(a).any(|x| compare(&text(x), v).is_le()),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(attrs: &[(&str, &str)]) -> Entry {
        crate::test_support::entry("cn=x", attrs)
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
        let m = |f: &str, e: &Entry| matches(&LdapFilter::parse(f).unwrap(), e);
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
    }
}
