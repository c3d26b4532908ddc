//! The send order of a plan: creates and reactivations with managers before their reports,
//! then updates, passwords, and deactivations last; ties by employee id.

use super::Candidate;
use crate::model::OpKind;

/// Puts `candidates` in send order; `depth[i]`: how many managers above candidate `i` the plan
/// creates or reactivates ([`super::managers::depths`]). Each one's place is worked out once,
/// not at every comparison: a first load sorts a hundred thousand creates.
pub(super) fn sort(candidates: &mut Vec<Candidate>, depth: &[u32]) {
    // (class, depth, the id's first 16 bytes in byte order), so that ties by id rarely reach
    // the id itself, which lies elsewhere in memory.
    let keys: Vec<(u8, u32, u128)> = candidates
        .iter()
        .zip(depth)
        .map(|(c, &depth)| {
            let id = c.record.user.employee_id();
            let mut head = [0u8; 16];
            let n = id.len().min(16);
            head[..n].copy_from_slice(&id.as_bytes()[..n]);
            (class(c.kind), depth, u128::from_be_bytes(head))
        })
        .collect();
    let id = |i: u32| candidates[i as usize].record.user.employee_id();
    let mut order: Vec<u32> = (0..candidates.len() as u32).collect();
    order.sort_unstable_by(|&a, &b| {
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
