//! Reading users: the list answers of Identity v4 (`startIndex`/`count` paging, at most 100)
//! and v4.1 (`nextCursor`, absent on the last page; at most 1,000), the look-up filters, and
//! the v4.1 `.search` request.
//!
//! Filters compare a JSON string (RFC 7644 §3.4.2.2), so a value's `"` and `\` are escaped;
//! query strings are percent-encoded. §1.14 leaves open whether the Identity v4 `filter`
//! wants `employeeNumber` with its URN prefix: the GET uses the bare name, as Concur's own
//! example does, and `.search` the URN-prefixed one, as Concur's Postman collection does.

use serde_json::{Value, json};

use super::bulk::percent_encode;
use super::json::{Obj, parse};
use super::schema::{
    ENTERPRISE, IDENTITY_V4_USERS_PATH, IDENTITY_V41_USERS_PATH, MAX_V4_COUNT, MAX_V41_COUNT,
    SEARCH_REQUEST, SPEND_V41_USERS_PATH, filter_literal,
};
use crate::concur::error::ConcurError;

/// The identity attributes adoption and drift need, for `attributes=`.
pub const READ_ATTRIBUTES: [&str; 7] = [
    "id",
    "userName",
    "active",
    "name",
    "emails",
    "entitlements",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
];

/// One page of users.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UserPage {
    /// The user resources, as sent (read them with `mapping::read_user`).
    pub resources: Vec<Value>,
    pub total_results: Option<u64>,
    pub items_per_page: Option<u64>,
    pub start_index: Option<u64>,
    /// v4.1: the cursor of the next page; `None` on the last one.
    pub next_cursor: Option<String>,
}

impl UserPage {
    /// Identity v4: the `startIndex` of the next page, if more users follow. An empty page
    /// ends the list whatever `totalResults` says.
    pub fn next_start_index(&self) -> Option<u64> {
        let total = self.total_results?;
        let next = self.start_index.unwrap_or(1) + self.resources.len() as u64;
        (!self.resources.is_empty() && next <= total).then_some(next)
    }
}

/// Decodes a ListResponse of Identity v4, v4.1 or Spend v4.1.
pub fn decode_user_list(body: &str) -> Result<UserPage, ConcurError> {
    let value = parse(body, "the user list")?;
    let root = Obj::root(&value);
    let resources = root
        .objects("Resources")?
        .into_iter()
        .map(|r| r.value.clone())
        .collect();
    Ok(UserPage {
        resources,
        total_results: root.count("totalResults")?,
        items_per_page: root.count("itemsPerPage")?,
        start_index: root.count("startIndex")?,
        next_cursor: root
            .strict_string("nextCursor")?
            .filter(|c| !c.is_empty())
            .map(str::to_owned),
    })
}

/// `employeeNumber eq "…"`, as the Identity v4 GET filters.
pub fn employee_number_filter(employee_id: &str) -> String {
    format!("employeeNumber eq {}", filter_literal(employee_id))
}

/// `userName eq "…"` (Concur compares user names ignoring case).
pub fn user_name_filter(login: &str) -> String {
    format!("userName eq {}", filter_literal(login))
}

/// The Identity v4 look-up: `/profile/identity/v4/Users?filter=…&count=…`, percent-encoded.
pub fn identity_lookup_path(filter: &str, count: u32) -> String {
    format!(
        "{IDENTITY_V4_USERS_PATH}?filter={}&count={}",
        percent_encode(filter),
        count.clamp(1, MAX_V4_COUNT)
    )
}

/// An Identity v4.1 page: `/profile/identity/v4.1/Users?count=…[&cursor=…][&attributes=…]`.
pub fn identity_page_path(count: u32, cursor: Option<&str>, attributes: &[&str]) -> String {
    let mut path = format!(
        "{IDENTITY_V41_USERS_PATH}?count={}",
        count.clamp(1, MAX_V41_COUNT)
    );
    if let Some(c) = cursor.filter(|c| !c.is_empty()) {
        path.push_str("&cursor=");
        path.push_str(&percent_encode(c));
    }
    if !attributes.is_empty() {
        path.push_str("&attributes=");
        path.push_str(&percent_encode(&attributes.join(",")));
    }
    path
}

/// One user's Spend v4.1 resource: `/profile/spend/v4.1/Users/{uuid}`.
pub fn spend_user_path(uuid: &str) -> String {
    format!("{SPEND_V41_USERS_PATH}/{}", percent_encode(uuid))
}

/// A v4.1 `POST /Users/.search` request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SearchRequest {
    pub filter: Option<String>,
    /// At most 1,000.
    pub count: u32,
    pub attributes: Vec<String>,
    pub cursor: Option<String>,
}

impl SearchRequest {
    /// The users whose enterprise `employeeNumber` is any of `employee_ids`.
    pub fn by_employee_numbers(employee_ids: &[&str], attributes: &[&str]) -> SearchRequest {
        let filter = employee_ids
            .iter()
            .map(|id| format!("{ENTERPRISE}:employeeNumber eq {}", filter_literal(id)))
            .collect::<Vec<_>>()
            .join(" or ");
        SearchRequest {
            filter: (!filter.is_empty()).then_some(filter),
            count: u32::try_from(employee_ids.len().max(1)).unwrap_or(MAX_V41_COUNT),
            attributes: attributes.iter().map(|a| (*a).to_owned()).collect(),
            cursor: None,
        }
    }

    /// The same search from the next page's cursor.
    pub fn with_cursor(mut self, cursor: &str) -> SearchRequest {
        self.cursor = Some(cursor.to_owned());
        self
    }

    pub fn to_value(&self) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("schemas".into(), json!([SEARCH_REQUEST]));
        if let Some(f) = &self.filter {
            m.insert("filter".into(), json!(f));
        }
        m.insert("count".into(), json!(self.count.clamp(1, MAX_V41_COUNT)));
        if !self.attributes.is_empty() {
            m.insert("attributes".into(), json!(self.attributes));
        }
        if let Some(c) = self.cursor.as_deref().filter(|c| !c.is_empty()) {
            m.insert("cursor".into(), json!(c));
        }
        Value::Object(m)
    }

    /// The request body.
    pub fn body(&self) -> String {
        self.to_value().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(body: &str) -> UserPage {
        decode_user_list(body).expect("decodes")
    }

    #[test]
    fn identity_v4_pages_by_start_index() {
        let users: Vec<String> = (0..100).map(|i| format!(r#"{{"id":"u-{i}"}}"#)).collect();
        let first = page(&format!(
            r#"{{"schemas":["urn:ietf:params:scim:api:messages:2.0:ListResponse"],"totalResults":250,"itemsPerPage":100,"startIndex":1,"Resources":[{}]}}"#,
            users.join(",")
        ));
        assert_eq!(first.resources.len(), 100);
        assert_eq!(first.next_start_index(), Some(101));
        let short = page(
            r#"{"totalResults":250,"itemsPerPage":1,"startIndex":201,"resources":[{"id":"a"}]}"#,
        );
        assert_eq!(
            short.next_start_index(),
            Some(202),
            "a short page is not the last"
        );
        let mut last = short.clone();
        last.resources = vec![json!({}); 50];
        assert_eq!(last.next_start_index(), None);
        let empty = page(r#"{"totalResults":250,"startIndex":101,"Resources":[]}"#);
        assert_eq!(
            empty.next_start_index(),
            None,
            "an empty page ends the list"
        );
        assert_eq!(page(r#"{"totalResults":0}"#).resources.len(), 0);
    }

    #[test]
    fn identity_v41_pages_by_cursor() {
        let more = page(
            r#"{"totalResults":1500,"itemsPerPage":1000,"Resources":[{"id":"a"}],"nextCursor":"c2=="}"#,
        );
        assert_eq!(more.next_cursor.as_deref(), Some("c2=="));
        let last = page(r#"{"totalResults":500,"itemsPerPage":500,"Resources":[{"id":"a"}]}"#);
        assert_eq!(last.next_cursor, None);
        assert_eq!(page(r#"{"nextCursor":""}"#).next_cursor, None);
        assert_eq!(
            identity_page_path(5000, Some("c2=="), &["id", "userName"]),
            "/profile/identity/v4.1/Users?count=1000&cursor=c2%3D%3D&attributes=id%2CuserName"
        );
        assert_eq!(
            identity_page_path(0, None, &[]),
            "/profile/identity/v4.1/Users?count=1"
        );
    }

    #[test]
    fn lists_name_wrong_types() {
        for (body, expected) in [
            (
                r#"{"Resources":[{"id":"a"},"b"]}"#,
                "Resources[1]: expected an object",
            ),
            (r#"{"Resources":{}}"#, "Resources: expected an array"),
            (
                r#"{"totalResults":"many"}"#,
                "totalResults: expected a count",
            ),
            (r#"{"nextCursor":7}"#, "nextCursor: expected a string"),
        ] {
            let e = decode_user_list(body).unwrap_err().to_string();
            assert!(e.contains(expected), "{e} / {expected}");
        }
    }

    #[test]
    fn filters_escape_their_values() {
        assert_eq!(employee_number_filter("E1"), r#"employeeNumber eq "E1""#);
        assert_eq!(
            employee_number_filter(r#"E"1\2"#),
            r#"employeeNumber eq "E\"1\\2""#
        );
        assert_eq!(user_name_filter("a@b.com"), r#"userName eq "a@b.com""#);
        assert_eq!(
            identity_lookup_path(&employee_number_filter("E 1&x=y"), 1),
            "/profile/identity/v4/Users?filter=employeeNumber%20eq%20%22E%201%26x%3Dy%22&count=1"
        );
        assert_eq!(spend_user_path("u-1"), "/profile/spend/v4.1/Users/u-1");
    }

    #[test]
    fn search_requests() {
        let one = SearchRequest::by_employee_numbers(&["E\"1"], &["id", "userName"]);
        assert_eq!(
            one.body(),
            r#"{"attributes":["id","userName"],"count":1,"filter":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq \"E\\\"1\"","schemas":["urn:ietf:params:scim:api:messages:concur:2.0:SearchRequest"]}"#
        );
        let two = SearchRequest::by_employee_numbers(&["E1", "E2"], &[]).with_cursor("c1");
        let v = two.to_value();
        assert_eq!(
            v["filter"],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq \"E1\" or \
             urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq \"E2\""
        );
        assert_eq!(
            (v["count"].clone(), v["cursor"].clone()),
            (json!(2), json!("c1"))
        );
        assert!(v.get("attributes").is_none());
        let all = SearchRequest {
            count: 5000,
            ..SearchRequest::default()
        };
        assert_eq!(
            all.body(),
            r#"{"count":1000,"schemas":["urn:ietf:params:scim:api:messages:concur:2.0:SearchRequest"]}"#
        );
    }
}
