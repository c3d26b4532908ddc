//! The index file beside the state database (`<state>.index`): the arrays of a [`RowIndex`]
//! exactly as they are in memory, so that a plan maps the file read-only and uses it in place
//! (a million users in a few tens of milliseconds, nothing decoded or copied). A file is used
//! only when its header names the database's snapshot generation and this machine's layout,
//! its checksum holds and [`RowIndex::from_parts`] accepts its arrays; anything else is
//! rebuilt from `users` ([`super::Store::row_index`]).

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};

use xxhash_rust::xxh3::Xxh3;
use zerocopy::{FromBytes, IntoBytes};

use crate::plan::index::{IndexEntry, IndexParts, MacEntry, RowIndex};

const MAGIC: &[u8; 8] = b"CSYNCIX2";

/// The header: magic, generation, entry count, id arena bytes, table slots, password hashes,
/// then the layout ([`layout`]). The arrays follow it in this order: entries, table by id,
/// table by login, password hashes, ids; then the checksum of all before it. Every array
/// starts where its type is aligned, so the file is used in place.
const HEAD: usize = 64;

/// What the arrays' bytes mean on this machine: the record sizes and the byte order. A file
/// of another layout is rebuilt.
fn layout() -> [u8; 16] {
    let mut l = [0u8; 16];
    l[..4].copy_from_slice(&(size_of::<IndexEntry>() as u32).to_le_bytes());
    l[4..8].copy_from_slice(&(size_of::<MacEntry>() as u32).to_le_bytes());
    l[8..].copy_from_slice(&0x0102_0304_0506_0708u64.to_ne_bytes());
    l
}

/// The planner's index as [`Store::row_index`] loaded it; [`LoadedIndex::index`] is what the
/// planner reads.
pub enum LoadedIndex {
    Mapped(MappedIndex),
    Built(RowIndex<'static>),
}

/// The index file, mapped read-only, with its arrays checked.
pub struct MappedIndex {
    map: memmap2::Mmap,
    pub(super) layout: Layout,
}

/// Where a mapped file's arrays lie.
#[derive(Clone, Copy)]
pub(super) struct Layout {
    pub(super) entries: usize,
    ids: usize,
    slots: usize,
    macs: usize,
}

impl Layout {
    /// The arrays of `bytes` (the file without its checksum), if they lie where this layout
    /// says, fill it exactly and are aligned for their types.
    fn parts<'a>(&self, bytes: &'a [u8]) -> Option<IndexParts<'a>> {
        let mut at = HEAD;
        let mut take = |len: usize| {
            let part = bytes.get(at..at.checked_add(len)?)?;
            at += len;
            Some(part)
        };
        let entries = take(self.entries.checked_mul(size_of::<IndexEntry>())?)?;
        let by_id = take(self.slots.checked_mul(4)?)?;
        let by_login = take(self.slots.checked_mul(4)?)?;
        let macs = take(self.macs.checked_mul(size_of::<MacEntry>())?)?;
        let ids = take(self.ids)?;
        if at != bytes.len() {
            return None;
        }
        Some(IndexParts {
            entries: <[IndexEntry]>::ref_from_bytes(entries).ok()?,
            ids,
            macs: <[MacEntry]>::ref_from_bytes(macs).ok()?,
            by_id: <[u32]>::ref_from_bytes(by_id).ok()?,
            by_login: <[u32]>::ref_from_bytes(by_login).ok()?,
        })
    }
}

impl LoadedIndex {
    /// The index, borrowed from the mapping or from what was built.
    pub fn index(&self) -> RowIndex<'_> {
        match self {
            LoadedIndex::Built(ix) => ix.view(),
            LoadedIndex::Mapped(m) => {
                let body = &m.map[..m.map.len() - 16];
                match m.layout.parts(body) {
                    Some(parts) => RowIndex::from_trusted_parts(parts),
                    // Checked when mapped, and an index file is never rewritten in place.
                    None => unreachable!("a mapped index file changed its size"),
                }
            }
        }
    }
}

/// The generation a file records, reading only its header.
pub(super) fn header_generation(path: &std::path::Path) -> io::Result<i64> {
    let mut f = File::open(path)?;
    let mut head = [0u8; 16];
    f.read_exact(&mut head)?;
    if &head[..8] != MAGIC {
        return Err(io::Error::other("not an index file"));
    }
    Ok(i64::from_le_bytes(
        head[8..16].try_into().unwrap_or_default(),
    ))
}

/// Maps the file if it was built at `generation`, its checksum holds and its arrays pass
/// [`RowIndex::from_parts`]; `None` when stale. Nothing is copied or decoded.
pub(super) fn map_index(
    path: &std::path::Path,
    generation: i64,
) -> io::Result<Option<MappedIndex>> {
    let bad = io::Error::other;
    let f = File::open(path)?;
    let mut head = [0u8; HEAD];
    (&f).read_exact(&mut head)?;
    if &head[..8] != MAGIC {
        return Err(bad("not an index file"));
    }
    let word = |i: usize| u64::from_le_bytes(head[i..i + 8].try_into().unwrap_or_default());
    if word(8) as i64 != generation {
        return Ok(None);
    }
    if head[48..64] != layout() {
        return Err(bad("index file of another layout"));
    }
    let count = |w: u64| usize::try_from(w).map_err(io::Error::other);
    let layout = Layout {
        entries: count(word(16))?,
        ids: count(word(24))?,
        slots: count(word(32))?,
        macs: count(word(40))?,
    };
    if layout.slots != RowIndex::table_size(layout.entries) {
        return Err(bad("index file tables of the wrong size"));
    }
    // SAFETY: the mapping is read-only and private. concur-sync never writes an index file in
    // place (a new one is renamed over it) and the state lock keeps other instances out; a
    // file changed underneath by something else can make a look-up wrong or panic, but never
    // read outside the mapping (every access is a checked slice).
    let map = unsafe { memmap2::Mmap::map(&f)? };
    let Some(body) = map.len().checked_sub(16).filter(|b| *b >= HEAD) else {
        return Err(bad("index file too short"));
    };
    if xxhash_rust::xxh3::xxh3_128(&map[..body]).to_le_bytes()[..] != map[body..] {
        return Err(bad("index file checksum does not match"));
    }
    let parts = layout
        .parts(&map[..body])
        .ok_or_else(|| bad("index file size does not match its counts"))?;
    RowIndex::from_parts(parts).map_err(bad)?;
    Ok(Some(MappedIndex { map, layout }))
}

/// Writes the index atomically: a temporary file beside it, renamed into place.
pub(super) fn write_index(
    path: &std::path::Path,
    generation: i64,
    ix: &RowIndex<'_>,
) -> io::Result<()> {
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir)?;
    let p = ix.parts();
    let mut head = [0u8; HEAD];
    head[..8].copy_from_slice(MAGIC);
    head[8..16].copy_from_slice(&generation.to_le_bytes());
    for (at, v) in [
        (16, p.entries.len()),
        (24, p.ids.len()),
        (32, p.by_id.len()),
        (40, p.macs.len()),
    ] {
        head[at..at + 8].copy_from_slice(&(v as u64).to_le_bytes());
    }
    head[48..64].copy_from_slice(&layout());
    let mut w = BufWriter::with_capacity(1 << 20, tmp.as_file().try_clone()?);
    let mut hasher = Xxh3::new();
    for part in [
        &head[..],
        p.entries.as_bytes(),
        p.by_id.as_bytes(),
        p.by_login.as_bytes(),
        p.macs.as_bytes(),
        p.ids,
    ] {
        hasher.update(part);
        w.write_all(part)?;
    }
    w.write_all(&hasher.digest128().to_le_bytes())?;
    w.flush()?;
    drop(w);
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{HEAD, IndexEntry, LoadedIndex};
    use crate::store::{Ownership, Store};

    fn user(id: &str) -> crate::model::User {
        crate::test_support::user_named(id, "Ames")
    }

    #[test]
    fn the_mapped_file_answers_as_the_index_built_from_users() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.db"), None).unwrap();
        let users: Vec<_> = (0..50).map(|i| user(&format!("É{i:03}"))).collect();
        store.baseline_users(&users, Ownership::Adopted).unwrap();
        for id in ["É007", "É031"] {
            store
                .conn
                .execute(
                    "UPDATE users SET password_mac = ?2 WHERE employee_id = ?1",
                    rusqlite::params![id, &[id.len() as u8; 16][..]],
                )
                .unwrap();
        }
        let built = store.row_index().unwrap();
        assert!(matches!(built, LoadedIndex::Built(_)));
        let mapped = store.row_index().unwrap();
        assert!(matches!(mapped, LoadedIndex::Mapped(_)));
        let (b, m) = (built.index(), mapped.index());
        assert_eq!(m.len(), 50);
        for u in &users {
            let key = crate::model::id_key(u.employee_id());
            let (i, j) = (b.find(key).unwrap(), m.find(key).unwrap());
            assert_eq!(m.id(j), u.employee_id());
            assert_eq!(b.mac(i), m.mac(j));
            assert_eq!(b.entry(i).hash, m.entry(j).hash);
            let login = crate::plan::index::login_bits(crate::model::login_key(u.login_id()));
            assert_eq!(m.login_holder(login), Some(j));
        }
        assert_eq!(
            m.mac(m.find(crate::model::id_key("É031")).unwrap()),
            Some(&[5; 16])
        );
        assert!(!m.contains("É050"));
    }

    #[test]
    fn a_file_whose_checksum_holds_but_whose_tables_point_nowhere_is_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.db");
        let mut store = Store::open(&db, None).unwrap();
        store
            .baseline_users(&[user("A1"), user("B1")], Ownership::Adopted)
            .unwrap();
        store.refresh_row_index().unwrap();
        store.wait_for_index();
        let path = store.index_path();
        let mut bytes = std::fs::read(&path).unwrap();
        // Every slot of the table by id names entry 7 of 2, and the checksum is made to fit.
        let slots = HEAD + 2 * size_of::<IndexEntry>();
        for s in bytes[slots..slots + 16 * 4].chunks_mut(4) {
            s.copy_from_slice(&7u32.to_le_bytes());
        }
        let body = bytes.len() - 16;
        let sum = xxhash_rust::xxh3::xxh3_128(&bytes[..body]).to_le_bytes();
        bytes[body..].copy_from_slice(&sum);
        std::fs::write(&path, &bytes).unwrap();

        let loaded = store.row_index().unwrap();
        assert!(matches!(loaded, LoadedIndex::Built(_)));
        let ix = loaded.index();
        assert!(ix.contains("A1") && ix.contains("B1") && !ix.contains("C1"));
        assert!(matches!(store.row_index().unwrap(), LoadedIndex::Mapped(_)));
    }
}
