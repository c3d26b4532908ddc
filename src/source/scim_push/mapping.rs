//! The pushed directory as a source: every stored user mapped onto canonical fields by the
//! SCIM source's mapping (`source::scim::Mapping`), the employee id taken from the enterprise
//! `employeeNumber` or, when a user has none, its `externalId` (unless
//! `[source.scim_push.attributes]` maps `employee_id` itself), and the manager reference
//! resolved within the directory.

use std::collections::HashMap;

use serde_json::Value;

use super::filter::get_ci;
use super::store::PushStore;
use crate::config::{AttrPath, ConfigError, ScimPushConfig};
use crate::model::{Field, RawRecord, Rejection, RowIdentity};
use crate::source::scim::Mapping;
use crate::source::{Opened, Records, SourceError, SourceItem, records_digest};

/// The mapping `[source.scim_push]` configures.
pub fn mapping(cfg: &ScimPushConfig) -> Result<Mapping, ConfigError> {
    let mut compiled = cfg.scim_mapping_config().mapping()?;
    for (field, paths, default) in &mut compiled.fields {
        if *field == Field::EMPLOYEE_ID && *default {
            paths.push(
                AttrPath::parse("externalId").map_err(|m| {
                    ConfigError::invalid("source.scim_push.attributes.employee_id", m)
                })?,
            );
        }
    }
    Ok(Mapping::from(compiled))
}

fn fail(message: String) -> SourceError {
    SourceError::ScimPush(message)
}

fn open_store(cfg: &ScimPushConfig) -> Result<PushStore, SourceError> {
    PushStore::open_read_only(&cfg.state_path).map_err(|e| {
        fail(format!(
            "cannot open the state database {}: {e}",
            cfg.state_path.display()
        ))
    })
}

/// `Some(why)` while no identity provider has pushed a user (deleted ones count): there is
/// nothing to read yet.
pub fn nothing_pushed_yet(cfg: &ScimPushConfig) -> Result<Option<String>, SourceError> {
    let pushed = open_store(cfg)?
        .has_users()
        .map_err(|e| fail(format!("cannot read the pushed directory: {e}")))?;
    Ok((!pushed).then(|| {
        format!(
            "no user has been pushed to {}/scim/v2 yet: nothing to do",
            cfg.listen
        )
    }))
}

/// Reads the pushed directory from the state database.
pub fn read(cfg: &ScimPushConfig) -> Result<Opened, SourceError> {
    let mapping = mapping(cfg)?;
    let store = open_store(cfg)?;
    let all = store
        .directory()
        .map_err(|e| fail(format!("cannot read the pushed directory: {e}")))?;
    if all.is_empty() {
        return Err(fail(format!(
            "no user has been pushed to {}/scim/v2 yet; nothing was changed",
            cfg.listen
        )));
    }
    // A deleted user is read as inactive, unless a live user now has its employee id.
    let live: std::collections::HashSet<String> = all
        .iter()
        .filter(|(_, deleted)| !deleted)
        .filter_map(|(u, _)| mapping.employee_id(&u.resource).ok().flatten())
        .map(|e| e.trim().to_owned())
        .collect();
    let mut users = Vec::with_capacity(all.len());
    for (mut u, deleted) in all {
        if deleted {
            let emp = mapping.employee_id(&u.resource).ok().flatten();
            if emp.is_some_and(|e| live.contains(e.trim())) {
                continue;
            }
            if let Some(m) = u.resource.as_object_mut() {
                m.insert("active".into(), Value::Bool(false));
            }
        }
        users.push(u);
    }
    let mut by_id: HashMap<&str, String> = HashMap::new();
    let mut by_employee: HashMap<String, String> = HashMap::new();
    let mut by_name: HashMap<String, String> = HashMap::new();
    for u in &users {
        if let Ok(Some(e)) = mapping.employee_id(&u.resource) {
            let e = e.trim().to_owned();
            by_id.insert(&u.id, e.clone());
            by_employee.insert(e.clone(), e.clone());
            if let Some(name) = get_ci(&u.resource, "userName").and_then(Value::as_str) {
                by_name.insert(name.to_lowercase(), e);
            }
        }
    }
    let mut items = Vec::with_capacity(users.len());
    for (i, u) in users.iter().enumerate() {
        let mut m = match mapping.map(&u.resource, i as u64 + 1) {
            Ok(m) => m,
            Err(rs) => {
                items.extend(rs.into_iter().map(SourceItem::Rejected));
                continue;
            }
        };
        m.origin = m.origin.replacen("scim:", "scim push:", 1);
        if let Some(r) = m.manager_ref.take() {
            // The manager's SCIM id (what Entra ID and Okta send), else its employee id or
            // userName.
            let found = by_id
                .get(r.as_str())
                .or_else(|| by_employee.get(&r))
                .or_else(|| by_name.get(&r.to_lowercase()));
            match found {
                Some(e) => m.values.push((Field::MANAGER_EMPLOYEE_ID, e.clone())),
                None => {
                    let employee_id = m
                        .values
                        .iter()
                        .find(|(f, _)| *f == Field::EMPLOYEE_ID)
                        .map(|(_, v)| v.trim().to_owned());
                    items.push(SourceItem::Rejected(Rejection {
                        source: m.origin,
                        employee_id,
                        identity: RowIdentity::from_values(
                            m.values.iter().map(|(f, v)| (*f, v.as_str())),
                        ),
                        field: Field::MANAGER_EMPLOYEE_ID.name().into(),
                        message: format!("manager {r:?} is not a user of the pushed directory"),
                    }));
                    continue;
                }
            }
        }
        items.push(SourceItem::Record(RawRecord {
            origin: m.origin,
            values: m.values,
            password: None,
            previous_employee_id: None,
        }));
    }
    items.sort_by(|a, b| origin(a).cmp(origin(b)));
    Ok(Opened {
        digest: records_digest(&items),
        records: Records::Items(items),
        complete: true,
        label: history_label(cfg),
        watermark: None,
    })
}

/// What a cycle over the pushed directory reads, for the cycle history.
pub fn history_label(cfg: &ScimPushConfig) -> String {
    format!("SCIM push {}/scim/v2", cfg.listen)
}

fn origin(item: &SourceItem) -> &str {
    match item {
        SourceItem::Record(r) => &r.origin,
        SourceItem::Rejected(r) => &r.source,
    }
}
