//! Keys of identifiers and the snapshot index the planner diffs against: a million users
//! without one allocation per user.

/// What the snapshot remembers of a user, enough for planning without loading every field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotEntry {
    pub hash: [u8; 16],
    pub active: bool,
    /// Keyed hash of the last password Concur accepted for this user, if any.
    pub password_mac: Option<[u8; 16]>,
}

/// The `password_mac` of a user whose password is unknown because the state key was replaced
/// (`--new-key`): the next source password seen is recorded, not sent. A real keyed hash is
/// never all zeros (a chance of 2⁻¹²⁸).
pub const PASSWORD_MAC_UNKNOWN: [u8; 16] = [0; 16];

/// A 128-bit key of an identifier (employee id, lower-cased login): XXH3-128. Sets of a
/// million users are keyed by it without one allocation per user; at that size the chance of
/// any two keys colliding is about 10⁻²⁷.
pub fn id_key(id: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(id.as_bytes())
}

/// [`id_key`] of a login ignoring case, as Concur compares logins.
pub fn login_key(login: &str) -> u128 {
    if login.is_ascii() && login.len() <= 512 {
        let mut buf = [0u8; 512];
        let b = &mut buf[..login.len()];
        b.copy_from_slice(login.as_bytes());
        b.make_ascii_lowercase();
        xxhash_rust::xxh3::xxh3_128(b)
    } else {
        id_key(&login.to_lowercase())
    }
}

/// Hasher for maps keyed by [`id_key`]s, which are already uniform: no second hashing.
#[derive(Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(b);
        }
    }
    fn write_u128(&mut self, n: u128) {
        self.0 = (n as u64) ^ ((n >> 64) as u64);
    }
}

pub type KeyMap<V> = std::collections::HashMap<u128, V, std::hash::BuildHasherDefault<KeyHasher>>;
pub type KeySet = std::collections::HashSet<u128, std::hash::BuildHasherDefault<KeyHasher>>;

/// Every managed user's [`SnapshotEntry`], keyed by employee id, with all ids in one arena.
#[derive(Debug, Default)]
pub struct SnapshotIndex {
    map: KeyMap<u32>,
    entries: Vec<(SnapshotEntry, u32, u32)>,
    ids: String,
}

impl SnapshotIndex {
    pub fn with_capacity(n: usize) -> SnapshotIndex {
        SnapshotIndex {
            map: KeyMap::with_capacity_and_hasher(n, Default::default()),
            entries: Vec::with_capacity(n),
            ids: String::with_capacity(n * 12),
        }
    }
    pub fn insert(&mut self, id: &str, entry: SnapshotEntry) {
        let key = id_key(id);
        if let Some(&i) = self.map.get(&key) {
            self.entries[i as usize].0 = entry;
            return;
        }
        let off = self.ids.len() as u32;
        self.ids.push_str(id);
        self.map.insert(key, self.entries.len() as u32);
        self.entries.push((entry, off, id.len() as u32));
    }
    pub fn get(&self, id: &str) -> Option<&SnapshotEntry> {
        self.get_key(id_key(id))
    }
    pub fn get_key(&self, key: u128) -> Option<&SnapshotEntry> {
        self.map.get(&key).map(|&i| &self.entries[i as usize].0)
    }
    pub fn contains(&self, id: &str) -> bool {
        self.map.contains_key(&id_key(id))
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    /// Every user, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &SnapshotEntry)> {
        self.entries.iter().map(|(e, off, len)| {
            let (off, len) = (*off as usize, *len as usize);
            (&self.ids[off..off + len], e)
        })
    }
}
