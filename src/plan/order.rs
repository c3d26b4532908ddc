//! The send order of a plan: creates and reactivations with managers before their reports,
//! then updates, passwords, and deactivations last; ties by employee id.

use super::Candidate;
use crate::model::{Field, KeyMap, OpKind, id_key};

/// Puts `candidates` in send order. Each one's place is worked out once, not at every
/// comparison: a first load sorts a hundred thousand creates.
pub(super) fn sort(candidates: &mut Vec<Candidate>) {
    let depth = manager_depths(candidates);
    // (class, depth, the id's first 16 bytes in byte order), so that ties by id rarely reach
    // the id itself, which lies elsewhere in memory.
    let keys: Vec<(u8, u32, u128)> = candidates
        .iter()
        .map(|c| {
            let id = c.record.user.employee_id();
            let mut head = [0u8; 16];
            let n = id.len().min(16);
            head[..n].copy_from_slice(&id.as_bytes()[..n]);
            (
                class(c.kind),
                depth.get(&id_key(id)).copied().unwrap_or(0),
                u128::from_be_bytes(head),
            )
        })
        .collect();
    let id = |i: u32| candidates[i as usize].record.user.employee_id();
    let mut order: Vec<u32> = (0..candidates.len() as u32).collect();
    order.sort_by(|&a, &b| {
        keys[a as usize]
            .cmp(&keys[b as usize])
            .then_with(|| id(a).cmp(id(b)))
    });
    let mut slots: Vec<Option<Candidate>> =
        std::mem::take(candidates).into_iter().map(Some).collect();
    *candidates = order
        .iter()
        .filter_map(|&i| slots[i as usize].take())
        .collect();
}

fn class(kind: OpKind) -> u8 {
    match kind {
        OpKind::Create | OpKind::Reactivate => 0,
        OpKind::Update => 1,
        OpKind::Password => 2,
        OpKind::Deactivate => 3,
    }
}

/// How many managers above each created or reactivated user (by id key) are also in the plan.
fn manager_depths(candidates: &[Candidate]) -> KeyMap<u32> {
    let mgr: KeyMap<Option<u128>> = candidates
        .iter()
        .filter(|c| matches!(c.kind, OpKind::Create | OpKind::Reactivate))
        .map(|c| {
            (
                id_key(c.record.user.employee_id()),
                c.record.user.get(Field::MANAGER_EMPLOYEE_ID).map(id_key),
            )
        })
        .collect();
    let mut depth = KeyMap::with_capacity_and_hasher(mgr.len(), Default::default());
    for &id in mgr.keys() {
        let mut path = Vec::new();
        let mut cur = id;
        let base = loop {
            if let Some(&d) = depth.get(&cur) {
                break d + 1;
            }
            path.push(cur);
            match mgr.get(&cur).copied().flatten() {
                Some(m) if mgr.contains_key(&m) && !path.contains(&m) => cur = m,
                _ => break 0,
            }
        };
        for (i, p) in path.iter().rev().enumerate() {
            depth.insert(*p, base + i as u32);
        }
    }
    depth
}
