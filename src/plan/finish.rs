//! What [`Planner::finish`] does once every row was read: the cross-record rules (duplicate
//! employee ids and logins, managers that exist, v4 approvers, manager loops, renames), the
//! users missing from a complete source, and the order operations go out in; and the same
//! rules over the compact rows of a lean plan.

use std::collections::HashMap;

use super::order;
use super::seen::{KeyTable, Seen};
use super::{Candidate, Draft, Lean, LeanCreate, Planner, RowStamps, index};
use crate::model::{Field, KeyMap, KeySet, OpKind, Rejection, RowIdentity, id_key};

impl Planner<'_> {
    /// Applies the cross-record rules and orders the result. `complete` says the source was
    /// read in full; only then do users missing from it count as vanished (deactivated).
    pub fn finish(mut self, complete: bool) -> Draft {
        self.check_skipped_logins();
        // Duplicate employee ids: every row with the id is rejected.
        let dup_ids = std::mem::take(&mut self.dup_ids);
        for (id, later) in &dup_ids {
            let key = id_key(id);
            let first = match (self.seen.get(key), self.skipped(key)) {
                (Some(first), _) => Ok(first),
                (None, Some((entry, line, _))) => Err((entry, line)),
                (None, None) => continue,
            };
            let mut origins: Vec<String> = vec![match first {
                Ok(first) => self.seen.origin(first).to_owned(),
                Err((_, line)) => self.skipped_origin(line),
            }];
            origins.extend(later.iter().cloned());
            for (i, o) in origins.iter().enumerate() {
                let others: Vec<&str> = origins
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, o)| o.as_str())
                    .collect();
                self.rejections.push(Rejection {
                    source: o.clone(),
                    employee_id: Some(id.clone()),
                    field: "employee_id".into(),
                    message: format!(
                        "employee_id \"{id}\" appears again at {}; all rows with it rejected",
                        others.join(", ")
                    ),
                    identity: RowIdentity::default(),
                });
            }
            match first {
                Ok(first) => self.seen.invalidate(first),
                Err((entry, _)) => self.invalidate_skipped(entry),
            }
        }
        for &holder in &self.dup_login_holders {
            self.seen.invalidate(holder);
        }
        self.check_renames();
        // Only `push_row` reads the logins.
        self.logins = KeyTable::default();
        let lean_creates = match self.lean.take() {
            Some(lean) => self.finish_lean(lean),
            None => Vec::new(),
        };
        let seen = &self.seen;
        let valid = |id: &str| seen.get(id_key(id)).is_some_and(|i| seen.valid(i));
        let mut candidates: Vec<Candidate> = std::mem::take(&mut self.candidates)
            .into_iter()
            .filter(|c| valid(c.record.user.employee_id()))
            .collect();

        // Managers must exist: in Concur already, or created by this plan.
        let creating: KeySet = candidates
            .iter()
            .filter(|c| c.kind == OpKind::Create)
            .map(|c| id_key(c.record.user.employee_id()))
            .collect();
        let mut bad_manager: HashMap<String, Rejection> = HashMap::new();
        for c in &candidates {
            let u = &c.record.user;
            if let Some(m) = u.get(Field::MANAGER_EMPLOYEE_ID)
                && !self.snapshot.contains(m)
                && !creating.contains(&id_key(m))
            {
                bad_manager.insert(
                    u.employee_id().to_owned(),
                    Rejection {
                        source: c.record.origin.clone(),
                        employee_id: Some(u.employee_id().to_owned()),
                        field: "manager_employee_id".into(),
                        message: unknown_manager(seen, m),
                        identity: RowIdentity::default(),
                    },
                );
            }
        }
        // Under UPS v4 a report's approver must hold the EXP_APPROVER role.
        if self.options.manager_must_approve {
            for c in candidates.iter().filter(|c| c.kind == OpKind::Create) {
                let u = &c.record.user;
                let Some(m) = u.get(Field::MANAGER_EMPLOYEE_ID) else {
                    continue;
                };
                let (approver, at) = match seen.get(id_key(m)) {
                    Some(i) if seen.valid(i) => (seen.approver(i), seen.origin(i).to_owned()),
                    Some(_) => continue,
                    None => match self.skipped(id_key(m)) {
                        Some((entry, line, true)) => (
                            self.snapshot.entry(entry).flags & index::APPROVER != 0,
                            self.skipped_origin(line),
                        ),
                        _ => continue,
                    },
                };
                if !approver && !bad_manager.contains_key(u.employee_id()) {
                    bad_manager.insert(
                        u.employee_id().to_owned(),
                        Rejection {
                            source: c.record.origin.clone(),
                            employee_id: Some(u.employee_id().to_owned()),
                            field: "manager_employee_id".into(),
                            message: not_an_approver(m, &at),
                            identity: RowIdentity::default(),
                        },
                    );
                }
            }
        }
        // Loops among users being created can never be satisfied.
        let create_mgr: KeyMap<&str> = candidates
            .iter()
            .filter(|c| c.kind == OpKind::Create)
            .filter_map(|c| {
                c.record
                    .user
                    .get(Field::MANAGER_EMPLOYEE_ID)
                    .map(|m| (id_key(c.record.user.employee_id()), m))
            })
            .collect();
        for c in &candidates {
            let start = c.record.user.employee_id();
            let mut chain = vec![start];
            let mut cur = start;
            while let Some(&m) = create_mgr.get(&id_key(cur)) {
                if m == start {
                    chain.push(m);
                    bad_manager
                        .entry(start.to_owned())
                        .or_insert_with(|| Rejection {
                            source: c.record.origin.clone(),
                            employee_id: Some(start.to_owned()),
                            field: "manager_employee_id".into(),
                            message: format!(
                                "manager chain of new users loops back: {}",
                                chain.join(" → ")
                            ),
                            identity: RowIdentity::default(),
                        });
                    break;
                }
                if chain.contains(&m) || chain.len() > create_mgr.len() {
                    break;
                }
                chain.push(m);
                cur = m;
            }
        }
        drop(create_mgr);
        drop(creating);
        if !bad_manager.is_empty() {
            candidates.retain(|c| !bad_manager.contains_key(c.record.user.employee_id()));
            let mut extra: Vec<Rejection> = bad_manager.into_values().collect();
            extra.sort_by(|a, b| a.employee_id.cmp(&b.employee_id));
            self.rejections.extend(extra);
        }

        // Order: creates and reactivations by manager depth, then updates, passwords,
        // deactivations; ties by employee id.
        order::sort(&mut candidates);

        let lines = self.rows.as_ref().map(|r| r.lines.as_slice());
        let mut vanished: Vec<String> = if complete {
            self.snapshot
                .entries()
                .filter(|(i, e)| {
                    e.flags & index::ACTIVE != 0
                        && lines.is_none_or(|l| l[*i as usize] == 0)
                        && self.seen.get(e.id_key).is_none()
                        && !self.renamed_away.contains(self.snapshot.id(*i))
                })
                .map(|(i, _)| self.snapshot.id(i).to_owned())
                .collect()
        } else {
            Vec::new()
        };
        vanished.sort();
        let row_stamps = self.rows.as_ref().map(|rows| RowStamps {
            fingerprint: rows.fingerprint,
            unchanged: rows
                .restamp
                .iter()
                .filter(|(i, _)| {
                    self.seen
                        .get(self.snapshot.entry(*i).id_key)
                        .is_some_and(|r| self.seen.valid(r))
                })
                .map(|&(i, d)| {
                    (
                        self.snapshot.id(i).to_owned(),
                        d,
                        self.snapshot.entry(i).hash,
                    )
                })
                .collect(),
            planned: candidates
                .iter()
                .filter_map(|c| {
                    let d = c.digest?;
                    let u = &c.record.user;
                    Some((u.employee_id().to_owned(), d, u.content_hash()))
                })
                .collect(),
        });
        let skipped = self.rows.as_ref().map_or(0, |r| r.count);

        Draft {
            candidates,
            vanished,
            rejections: self.rejections,
            unchanged: self.unchanged,
            skipped_inactive: self.skipped_inactive,
            source_ids: self.seen.len() as u64 + skipped,
            protect: self.protect,
            learned_macs: self.learned_macs,
            row_stamps,
            lean_creates,
        }
    }

    /// The cross-record rules [`Planner::finish`] applies to users to create (managers that
    /// exist, v4 approvers, loops), with the same rejections, over the rows of a lean plan.
    /// Returns the digests of the rows of the users to create, sorted.
    pub(super) fn finish_lean(&mut self, lean: Lean) -> Vec<u128> {
        let seen = &self.seen;
        let Lean {
            creates: mut lean,
            managers,
        } = lean;
        let manager = |c: &LeanCreate| {
            let (off, len) = (c.manager.0 as usize, c.manager.1 as usize);
            (len > 0).then(|| &managers[off..off + len])
        };
        lean.retain(|c| seen.valid(c.row));
        // Row → index in `lean` of the user it creates.
        let mut creating = vec![u32::MAX; seen.len()];
        for (i, c) in lean.iter().enumerate() {
            creating[c.row as usize] = i as u32;
        }
        let created = |m: &str| {
            seen.get(id_key(m))
                .map(|r| creating[r as usize])
                .filter(|&i| i != u32::MAX)
        };
        let rejection = |c: &LeanCreate, message: String| Rejection {
            source: seen.origin(c.row).to_owned(),
            employee_id: Some(seen.id(c.row).to_owned()),
            field: "manager_employee_id".into(),
            message,
            identity: RowIdentity::default(),
        };
        // Managers must exist: in Concur already, or created by this plan.
        let mut bad: HashMap<usize, Rejection> = HashMap::new();
        for (i, c) in lean.iter().enumerate() {
            let Some(m) = manager(c) else {
                continue;
            };
            if self.snapshot.contains(m) || created(m).is_some() {
                continue;
            }
            bad.insert(i, rejection(c, unknown_manager(seen, m)));
        }
        // Under UPS v4 a report's approver must hold the EXP_APPROVER role.
        if self.options.manager_must_approve {
            for (i, c) in lean.iter().enumerate() {
                let Some(m) = manager(c) else {
                    continue;
                };
                let (approver, at) = match seen.get(id_key(m)) {
                    Some(r) if seen.valid(r) => (seen.approver(r), seen.origin(r).to_owned()),
                    _ => continue,
                };
                if !approver && !bad.contains_key(&i) {
                    bad.insert(i, rejection(c, not_an_approver(m, &at)));
                }
            }
        }
        // Loops among users being created can never be satisfied.
        let with_manager = lean.iter().filter(|c| manager(c).is_some()).count();
        for (start, c) in lean.iter().enumerate() {
            let mut chain = vec![start];
            let mut cur = start;
            while let Some(m) = manager(&lean[cur]).and_then(created) {
                let m = m as usize;
                if m == start {
                    chain.push(m);
                    bad.entry(start).or_insert_with(|| {
                        let ids: Vec<&str> = chain.iter().map(|&j| seen.id(lean[j].row)).collect();
                        rejection(
                            c,
                            format!("manager chain of new users loops back: {}", ids.join(" → ")),
                        )
                    });
                    break;
                }
                if chain.contains(&m) || chain.len() > with_manager {
                    break;
                }
                chain.push(m);
                cur = m;
            }
        }
        drop(creating);
        let mut extra: Vec<Rejection> = Vec::with_capacity(bad.len());
        let mut kept = Vec::with_capacity(lean.len() - bad.len());
        for (i, c) in lean.into_iter().enumerate() {
            match bad.remove(&i) {
                Some(r) => extra.push(r),
                None => kept.push(u128::from_le_bytes(c.digest)),
            }
        }
        extra.sort_by(|a, b| a.employee_id.cmp(&b.employee_id));
        self.rejections.extend(extra);
        kept.sort_unstable();
        kept
    }
}

/// Why a create is rejected whose manager `m` is neither in Concur nor created by this plan.
fn unknown_manager(seen: &Seen, m: &str) -> String {
    let why = match seen.get(id_key(m)) {
        Some(r) if !seen.valid(r) => format!("its own row at {} was rejected", seen.origin(r)),
        Some(r) => format!("its row at {} is not being created", seen.origin(r)),
        None => "it is neither in the source nor in Concur".into(),
    };
    format!("manager \"{m}\" is not a known user: {why}")
}

/// Why a create is rejected under UPS v4 whose manager `m` (its row at `at`) is no expense
/// approver.
fn not_an_approver(m: &str, at: &str) -> String {
    format!(
        "manager \"{m}\" is not an expense approver (its row at {at} does not set expense_approver = Y); v4 rule: a report approver must hold the spend role EXP_APPROVER"
    )
}
