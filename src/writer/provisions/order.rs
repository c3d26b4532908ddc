//! The send order of the asynchronous ledger: managers before their reports, and a new
//! report's create held back while an operation that may let its manager approve is unsettled.

use std::collections::{HashMap, HashSet, VecDeque};

use super::Item;
use crate::model::{Field, Op, OpKind};

/// Whether `op` may be what lets its user approve reports: a create, a reactivation, or an
/// update of an expense approver (which may grant the role). A new report naming this user
/// as its manager waits until it has settled: Concur refuses an approver who does not (yet)
/// hold `EXP_APPROVER`.
pub(super) fn may_enable_approval(op: &Op) -> bool {
    match op.kind {
        OpKind::Create | OpKind::Reactivate => true,
        OpKind::Update => op.user.get(Field::EXPENSE_APPROVER) == Some("Y"),
        OpKind::Deactivate | OpKind::Password => false,
    }
}

/// Takes up to `n` items from the front of `queue` that need not wait: every item but a
/// create whose manager has an operation still `unsettled` that may let it approve. The others
/// keep their order.
pub(super) fn take_ready(
    queue: &mut VecDeque<Item>,
    n: usize,
    unsettled: &HashSet<String>,
) -> Vec<Item> {
    let waits = |i: &Item| {
        i.op.kind == OpKind::Create
            && i.op
                .user
                .get(Field::MANAGER_EMPLOYEE_ID)
                .is_some_and(|m| m != i.op.employee_id && unsettled.contains(m))
    };
    let mut out = Vec::with_capacity(n);
    let mut waiting = Vec::new();
    while out.len() < n {
        let Some(item) = queue.pop_front() else {
            break;
        };
        if waits(&item) {
            waiting.push(item);
        } else {
            out.push(item);
        }
    }
    for item in waiting.into_iter().rev() {
        queue.push_front(item);
    }
    out
}

/// Splits items into waves: a create whose manager is created in the same set goes one wave
/// after its manager's; everything else is in the first.
pub(super) fn waves(items: Vec<Item>) -> Vec<Vec<Item>> {
    let created: HashSet<String> = items
        .iter()
        .filter(|i| i.op.kind == OpKind::Create)
        .map(|i| i.op.employee_id.clone())
        .collect();
    let mut depth: HashMap<String, usize> = HashMap::new();
    let mut out: Vec<Vec<Item>> = Vec::new();
    for item in items {
        let d = match item.op.user.get(Field::MANAGER_EMPLOYEE_ID) {
            Some(m) if item.op.kind == OpKind::Create && created.contains(m) => {
                depth.get(m).map_or(1, |d| d + 1)
            }
            _ => 0,
        };
        if item.op.kind == OpKind::Create {
            depth.insert(item.op.employee_id.clone(), d);
        }
        if out.len() <= d {
            out.resize_with(d + 1, Vec::new);
        }
        out[d].push(item);
    }
    out
}
