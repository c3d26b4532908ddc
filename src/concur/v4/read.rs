//! Reading users back under v4, over the network: every user through Identity v4.1 (`GET
//! /profile/identity/v4.1/Users?count=1000&cursor=…`) joined by UUID with the Spend User v4.1
//! list (`GET /profile/spend/v4.1/Users?startIndex=…&count=100`), as canonical users with
//! their UUID and the fields that were not readable; and the discovery reads `check` makes.
//!
//! A token without `spend.user.general.read` gets 403 on the spend list: the identities are
//! still read, and every spend field counts as unreadable (drift is never judged on it). Any
//! other failure fails the whole read: a partial list must never read as "Concur has fewer
//! users".

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::list::{READ_ATTRIBUTES, UserPage, decode_user_list, identity_page_path};
use super::mapping::{ReadUser, read_user};
use super::schema::{ENTERPRISE, IDENTITY_V41_USERS_PATH, SPEND_V41_USERS_PATH};
use crate::concur::client::ConcurClient;
use crate::concur::error::ConcurError;

/// Users per Identity v4.1 page (its maximum).
pub const IDENTITY_PAGE: u32 = 1_000;
/// Users per Spend User v4.1 page (its maximum).
pub const SPEND_PAGE: u32 = 100;
/// UPS discovery: what the service supports.
pub const SERVICE_PROVIDER_CONFIG_PATH: &str = "/profile/v4/ServiceProviderConfig";
/// UPS discovery: the schemas of a user and its extensions.
pub const SCHEMAS_PATH: &str = "/profile/v4/Schemas";

/// What reading every user found.
#[derive(Debug, Default)]
pub struct Directory {
    /// Every user, sorted by employee number (users without one last, by UUID).
    pub users: Vec<ReadUser>,
    /// Whether the Spend User v4.1 list was read (false: the token lacks its scope).
    pub spend_read: bool,
}

/// Every user of the company: Identity v4.1 by cursor, then Spend User v4.1, joined by UUID.
pub async fn all_users(client: &ConcurClient) -> Result<Directory, ConcurError> {
    let identities = identity_users(client).await?;
    // Spend users are joined to identities: with no identity listed (an empty company, e.g.
    // before a first load) there is nothing to join, and the read would be a request spent
    // for nothing.
    let spend = if identities.is_empty() {
        Some(HashMap::new())
    } else {
        read_spend(client).await?
    };
    let employee_numbers: HashMap<String, String> = identities
        .iter()
        .filter_map(|v| {
            let id = v.get("id")?.as_str()?;
            let number = v.get(ENTERPRISE)?.get("employeeNumber")?.as_str()?;
            Some((id.to_ascii_lowercase(), number.to_owned()))
        })
        .collect();
    let employee_of = |uuid: &str| employee_numbers.get(&uuid.to_ascii_lowercase()).cloned();
    let mut users = Vec::with_capacity(identities.len());
    for identity in &identities {
        let uuid = identity.get("id").and_then(Value::as_str).unwrap_or("");
        let spend_of = spend
            .as_ref()
            .and_then(|s| s.get(&uuid.to_ascii_lowercase()));
        users.push(read_user(identity, spend_of, &employee_of)?);
    }
    users.sort_by(|a, b| {
        let key = |u: &ReadUser| {
            (
                u.user.employee_id().is_empty(),
                u.user.employee_id().to_owned(),
            )
        };
        key(a).cmp(&key(b)).then_with(|| a.uuid.cmp(&b.uuid))
    });
    Ok(Directory {
        users,
        spend_read: spend.is_some(),
    })
}

/// Every Spend User v4.1 resource by lowercase UUID; `None` when the token may not read them
/// (spend fields are then never compared).
async fn read_spend(client: &ConcurClient) -> Result<Option<HashMap<String, Value>>, ConcurError> {
    match spend_users(client).await {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.status() == Some(403) => {
            tracing::warn!(error = %e, "cannot read Spend User v4.1 (the token lacks spend.user.general.read); spend fields are not compared");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Every Identity v4.1 user, following `nextCursor`; a user listed twice is kept once.
async fn identity_users(client: &ConcurClient) -> Result<Vec<Value>, ConcurError> {
    let mut out = Vec::new();
    let mut seen_ids = HashSet::new();
    let mut seen_cursors = HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = identity_page_path(IDENTITY_PAGE, cursor.as_deref(), &READ_ATTRIBUTES);
        let page = decode_user_list(&client.get(&path).await?)?;
        let n = page.resources.len();
        for r in page.resources {
            let id = r.get("id").and_then(Value::as_str).unwrap_or("");
            if seen_ids.insert(id.to_ascii_lowercase()) {
                out.push(r);
            }
        }
        tracing::debug!(
            users = out.len(),
            page = n,
            "read a page of Identity v4.1 users"
        );
        match page.next_cursor {
            Some(next) if n > 0 => {
                if !seen_cursors.insert(next.clone()) {
                    return Err(ConcurError::Decode(format!(
                        "{IDENTITY_V41_USERS_PATH}: the cursor {next:?} came back twice; the list does not end"
                    )));
                }
                cursor = Some(next);
            }
            _ => break,
        }
    }
    Ok(out)
}

/// Every Spend User v4.1 resource by lowercase UUID, paging by `startIndex`.
async fn spend_users(client: &ConcurClient) -> Result<HashMap<String, Value>, ConcurError> {
    let mut out = HashMap::new();
    let mut start = 1u64;
    loop {
        let path = format!("{SPEND_V41_USERS_PATH}?startIndex={start}&count={SPEND_PAGE}");
        let page: UserPage = decode_user_list(&client.get(&path).await?)?;
        let n = page.resources.len();
        let next = page.next_start_index();
        for r in page.resources {
            if let Some(id) = r.get("id").and_then(Value::as_str) {
                out.insert(id.to_ascii_lowercase(), r);
            }
        }
        tracing::debug!(
            users = out.len(),
            page = n,
            "read a page of Spend User v4.1 users"
        );
        match next {
            Some(next) if next > start => start = next,
            _ => break,
        }
    }
    Ok(out)
}

/// A discovery read (`ServiceProviderConfig`, `Schemas`, …) as JSON.
pub async fn discover(client: &ConcurClient, path: &str) -> Result<Value, ConcurError> {
    let body = client.get(path).await?;
    serde_json::from_str(body.trim_start_matches('\u{feff}'))
        .map_err(|e| ConcurError::Decode(format!("{path}: not the expected JSON: {e}")))
}

/// The first Identity v4.1 user, as returned (`None`: the company has no user yet).
pub async fn first_identity(client: &ConcurClient) -> Result<Option<Value>, ConcurError> {
    let path = identity_page_path(1, None, &[]);
    let page = decode_user_list(&client.get(&path).await?)?;
    Ok(page.resources.into_iter().next())
}

/// The first Spend User v4.1 resource (`None`: nobody has a spend profile).
pub async fn first_spend(client: &ConcurClient) -> Result<Option<Value>, ConcurError> {
    let path = format!("{SPEND_V41_USERS_PATH}?startIndex=1&count=1");
    let page = decode_user_list(&client.get(&path).await?)?;
    Ok(page.resources.into_iter().next())
}

/// The enterprise `companyId` of a user resource, if it was returned.
pub fn company_id(user: &Value) -> Option<&str> {
    user.get(ENTERPRISE)?
        .get("companyId")?
        .as_str()
        .filter(|s| !s.is_empty())
}

/// A UUID no user has (version 4 form, all zero): the target of the write-scope probe.
pub const PROBE_UUID: &str = "00000000-0000-4000-8000-000000000000";

/// The write-scope probe: `PATCH /profile/v4/Users/{PROBE_UUID}` with no operations. It needs
/// `user.provision.write` and cannot change anything; sent once. Answers the status and
/// Concur's message.
pub async fn write_probe(client: &ConcurClient) -> Result<(u16, String), ConcurError> {
    let path = format!("{}/{PROBE_UUID}", super::schema::UPS_USERS_PATH);
    let body = serde_json::json!({"schemas": [super::schema::PATCH_OP], "Operations": []});
    let reply = client
        .send_authed(
            reqwest::Method::PATCH,
            &path,
            Some(&body),
            crate::concur::client::Repeat::Once,
        )
        .await?;
    let message = super::error::error_text(&reply.body);
    Ok((reply.status, message))
}
