//! A draft completed into operations: old → new field changes, renames and deactivation
//! payloads from the last acknowledged records.

use std::collections::HashMap;

use super::Draft;
use crate::identity::lookalike_key;
use crate::model::{Field, Op, OpKind, Origin, Rejection, User};

impl Draft {
    /// Employee ids whose last acknowledged record [`complete`] needs.
    pub fn ids_needing_old(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .candidates
            .iter()
            .filter(|c| c.kind != OpKind::Create)
            .map(|c| {
                c.old_employee_id
                    .as_deref()
                    .unwrap_or(c.record.user.employee_id())
            })
            .chain(self.vanished.iter().map(String::as_str))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// Turns a draft into operations: field changes old → new, renames, and deactivation payloads
/// (the last acknowledged record with `Active=N`). `old` holds the records of
/// [`Draft::ids_needing_old`]; a vanished user missing from it is skipped.
pub fn complete(draft: Draft, old: &HashMap<String, User>) -> (Vec<Op>, Vec<Rejection>, u64) {
    let mut ops = Vec::with_capacity(draft.candidates.len() + draft.vanished.len());
    for c in draft.candidates {
        let id = c.record.user.employee_id().to_owned();
        let old_id = c.old_employee_id.clone();
        let prev = old.get(old_id.as_deref().unwrap_or(&id));
        // A create keeps no changes: every field of its record is new (`Op::field_changes`).
        let changes = match (c.kind, prev) {
            (OpKind::Password | OpKind::Create, _) => Vec::new(),
            (_, Some(p)) => c.record.user.changes_from(p),
            (_, None) => c.record.user.changes_from(&User::new()),
        };
        let old_login_id = prev
            .map(User::login_id)
            .filter(|l| *l != c.record.user.login_id())
            .map(str::to_owned);
        ops.push(Op {
            kind: c.kind,
            employee_id: id,
            user: c.record.user,
            old_login_id,
            old_employee_id: old_id,
            changes,
            password: c.record.password,
            origin: c.record.origin,
        });
    }
    let protect = &draft.protect;
    let protected = |u: &User| {
        !protect.is_empty()
            && [
                u.employee_id(),
                u.login_id(),
                u.get(Field::EMAIL).unwrap_or(""),
            ]
            .iter()
            .filter(|v| !v.is_empty())
            .any(|v| protect.contains_key(&lookalike_key(v)))
    };
    for id in draft.vanished {
        let Some(prev) = old.get(&id) else { continue };
        if protected(prev) {
            continue;
        }
        let mut user = prev.clone();
        user.set(Field::ACTIVE, "N");
        let changes = user.changes_from(prev);
        ops.push(Op {
            kind: OpKind::Deactivate,
            employee_id: id,
            user,
            old_login_id: None,
            old_employee_id: None,
            changes,
            password: None,
            origin: Origin::new(),
        });
    }
    (ops, draft.rejections, draft.unchanged)
}
