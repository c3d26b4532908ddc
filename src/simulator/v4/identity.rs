//! Identity v4 and v4.1 reads.
//!
//! - v4 `GET /Users?filter&startIndex&count` (count default 10, max 100): `filter` is one
//!   `eq` on `userName`, `employeeNumber` or `externalId`;
//! - v4.1 `GET /Users?count&cursor&attributes` (count default 100, max 1,000, opaque cursor,
//!   no `nextCursor` on the last page) and `POST /Users/.search` (a SearchRequest: `eq` on
//!   `userName`, `externalId`, `id`, `employeeNumber`, `active`; `meta.lastModified`
//!   `gt|ge|lt|le`; `and`, `or`, parentheses; anything else is 400 `INVALID_INPUT`);
//! - `GET /Users/{id}` on both.
//!
//! Look-ups by key use the state's indexes. The v4.1 list and `.search` see each user as of
//! the search lag (a write younger than it is not there yet); GET by id sees every write.
//! Without `identity.user.coresensitive.read` e-mails, addresses, phone numbers and birth
//! dates are left out, without `identity.user.ids.read` the `externalId`, without
//! `identity.user.enterprise.read` the enterprise extension.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::super::http_util::query_ci;
use super::super::state::{Inner, Shared};
use super::errors::Failure;
use super::filter::{self, CmpOp, Filter};
use super::model::{CORE, ENTERPRISE, UserRef, identity_view, known_urn};
use super::{EmployeeNumberFilter, Scope, authorize, json_body, respond};

pub(crate) const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const SEARCH_REQUESTS: [&str; 2] = [
    "urn:ietf:params:scim:api:messages:concur:2.0:SearchRequest",
    "urn:ietf:params:scim:api:messages:2.0:SearchRequest",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    UserName,
    ExternalId,
    Id,
    EmployeeNumber,
}

/// A filter the simulator can answer.
#[derive(Debug, Clone, PartialEq)]
enum Query {
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
fn select<'a>(
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

/// Attribute selection (`attributes`, `excludedAttributes`) and scope-based omission.
struct Shape {
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
    fn from_lists(only: &str, without: &str) -> Self {
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

    fn apply(&self, inner: &Inner, mut m: Map<String, Value>) -> Map<String, Value> {
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

fn number(
    q: &std::collections::HashMap<String, String>,
    k: &str,
    default: usize,
    max: usize,
) -> Result<usize, Failure> {
    match q.get(k).map(String::as_str) {
        None | Some("") => Ok(default),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n <= max => Ok(n),
            Ok(n) => Err(Failure::invalid_input(
                "tooMany",
                format!("{k} {n} is over the maximum of {max}"),
            )),
            Err(_) => Err(Failure::invalid_input(
                "invalidValue",
                format!("Invalid value for {k}: {v}"),
            )),
        },
    }
}

fn parse_filter(
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

fn encode_cursor(seq: u64) -> String {
    hex::encode(format!("c:{seq}"))
}

fn decode_cursor(c: &str) -> Result<u64, Failure> {
    hex::decode(c)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix("c:").and_then(|n| n.parse().ok()))
        .ok_or_else(|| Failure::invalid_input("invalidValue", format!("Invalid cursor '{c}'")))
}

/// A v4.1 page: `count` users after `after`, with `nextCursor` when more follow.
fn cursor_page(
    shared: &Shared,
    q: Option<&Query>,
    count: usize,
    after: u64,
    shape: &Shape,
) -> Response {
    let now = shared.now();
    let inner = shared.lock();
    let lagged = (!inner.v4.settings.search_lag.is_zero()).then_some(now);
    let all = select(&inner, q, lagged, 0);
    let rest: Vec<&UserRef<'_>> = all.iter().filter(|u| u.seq > after).collect();
    let page: Vec<Value> = rest
        .iter()
        .take(count)
        .map(|u| Value::Object(shape.apply(&inner, identity_view(&inner, **u, &shared.base_url))))
        .collect();
    let mut body = json!({
        "schemas": [LIST_RESPONSE],
        "totalResults": all.len(),
        "itemsPerPage": page.len(),
        "Resources": page,
    });
    if rest.len() > count
        && let Some(last) = rest.get(count.saturating_sub(1))
        && count > 0
    {
        body["nextCursor"] = json!(encode_cursor(last.seq));
    }
    respond(StatusCode::OK, body)
}

/// `GET /profile/identity/v4/Users?filter&startIndex&count`.
pub(crate) async fn list_v4(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if let Err(resp) = authorize(&shared, &headers, Scope::IdentityRead) {
        return resp;
    }
    let q = query_ci(query.as_deref());
    let (start, count) = match (
        number(&q, "startindex", 1, usize::MAX),
        number(&q, "count", 10, 100),
    ) {
        (Ok(s), Ok(c)) => (s.max(1), c),
        (Err(f), _) | (_, Err(f)) => return f.into_response(),
    };
    let settings = shared.lock().v4.settings.clone();
    let query = match q.get("filter").filter(|f| !f.trim().is_empty()) {
        Some(f) => match parse_filter(f, settings.employee_number_filter, true) {
            Ok(query) => Some(query),
            Err(f) => return f.into_response(),
        },
        None => None,
    };
    let company = shared.lock().v4.company_uuid.clone();
    if let Some(c) = q.get("companyid")
        && !c.is_empty()
        && !c.eq_ignore_ascii_case(&company)
    {
        return Failure::invalid_value(
            "companyId",
            format!("companyId '{c}' is not the company of the access token"),
        )
        .into_response();
    }
    let shape = Shape::from_lists(
        q.get("attributes").map_or("", String::as_str),
        q.get("excludedattributes").map_or("", String::as_str),
    );
    let now = shared.now();
    let inner = shared.lock();
    let lagged =
        (settings.lag_applies_to_v4_filter && !settings.search_lag.is_zero()).then_some(now);
    let all = select(&inner, query.as_ref(), lagged, 0);
    let page: Vec<Value> = all
        .iter()
        .skip(start - 1)
        .take(count)
        .map(|u| Value::Object(shape.apply(&inner, identity_view(&inner, *u, &shared.base_url))))
        .collect();
    respond(
        StatusCode::OK,
        json!({
            "schemas": [LIST_RESPONSE],
            "totalResults": all.len(),
            "itemsPerPage": page.len(),
            "startIndex": start,
            "Resources": page,
        }),
    )
}

/// `GET /profile/identity/v4.1/Users?count&cursor&attributes&excludedAttributes`.
pub(crate) async fn list_v41(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if let Err(resp) = authorize(&shared, &headers, Scope::IdentityRead) {
        return resp;
    }
    let q = query_ci(query.as_deref());
    if q.contains_key("startindex") || q.contains_key("filter") {
        return Failure::invalid_input(
            "invalidValue",
            "startIndex and filter are not supported; use cursor, or POST /Users/.search",
        )
        .into_response();
    }
    let count = match number(&q, "count", 100, 1000) {
        Ok(c) => c,
        Err(f) => return f.into_response(),
    };
    let after = match q.get("cursor").filter(|c| !c.is_empty()) {
        Some(c) => match decode_cursor(c) {
            Ok(s) => s,
            Err(f) => return f.into_response(),
        },
        None => 0,
    };
    let shape = Shape::from_lists(
        q.get("attributes").map_or("", String::as_str),
        q.get("excludedattributes").map_or("", String::as_str),
    );
    cursor_page(&shared, None, count, after, &shape)
}

fn string_list(v: Option<&Value>) -> Result<String, Failure> {
    match v {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(a)) => Ok(a
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(",")),
        Some(_) => Err(Failure::invalid_input(
            "invalidValue",
            "attributes must be a list of names",
        )),
    }
}

/// `POST /profile/identity/v4.1/Users/.search`.
pub(crate) async fn search(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(resp) = authorize(&shared, &headers, Scope::IdentityRead) {
        return resp;
    }
    let req = match json_body(&body) {
        Ok(v) => v,
        Err(f) => return f.into_response(),
    };
    let schemas = req
        .get("schemas")
        .and_then(Value::as_array)
        .filter(|s| !s.is_empty());
    let Some(schemas) = schemas else {
        return Failure::invalid_input("invalidValue", "schemas is required and must not be empty")
            .into_response();
    };
    if !schemas.iter().any(|s| {
        s.as_str()
            .is_some_and(|s| SEARCH_REQUESTS.iter().any(|r| r.eq_ignore_ascii_case(s)))
    }) {
        return Failure::invalid_input(
            "invalidValue",
            format!("schemas must contain '{}'", SEARCH_REQUESTS[0]),
        )
        .into_response();
    }
    if req.get("startIndex").is_some() {
        return Failure::invalid_input("invalidValue", "startIndex is not supported; use cursor")
            .into_response();
    }
    let count = match req.get("count") {
        None | Some(Value::Null) => 100,
        Some(v) => match v.as_u64() {
            Some(n) if n <= 1000 => usize::try_from(n).unwrap_or(1000),
            _ => {
                return Failure::invalid_input("tooMany", "count must be a number up to 1000")
                    .into_response();
            }
        },
    };
    let after = match req
        .get("cursor")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
    {
        Some(c) => match decode_cursor(c) {
            Ok(s) => s,
            Err(f) => return f.into_response(),
        },
        None => 0,
    };
    let spelling = shared.lock().v4.settings.employee_number_filter;
    let query = match req.get("filter") {
        None | Some(Value::Null) => None,
        Some(Value::String(f)) if f.trim().is_empty() => None,
        Some(Value::String(f)) => match parse_filter(f, spelling, false) {
            Ok(q) => Some(q),
            Err(f) => return f.into_response(),
        },
        Some(_) => {
            return Failure::invalid_input("invalidFilter", "filter must be a string")
                .into_response();
        }
    };
    let shape = match (
        string_list(req.get("attributes")),
        string_list(req.get("excludedAttributes")),
    ) {
        (Ok(a), Ok(e)) => Shape::from_lists(&a, &e),
        (Err(f), _) | (_, Err(f)) => return f.into_response(),
    };
    cursor_page(&shared, query.as_ref(), count, after, &shape)
}

/// `GET /profile/identity/v4[.1]/Users/{id}`: the current identity, whatever the search lag.
pub(crate) async fn get_one(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    if let Err(resp) = authorize(&shared, &headers, Scope::IdentityRead) {
        return resp;
    }
    let q = query_ci(query.as_deref());
    let shape = Shape::from_lists(
        q.get("attributes").map_or("", String::as_str),
        q.get("excludedattributes").map_or("", String::as_str),
    );
    let inner = shared.lock();
    match inner.user_by_uuid(&id) {
        Some(i) => {
            let view = identity_view(&inner, inner.users[i].current(), &shared.base_url);
            respond(StatusCode::OK, Value::Object(shape.apply(&inner, view)))
        }
        None => Failure::not_found("User not found").into_response(),
    }
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

    #[test]
    fn cursors_are_opaque_and_checked() {
        assert_eq!(decode_cursor(&encode_cursor(42)).unwrap(), 42);
        assert!(decode_cursor("zz").is_err());
        assert!(decode_cursor(&hex::encode("42")).is_err());
    }
}
