//! The safety guards, evaluated on the whole plan before anything is written: a read that looks
//! cut short deactivates nobody (`degraded`); too many deactivations, or too many changes of who
//! a user is (login, e-mail, name, employee id), are held for an operator's approval. Pure: the
//! plan, the `[sync]` limits and the number of managed active users are arguments.

use crate::config::SyncConfig;
use crate::model::{Field, Op, OpKind};

use super::read::PlannedCycle;

/// What the safety guards say about a whole plan, before any write. The default proceeds.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Verdict {
    /// The read looks incomplete: apply everything but deactivations.
    pub degraded: Option<String>,
    /// Too many deactivations: hold them all for an operator.
    pub hold_deactivations: Option<String>,
    /// Too many login, e-mail, name or employee id changes: hold them all for an operator.
    pub hold_identity_changes: Option<String>,
}

impl Verdict {
    /// Why part of the plan is held, if it is.
    pub fn hold_reason(&self) -> Option<String> {
        let reasons: Vec<&str> = [&self.hold_deactivations, &self.hold_identity_changes]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }

    /// Whether `op` waits for an operator's approval.
    pub fn holds(&self, op: &Op) -> bool {
        (self.hold_deactivations.is_some() && op.kind == OpKind::Deactivate)
            || (self.hold_identity_changes.is_some() && changes_identity(op))
    }
}

/// Whether an operation changes who a user is: a rename of the employee id, or a new login,
/// e-mail, first or last name of an existing user.
pub fn changes_identity(op: &Op) -> bool {
    matches!(op.kind, OpKind::Update | OpKind::Reactivate)
        && (op.old_employee_id.is_some()
            || op.changes.iter().any(|c| {
                matches!(
                    c.field,
                    Field::LOGIN_ID | Field::EMAIL | Field::FIRST_NAME | Field::LAST_NAME
                )
            }))
}

/// The safety guards, evaluated on the whole plan.
pub fn guard(sync: &SyncConfig, planned: &PlannedCycle, managed_active: u64) -> Verdict {
    let mut verdict = Verdict::default();
    let deactivations = planned
        .ops
        .iter()
        .filter(|o| o.kind == OpKind::Deactivate)
        .count() as u64;
    let ratio = sync.min_source_ratio;
    let deactivation_limit = sync.max_deactivations.allowed(managed_active);
    if deactivations > 0 {
        if let Some(why) = &planned.suspicious {
            verdict.degraded = Some(why.clone());
        } else if planned.complete && (planned.source_ids as f64) < ratio * managed_active as f64 {
            verdict.degraded = Some(format!(
                "the source named {} users, fewer than sync.min_source_ratio = {ratio} of the {managed_active} managed active users",
                planned.source_ids
            ));
        } else if deactivations > deactivation_limit {
            verdict.hold_deactivations = Some(format!(
                "{deactivations} deactivations exceed sync.max_deactivations = {} ({deactivation_limit} of {managed_active} managed active users)",
                sync.max_deactivations
            ));
        }
    }
    // A user counts once, however many of its identifying fields change.
    let identity_changes = planned.ops.iter().filter(|o| changes_identity(o)).count() as u64;
    let identity_limit = sync.max_identity_changes.allowed(managed_active);
    if identity_changes > identity_limit {
        verdict.hold_identity_changes = Some(format!(
            "{identity_changes} users with a changed login, e-mail, name or employee id exceed sync.max_identity_changes = {} ({identity_limit} of {managed_active} managed active users)",
            sync.max_identity_changes
        ));
    }
    verdict
}

#[cfg(test)]
mod tests;
