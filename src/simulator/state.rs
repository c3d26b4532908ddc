//! Simulator state: users (one tenant, seen through User v1 and the v4 APIs), tokens,
//! attendees, v4 provisions, the request log, fault settings and the simulated clock.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use serde::{Deserialize, Serialize};

use super::faults::Faults;
use super::v4::model::V4Attrs;
use super::v4::provisions::Provision;
use super::v4::{V4State, provisions};
use super::{Dialect, SimConfig};

/// One Concur user as the simulator stores it: UserProfile element name → value.
/// Passwords are never part of `fields`; they are kept only as a salted hash.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SimUser {
    pub fields: BTreeMap<String, String>,
}

impl SimUser {
    /// An empty user.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builder: sets one element (a `Password` element is hashed when seeded).
    pub fn with(mut self, element: &str, value: &str) -> Self {
        self.fields.insert(element.to_string(), value.to_string());
        self
    }

    /// Value of one element, if set.
    pub fn get(&self, element: &str) -> Option<&str> {
        self.fields.get(element).map(String::as_str)
    }

    /// `EmpId` (empty when unset).
    pub fn emp_id(&self) -> &str {
        self.get("EmpId").unwrap_or("")
    }

    /// `LoginId` (empty when unset).
    pub fn login_id(&self) -> &str {
        self.get("LoginId").unwrap_or("")
    }

    /// `Active` is anything but `N` (Concur's default for a new user is active).
    pub fn active(&self) -> bool {
        !matches!(self.get("Active"), Some(v) if v.eq_ignore_ascii_case("N"))
    }
}

/// One line of the request log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    /// HTTP status sent; 0 when the connection was closed without a response.
    pub status: u16,
    /// Milliseconds since the simulator started, when the answer was sent (or the connection
    /// closed).
    pub time_ms: u64,
    /// Milliseconds since the simulator started, when the request arrived (before any injected
    /// latency): the order in which the client sent its requests.
    #[serde(default)]
    pub arrived_ms: u64,
    /// Number of records in a write batch (User v1 batch, password batch) or of operations in
    /// a v4 Bulk request.
    pub records: Option<usize>,
    /// Size of the request body in bytes, for v4 Bulk requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_bytes: Option<usize>,
    /// Injected fault, if any: `latency`, `429`, `5xx`, `drop`, `lost_response`.
    pub fault: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PasswordHash {
    salt: String,
    hash: String,
}

impl PasswordHash {
    pub fn new(password: &str) -> Self {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        let hash = Self::digest(&salt, password);
        Self {
            salt: hex::encode(salt),
            hash,
        }
    }

    fn digest(salt: &[u8], password: &str) -> String {
        let mut h = blake3::Hasher::new_derive_key("concur-sync simulator password v1");
        h.update(salt);
        h.update(password.as_bytes());
        h.finalize().to_hex().to_string()
    }

    pub fn matches(&self, password: &str) -> bool {
        match hex::decode(&self.salt) {
            Ok(salt) => {
                let candidate = Self::digest(&salt, password);
                // Compare digests in constant time.
                blake3::Hash::from_hex(&candidate).ok() == blake3::Hash::from_hex(&self.hash).ok()
            }
            Err(_) => false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredUser {
    /// The v3.1 `ID` (uppercase GUID) and profile `id`; lowercased, the v4 `id`.
    pub id: String,
    pub fields: BTreeMap<String, String>,
    pub password: Option<PasswordHash>,
    /// Creation order: the order of v4 lists and what their cursors point at.
    #[serde(default)]
    pub seq: u64,
    /// v4-only attributes and timestamps.
    #[serde(default)]
    pub v4: V4Attrs,
    /// What search indexes show while a write is younger than the search lag.
    #[serde(skip)]
    pub search_prev: Option<Box<SearchVersion>>,
    /// The keys this user is indexed under (to drop them when they change).
    #[serde(skip)]
    keys: IndexedKeys,
}

/// A user's data as the search index last saw it.
#[derive(Debug, Clone)]
pub(crate) struct SearchVersion {
    pub fields: BTreeMap<String, String>,
    pub v4: V4Attrs,
}

#[derive(Debug, Clone, Default)]
struct IndexedKeys {
    emp: String,
    login: String,
    external: String,
}

impl StoredUser {
    pub fn get(&self, k: &str) -> &str {
        self.fields.get(k).map(String::as_str).unwrap_or("")
    }

    pub fn to_sim_user(&self) -> SimUser {
        SimUser {
            fields: self.fields.clone(),
        }
    }

    pub fn set(&mut self, k: &str, v: &str) {
        if v.is_empty() {
            self.fields.remove(k);
        } else {
            self.fields.insert(k.to_string(), v.to_string());
        }
    }

    /// A user that is not stored yet (see [`Inner::add_user`]).
    pub fn blank() -> Self {
        Self {
            id: new_guid(),
            fields: BTreeMap::new(),
            password: None,
            seq: 0,
            v4: V4Attrs::default(),
            search_prev: None,
            keys: IndexedKeys::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Attendee {
    pub id: String,
    pub version: u32,
    /// Field name (as sent, e.g. `lastName`, `custom8`) → value.
    pub fields: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub(crate) enum Principal {
    /// Company token (`credtype=authtoken`): the company id.
    Company(String),
    /// User token (`credtype=password`): the login id.
    User(String),
}

#[derive(Debug, Clone)]
pub(crate) struct AccessToken {
    pub principal: Principal,
    pub expires: Instant,
}

#[derive(Default)]
pub(crate) struct Inner {
    pub users: Vec<StoredUser>,
    pub attendees: Vec<Attendee>,
    pub access_tokens: HashMap<String, AccessToken>,
    pub refresh_tokens: HashMap<String, Principal>,
    pub requests: Vec<RequestRecord>,
    pub faults: Faults,
    pub rejects: HashMap<String, String>,
    /// Every access and refresh token issued, in order (for leak scans in tests).
    pub issued_tokens: Vec<String>,
    /// EmpId → position in `users`; kept by [`Inner::index`] wherever an identity changes.
    /// An entry is checked against the user it points to, so a stale one is never trusted.
    emp_index: HashMap<String, usize>,
    /// Lowercased LoginId → position in `users`, like `emp_index`.
    login_index: HashMap<String, usize>,
    /// Lowercased id → position in `users`.
    uuid_index: HashMap<String, usize>,
    /// v4 `externalId` → position in `users`.
    external_index: HashMap<String, usize>,
    next_seq: u64,
    /// The v4 side: settings, provisions, v4 faults, deletions.
    pub v4: V4State,
}

impl Inner {
    pub fn user_by_emp(&self, emp: &str) -> Option<usize> {
        match self.emp_index.get(emp) {
            Some(&i) if self.users.get(i).is_some_and(|u| u.get("EmpId") == emp) => Some(i),
            // The user it pointed to moved on (renamed): look for another holder.
            Some(_) => self.users.iter().position(|u| u.get("EmpId") == emp),
            None => None,
        }
    }

    pub fn user_by_login(&self, login: &str) -> Option<usize> {
        if login.is_empty() {
            return None;
        }
        let matches = |u: &StoredUser| u.get("LoginId").eq_ignore_ascii_case(login);
        match self.login_index.get(&login.to_ascii_lowercase()) {
            Some(&i) if self.users.get(i).is_some_and(matches) => Some(i),
            Some(_) => self.users.iter().position(matches),
            None => None,
        }
    }

    /// The user whose (v4) id is `id`, in any letter case.
    pub fn user_by_uuid(&self, id: &str) -> Option<usize> {
        let i = *self.uuid_index.get(&id.to_ascii_lowercase())?;
        self.users
            .get(i)
            .is_some_and(|u| u.id.eq_ignore_ascii_case(id))
            .then_some(i)
    }

    /// The user whose v4 `externalId` is `external`.
    pub fn user_by_external(&self, external: &str) -> Option<usize> {
        let i = *self.external_index.get(external)?;
        self.users
            .get(i)
            .is_some_and(|u| u.v4.external_id() == external)
            .then_some(i)
    }

    /// Records the current EmpId, LoginId, id and externalId of `users[i]` in the look-up
    /// indexes, dropping the keys it held before; called after every change that may touch them.
    pub fn index(&mut self, i: usize) {
        let Some(u) = self.users.get(i) else { return };
        let keys = IndexedKeys {
            emp: u.get("EmpId").to_string(),
            login: u.get("LoginId").to_ascii_lowercase(),
            external: u.v4.external_id().to_string(),
        };
        let old = std::mem::replace(&mut self.users[i].keys, keys.clone());
        let id = self.users[i].id.to_ascii_lowercase();
        for (index, before, now) in [
            (&mut self.emp_index, old.emp, keys.emp),
            (&mut self.login_index, old.login, keys.login),
            (&mut self.external_index, old.external, keys.external),
        ] {
            if before != now && index.get(&before) == Some(&i) {
                index.remove(&before);
            }
            if !now.is_empty() {
                index.insert(now, i);
            }
        }
        self.uuid_index.insert(id, i);
    }

    /// Stores a new user: its place in the creation order, its timestamps, its index entries.
    pub fn add_user(&mut self, mut user: StoredUser, now: DateTime<Utc>) -> usize {
        self.next_seq += 1;
        user.seq = self.next_seq;
        user.v4.created = now;
        user.v4.last_modified = now;
        user.v4.visible_from = now + self.search_lag();
        user.search_prev = None;
        self.users.push(user);
        let at = self.users.len() - 1;
        self.index(at);
        at
    }

    /// Call before changing `users[i]`: stamps the write and keeps what search indexes still
    /// show during the search lag.
    pub fn begin_write(&mut self, i: usize, now: DateTime<Utc>) {
        let lag = self.search_lag();
        let Some(u) = self.users.get_mut(i) else {
            return;
        };
        if lag.is_zero() {
            u.search_prev = None;
        } else if now >= u.v4.visible_from {
            u.search_prev = Some(Box::new(SearchVersion {
                fields: u.fields.clone(),
                v4: u.v4.clone(),
            }));
        }
        u.v4.last_modified = now;
        u.v4.visible_from = now + lag;
    }

    /// Removes `users[i]` for good (a v4 hard delete); the indexes are rebuilt.
    pub fn remove_user(&mut self, i: usize) -> StoredUser {
        let user = self.users.remove(i);
        self.reindex_all();
        user
    }

    fn reindex_all(&mut self) {
        self.emp_index.clear();
        self.login_index.clear();
        self.uuid_index.clear();
        self.external_index.clear();
        for i in 0..self.users.len() {
            self.users[i].keys = IndexedKeys::default();
            self.index(i);
        }
    }

    fn search_lag(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.v4.settings.search_lag).unwrap_or(chrono::Duration::MAX)
    }

    pub fn sorted_users(&self) -> Vec<&StoredUser> {
        let mut v: Vec<&StoredUser> = self.users.iter().collect();
        v.sort_by(|a, b| a.get("EmpId").cmp(b.get("EmpId")));
        v
    }

    /// Inserts or replaces seeded users (keyed by EmpId). Seeded users are searchable at once.
    pub fn seed(&mut self, users: Vec<SimUser>, now: DateTime<Utc>) {
        for mut u in users {
            let password = u.fields.remove("Password");
            let emp = u.emp_id().to_string();
            let idx = match self.user_by_emp(&emp) {
                Some(i) => {
                    self.begin_write(i, now);
                    i
                }
                None => self.add_user(StoredUser::blank(), now),
            };
            let stored = &mut self.users[idx];
            stored.search_prev = None;
            stored.v4.visible_from = now;
            stored.fields = u
                .fields
                .into_iter()
                .filter(|(_, v)| !v.is_empty())
                .collect();
            if let Some(p) = password {
                stored.password = Some(PasswordHash::new(&p));
            }
            self.index(idx);
        }
    }
}

#[derive(Serialize, Deserialize, Default)]
struct Persisted {
    users: Vec<StoredUser>,
    attendees: Vec<Attendee>,
    #[serde(default)]
    provisions: Vec<Provision>,
}

/// Everything the handlers share.
pub(crate) struct Shared {
    pub token_ttl: Duration,
    pub required_fields: Vec<String>,
    pub dialect: Dialect,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub company_id: Option<String>,
    pub request_token: Option<String>,
    pub company_name: String,
    pub company_uuid: String,
    pub owner_user_id: String,
    pub state_file: Option<PathBuf>,
    pub started: Instant,
    pub base_url: String,
    /// How far the simulated clock runs ahead of the wall clock, in ms.
    clock_offset_ms: AtomicI64,
    inner: Mutex<Inner>,
    rng: Mutex<StdRng>,
}

impl Shared {
    pub fn new(config: SimConfig, base_url: String) -> std::io::Result<Self> {
        let mut inner = Inner {
            faults: config.faults.clone(),
            ..Inner::default()
        };
        inner.v4.settings = config.v4.clone();
        inner.v4.company_uuid = config.company_uuid.to_ascii_lowercase();
        if let Some(path) = &config.state_file
            && path.exists()
        {
            let text = std::fs::read_to_string(path)?;
            let persisted: Persisted = serde_json::from_str(&text)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            inner.users = persisted.users;
            inner.attendees = persisted.attendees;
            let now = Utc::now();
            let mut seq = 0;
            for u in &mut inner.users {
                // Files written before the v4 view existed carry no order and no timestamps.
                seq = if u.seq > seq { u.seq } else { seq + 1 };
                u.seq = seq;
                if u.v4.created == DateTime::<Utc>::default() {
                    u.v4.created = now;
                    u.v4.last_modified = now;
                }
            }
            inner.next_seq = seq;
            inner.reindex_all();
            provisions::restore(&mut inner, persisted.provisions);
        }
        let rng = match config.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_rng(&mut rand::rng()),
        };
        Ok(Self {
            token_ttl: config.token_ttl,
            required_fields: config.required_fields,
            dialect: config.dialect,
            client_id: config.client_id,
            client_secret: config.client_secret,
            company_id: config.company_id,
            request_token: config.request_token,
            company_name: config.company_name,
            company_uuid: config.company_uuid.to_ascii_lowercase(),
            owner_user_id: uuid::Uuid::new_v4().to_string(),
            state_file: config.state_file,
            started: Instant::now(),
            base_url,
            clock_offset_ms: AtomicI64::new(0),
            inner: Mutex::new(inner),
            rng: Mutex::new(rng),
        })
    }

    /// The state, with every v4 provision that is due by now processed first, so that each
    /// reader sees the tenant as the simulated clock says it is.
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if provisions::settle(&mut inner, self.now()) {
            self.persist(&inner);
        }
        inner
    }

    /// The simulated clock: the wall clock plus every advance asked for.
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::milliseconds(self.clock_offset_ms.load(Ordering::SeqCst))
    }

    /// Moves the simulated clock forward (v4 provisions, timeouts, retention, search lag).
    pub fn advance_clock(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.clock_offset_ms.fetch_add(ms, Ordering::SeqCst);
    }

    /// How far the simulated clock runs ahead of the wall clock.
    pub fn clock_offset(&self) -> Duration {
        Duration::from_millis(
            u64::try_from(self.clock_offset_ms.load(Ordering::SeqCst)).unwrap_or(0),
        )
    }

    /// Draws a uniform number in [0, 1).
    pub fn roll(&self) -> f64 {
        self.rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .random::<f64>()
    }

    pub fn pick(&self, n: usize) -> usize {
        self.rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .random_range(0..n.max(1))
    }

    pub fn reseed(&self, seed: u64) {
        *self.rng.lock().unwrap_or_else(PoisonError::into_inner) = StdRng::seed_from_u64(seed);
    }

    pub fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Writes users and attendees to the state file, if one is configured.
    pub fn persist(&self, inner: &Inner) {
        let Some(path) = &self.state_file else { return };
        let persisted = Persisted {
            users: inner.users.clone(),
            attendees: inner.attendees.clone(),
            provisions: provisions::persisted(inner),
        };
        let result = serde_json::to_vec_pretty(&persisted)
            .map_err(std::io::Error::other)
            .and_then(|bytes| {
                let tmp = path.with_extension("tmp");
                std::fs::write(&tmp, bytes)?;
                std::fs::rename(&tmp, path)
            });
        if let Err(e) = result {
            tracing::warn!(path = %path.display(), error = %e, "simulator could not save its state");
        }
    }
}

/// Uppercase GUID, as Concur prints them.
pub(crate) fn new_guid() -> String {
    uuid::Uuid::new_v4().to_string().to_uppercase()
}

/// Random opaque token.
pub(crate) fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}
