//! Adoption and drift, decided: Concur's users (as Bulk User v3.1 lists them) are matched to the
//! source's users by employee id, then by login id, against what the snapshot knows. Pure: every
//! input is an argument, and [`Matched`] says what to record and what to send.
//!
//! - A managed user whose Concur record differs from what was last acknowledged has drifted;
//!   with `repair`, the source's desired record (else the last acknowledged one) is re-sent.
//! - A Concur user whose employee id a source user has is adopted as Concur reports it.
//! - A Concur user whose login a source user has, under an employee id neither managed nor in
//!   Concur, is the same person: renamed in Concur (`NewEmployeeID`), then adopted.
//! - Anyone else is unmanaged (listed, never written), or adopted with `manage_unmatched`.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::concur::readback::ConcurUser;
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
    concur: &[ConcurUser],
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
    let in_concur: HashSet<&str> = concur.iter().map(|c| c.employee_id.as_str()).collect();
    let managed = |id: &str| owners.get(id).is_some_and(|o| *o != Ownership::Unmanaged);

    let mut m = Matched::default();
    for cu in concur {
        if cu.employee_id.is_empty() {
            continue;
        }
        if managed(&cu.employee_id) {
            let Some(last) = known.get(&cu.employee_id) else {
                continue;
            };
            let drifted = drift(last, cu);
            if drifted.is_empty() {
                continue;
            }
            m.drifted.push((cu.employee_id.clone(), drifted));
            if !repair {
                continue;
            }
            let desired = by_emp
                .get(cu.employee_id.as_str())
                .map(|r| r.user.clone())
                .unwrap_or_else(|| last.clone());
            let seen = {
                let mut s = last.clone();
                for (f, v) in observed(cu, &cu.employee_id).iter() {
                    s.set(f, v);
                }
                s
            };
            let kind = match (cu.active, desired.is_active()) {
                (true, false) => OpKind::Deactivate,
                (false, true) => OpKind::Reactivate,
                _ => OpKind::Update,
            };
            let old_login_id = (!cu.login_id.eq_ignore_ascii_case(desired.login_id())
                && !cu.login_id.is_empty())
            .then(|| cu.login_id.clone());
            m.repairs.insert(cu.employee_id.clone());
            m.ops.push(Op {
                kind,
                employee_id: cu.employee_id.clone(),
                changes: desired.changes_from(&seen),
                user: desired,
                old_login_id,
                old_employee_id: None,
                password: None,
                origin: "reconcile: drift repair".into(),
            });
            continue;
        }
        if let Some(r) = by_emp.get(cu.employee_id.as_str()) {
            m.adopt.push(observed(cu, r.user.employee_id()));
            continue;
        }
        if let Some(r) = by_login.get(&cu.login_id.to_lowercase())
            && !managed(r.user.employee_id())
            && !in_concur.contains(r.user.employee_id())
        {
            // The same person under another employee id: rename in Concur, then adopt.
            m.renamed.insert(r.user.employee_id().to_owned());
            m.ops.push(Op {
                kind: OpKind::Update,
                employee_id: r.user.employee_id().to_owned(),
                changes: r.user.changes_from(&observed(cu, &cu.employee_id)),
                user: r.user.clone(),
                old_login_id: None,
                old_employee_id: Some(cu.employee_id.clone()),
                password: None,
                origin: format!("adoption: {} renamed from {}", r.origin, cu.employee_id),
            });
            continue;
        }
        let user = observed(cu, &cu.employee_id);
        if manage_unmatched {
            m.adopt.push(user);
        } else {
            m.unmanaged.push(user);
        }
    }
    m
}

/// What Concur reports of a user, as a canonical user.
fn observed(cu: &ConcurUser, employee_id: &str) -> User {
    let mut u = User::new();
    u.set(Field::EMPLOYEE_ID, employee_id);
    u.set(Field::LOGIN_ID, cu.login_id.as_str());
    u.set(Field::ACTIVE, if cu.active { "Y" } else { "N" });
    u.set(Field::FIRST_NAME, cu.first_name.as_str());
    u.set(Field::LAST_NAME, cu.last_name.as_str());
    u.set(Field::MIDDLE_INITIAL, initial(&cu.middle_name));
    u.set(Field::EMAIL, cu.email.as_str());
    u
}

fn initial(s: &str) -> String {
    s.trim()
        .chars()
        .next()
        .map(String::from)
        .unwrap_or_default()
}

/// The drift-checked fields where Concur differs from what was last acknowledged.
fn drift(known: &User, cu: &ConcurUser) -> Vec<&'static str> {
    let mut out = Vec::new();
    let k = |f: Field| known.get(f).unwrap_or("");
    if known.is_active() != cu.active {
        out.push("active");
    }
    if k(Field::FIRST_NAME) != cu.first_name {
        out.push("first_name");
    }
    if k(Field::LAST_NAME) != cu.last_name {
        out.push("last_name");
    }
    if !cu.middle_name.trim().is_empty() && k(Field::MIDDLE_INITIAL) != initial(&cu.middle_name) {
        out.push("middle_initial");
    }
    if !k(Field::EMAIL).eq_ignore_ascii_case(&cu.email) {
        out.push("email");
    }
    if !k(Field::LOGIN_ID).eq_ignore_ascii_case(&cu.login_id) {
        out.push("login_id");
    }
    out
}

#[cfg(test)]
mod tests;
