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
