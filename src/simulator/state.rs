//! Simulator state: users, tokens, attendees, the request log and fault settings.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use serde::{Deserialize, Serialize};

use super::faults::Faults;
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
    /// Number of records in a write batch (User v1 batch, password batch).
    pub records: Option<usize>,
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
    /// The v3.1 `ID` (uppercase GUID) and profile `id`.
    pub id: String,
    pub fields: BTreeMap<String, String>,
    pub password: Option<PasswordHash>,
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

    /// Records the current EmpId and LoginId of `users[i]` in the look-up indexes; called after
    /// every change that may touch them.
    pub fn index(&mut self, i: usize) {
        let Some(u) = self.users.get(i) else { return };
        let emp = u.get("EmpId").to_string();
        let login = u.get("LoginId").to_ascii_lowercase();
        self.emp_index.insert(emp, i);
        if !login.is_empty() {
            self.login_index.insert(login, i);
        }
    }

    pub fn sorted_users(&self) -> Vec<&StoredUser> {
        let mut v: Vec<&StoredUser> = self.users.iter().collect();
        v.sort_by(|a, b| a.get("EmpId").cmp(b.get("EmpId")));
        v
    }

    /// Inserts or replaces seeded users (keyed by EmpId).
    pub fn seed(&mut self, users: Vec<SimUser>) {
        for mut u in users {
            let password = u.fields.remove("Password");
            let emp = u.emp_id().to_string();
            let idx = match self.user_by_emp(&emp) {
                Some(i) => i,
                None => {
                    self.users.push(StoredUser {
                        id: new_guid(),
                        fields: BTreeMap::new(),
                        password: None,
                    });
                    self.users.len() - 1
                }
            };
            let stored = &mut self.users[idx];
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
    inner: Mutex<Inner>,
    rng: Mutex<StdRng>,
}

impl Shared {
    pub fn new(config: SimConfig, base_url: String) -> std::io::Result<Self> {
        let mut inner = Inner {
            faults: config.faults.clone(),
            ..Inner::default()
        };
        if let Some(path) = &config.state_file
            && path.exists()
        {
            let text = std::fs::read_to_string(path)?;
            let persisted: Persisted = serde_json::from_str(&text)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            inner.users = persisted.users;
            inner.attendees = persisted.attendees;
            for i in 0..inner.users.len() {
                inner.index(i);
            }
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
            company_uuid: uuid::Uuid::new_v4().to_string(),
            owner_user_id: uuid::Uuid::new_v4().to_string(),
            state_file: config.state_file,
            started: Instant::now(),
            base_url,
            inner: Mutex::new(inner),
            rng: Mutex::new(rng),
        })
    }

    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Draws a uniform number in [0, 1).
    pub fn roll(&self) -> f64 {
        self.rng
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .random::<f64>()
    }

    pub fn pick(&self, n: usize) -> usize {
        self.rng
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .random_range(0..n.max(1))
    }

    pub fn reseed(&self, seed: u64) {
        *self.rng.lock().unwrap_or_else(|e| e.into_inner()) = StdRng::seed_from_u64(seed);
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
