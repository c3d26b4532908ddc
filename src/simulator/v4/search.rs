//! The filter subset the Identity look-ups answer, and how: `eq` on `userName`,
//! `employeeNumber`, `externalId`, `id` through the state's indexes; `active` and
//! `meta.lastModified` (`gt|ge|lt|le`) by scan; `and`/`or`. Identity v4's `filter` takes one
//! `eq` on `userName`, `employeeNumber` or `externalId`.

use chrono::{DateTime, Utc};

use super::super::state::Inner;
use super::EmployeeNumberFilter;
use super::errors::Failure;
use super::filter::{self, CmpOp, Filter};
use super::model::{CORE, ENTERPRISE, UserRef};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key {
    UserName,
    ExternalId,
    Id,
    EmployeeNumber,
}

/// A filter the simulator can answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Query {
    Eq(Key, String),
    Active(bool),
    Modified(CmpOp, DateTime<Utc>),
    And(Box<Query>, Box<Query>),
    Or(Box<Query>, Box<Query>),
}

fn key_of(attr: &str, spelling: EmployeeNumberFilter) -> Option<Key> {
    let core = format!("{CORE}:");
    let bare = match attr.get(..core.len()) {
        Some(p) if p.eq_ignore_ascii_case(&core) => &attr[core.len()..],
        _ => attr,
    };
    let urn_forms = [
        format!("{ENTERPRISE}:employeeNumber"),
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:employeeNumber".to_string(),
    ];
    if urn_forms.iter().any(|f| f.eq_ignore_ascii_case(attr)) {
        return (spelling != EmployeeNumberFilter::Plain).then_some(Key::EmployeeNumber);
    }
    match bare.to_ascii_lowercase().as_str() {
        "username" => Some(Key::UserName),
        "externalid" => Some(Key::ExternalId),
        "id" => Some(Key::Id),
        "employeenumber" => (spelling != EmployeeNumberFilter::Urn).then_some(Key::EmployeeNumber),
        _ => None,
    }
}

fn unsupported(what: &str) -> String {
    format!("unsupported filter expression: {what}")
}

/// The `.search` subset (and, with `single_eq`, the Identity v4 one).
fn to_query(f: &Filter, spelling: EmployeeNumberFilter, single_eq: bool) -> Result<Query, String> {
    match f {
        Filter::Compare(attr, CmpOp::Eq, v) => {
            if !single_eq && attr.eq_ignore_ascii_case("active") {
                return v
                    .as_bool()
                    .map(Query::Active)
                    .ok_or_else(|| unsupported("active needs true or false"));
            }
            let key = key_of(attr, spelling)
                .filter(|k| !single_eq || *k != Key::Id)
                .ok_or_else(|| unsupported(attr))?;
            let value = v.as_str().ok_or_else(|| unsupported("a string value"))?;
            Ok(Query::Eq(key, value.to_string()))
        }
        Filter::Compare(attr, op, v)
            if !single_eq
                && attr.eq_ignore_ascii_case("meta.lastModified")
                && matches!(op, CmpOp::Gt | CmpOp::Ge | CmpOp::Lt | CmpOp::Le) =>
        {
            let t = v
                .as_str()
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .ok_or_else(|| unsupported("meta.lastModified needs an RFC 3339 time"))?;
            Ok(Query::Modified(*op, t.with_timezone(&Utc)))
        }
        Filter::And(a, b) if !single_eq => Ok(Query::And(
            Box::new(to_query(a, spelling, false)?),
            Box::new(to_query(b, spelling, false)?),
        )),
        Filter::Or(a, b) if !single_eq => Ok(Query::Or(
            Box::new(to_query(a, spelling, false)?),
            Box::new(to_query(b, spelling, false)?),
        )),
        Filter::Compare(attr, op, _) => Err(unsupported(&format!("{attr} {op:?}"))),
        other => Err(unsupported(&format!("{other:?}"))),
    }
}

fn holds(u: &UserRef<'_>, q: &Query) -> bool {
    match q {
        Query::Eq(Key::UserName, v) => u.get("LoginId").eq_ignore_ascii_case(v),
        Query::Eq(Key::EmployeeNumber, v) => u.get("EmpId") == v,
        Query::Eq(Key::ExternalId, v) => u.v4.external_id() == v,
        Query::Eq(Key::Id, v) => u.id.eq_ignore_ascii_case(v),
        Query::Active(a) => (u.get("Active") != "N") == *a,
        Query::Modified(op, t) => {
            let m = u.v4.last_modified;
            match op {
                CmpOp::Gt => m > *t,
                CmpOp::Ge => m >= *t,
                CmpOp::Lt => m < *t,
                _ => m <= *t,
            }
        }
        Query::And(a, b) => holds(u, a) && holds(u, b),
        Query::Or(a, b) => holds(u, a) || holds(u, b),
    }
}

/// Positions an index answers the query from, or `None` when it needs a scan.
fn candidates(inner: &Inner, q: &Query) -> Option<Vec<usize>> {
    match q {
        Query::Eq(k, v) => Some(
            match k {
                Key::UserName => inner.user_by_login(v),
                Key::EmployeeNumber => inner.user_by_emp(v),
                Key::ExternalId => inner.user_by_external(v),
                Key::Id => inner.user_by_uuid(v),
            }
            .into_iter()
            .collect(),
        ),
        Query::And(a, b) => candidates(inner, a).or_else(|| candidates(inner, b)),
        Query::Or(a, b) => {
            let mut v = candidates(inner, a)?;
            v.extend(candidates(inner, b)?);
            v.sort_unstable();
            v.dedup();
            Some(v)
        }
        _ => None,
    }
}

/// The users matching `q` as the caller may see them (lagged or current), in creation order,
/// after the one with sequence number `after`.
pub(crate) fn select<'a>(
    inner: &'a Inner,
    q: Option<&Query>,
    now: Option<DateTime<Utc>>,
    after: u64,
) -> Vec<UserRef<'a>> {
    let view = |i: usize| match now {
        Some(t) => inner.users[i].searchable(t),
        None => Some(inner.users[i].current()),
    };
    let positions: Vec<usize> = match q.and_then(|q| candidates(inner, q)) {
        Some(mut v) if now.is_none() => {
            v.sort_unstable();
            v
        }
        _ => {
            let start = inner.users.partition_point(|u| u.seq <= after);
            (start..inner.users.len()).collect()
        }
    };
    positions
        .into_iter()
        .filter_map(view)
        .filter(|u| u.seq > after)
        .filter(|u| q.is_none_or(|q| holds(u, q)))
        .collect()
}

pub(crate) fn parse_filter(
    text: &str,
    spelling: EmployeeNumberFilter,
    single_eq: bool,
) -> Result<Query, Failure> {
    filter::parse(text)
        .and_then(|f| to_query(&f, spelling, single_eq))
        .map_err(|e| {
            Failure::invalid_input("invalidFilter", format!("Invalid filter [{text}]: {e}"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Result<Query, String> {
        to_query(
            &filter::parse(s).unwrap(),
            EmployeeNumberFilter::Both,
            false,
        )
    }

    #[test]
    fn the_search_subset() {
        assert!(q(r#"userName eq "a@b" or externalId eq "x""#).is_ok());
        assert!(
            q(&format!(
                r#"{ENTERPRISE}:employeeNumber eq "E1" and active eq true"#
            ))
            .is_ok()
        );
        assert!(q(r#"meta.lastModified gt "2025-01-01T00:00:00Z""#).is_ok());
        assert!(q("id eq 5e0b3c8a-6f1d-4c2e-9a7b-0c1d2e3f4a5b").is_ok());
        assert!(q(r#"userName co "a""#).is_err());
        assert!(q(r#"name.familyName eq "x""#).is_err());
        assert!(q(r#"not (userName eq "a")"#).is_err());
        assert!(q(r#"emails[type eq "work"]"#).is_err());
        let v4 = |s: &str, sp| to_query(&filter::parse(s).unwrap(), sp, true);
        assert!(v4(r#"employeeNumber eq "E1""#, EmployeeNumberFilter::Both).is_ok());
        assert!(v4(r#"employeeNumber eq "E1""#, EmployeeNumberFilter::Urn).is_err());
        assert!(
            v4(
                &format!(r#"{ENTERPRISE}:employeeNumber eq "E1""#),
                EmployeeNumberFilter::Plain
            )
            .is_err()
        );
        assert!(
            v4(
                r#"userName eq "a" and externalId eq "b""#,
                EmployeeNumberFilter::Both
            )
            .is_err()
        );
        assert!(v4("id eq x", EmployeeNumberFilter::Both).is_err());
    }
}
