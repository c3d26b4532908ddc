//! What [`Planner::finish`] does once every row was read: the cross-record rules (duplicate
//! employee ids and logins, renames, and the manager rules of [`super::managers`] over the
//! users to send), the users missing from a complete source, and the order operations go out
//! in; and the same rules over the compact rows of a lean plan.

use std::collections::HashMap;

use super::managers::{self, Member};
use super::seen::KeyTable;
use super::{Candidate, Draft, Lean, LeanCreate, Planner, RowStamps, index, order};
use crate::model::{Field, OpKind, Rejection, RowIdentity, id_key};

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
        let mut candidates: Vec<Candidate> = std::mem::take(&mut self.candidates);
        candidates.retain(|c| seen.valid(c.row));
        let mut members: Vec<Member> = candidates
            .iter()
            .map(|c| {
                let manager = c.record.user.get(Field::MANAGER_EMPLOYEE_ID);
                Member::new(seen, c.row, manager, c.kind)
            })
            .collect();
        let manager_id = |i: usize| {
            candidates[i]
                .record
                .user
                .get(Field::MANAGER_EMPLOYEE_ID)
                .unwrap_or_default()
        };
        let in_concur = |i: usize| self.snapshot.contains(manager_id(i));
        let approver = |i: usize| match members[i].manager {
            managers::NO_MANAGER => None,
            managers::UNSEEN => match self.skipped(id_key(manager_id(i))) {
                Some((entry, line, true)) => Some((
                    self.snapshot.entry(entry).flags & index::APPROVER != 0,
                    self.skipped_origin(line),
                )),
                _ => None,
            },
            r if seen.valid(r) => Some((seen.approver(r), seen.origin(r).to_owned())),
            _ => None,
        };
        let mut bad = self.check_managers(&members, &manager_id, &in_concur, &approver);
        if !bad.is_empty() {
            let mut extra: Vec<Rejection> = Vec::with_capacity(bad.len());
            let mut keep = Vec::with_capacity(candidates.len());
            for (i, (c, m)) in candidates.into_iter().zip(members).enumerate() {
                match bad.remove(&i) {
                    Some(r) => extra.push(r),
                    None => keep.push((c, m)),
                }
            }
            (candidates, members) = keep.into_iter().unzip();
            extra.sort_by(|a, b| a.employee_id.cmp(&b.employee_id));
            self.rejections.extend(extra);
        }

        // Order: creates and reactivations by manager depth, then updates, passwords,
        // deactivations; ties by employee id.
        let depth = managers::depths(seen, &members);
        drop(members);
        order::sort(&mut candidates, &depth);

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
                    Some((id_key(u.employee_id()), d, u.content_hash()))
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

    /// [`managers::check`] under this plan's options: the approver rule only under v4.
    fn check_managers<'m>(
        &self,
        members: &[Member],
        manager_id: &'m dyn Fn(usize) -> &'m str,
        in_concur: &'m dyn Fn(usize) -> bool,
        approver: &'m dyn Fn(usize) -> Option<(bool, String)>,
    ) -> HashMap<usize, Rejection> {
        let ask = managers::Lookups {
            manager_id,
            in_concur,
            approver: self.options.manager_must_approve.then_some(approver),
        };
        managers::check(&self.seen, members, &ask)
    }

    /// The cross-record rules [`Planner::finish`] applies to users to create (managers that
    /// exist, v4 approvers, loops), with the same rejections, over the rows of a lean plan.
    /// Returns the digests of the rows of the users to create, sorted.
    pub(super) fn finish_lean(&mut self, lean: Lean) -> Vec<u128> {
        let seen = &self.seen;
        let Lean {
            creates: mut lean,
            managers: arena,
        } = lean;
        let manager = |c: &LeanCreate| {
            let (off, len) = (c.manager.0 as usize, c.manager.1 as usize);
            (len > 0).then(|| &arena[off..off + len])
        };
        lean.retain(|c| seen.valid(c.row));
        let members: Vec<Member> = lean
            .iter()
            .map(|c| Member::new(seen, c.row, manager(c), OpKind::Create))
            .collect();
        let manager_id = |i: usize| manager(&lean[i]).unwrap_or_default();
        // Nobody is in Concur yet.
        let in_concur = |_: usize| false;
        let approver = |i: usize| match members[i].manager {
            r @ 0..managers::UNSEEN if seen.valid(r) => {
                Some((seen.approver(r), seen.origin(r).to_owned()))
            }
            _ => None,
        };
        let mut bad = self.check_managers(&members, &manager_id, &in_concur, &approver);
        drop(members);
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
