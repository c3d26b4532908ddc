//! Every source row the planner has seen, compactly: employee id and origin in one arena,
//! with a validity and an approver flag, for the cross-record checks at the end; and the
//! compact map of identifier keys it and the login check use ([`KeyTable`]).

/// Every source row seen, compactly: its employee id and origin live in one arena.
#[derive(Default)]
pub(super) struct Seen {
    /// Employee id key → index into `rows`.
    by_id: KeyTable,
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
            by_id: KeyTable::with_capacity(n),
            rows: Vec::with_capacity(n),
            arena: String::with_capacity(n * 24),
        }
    }
    pub(super) fn get(&self, key: u128) -> Option<u32> {
        self.by_id.get(key)
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

/// Identifier keys ([`crate::model::id_key`], already uniform) → `u32`, compactly: the keys
/// and values in insertion order, and an open-addressing table of their positions, at most
/// half full. About 28 bytes a key where a `HashMap<u128, u32>` takes 66 (its 33-byte buckets
/// at most 7/8 full, doubled), which counts at a million rows.
#[derive(Default)]
pub(super) struct KeyTable {
    keys: Vec<u128>,
    values: Vec<u32>,
    /// Index into `keys`, or [`FREE`]; a power of two long (or empty).
    slots: Vec<u32>,
}

const FREE: u32 = u32::MAX;

impl KeyTable {
    pub(super) fn with_capacity(n: usize) -> KeyTable {
        KeyTable {
            keys: Vec::with_capacity(n),
            values: Vec::with_capacity(n),
            slots: vec![FREE; (n * 2).next_power_of_two().max(16)],
        }
    }

    /// The slot holding `key` (`Ok`), or the free slot where it would go (`Err`).
    fn find(&self, key: u128) -> Result<usize, usize> {
        let mask = self.slots.len() - 1;
        let mut s = (key as usize) & mask;
        loop {
            match self.slots[s] {
                FREE => return Err(s),
                i if self.keys[i as usize] == key => return Ok(s),
                _ => s = (s + 1) & mask,
            }
        }
    }

    pub(super) fn get(&self, key: u128) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let s = self.find(key).ok()?;
        Some(self.values[self.slots[s] as usize])
    }

    /// Maps `key` to `value`; returns the value it replaced.
    pub(super) fn insert(&mut self, key: u128, value: u32) -> Option<u32> {
        if (self.keys.len() + 1) * 2 > self.slots.len() {
            self.grow();
        }
        match self.find(key) {
            Ok(s) => Some(std::mem::replace(
                &mut self.values[self.slots[s] as usize],
                value,
            )),
            Err(s) => {
                self.slots[s] = self.keys.len() as u32;
                self.keys.push(key);
                self.values.push(value);
                None
            }
        }
    }

    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(16);
        self.slots = vec![FREE; size];
        let mask = size - 1;
        for (i, &key) in self.keys.iter().enumerate() {
            let mut s = (key as usize) & mask;
            while self.slots[s] != FREE {
                s = (s + 1) & mask;
            }
            self.slots[s] = i as u32;
        }
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
