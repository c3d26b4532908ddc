//! Applying one operation to the tenant: the identity part (create, replace, patch, delete),
//! then each extension in order, with Concur's failure rules: an identity failure fails the
//! operation and leaves its extensions `not-processed`; a spend User failure keeps the identity
//! and leaves the other spend extensions `not-processed`; any other extension fails alone.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::super::state::{Inner, StoredUser};
use super::errors::Failure;
use super::model::{
    self, CORE, READ_ONLY, SAP, SPEND_APPROVER, SPEND_ROLE, SPEND_USER, ext_view, identity_view,
};
use super::patch::{self, PatchOp};
use super::provisions::{ExtWork, IdentityWork, Operation, Outcome, Work};
use super::store;
use super::validate::{self, Mode};

/// A v4 hard delete, kept so that tests can tell one was sent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeletedUser {
    pub id: String,
    pub employee_number: String,
    pub user_name: String,
    /// Simulated time of the delete (RFC 3339).
    pub at: String,
}

fn parse_ops(raw: &[Value]) -> Result<Vec<PatchOp>, Failure> {
    let body = json!({"schemas": [patch::PATCH_OP], "Operations": raw});
    patch::split(patch::parse_body(&body)?)
}

/// The identity without what a client cannot write.
fn writable(m: &Map<String, Value>) -> Map<String, Value> {
    m.iter()
        .filter(|(k, _)| !READ_ONLY.contains(&k.as_str()) && k.as_str() != SAP)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Creates a user from a validated identity.
pub(crate) fn create(
    inner: &mut Inner,
    identity: Map<String, Value>,
    at: DateTime<Utc>,
) -> Result<usize, Failure> {
    validate::identity(inner, &identity, None, Mode::Create)?;
    let mut u = StoredUser::blank();
    store::write_identity(&mut u, identity);
    Ok(inner.add_user(u, at))
}

/// Replaces (PUT) or patches the identity of `users[i]`; `Ok(false)` when nothing changed.
pub(crate) fn update(
    inner: &mut Inner,
    i: usize,
    work: &IdentityWork,
    at: DateTime<Utc>,
) -> Result<bool, Failure> {
    let before = writable(&identity_view(inner, inner.users[i].current(), ""));
    let after = match work {
        IdentityWork::Create(_) => return Err(Failure::invalid_value("", "not an update")),
        IdentityWork::Replace(m) => {
            validate::identity(inner, m, Some(i), Mode::Replace)?;
            writable(m)
        }
        IdentityWork::Patch(raw) => {
            let mut doc = before.clone();
            for op in parse_ops(raw)? {
                if op.part().is_some() {
                    continue;
                }
                patch::apply(&mut doc, &op, inner.v4.settings.strict_patch_targets)?;
            }
            validate::identity(inner, &doc, Some(i), Mode::Patch(&before))?;
            doc
        }
    };
    if after == before {
        return Ok(false);
    }
    inner.begin_write(i, at);
    store::write_identity(&mut inner.users[i], after);
    inner.index(i);
    Ok(true)
}

/// Normalizes approver references to `{"value": id, "employeeNumber": …}`.
fn resolve_approvers(inner: &Inner, value: &mut Map<String, Value>) {
    for list in value.values_mut() {
        for entry in list.as_array_mut().into_iter().flatten() {
            let Some(who) = entry.get("approver") else {
                continue;
            };
            if let Some(j) = validate::resolve(inner, who) {
                let u = &inner.users[j];
                entry["approver"] = json!({
                    "value": u.id.to_ascii_lowercase(),
                    "employeeNumber": u.get("EmpId"),
                });
            }
        }
    }
}

/// Applies one extension's work to `users[i]`; `Ok(false)` when nothing changed.
pub(crate) fn extension(
    inner: &mut Inner,
    i: usize,
    urn: &str,
    work: ExtWork,
    creating: bool,
    at: DateTime<Utc>,
) -> Result<bool, Failure> {
    let before = ext_view(inner, inner.users[i].current(), urn);
    let mut after = match work {
        ExtWork::Replace(mut m) => {
            if urn == SPEND_USER
                && !creating
                && !m.contains_key("testEmployee")
                && let Some(t) = before.get("testEmployee")
            {
                m.insert("testEmployee".into(), t.clone());
            }
            m
        }
        ExtWork::Patch(raw) => {
            let mut doc = Map::new();
            doc.insert(urn.to_string(), Value::Object(before.clone()));
            for op in parse_ops(&raw)? {
                patch::apply(&mut doc, &op, inner.v4.settings.strict_patch_targets)?;
            }
            match doc.remove(urn) {
                Some(Value::Object(m)) => m,
                None | Some(Value::Null) => Map::new(),
                Some(_) => {
                    return Err(Failure::invalid_value(
                        urn,
                        "an extension must be an object",
                    ));
                }
            }
        }
    };
    validate::extension(inner, urn, &after, &before, i, creating)?;
    if urn == SPEND_APPROVER {
        resolve_approvers(inner, &mut after);
    }
    if after == before {
        return Ok(false);
    }
    inner.begin_write(i, at);
    store::write_ext(&mut inner.users[i], urn, after);
    Ok(true)
}

/// Removes `users[i]` and records the delete.
pub(crate) fn delete(inner: &mut Inner, i: usize, at: DateTime<Utc>) {
    let u = inner.remove_user(i);
    inner.v4.deleted.push(DeletedUser {
        id: u.id.to_ascii_lowercase(),
        employee_number: u.get("EmpId").to_string(),
        user_name: u.get("LoginId").to_string(),
        at: model::timestamp(at),
    });
}

/// Replaces `bulkId:X` references (in the target and in string values) by the id of the user
/// X's operation wrote.
fn resolve_bulk_ids(work: &mut Work, ids: &BTreeMap<String, String>) -> Result<(), Failure> {
    fn walk(v: &mut Value, ids: &BTreeMap<String, String>) -> Result<(), String> {
        match v {
            Value::String(s) => {
                if let Some(b) = s.strip_prefix("bulkId:") {
                    *s = ids.get(b).cloned().ok_or_else(|| s.clone())?;
                }
            }
            Value::Array(a) => a.iter_mut().try_for_each(|x| walk(x, ids))?,
            Value::Object(o) => o.values_mut().try_for_each(|x| walk(x, ids))?,
            _ => {}
        }
        Ok(())
    }
    let unknown = |r: String| Failure::invalid_value("bulkId", format!("Unknown reference '{r}'"));
    if let Some(t) = &mut work.target {
        let mut v = Value::String(t.clone());
        walk(&mut v, ids).map_err(unknown)?;
        *t = v.as_str().unwrap_or_default().to_string();
    }
    let mut values: Vec<&mut Value> = Vec::new();
    match &mut work.identity {
        Some(IdentityWork::Create(m) | IdentityWork::Replace(m)) => values.extend(m.values_mut()),
        Some(IdentityWork::Patch(ops)) => values.extend(ops.iter_mut()),
        None => {}
    }
    for (_, w) in &mut work.extensions {
        match w {
            ExtWork::Replace(m) => values.extend(m.values_mut()),
            ExtWork::Patch(ops) => values.extend(ops.iter_mut()),
        }
    }
    values
        .into_iter()
        .try_for_each(|v| walk(v, ids))
        .map_err(unknown)
}

/// The employee number an operation is about (for stuck and failing employee numbers).
pub(crate) fn employee_of(
    inner: &Inner,
    op: &Operation,
    bulk_ids: &BTreeMap<String, String>,
) -> Option<String> {
    let work = op.work.as_ref()?;
    if let Some(IdentityWork::Create(m)) = &work.identity {
        return m
            .get(model::ENTERPRISE)
            .and_then(|e| e.get("employeeNumber"))
            .and_then(Value::as_str)
            .map(str::to_string);
    }
    let target = work.target.as_deref().or(op.resource.as_deref())?;
    let target = match target.strip_prefix("bulkId:") {
        Some(b) => bulk_ids.get(b)?.as_str(),
        None => target,
    };
    let i = inner.user_by_uuid(target)?;
    Some(inner.users[i].get("EmpId").to_string())
}

fn fail_identity(op: &mut Operation, f: &Failure) {
    let code = f.status.as_u16().to_string();
    op.done = Some((false, code.clone()));
    for e in &mut op.extensions {
        if e.name == CORE {
            e.set(Outcome::Error, &code, f.messages.clone());
        } else if e.result == Outcome::Processing {
            e.set(Outcome::NotProcessed, "424", Vec::new());
        }
    }
}

/// Whether the spend User extension of this operation fails transiently now.
fn transient_failure(inner: &mut Inner, op: &mut Operation, i: usize) -> bool {
    if std::mem::take(&mut op.spend_failure) {
        return true;
    }
    let emp = inner.users[i].get("EmpId").to_string();
    match inner.v4.spend_failures.get_mut(&emp) {
        Some(n) if *n > 0 => {
            *n -= 1;
            true
        }
        _ => false,
    }
}

/// Processes one operation at simulated time `at`.
pub(crate) fn run(
    inner: &mut Inner,
    op: &mut Operation,
    bulk_ids: &mut BTreeMap<String, String>,
    at: DateTime<Utc>,
) {
    let Some(mut work) = op.work.take() else {
        return;
    };
    if inner.v4.settings.bulk_id_references
        && let Err(f) = resolve_bulk_ids(&mut work, bulk_ids)
    {
        return fail_identity(op, &f);
    }
    let found = work.target.as_deref().and_then(|t| inner.user_by_uuid(t));
    let not_found = || Failure::not_found("User not found");
    let mut creating = work.creating;
    let i = match (work.identity.take(), work.delete) {
        (_, true) => {
            match found {
                Some(i) => {
                    delete(inner, i, at);
                    op.done = Some((true, "204".into()));
                    for e in &mut op.extensions {
                        let r = if e.name == CORE {
                            Outcome::Success
                        } else {
                            Outcome::NoOp
                        };
                        e.set(r, "204", Vec::new());
                    }
                }
                None => fail_identity(op, &not_found()),
            }
            return;
        }
        (Some(IdentityWork::Create(m)), _) => match create(inner, m, at) {
            Ok(i) => {
                creating = true;
                set_core(op, Outcome::Success, "201");
                i
            }
            Err(f) => return fail_identity(op, &f),
        },
        (Some(w), _) => {
            let Some(i) = found else {
                return fail_identity(op, &not_found());
            };
            match update(inner, i, &w, at) {
                Ok(changed) => {
                    set_core(
                        op,
                        if changed {
                            Outcome::Success
                        } else {
                            Outcome::NoOp
                        },
                        "200",
                    );
                    i
                }
                Err(f) => return fail_identity(op, &f),
            }
        }
        (None, _) => match found {
            // Nothing (more) for the identity to do: one still processing reports no-op.
            Some(i) => {
                if op
                    .extensions
                    .iter()
                    .any(|e| e.name == CORE && e.result == Outcome::Processing)
                {
                    set_core(op, Outcome::NoOp, "200");
                }
                i
            }
            None => return fail_identity(op, &not_found()),
        },
    };
    let id = inner.users[i].id.to_ascii_lowercase();
    op.resource = Some(id.clone());
    if let Some(b) = &op.bulk_id {
        bulk_ids.insert(b.clone(), id);
    }
    let mut spend_failed = false;
    let mut first_error: Option<String> = None;
    for k in 0..op.extensions.len() {
        let name = op.extensions[k].name.clone();
        if name == CORE || op.extensions[k].result != Outcome::Processing {
            continue;
        }
        let Some(at_work) = work.extensions.iter().position(|(u, _)| *u == name) else {
            op.extensions[k].set(Outcome::NoOp, "200", Vec::new());
            continue;
        };
        let (_, w) = work.extensions.remove(at_work);
        if spend_failed && (name == SPEND_ROLE || name == SPEND_APPROVER) {
            op.extensions[k].set(Outcome::NotProcessed, "424", Vec::new());
            continue;
        }
        let result = if name == SPEND_USER && transient_failure(inner, op, i) {
            Err(Failure::new(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                "SERVICE_UNAVAILABLE",
                "The spend profile service is temporarily unavailable; retry the extension",
                SPEND_USER,
            ))
        } else {
            extension(inner, i, &name, w, creating, at)
        };
        match result {
            Ok(changed) => {
                let r = if changed {
                    Outcome::Success
                } else {
                    Outcome::NoOp
                };
                op.extensions[k].set(r, "200", Vec::new());
            }
            Err(f) => {
                let code = f.status.as_u16().to_string();
                first_error.get_or_insert(code.clone());
                spend_failed |= name == SPEND_USER;
                op.extensions[k].set(Outcome::Error, &code, f.messages);
            }
        }
    }
    let ok_code = if creating { "201" } else { "200" };
    op.done = Some(match first_error {
        None => (true, ok_code.to_string()),
        Some(code) => (false, code),
    });
}

fn set_core(op: &mut Operation, r: Outcome, code: &str) {
    if let Some(e) = op.extensions.iter_mut().find(|e| e.name == CORE) {
        e.set(r, code, Vec::new());
    }
}
