//! The send order of a plan: creates and reactivations with managers before their reports,
//! then updates, passwords, and deactivations last.

use std::collections::HashMap;

use super::Candidate;
use crate::model::{Field, OpKind};

pub(super) fn order_key<'c>(c: &'c Candidate, depth: &HashMap<String, u32>) -> (u8, u32, &'c str) {
    let id = c.record.user.employee_id();
    let class = match c.kind {
        OpKind::Create | OpKind::Reactivate => 0,
        OpKind::Update => 1,
        OpKind::Password => 2,
        OpKind::Deactivate => 3,
    };
    (class, depth.get(id).copied().unwrap_or(0), id)
}

/// How many managers above each created or reactivated user are also in the plan.
pub(super) fn manager_depths(candidates: &[Candidate]) -> HashMap<String, u32> {
    let mgr: HashMap<&str, Option<&str>> = candidates
        .iter()
        .filter(|c| matches!(c.kind, OpKind::Create | OpKind::Reactivate))
        .map(|c| {
            (
                c.record.user.employee_id(),
                c.record.user.get(Field::MANAGER_EMPLOYEE_ID),
            )
        })
        .collect();
    let mut depth: HashMap<&str, u32> = HashMap::with_capacity(mgr.len());
    for &id in mgr.keys() {
        let mut path = Vec::new();
        let mut cur = id;
        let base = loop {
            if let Some(&d) = depth.get(cur) {
                break d + 1;
            }
            path.push(cur);
            match mgr.get(cur).copied().flatten() {
                Some(m) if mgr.contains_key(m) && !path.contains(&m) => cur = m,
                _ => break 0,
            }
        };
        for (i, p) in path.iter().rev().enumerate() {
            depth.insert(p, base + i as u32);
        }
    }
    depth.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}
