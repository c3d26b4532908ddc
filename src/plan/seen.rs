//! Every source row the planner has seen, compactly: employee id and origin in one arena,
//! with a validity and an approver flag, for the cross-record checks at the end.

use crate::model::KeyMap;

/// Every source row seen, compactly: its employee id and origin live in one arena.
#[derive(Default)]
pub(super) struct Seen {
    /// Employee id key → index into `rows`.
    by_id: KeyMap<u32>,
    /// (arena offset, id length, origin length, flags: [`VALID`], [`APPROVER`])
    rows: Vec<(u32, u16, u16, u8)>,
    arena: String,
}

/// The row was valid (and is not a duplicate).
pub(super) const VALID: u8 = 1;
/// The row makes its user an expense approver.
pub(super) const APPROVER: u8 = 2;

impl Seen {
    pub(super) fn with_capacity(n: usize) -> Seen {
        Seen {
            by_id: KeyMap::with_capacity_and_hasher(n, Default::default()),
            rows: Vec::with_capacity(n),
            arena: String::with_capacity(n * 24),
        }
    }
    pub(super) fn get(&self, key: u128) -> Option<u32> {
        self.by_id.get(&key).copied()
    }
    pub(super) fn add(&mut self, key: u128, id: &str, origin: &str, flags: u8) -> u32 {
        let off = self.arena.len() as u32;
        let id = truncate_str(id, u16::MAX as usize);
        let origin = truncate_str(origin, u16::MAX as usize);
        self.arena.push_str(id);
        self.arena.push_str(origin);
        let i = self.rows.len() as u32;
        self.rows
            .push((off, id.len() as u16, origin.len() as u16, flags));
        self.by_id.insert(key, i);
        i
    }
    pub(super) fn id(&self, i: u32) -> &str {
        let (off, il, _, _) = self.rows[i as usize];
        &self.arena[off as usize..off as usize + il as usize]
    }
    pub(super) fn origin(&self, i: u32) -> &str {
        let (off, il, ol, _) = self.rows[i as usize];
        let start = off as usize + il as usize;
        &self.arena[start..start + ol as usize]
    }
    pub(super) fn valid(&self, i: u32) -> bool {
        self.rows[i as usize].3 & VALID != 0
    }
    pub(super) fn approver(&self, i: u32) -> bool {
        self.rows[i as usize].3 & APPROVER != 0
    }
    pub(super) fn invalidate(&mut self, i: u32) {
        self.rows[i as usize].3 &= !VALID;
    }
    pub(super) fn len(&self) -> usize {
        self.rows.len()
    }
}

fn truncate_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
