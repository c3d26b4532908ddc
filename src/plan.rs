//! Diff and plan: pure functions of the source records and the snapshot, no IO, deterministic.
//!
//! [`Planner`] takes records one at a time (so a million-row file never sits in memory whole),
//! keeps only records that need an operation, and on [`Planner::finish`] applies the
//! cross-record rules (duplicate keys, managers that exist, manager loops) and orders the
//! operations: creates and reactivations with managers before their reports, then updates,
//! passwords, and deactivations last. [`complete`] then fills in old → new field changes and
//! deactivation payloads from the last acknowledged records the caller loads.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::identity::lookalike_key;
use crate::model::{
    Field, OpKind, PASSWORD_MAC_UNKNOWN, Rejection, RowIdentity, SourceRecord, id_key, login_key,
};

/// The fields of a record a lean plan ([`Planner::lean`]) reads: a caller may drop the others
/// (and the password) before pushing it.
pub const LEAN_FIELDS: [Field; 5] = [
    Field::EMPLOYEE_ID,
    Field::LOGIN_ID,
    Field::ACTIVE,
    Field::MANAGER_EMPLOYEE_ID,
    Field::EXPENSE_APPROVER,
];

/// Options of a plan that come from configuration.
#[derive(Debug, Clone, Copy)]
pub struct PlanOptions {
    /// Compare source passwords with the remembered keyed hash and plan password changes.
    pub source_passwords: bool,
    /// A new user's manager must be an expense approver (`expense_approver = Y` on the
    /// manager's own row): UPS v4 refuses a report approver without the `EXP_APPROVER` role.
    pub manager_must_approve: bool,
}

/// One record that needs an operation, before cross-record checks.
#[derive(Debug)]
pub struct Candidate {
    pub kind: OpKind,
    pub record: SourceRecord,
    /// Set when the record renames an existing employee id (`previous_employee_id`).
    pub old_employee_id: Option<String>,
    /// The digest of the raw row, when the source is stamped ([`Planner::stamping`]).
    pub digest: Option<u128>,
    /// Its row among those the planner has seen.
    row: u32,
}

/// The streaming planner.
pub struct Planner<'a> {
    snapshot: &'a RowIndex<'a>,
    mac: &'a dyn Fn(&str, &crate::model::Secret) -> [u8; 16],
    options: PlanOptions,
    seen: Seen,
    /// Login key → index of the row that holds it.
    logins: KeyTable,
    /// Employee ids seen more than once → the origins of the later rows.
    dup_ids: BTreeMap<String, Vec<String>>,
    /// Rows that share their login with a later row.
    dup_login_holders: Vec<u32>,
    candidates: Vec<Candidate>,
    /// Employee ids of the snapshot taken over by a rename this cycle.
    renamed_away: HashSet<String>,
    /// Look-alike keys of the identifying values of rejected rows → the first such row: managed
    /// users they could name are not deactivated.
    protect: HashMap<String, String>,
    /// Users whose password was unknown (a new state key) with the keyed hash of the source
    /// password now seen: recorded, not sent.
    learned_macs: Vec<(String, [u8; 16])>,
    rejections: Vec<Rejection>,
    unchanged: u64,
    skipped_inactive: u64,
    /// Rows taken as unchanged by their stamp, and what they need (see [`Planner::stamping`]).
    rows: Option<Skipped>,
    /// The users to create, without their records ([`Planner::lean`]).
    lean: Option<Lean>,
}

/// The users a lean plan would create (28 bytes each) and their managers' ids in one arena.
#[derive(Default)]
struct Lean {
    creates: Vec<LeanCreate>,
    managers: String,
}

/// A user to create as a lean plan keeps it: its row among those seen, where its manager's
/// employee id lies in [`Lean::managers`] (offset, length; length 0: no manager), and the
/// digest of its raw row.
struct LeanCreate {
    row: u32,
    manager: (u32, u32),
    digest: [u8; 16],
}

/// What the planner keeps of rows taken as unchanged by their stamp: per snapshot entry the
/// line of its row (0: none; [`SKIP_INVALID`] marks a row rejected afterwards), nothing else.
struct Skipped {
    fingerprint: u128,
    file: String,
    lines: Vec<u32>,
    count: u64,
    /// Full rows whose login a skipped row may hold: (seen row, snapshot entry, login).
    logins: Vec<(u32, u32, String)>,
    /// Full rows found unchanged whose stamp is missing or stale: (entry, digest).
    restamp: Vec<(u32, u128)>,
}

const SKIP_INVALID: u32 = 1 << 31;

/// Row stamps to record (see [`index`]): rows planned in full that match the snapshot now, and
/// rows whose operation, once Concur acknowledges it, makes them match.
#[derive(Debug, Default, Clone)]
pub struct RowStamps {
    pub fingerprint: u128,
    /// (employee id, row digest, content hash the row normalizes to).
    pub unchanged: Vec<(String, u128, [u8; 16])>,
    /// (employee id key, row digest, content hash the row normalizes to).
    pub planned: Vec<(u128, u128, [u8; 16])>,
}

/// The planner's result before old records are loaded.
#[derive(Debug, Default)]
pub struct Draft {
    pub candidates: Vec<Candidate>,
    /// Active snapshot users missing from the source.
    pub vanished: Vec<String>,
    pub rejections: Vec<Rejection>,
    pub unchanged: u64,
    pub skipped_inactive: u64,
    /// Distinct employee ids the source named (valid or not).
    pub source_ids: u64,
    /// Look-alike keys of what rejected rows carried (ids, logins, e-mails) → the row:
    /// [`complete`] deactivates no vanished user whose id, login or e-mail matches one.
    pub protect: HashMap<String, String>,
    /// Employee id → keyed hash of the source password, for users whose password was unknown
    /// (after a new state key): to be recorded without sending anything.
    pub learned_macs: Vec<(String, [u8; 16])>,
    /// Row stamps to record, when the source was stamped.
    pub row_stamps: Option<RowStamps>,
    /// A lean plan's users to create ([`Planner::lean`]): the digests of their rows, sorted.
    /// Two rows of the same bytes would be duplicates, so a digest names one row.
    pub lean_creates: Vec<u128>,
}

impl<'a> Planner<'a> {
    pub fn new(
        snapshot: &'a RowIndex<'a>,
        mac: &'a dyn Fn(&str, &crate::model::Secret) -> [u8; 16],
        options: PlanOptions,
    ) -> Planner<'a> {
        let n = snapshot.len() + snapshot.len() / 8 + 16;
        Planner {
            snapshot,
            mac,
            options,
            seen: Seen::with_capacity(n),
            logins: KeyTable::with_capacity(n),
            dup_ids: BTreeMap::new(),
            dup_login_holders: Vec::new(),
            candidates: Vec::new(),
            renamed_away: HashSet::new(),
            protect: HashMap::new(),
            learned_macs: Vec::new(),
            rejections: Vec::new(),
            unchanged: 0,
            skipped_inactive: 0,
            rows: None,
            lean: None,
        }
    }

    /// Keeps no record of the users it would create, only their rows, managers and row
    /// digests ([`Draft::lean_creates`]), under the same cross-record rules: for `baseline` of
    /// a large file into an empty snapshot, which reads the file again to write them. Every
    /// valid active row is a create there, so nothing else is planned, and of a record only
    /// its [`LEAN_FIELDS`] are read.
    pub fn lean(&mut self) {
        debug_assert!(
            self.snapshot.is_empty(),
            "a lean plan has an empty snapshot"
        );
        self.lean = Some(Lean::default());
    }

    /// Plans rows of the file `file` under the configuration `fingerprint`: rows may then be
    /// pushed as unchanged by their stamp ([`Planner::push_unchanged`]) and full rows with their
    /// digest ([`Planner::push_row`]); [`Draft::row_stamps`] says what to record.
    pub fn stamping(&mut self, fingerprint: u128, file: &str) {
        // Most rows will be taken as unchanged: the full rows' sets grow as needed instead.
        self.seen = Seen::with_capacity(1024);
        self.logins = KeyTable::with_capacity(1024);
        self.rows = Some(Skipped {
            fingerprint,
            file: file.to_owned(),
            lines: vec![0; self.snapshot.len()],
            count: 0,
            logins: Vec::new(),
            restamp: Vec::new(),
        });
    }

    /// A row whose stamp matched snapshot entry `entry` ([`RowIndex::unchanged`]), on `line`:
    /// counted unchanged, unless another row already named its employee id.
    pub fn push_unchanged(&mut self, entry: u32, line: u32) {
        let Some(rows) = self.rows.as_mut() else {
            return;
        };
        let key = self.snapshot.entry(entry).id_key;
        let earlier = rows.lines[entry as usize] != 0 || self.seen.get(key).is_some();
        if earlier {
            let origin = format!("{}:{line}", rows.file);
            self.dup_ids
                .entry(self.snapshot.id(entry).to_owned())
                .or_default()
                .push(origin);
            return;
        }
        rows.lines[entry as usize] = line.min(SKIP_INVALID - 1);
        rows.count += 1;
        self.unchanged += 1;
    }

    /// The snapshot entry of `key` if a skipped row named it: (entry, line, still valid).
    fn skipped(&self, key: u128) -> Option<(u32, u32, bool)> {
        let rows = self.rows.as_ref()?;
        let i = self.snapshot.find(key)?;
        let l = rows.lines[i as usize];
        (l != 0).then_some((i, l & !SKIP_INVALID, l & SKIP_INVALID == 0))
    }

    fn skipped_origin(&self, line: u32) -> String {
        let file = self.rows.as_ref().map_or("", |r| r.file.as_str());
        format!("{file}:{line}")
    }

    /// A source row that failed validation: its rejections are kept, and every managed user
    /// it could name (by employee id, login or e-mail, even an invalid or look-alike one)
    /// keeps its last good state: nobody is deactivated for a rejected row.
    pub fn push_rejected(&mut self, rejections: Vec<Rejection>) {
        let (id, origin) = match rejections.first() {
            Some(r) => (r.employee_id.clone(), r.source.clone()),
            None => return,
        };
        for r in &rejections {
            for v in r.identity.0.iter().chain(r.employee_id.as_ref()) {
                self.protect
                    .entry(lookalike_key(v))
                    .or_insert_with(|| origin.clone());
            }
        }
        self.rejections.extend(rejections);
        if let Some(id) = id.filter(|s| !s.is_empty()) {
            let key = id_key(&id);
            if self.seen.get(key).is_some() {
                self.dup_ids.entry(id).or_default().push(origin);
                return;
            }
            self.seen.add(key, &id, &origin, 0);
        }
    }

    /// A valid, normalized record.
    pub fn push(&mut self, record: SourceRecord) {
        self.push_row(record, None);
    }

    /// A valid, normalized record with the digest of its raw row.
    pub fn push_row(&mut self, record: SourceRecord, digest: Option<u128>) {
        let id = record.user.employee_id();
        let key = id_key(id);
        if self.seen.get(key).is_some() || self.skipped(key).is_some() {
            self.dup_ids
                .entry(id.to_owned())
                .or_default()
                .push(record.origin);
            return;
        }
        let approver = record.user.is_approver();
        let flags = if approver { VALID | APPROVER } else { VALID };
        let row = self.seen.add(key, id, &record.origin, flags);
        let login = login_key(record.user.login_id());
        match self.logins.get(login) {
            Some(holder) => {
                let (holder_id, holder_origin) = (
                    self.seen.id(holder).to_owned(),
                    self.seen.origin(holder).to_owned(),
                );
                self.rejections.push(Rejection {
                    source: record.origin.clone(),
                    employee_id: Some(id.to_owned()),
                    field: "login_id".into(),
                    message: format!(
                        "login_id \"{}\" is also used by employee {holder_id} at {holder_origin}; both rows rejected",
                        record.user.login_id()
                    ),
                    identity: RowIdentity::default(),
                });
                self.seen.invalidate(row);
                if !self.dup_login_holders.contains(&holder) {
                    self.dup_login_holders.push(holder);
                    self.rejections.push(Rejection {
                        source: holder_origin,
                        employee_id: Some(holder_id),
                        field: "login_id".into(),
                        message: format!(
                            "login_id \"{}\" is also used by employee {id} at {}; both rows rejected",
                            record.user.login_id(),
                            record.origin
                        ),
                        identity: RowIdentity::default(),
                    });
                }
                return;
            }
            None => {
                self.logins.insert(login, row);
            }
        }
        // A row taken as unchanged unseen may hold this login: checked when all are known.
        if let Some(rows) = self.rows.as_mut() {
            let bits = index::login_bits(login);
            if let Some(j) = self.snapshot.login_holder(bits)
                && self.snapshot.entry(j).id_key != key
            {
                rows.logins
                    .push((row, j, record.user.login_id().to_owned()));
            }
        }
        let active = record.user.is_active();
        match self.snapshot.get_key(key) {
            None => {
                // A rename: the source says which employee id this person had before.
                if let Some(prev) = record
                    .previous_employee_id
                    .as_deref()
                    .filter(|p| *p != id && self.snapshot.contains(p))
                {
                    self.renamed_away.insert(prev.to_owned());
                    let old = Some(prev.to_owned());
                    self.candidates.push(Candidate {
                        kind: OpKind::Update,
                        record,
                        old_employee_id: old,
                        digest,
                        row,
                    });
                    return;
                }
                if !active {
                    self.skipped_inactive += 1;
                    return;
                }
                if let Some(lean) = self.lean.as_mut() {
                    let manager = record.user.get(Field::MANAGER_EMPLOYEE_ID).unwrap_or("");
                    let at = lean.managers.len() as u32;
                    lean.managers.push_str(manager);
                    lean.creates.push(LeanCreate {
                        row,
                        manager: (at, manager.len() as u32),
                        digest: digest.unwrap_or_default().to_le_bytes(),
                    });
                    return;
                }
                self.candidates.push(Candidate {
                    kind: OpKind::Create,
                    record,
                    old_employee_id: None,
                    digest,
                    row,
                });
            }
            Some(_)
                if record
                    .previous_employee_id
                    .as_deref()
                    .is_some_and(|p| p != id && self.snapshot.contains(p)) =>
            {
                let prev = record.previous_employee_id.as_deref().unwrap_or_default();
                self.reject_rename(
                    row,
                    &record,
                    format!(
                        "previous_employee_id \"{prev}\" belongs to another managed user, and employee \"{id}\" already exists: the row cannot rename one into the other"
                    ),
                );
                // Neither user is deactivated for it.
                self.renamed_away.insert(prev.to_owned());
            }
            Some(entry) => {
                let kind = if entry.active != active || entry.hash != record.user.content_hash() {
                    Some(match (entry.active, active) {
                        (false, true) => OpKind::Reactivate,
                        (true, false) => OpKind::Deactivate,
                        _ => OpKind::Update,
                    })
                } else if self.options.source_passwords
                    && let Some(pw) = record.password.as_ref()
                    && let Some(mac) =
                        Some((self.mac)(id, pw)).filter(|m| entry.password_mac != Some(*m))
                {
                    if entry.password_mac == Some(PASSWORD_MAC_UNKNOWN) {
                        // The first password seen after a new state key is what Concur is
                        // taken to hold: recorded, not sent.
                        self.learned_macs.push((id.to_owned(), mac));
                        None
                    } else {
                        Some(OpKind::Password)
                    }
                } else {
                    None
                };
                match kind {
                    Some(kind) => self.candidates.push(Candidate {
                        kind,
                        record,
                        old_employee_id: None,
                        digest,
                        row,
                    }),
                    None => {
                        self.unchanged += 1;
                        if let (Some(rows), Some(d)) = (self.rows.as_mut(), digest)
                            && let Some(i) = self.snapshot.find(key)
                            && index::stamp(
                                rows.fingerprint,
                                d,
                                &entry.hash,
                                entry.password_mac.as_ref(),
                            ) != self.snapshot.entry(i).stamp
                        {
                            rows.restamp.push((i, d));
                        }
                    }
                }
            }
        }
    }

    /// Rejects a rename row: it is not planned, and both its ids stay protected.
    fn reject_rename(&mut self, row: u32, record: &SourceRecord, message: String) {
        self.seen.invalidate(row);
        let mut identity = RowIdentity::default();
        identity.push(record.user.employee_id());
        identity.push(record.user.login_id());
        if let Some(p) = &record.previous_employee_id {
            identity.push(p);
        }
        for v in &identity.0 {
            self.protect
                .entry(lookalike_key(v))
                .or_insert_with(|| record.origin.clone());
        }
        self.rejections.push(Rejection {
            source: record.origin.clone(),
            employee_id: Some(record.user.employee_id().to_owned()),
            field: crate::validate::PREVIOUS_EMPLOYEE_ID.into(),
            message,
            identity,
        });
    }

    fn invalidate_skipped(&mut self, entry: u32) {
        if let Some(rows) = self.rows.as_mut() {
            rows.lines[entry as usize] |= SKIP_INVALID;
        }
    }

    /// A full row holding the login of a row taken as unchanged: both rows are rejected, as
    /// two full rows sharing a login are.
    fn check_skipped_logins(&mut self) {
        let Some(rows) = self.rows.as_mut() else {
            return;
        };
        let pairs = std::mem::take(&mut rows.logins);
        for (row, entry, login) in pairs {
            let Some((_, line, _)) = self.skipped(self.snapshot.entry(entry).id_key) else {
                continue;
            };
            let (full_id, full_origin) = (
                self.seen.id(row).to_owned(),
                self.seen.origin(row).to_owned(),
            );
            let skipped_id = self.snapshot.id(entry).to_owned();
            let skipped_origin = self.skipped_origin(line);
            let full_line: u64 = full_origin
                .rsplit(':')
                .next()
                .and_then(|l| l.parse().ok())
                .unwrap_or(0);
            let message = |other: &str, at: &str| {
                format!(
                    "login_id \"{login}\" is also used by employee {other} at {at}; both rows rejected"
                )
            };
            let full = Rejection {
                source: full_origin.clone(),
                employee_id: Some(full_id.clone()),
                field: "login_id".into(),
                message: message(&skipped_id, &skipped_origin),
                identity: RowIdentity::default(),
            };
            let other = Rejection {
                source: skipped_origin.clone(),
                employee_id: Some(skipped_id.clone()),
                field: "login_id".into(),
                message: message(&full_id, &full_origin),
                identity: RowIdentity::default(),
            };
            if full_line < u64::from(line) {
                self.rejections.extend([other, full]);
            } else {
                self.rejections.extend([full, other]);
            }
            self.seen.invalidate(row);
            self.invalidate_skipped(entry);
        }
    }

    /// A rename (`previous_employee_id`) never takes over a present employee: a rename row is
    /// rejected when the previous id still has its own row, or when another row claims the
    /// same previous id (then every such row is rejected).
    fn check_renames(&mut self) {
        let mut claims: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, c) in self.candidates.iter().enumerate() {
            if let Some(prev) = &c.old_employee_id {
                claims.entry(prev.clone()).or_default().push(i);
            }
        }
        let mut rejected: Vec<(usize, String)> = Vec::new();
        for (prev, rows) in &claims {
            let own = match self.seen.get(id_key(prev)) {
                Some(own) => Some(self.seen.origin(own).to_owned()),
                None => self
                    .skipped(id_key(prev))
                    .map(|(_, line, _)| self.skipped_origin(line)),
            };
            if let Some(at) = own {
                for &i in rows {
                    rejected.push((
                        i,
                        format!(
                            "previous_employee_id \"{prev}\" still has its own row at {at}: a present employee cannot be renamed"
                        ),
                    ));
                }
            } else if rows.len() > 1 {
                for &i in rows {
                    let others: Vec<&str> = rows
                        .iter()
                        .filter(|&&j| j != i)
                        .map(|&j| self.candidates[j].record.origin.as_str())
                        .collect();
                    rejected.push((
                        i,
                        format!(
                            "previous_employee_id \"{prev}\" is also claimed at {}; all rows claiming it rejected",
                            others.join(", ")
                        ),
                    ));
                }
            }
        }
        if rejected.is_empty() {
            return;
        }
        rejected.sort_by_key(|(i, _)| *i);
        let mut drop = HashSet::new();
        for (i, message) in rejected {
            let record = self.candidates[i].record.clone();
            if let Some(row) = self.seen.get(id_key(record.user.employee_id())) {
                self.reject_rename(row, &record, message);
            }
            drop.insert(i);
        }
        let mut i = 0;
        self.candidates.retain(|_| {
            i += 1;
            !drop.contains(&(i - 1))
        });
    }
}

mod complete;
mod finish;
pub mod index;
mod managers;
mod order;
mod seen;

pub use index::RowIndex;

pub use complete::complete;
use seen::{APPROVER, KeyTable, Seen, VALID};

#[cfg(test)]
mod tests;
