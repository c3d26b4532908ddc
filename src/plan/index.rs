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

use std::borrow::Cow;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::model::{SnapshotEntry, SnapshotIndex, id_key};

/// One managed user of the index. Plain bytes without padding, so that the index file holds
/// the arrays exactly as they are in memory and loads with one read per array.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct IndexEntry {
    pub id_key: u128,
    /// The row stamp (0: none).
    pub stamp: u128,
    pub hash: [u8; 16],
    /// 64 bits of the login's key ([`crate::model::login_key`]); 0 when unknown.
    pub login: u64,
    id_off: u32,
    id_len: u16,
    pub flags: u8,
    reserved: u8,
}

/// The keyed password hash of entry `entry` (they are kept in entry order).
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct MacEntry {
    entry: u32,
    mac: [u8; 16],
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

/// The compact snapshot index (see the module comment): flat arrays, with two open-addressing
/// tables (by id key, by login) of [`RowIndex::table_size`] slots each. The arrays are either
/// built here ([`IndexBuilder`]) or borrowed from the bytes of the index file.
#[derive(Default)]
pub struct RowIndex<'a> {
    entries: Cow<'a, [IndexEntry]>,
    ids: Cow<'a, [u8]>,
    macs: Cow<'a, [MacEntry]>,
    by_id: Cow<'a, [u32]>,
    by_login: Cow<'a, [u32]>,
}

/// The arrays of a [`RowIndex`], as its file stores them.
pub struct IndexParts<'a> {
    pub entries: &'a [IndexEntry],
    /// The employee ids, UTF-8, one after the other.
    pub ids: &'a [u8],
    pub macs: &'a [MacEntry],
    pub by_id: &'a [u32],
    pub by_login: &'a [u32],
}

/// Collects users for a [`RowIndex`].
#[derive(Default)]
pub struct IndexBuilder {
    entries: Vec<IndexEntry>,
    ids: Vec<u8>,
    macs: Vec<MacEntry>,
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

impl IndexBuilder {
    pub fn with_capacity(n: usize) -> IndexBuilder {
        IndexBuilder {
            entries: Vec::with_capacity(n),
            ids: Vec::with_capacity(n * 10),
            macs: Vec::new(),
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
        if let Some(mac) = mac {
            flags |= HAS_MAC;
            self.macs.push(MacEntry {
                entry: self.entries.len() as u32,
                mac,
            });
        }
        self.entries.push(IndexEntry {
            id_key: key,
            stamp,
            hash,
            login,
            id_off: self.ids.len() as u32,
            id_len: id.len() as u16,
            flags,
            reserved: 0,
        });
        self.ids.extend_from_slice(id.as_bytes());
    }

    /// Builds the look-up tables; marks users sharing a login.
    pub fn finish(mut self) -> RowIndex<'static> {
        let n = self.entries.len();
        let size = RowIndex::table_size(n);
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
        RowIndex {
            entries: Cow::Owned(self.entries),
            ids: Cow::Owned(self.ids),
            macs: Cow::Owned(self.macs),
            by_id: Cow::Owned(by_id),
            by_login: Cow::Owned(by_login),
        }
    }
}

impl<'a> RowIndex<'a> {
    /// An index of nobody.
    pub fn empty() -> RowIndex<'static> {
        IndexBuilder::default().finish()
    }

    /// The number of slots of each look-up table for `n` entries: at most half of them used.
    pub fn table_size(n: usize) -> usize {
        (n * 2).next_power_of_two().max(16)
    }

    /// The index of the user with this id key.
    pub fn find(&self, key: u128) -> Option<u32> {
        probe(&self.by_id, key as usize, |at| {
            self.entries
                .get(at as usize)
                .is_some_and(|e| e.id_key == key)
        })
    }

    /// The index of the user holding this login (64-bit key from [`login_bits`]).
    pub fn login_holder(&self, login: u64) -> Option<u32> {
        probe(&self.by_login, login as usize, |at| {
            self.entries
                .get(at as usize)
                .is_some_and(|e| e.login == login)
        })
    }

    pub fn entry(&self, i: u32) -> &IndexEntry {
        &self.entries[i as usize]
    }

    pub fn id(&self, i: u32) -> &str {
        let e = &self.entries[i as usize];
        let bytes = &self.ids[e.id_off as usize..e.id_off as usize + e.id_len as usize];
        // Written from a `str`; a file's ids passed `from_parts`.
        std::str::from_utf8(bytes).unwrap_or_default()
    }

    pub fn mac(&self, i: u32) -> Option<&[u8; 16]> {
        let e = &self.entries[i as usize];
        if e.flags & HAS_MAC == 0 {
            return None;
        }
        let at = self.macs.binary_search_by_key(&i, |m| m.entry).ok()?;
        Some(&self.macs[at].mac)
    }

    /// The arrays, for the index file.
    pub fn parts(&self) -> IndexParts<'_> {
        IndexParts {
            entries: &self.entries,
            ids: &self.ids,
            macs: &self.macs,
            by_id: &self.by_id,
            by_login: &self.by_login,
        }
    }

    /// An index from arrays read back from its file, checked so that no look-up can reach
    /// outside them or loop: ids within the arena, table slots empty or naming an entry, tables
    /// of [`RowIndex::table_size`] slots with room left, password hashes in entry order for
    /// entries that say they have one. (Written without early exits, so that it vectorizes.)
    pub fn from_parts(p: IndexParts<'a>) -> Result<RowIndex<'a>, &'static str> {
        let n = p.entries.len();
        if n >= EMPTY as usize {
            return Err("too many entries");
        }
        let size = Self::table_size(n);
        if p.by_id.len() != size || p.by_login.len() != size {
            return Err("look-up tables of the wrong size");
        }
        for table in [p.by_id, p.by_login] {
            let (used, outside) = table.iter().fold((0usize, false), |(used, outside), &s| {
                let full = s != EMPTY;
                (
                    used + usize::from(full),
                    outside | (full & (s as usize >= n)),
                )
            });
            if outside {
                return Err("a look-up slot names no entry");
            }
            if used > n {
                return Err("a look-up table without room");
            }
        }
        // Ids are sliced out of the arena: all of it UTF-8, and, unless it is ASCII, every id
        // on character boundaries (checked below).
        let ascii = p.ids.is_ascii();
        if !ascii && std::str::from_utf8(p.ids).is_err() {
            return Err("ids that are not UTF-8");
        }
        let arena = p.ids.len();
        let (with_mac, outside) = p
            .entries
            .iter()
            .fold((0usize, false), |(macs, outside), e| {
                let end = e.id_off as usize + e.id_len as usize;
                (
                    macs + usize::from(e.flags & HAS_MAC != 0),
                    outside | (end > arena),
                )
            });
        if outside {
            return Err("an id outside the id arena");
        }
        let boundary = |at: usize| p.ids.get(at).is_none_or(|b| (*b as i8) >= -0x40);
        if !ascii
            && p.entries.iter().any(|e| {
                !boundary(e.id_off as usize) || !boundary(e.id_off as usize + e.id_len as usize)
            })
        {
            return Err("an id that splits a character");
        }
        if with_mac != p.macs.len()
            || p.macs.windows(2).any(|w| w[0].entry >= w[1].entry)
            || p.macs.iter().any(|m| {
                p.entries
                    .get(m.entry as usize)
                    .is_none_or(|e| e.flags & HAS_MAC == 0)
            })
        {
            return Err("password hashes do not match their entries");
        }
        Ok(RowIndex::from_trusted_parts(p))
    }

    /// An index from arrays [`RowIndex::from_parts`] accepted before (the same bytes). Never
    /// unsafe on others: a look-up may then panic, but reads nothing outside them and never
    /// loops.
    pub fn from_trusted_parts(p: IndexParts<'a>) -> RowIndex<'a> {
        RowIndex {
            entries: Cow::Borrowed(p.entries),
            ids: Cow::Borrowed(p.ids),
            macs: Cow::Borrowed(p.macs),
            by_id: Cow::Borrowed(p.by_id),
            by_login: Cow::Borrowed(p.by_login),
        }
    }

    /// The same index, borrowed.
    pub fn view(&self) -> RowIndex<'_> {
        RowIndex::from_trusted_parts(self.parts())
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
impl From<&SnapshotIndex> for RowIndex<'static> {
    fn from(s: &SnapshotIndex) -> RowIndex<'static> {
        let mut ix = IndexBuilder::with_capacity(s.len());
        for (id, e) in s.iter() {
            let flags = if e.active { ACTIVE } else { 0 };
            ix.push(id, 0, e.hash, flags, e.password_mac, 0);
        }
        ix.finish()
    }
}

/// Linear probing in `table` from `hash` for a slot whose entry `is` the one sought; stops at an
/// empty slot, or after every slot (a table read back from a file is never trusted to hold
/// one).
fn probe(table: &[u32], hash: usize, is: impl Fn(u32) -> bool) -> Option<u32> {
    if table.is_empty() {
        return None;
    }
    let mask = table.len() - 1;
    let mut s = hash & mask;
    for _ in 0..table.len() {
        let at = table[s];
        if at == EMPTY {
            return None;
        }
        if is(at) {
            return Some(at);
        }
        s = (s + 1) & mask;
    }
    None
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

#[cfg(test)]
mod tests {
    use super::{IndexBuilder, IndexParts, RowIndex};

    #[test]
    fn arrays_whose_ids_are_not_whole_characters_are_refused() {
        let mut b = IndexBuilder::with_capacity(2);
        b.push("É1", 1, [0; 16], 0, None, 0);
        b.push("Ö2", 2, [0; 16], 0, None, 0);
        let ix = b.finish();
        let p = ix.parts();
        assert!(RowIndex::from_parts(IndexParts { ..p }).is_ok());

        // The second id starts one byte into its first character.
        let mut entries = p.entries.to_vec();
        entries[1].id_off += 1;
        entries[1].id_len -= 1;
        let split = IndexParts {
            entries: &entries,
            ..ix.parts()
        };
        assert!(RowIndex::from_parts(split).is_err());

        // An arena that is not UTF-8 at all.
        let mut ids = p.ids.to_vec();
        ids[1] = 0xff;
        let bad = IndexParts {
            ids: &ids,
            ..ix.parts()
        };
        assert!(RowIndex::from_parts(bad).is_err());
    }
}
