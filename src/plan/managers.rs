//! The manager rules of a plan, over its members by index: a manager must exist (in Concur, or
//! created by this plan), under UPS v4 a new user's manager must be an expense approver, and
//! managers among new users must not loop; and how deep each new or reactivated user sits
//! under managers the same plan sends. Both a plan and a lean plan apply them to a compact
//! array of [`Member`]s, so that a first load of a hundred thousand users costs no look-up by
//! id per user and manager.

use std::collections::HashMap;

use super::seen::Seen;
use crate::model::{OpKind, Rejection, RowIdentity};

/// [`Member::manager`] when the user has no manager.
pub(super) const NO_MANAGER: u32 = u32::MAX;
/// [`Member::manager`] when the user's manager has no row among those seen.
pub(super) const UNSEEN: u32 = u32::MAX - 1;
const NONE: u32 = u32::MAX;

/// A user of the plan as the manager rules read it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Member {
    /// Its row among those seen.
    pub row: u32,
    /// Its manager's row among those seen, or [`NO_MANAGER`], or [`UNSEEN`].
    pub manager: u32,
    pub kind: OpKind,
}

impl Member {
    /// The user on seen row `row`, with manager `manager` (its employee id, if any).
    pub fn new(seen: &Seen, row: u32, manager: Option<&str>, kind: OpKind) -> Member {
        let manager = match manager {
            Some(m) => seen.get(crate::model::id_key(m)).unwrap_or(UNSEEN),
            None => NO_MANAGER,
        };
        Member { row, manager, kind }
    }
}

/// What the rules ask of the plan about a member's manager, by member index.
pub(super) struct Lookups<'a> {
    /// The manager's employee id (a member with a manager only).
    pub manager_id: &'a dyn Fn(usize) -> &'a str,
    /// The manager is a user of Concur already.
    pub in_concur: &'a dyn Fn(usize) -> bool,
    /// Under UPS v4: whether the manager's row makes it an expense approver, and where that
    /// row is; `None` when no such row is known (then the rule does not apply).
    pub approver: Option<&'a dyn Fn(usize) -> Option<(bool, String)>>,
}

/// Applies the manager rules to `members`; answers the rejected ones by member index. Every
/// member is valid; [`Member::manager`] rows may not be.
pub(super) fn check(
    seen: &Seen,
    members: &[Member],
    ask: &Lookups<'_>,
) -> HashMap<usize, Rejection> {
    let rejection = |i: usize, message: String| Rejection {
        source: seen.origin(members[i].row).to_owned(),
        employee_id: Some(seen.id(members[i].row).to_owned()),
        field: "manager_employee_id".into(),
        message,
        identity: RowIdentity::default(),
    };
    let creates = index_of(seen, members, |k| k == OpKind::Create);
    let created = |m: &Member| match m.manager {
        NO_MANAGER | UNSEEN => NONE,
        row => creates[row as usize],
    };
    let mut bad: HashMap<usize, Rejection> = HashMap::new();
    // Managers must exist: in Concur already, or created by this plan.
    for (i, m) in members.iter().enumerate() {
        if m.manager == NO_MANAGER || created(m) != NONE || (ask.in_concur)(i) {
            continue;
        }
        let why = match m.manager {
            UNSEEN => "it is neither in the source nor in Concur".to_owned(),
            row if !seen.valid(row) => {
                format!("its own row at {} was rejected", seen.origin(row))
            }
            row => format!("its row at {} is not being created", seen.origin(row)),
        };
        let message = format!(
            "manager \"{}\" is not a known user: {why}",
            (ask.manager_id)(i)
        );
        bad.insert(i, rejection(i, message));
    }
    // Under UPS v4 a report's approver must hold the EXP_APPROVER role.
    if let Some(approver) = ask.approver {
        for (i, m) in members.iter().enumerate() {
            if m.kind != OpKind::Create || m.manager == NO_MANAGER || bad.contains_key(&i) {
                continue;
            }
            if let Some((false, at)) = approver(i) {
                let message = format!(
                    "manager \"{}\" is not an expense approver (its row at {at} does not set expense_approver = Y); v4 rule: a report approver must hold the spend role EXP_APPROVER",
                    (ask.manager_id)(i)
                );
                bad.insert(i, rejection(i, message));
            }
        }
    }
    // Loops among users being created can never be satisfied: every user on one is rejected,
    // naming the chain from itself around.
    let next: Vec<u32> = members
        .iter()
        .map(|m| {
            if m.kind == OpKind::Create {
                created(m)
            } else {
                NONE
            }
        })
        .collect();
    for cycle in cycles(&next) {
        for (k, &start) in cycle.iter().enumerate() {
            bad.entry(start as usize).or_insert_with(|| {
                let ids: Vec<&str> = (0..=cycle.len())
                    .map(|j| seen.id(members[cycle[(k + j) % cycle.len()] as usize].row))
                    .collect();
                let message = format!("manager chain of new users loops back: {}", ids.join(" → "));
                rejection(start as usize, message)
            });
        }
    }
    // A user whose manager this plan was to create, and no longer does, would name a manager
    // Concur does not have: rejected too, and so on down the chain.
    let mut rejected: Vec<bool> = (0..members.len()).map(|i| bad.contains_key(&i)).collect();
    let mut changed = members
        .iter()
        .zip(&rejected)
        .any(|(m, &r)| r && m.kind == OpKind::Create);
    while changed {
        changed = false;
        for (i, m) in members.iter().enumerate() {
            let c = created(m);
            if rejected[i] || c == NONE || !rejected[c as usize] {
                continue;
            }
            let message = format!(
                "manager \"{}\" is not a known user: its own row at {} was rejected",
                (ask.manager_id)(i),
                seen.origin(members[c as usize].row)
            );
            bad.insert(i, rejection(i, message));
            rejected[i] = true;
            changed = true;
        }
    }
    bad
}

/// How many managers above each created or reactivated member are created or reactivated by
/// the same plan (0 for every other member): what the send order puts first.
pub(super) fn depths(seen: &Seen, members: &[Member]) -> Vec<u32> {
    let ordered = |k: OpKind| matches!(k, OpKind::Create | OpKind::Reactivate);
    let at = index_of(seen, members, ordered);
    let next: Vec<u32> = members
        .iter()
        .map(|m| match m.manager {
            NO_MANAGER | UNSEEN => NONE,
            _ if !ordered(m.kind) => NONE,
            row => at[row as usize],
        })
        .collect();
    // Each chain is walked once: up to a member whose depth is known, the top, or a member
    // already on the walk (a loop, which counts as the top).
    let mut depth = vec![NONE; members.len()];
    let mut on_walk = vec![false; members.len()];
    let mut walk = Vec::new();
    for start in 0..members.len() {
        let mut cur = start as u32;
        let base = loop {
            if cur == NONE || on_walk[cur as usize] {
                break 0;
            }
            if depth[cur as usize] != NONE {
                break depth[cur as usize] + 1;
            }
            on_walk[cur as usize] = true;
            walk.push(cur);
            cur = next[cur as usize];
        };
        for (i, &w) in walk.iter().rev().enumerate() {
            depth[w as usize] = base + i as u32;
            on_walk[w as usize] = false;
        }
        walk.clear();
    }
    depth
}

/// Seen row → index of the member on it whose kind `pick` accepts ([`NONE`]: none).
fn index_of(seen: &Seen, members: &[Member], pick: impl Fn(OpKind) -> bool) -> Vec<u32> {
    let mut at = vec![NONE; seen.len()];
    for (i, m) in members.iter().enumerate() {
        if pick(m.kind) {
            at[m.row as usize] = i as u32;
        }
    }
    at
}

/// The cycles of the graph in which member `i` points at `next[i]` ([`NONE`]: nowhere), each
/// from the member first reached on it.
fn cycles(next: &[u32]) -> Vec<Vec<u32>> {
    const NEW: u8 = 0;
    const ON_WALK: u8 = 1;
    const DONE: u8 = 2;
    let mut state = vec![NEW; next.len()];
    let mut found = Vec::new();
    let mut walk = Vec::new();
    for start in 0..next.len() as u32 {
        let mut cur = start;
        while cur != NONE && state[cur as usize] == NEW {
            state[cur as usize] = ON_WALK;
            walk.push(cur);
            cur = next[cur as usize];
        }
        if cur != NONE
            && state[cur as usize] == ON_WALK
            && let Some(at) = walk.iter().position(|&w| w == cur)
        {
            found.push(walk[at..].to_vec());
        }
        for &w in &walk {
            state[w as usize] = DONE;
        }
        walk.clear();
    }
    found
}
