//! The planner's view of the snapshot, compact enough for millions of users: per managed user
//! its employee id (in one arena), id key, login key, content hash, active and approver flags,
//! the keyed password hash where one is known, and the *row stamp*: what says that one raw
//! source row means exactly what the snapshot holds, so that the row is counted unchanged
//! without being parsed, validated or normalized.
//!
//! A stamp binds four things ([`stamp`]): the configuration's fingerprint (mapping, defaults,
//! limits, header, rules), the digest of the row's raw bytes, and the content hash and password
//! hash the snapshot holds. It is written only when the row, normalized, had exactly the
//! snapshot's content hash (Concur acknowledged that record, or it was already there); any
//! later change of the snapshot row (a failed or partial acknowledgement writes another hash, a
//! new state key another password hash) or of the configuration makes it stop matching by
//! itself. A row whose stamp does not match is simply planned in full.

use crate::model::{KeyMap, SnapshotEntry, SnapshotIndex, id_key};

/// One managed user of the index.
#[derive(Clone, Copy, Debug)]
pub struct IndexEntry {
    pub id_key: u128,
    /// The row stamp (0: none).
    pub stamp: u128,
    pub hash: [u8; 16],
    /// 64 bits of the login's key ([`crate::model::login_key`]); 0 when unknown.
    pub login: u64,
    pub flags: u8,
    id_off: u32,
    id_len: u16,
}

/// Names the rules a row stamp stands for; changed whenever what a row becomes changes in a
/// way the crate version does not tell.
pub const STAMP_RULES: &str = "row-stamp-1";

/// The user is active in the snapshot.
pub const ACTIVE: u8 = 1;
/// The snapshot's record makes the user an expense approver.
pub const APPROVER: u8 = 2;
/// Another managed user holds the same login: neither row is ever taken as unchanged unseen.
pub const SHARED_LOGIN: u8 = 4;
/// A keyed password hash is known (in [`RowIndex::mac`]).
pub const HAS_MAC: u8 = 8;

const EMPTY: u32 = u32::MAX;

/// The compact snapshot index (see the module comment).
#[derive(Default)]
pub struct RowIndex {
    entries: Vec<IndexEntry>,
    ids: String,
    macs: KeyMap<[u8; 16]>,
    by_id: Vec<u32>,
    by_login: Vec<u32>,
}

/// The 64 bits of a login key the index keeps.
pub fn login_bits(login_key: u128) -> u64 {
    (login_key as u64) | 1
}

/// The stamp of a raw row with digest `digest` under `fingerprint`, for a snapshot row holding
/// `hash` and `mac`. Never 0.
pub fn stamp(fingerprint: u128, digest: u128, hash: &[u8; 16], mac: Option<&[u8; 16]>) -> u128 {
    let mut buf = [0u8; 81];
    buf[..16].copy_from_slice(&fingerprint.to_le_bytes());
    buf[16..32].copy_from_slice(&digest.to_le_bytes());
    buf[32..48].copy_from_slice(hash);
    if let Some(m) = mac {
        buf[48] = 1;
        buf[49..65].copy_from_slice(m);
    }
    xxhash_rust::xxh3::xxh3_128(&buf[..65]) | 1
}

/// The digest of a raw source row's bytes.
pub fn row_digest(bytes: &[u8]) -> u128 {
    xxhash_rust::xxh3::xxh3_128(bytes)
}

impl RowIndex {
    pub fn with_capacity(n: usize) -> RowIndex {
        RowIndex {
            entries: Vec::with_capacity(n),
            ids: String::with_capacity(n * 10),
            ..RowIndex::default()
        }
    }

    /// Adds a user; [`RowIndex::finish`] must follow the last one.
    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &mut self,
        id: &str,
        login: u64,
        hash: [u8; 16],
        flags: u8,
        mac: Option<[u8; 16]>,
        stamp: u128,
    ) {
        let key = id_key(id);
        let id = truncate(id);
        let mut flags = flags & (ACTIVE | APPROVER);
        if let Some(m) = mac {
            flags |= HAS_MAC;
            self.macs.insert(key, m);
        }
        self.entries.push(IndexEntry {
            id_key: key,
            stamp,
            hash,
            login,
            flags,
            id_off: self.ids.len() as u32,
            id_len: id.len() as u16,
        });
        self.ids.push_str(id);
    }

    /// Builds the look-up tables; marks users sharing a login.
    pub fn finish(mut self) -> RowIndex {
        let n = self.entries.len();
        let size = (n * 2).next_power_of_two().max(16);
        let mut by_id = vec![EMPTY; size];
        let mut by_login = vec![EMPTY; size];
        let mask = size - 1;
        let mut shared = Vec::new();
        for (i, e) in self.entries.iter().enumerate() {
            let mut s = (e.id_key as usize) & mask;
            loop {
                let at = by_id[s];
                if at == EMPTY {
                    by_id[s] = i as u32;
                    break;
                }
                if self.entries[at as usize].id_key == e.id_key {
                    break; // the first stays
                }
                s = (s + 1) & mask;
            }
            if e.login == 0 {
                continue;
            }
            let mut s = (e.login as usize) & mask;
            loop {
                let at = by_login[s];
                if at == EMPTY {
                    by_login[s] = i as u32;
                    break;
                }
                if self.entries[at as usize].login == e.login {
                    shared.push(at);
                    shared.push(i as u32);
                    break;
                }
                s = (s + 1) & mask;
            }
        }
        for i in shared {
            self.entries[i as usize].flags |= SHARED_LOGIN;
        }
        self.by_id = by_id;
        self.by_login = by_login;
        self
    }

    /// The index of the user with this id key.
    pub fn find(&self, key: u128) -> Option<u32> {
        if self.by_id.is_empty() {
            return None;
        }
        let mask = self.by_id.len() - 1;
        let mut s = (key as usize) & mask;
        loop {
            let at = self.by_id[s];
            if at == EMPTY {
                return None;
            }
            if self.entries[at as usize].id_key == key {
                return Some(at);
            }
            s = (s + 1) & mask;
        }
    }

    /// The index of the user holding this login (64-bit key from [`login_bits`]).
    pub fn login_holder(&self, login: u64) -> Option<u32> {
        if self.by_login.is_empty() {
            return None;
        }
        let mask = self.by_login.len() - 1;
        let mut s = (login as usize) & mask;
        loop {
            let at = self.by_login[s];
            if at == EMPTY {
                return None;
            }
            if self.entries[at as usize].login == login {
                return Some(at);
            }
            s = (s + 1) & mask;
        }
    }

    pub fn entry(&self, i: u32) -> &IndexEntry {
        &self.entries[i as usize]
    }

    pub fn id(&self, i: u32) -> &str {
        let e = &self.entries[i as usize];
        &self.ids[e.id_off as usize..e.id_off as usize + e.id_len as usize]
    }

    pub fn mac(&self, i: u32) -> Option<&[u8; 16]> {
        let e = &self.entries[i as usize];
        if e.flags & HAS_MAC == 0 {
            return None;
        }
        self.macs.get(&e.id_key)
    }

    /// What the planner compares a full row with.
    pub fn get_key(&self, key: u128) -> Option<SnapshotEntry> {
        let i = self.find(key)?;
        let e = self.entry(i);
        Some(SnapshotEntry {
            hash: e.hash,
            active: e.flags & ACTIVE != 0,
            password_mac: self.mac(i).copied(),
        })
    }

    pub fn contains(&self, id: &str) -> bool {
        self.find(id_key(id)).is_some()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every entry with its position.
    pub fn entries(&self) -> impl Iterator<Item = (u32, &IndexEntry)> {
        self.entries.iter().enumerate().map(|(i, e)| (i as u32, e))
    }

    /// The entry a raw row stands for when its stamp matches: the row is exactly what the
    /// snapshot holds.
    pub fn unchanged(&self, fingerprint: u128, key: u128, digest: u128) -> Option<u32> {
        let i = self.find(key)?;
        let e = self.entry(i);
        if e.stamp == 0 || e.flags & SHARED_LOGIN != 0 {
            return None;
        }
        (stamp(fingerprint, digest, &e.hash, self.mac(i)) == e.stamp).then_some(i)
    }
}

/// An index without logins or stamps, from the plain snapshot index (tests and sources that
/// are planned in full).
impl From<&SnapshotIndex> for RowIndex {
    fn from(s: &SnapshotIndex) -> RowIndex {
        let mut ix = RowIndex::with_capacity(s.len());
        for (id, e) in s.iter() {
            let flags = if e.active { ACTIVE } else { 0 };
            ix.push(id, 0, e.hash, flags, e.password_mac, 0);
        }
        ix.finish()
    }
}

fn truncate(s: &str) -> &str {
    let max = u16::MAX as usize;
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
