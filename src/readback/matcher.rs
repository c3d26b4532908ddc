//! Adoption and drift, decided: Concur's users (as [`directory`](super::directory) lists them,
//! through Bulk User v3.1 or Identity v4.1) are matched to the source's users by employee id,
//! then by login id (ignoring case), against what the snapshot knows. Pure: every input is an
//! argument, and [`Matched`] says what to record and what to send.
//!
//! - A managed user whose Concur record differs from what was last acknowledged has drifted
//!   (judged only on the fields Concur let us read); with `repair`, the source's desired
//!   record (else the last acknowledged one) is re-sent.
//! - A Concur user whose employee id a source user has is adopted as Concur reports it.
//! - A Concur user whose login a source user has, under an employee id neither managed nor in
//!   Concur, is the same person: renamed in Concur (`NewEmployeeID`), then adopted.
//! - Anyone else is unmanaged (listed, never written), or adopted with `manage_unmatched`.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::directory::ListedUser;
use crate::model::{Field, Op, OpKind, SourceRecord, User};
use crate::store::Ownership;

/// What matching Concur's users decided.
#[derive(Debug, Default)]
pub struct Matched {
    /// Concur users taken over as Concur reports them (`adopted`).
    pub adopt: Vec<User>,
    /// Concur users matching no source user: listed, never written.
    pub unmanaged: Vec<User>,
    /// What to send: renames of source users Concur holds under another employee id, and drift
    /// repairs.
    pub ops: Vec<Op>,
    /// The employee ids `ops` renames to; adopted once Concur acknowledges the rename.
    pub renamed: BTreeSet<String>,
    /// The employee ids whose op in `ops` repairs drift.
    pub repairs: BTreeSet<String>,
    /// Managed users whose Concur record drifted, with the fields that differ, in Concur's
    /// order (repaired or not).
    pub drifted: Vec<(String, Vec<&'static str>)>,
}

/// Matches Concur's users (`concur`) to the valid source users (`source`). `owners` and `known`
/// are the snapshot's ownership of every user and the last acknowledged record of every managed
/// one.
pub fn match_users(
    concur: &[ListedUser],
    source: &[SourceRecord],
    owners: &HashMap<String, Ownership>,
    known: &HashMap<String, User>,
    manage_unmatched: bool,
    repair: bool,
) -> Matched {
    let mut by_emp: HashMap<&str, &SourceRecord> = HashMap::new();
    let mut by_login: HashMap<String, &SourceRecord> = HashMap::new();
    for r in source {
        by_emp.entry(r.user.employee_id()).or_insert(r);
        by_login
            .entry(r.user.login_id().to_lowercase())
            .or_insert(r);
    }
    let in_concur: HashSet<&str> = concur.iter().map(ListedUser::employee_id).collect();
    let managed = |id: &str| owners.get(id).is_some_and(|o| *o != Ownership::Unmanaged);

    let mut m = Matched::default();
    for cu in concur {
        let employee_id = cu.employee_id();
        if employee_id.is_empty() {
            continue;
        }
        if managed(employee_id) {
            let Some(last) = known.get(employee_id) else {
                continue;
            };
            let drifted = drift(last, cu);
            if drifted.is_empty() {
                continue;
            }
            m.drifted.push((employee_id.to_owned(), drifted));
            if !repair {
                continue;
            }
            let desired = by_emp
                .get(employee_id)
                .map(|r| r.user.clone())
                .unwrap_or_else(|| last.clone());
            let seen = {
                let mut s = last.clone();
                for (f, v) in observed(cu, employee_id).iter() {
                    s.set(f, v);
                }
                s
            };
            let active = cu.active().unwrap_or_else(|| last.is_active());
            let kind = match (active, desired.is_active()) {
                (true, false) => OpKind::Deactivate,
                (false, true) => OpKind::Reactivate,
                _ => OpKind::Update,
            };
            let login = cu.login_id();
            let old_login_id = (!login.eq_ignore_ascii_case(desired.login_id())
                && !login.is_empty())
            .then(|| login.to_owned());
            m.repairs.insert(employee_id.to_owned());
            m.ops.push(Op {
                kind,
                employee_id: employee_id.to_owned(),
                changes: desired.changes_from(&seen),
                user: desired,
                old_login_id,
                old_employee_id: None,
                password: None,
                origin: "reconcile: drift repair".into(),
            });
            continue;
        }
        if let Some(r) = by_emp.get(employee_id) {
            m.adopt.push(observed(cu, r.user.employee_id()));
            continue;
        }
        if let Some(r) = by_login.get(&cu.login_id().to_lowercase())
            && !managed(r.user.employee_id())
            && !in_concur.contains(r.user.employee_id())
        {
            // The same person under another employee id: rename in Concur, then adopt.
            m.renamed.insert(r.user.employee_id().to_owned());
            m.ops.push(Op {
                kind: OpKind::Update,
                employee_id: r.user.employee_id().to_owned(),
                changes: r.user.changes_from(&observed(cu, employee_id)),
                user: r.user.clone(),
                old_login_id: None,
                old_employee_id: Some(employee_id.to_owned()),
                password: None,
                origin: format!("adoption: {} renamed from {}", r.origin, employee_id),
            });
            continue;
        }
        let user = observed(cu, employee_id);
        if manage_unmatched {
            m.adopt.push(user);
        } else {
            m.unmanaged.push(user);
        }
    }
    m
}

/// What Concur reports of a user, as a canonical user under `employee_id`.
fn observed(cu: &ListedUser, employee_id: &str) -> User {
    let mut u = cu.user.clone();
    u.set(Field::EMPLOYEE_ID, employee_id);
    u
}

/// The fields drift is judged on, and whether they compare ignoring case.
const DRIFT_FIELDS: [(Field, bool); 6] = [
    (Field::ACTIVE, false),
    (Field::FIRST_NAME, false),
    (Field::LAST_NAME, false),
    (Field::MIDDLE_INITIAL, false),
    (Field::EMAIL, true),
    (Field::LOGIN_ID, true),
];

/// The drift-checked fields where Concur differs from what was last acknowledged; a field
/// Concur did not let us read never counts as drifted.
fn drift(known: &User, cu: &ListedUser) -> Vec<&'static str> {
    let mut out = Vec::new();
    for (field, ignore_case) in DRIFT_FIELDS {
        if !cu.readable(field) {
            continue;
        }
        let differs = if field == Field::ACTIVE {
            known.is_active() != cu.user.is_active()
        } else {
            let (k, c) = (
                known.get(field).unwrap_or(""),
                cu.user.get(field).unwrap_or(""),
            );
            if ignore_case {
                !k.eq_ignore_ascii_case(c)
            } else {
                k != c
            }
        };
        if differs {
            out.push(field.name());
        }
    }
    out
}

#[cfg(test)]
mod tests;
