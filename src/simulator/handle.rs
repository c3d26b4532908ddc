//! [`SimHandle`]: a running simulator, and what tests read and steer through it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::control;
use super::faults::Faults;
use super::state::{RequestRecord, Shared, SimUser, StoredUser};
use super::v4::{self, DeletedUser, V4Settings, model, status};

/// A running simulator. Dropping it stops the server abruptly; prefer [`SimHandle::shutdown`].
pub struct SimHandle {
    pub(super) addr: SocketAddr,
    pub(super) base_url: String,
    pub(super) shared: Arc<Shared>,
    pub(super) stop: Option<oneshot::Sender<()>>,
    pub(super) task: Option<JoinHandle<()>>,
}

impl SimHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://HOST:PORT`, also returned as `geolocation` by the token endpoint.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// Every user, sorted by EmpId (no passwords).
    pub fn users(&self) -> Vec<SimUser> {
        let inner = self.shared.lock();
        inner
            .sorted_users()
            .into_iter()
            .map(StoredUser::to_sim_user)
            .collect()
    }

    /// Whether `password` matches the stored hash of the user with this EmpId.
    pub fn password_matches(&self, emp_id: &str, password: &str) -> bool {
        let inner = self.shared.lock();
        inner
            .user_by_emp(emp_id)
            .and_then(|i| inner.users[i].password.as_ref())
            .is_some_and(|h| h.matches(password))
    }

    /// The request log (control endpoints excluded).
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.lock().requests.clone()
    }

    /// Every access and refresh token the token endpoint issued so far, oldest first, so that a
    /// test can scan what the client wrote for them.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.shared.lock().issued_tokens.clone()
    }

    /// Replaces the fault settings.
    pub fn set_faults(&self, faults: Faults) {
        self.shared.lock().faults = faults;
    }

    /// Reseeds the fault RNG.
    pub fn reseed(&self, seed: u64) {
        self.shared.reseed(seed);
    }

    /// Records with these EmpIds fail in later batches with `message`.
    pub fn reject(&self, employee_ids: &[&str], message: &str) {
        let mut inner = self.shared.lock();
        for id in employee_ids {
            inner.rejects.insert((*id).to_string(), message.to_string());
        }
    }

    /// Every access token issued so far is expired from now on.
    pub fn expire_tokens(&self) {
        control::expire_all(&self.shared);
    }

    /// Inserts or replaces users (by EmpId). A `Password` element is stored hashed.
    pub fn seed_users(&self, users: Vec<SimUser>) {
        let mut inner = self.shared.lock();
        inner.seed(users, self.shared.now());
        self.shared.persist(&inner);
    }

    /// The company UUID (the enterprise `companyId` every v4 user must carry).
    pub fn company_uuid(&self) -> String {
        self.shared.company_uuid.clone()
    }

    /// Every user as UPS `GET /Users/{id}` shows it (identity and extensions), in creation
    /// order, whatever the search lag.
    pub fn v4_users(&self) -> Vec<Value> {
        let inner = self.shared.lock();
        inner
            .users
            .iter()
            .map(|u| Value::Object(model::full_view(&inner, u.current(), &self.shared.base_url)))
            .collect()
    }

    /// The v4 resource of the user with this employee number.
    pub fn v4_user(&self, employee_number: &str) -> Option<Value> {
        let inner = self.shared.lock();
        let i = inner.user_by_emp(employee_number)?;
        Some(Value::Object(model::full_view(
            &inner,
            inner.users[i].current(),
            &self.shared.base_url,
        )))
    }

    /// Creates users through the v4 rules at once (no provision): each value is a User
    /// resource with its extensions. Returns the new ids, or the first refusal's message.
    pub fn seed_v4_users(&self, users: Vec<Value>) -> Result<Vec<String>, String> {
        let mut inner = self.shared.lock();
        let ids = v4::seed(&mut inner, &users, self.shared.now());
        self.shared.persist(&inner);
        ids
    }

    /// Every provision with all its operations (`Provision:Status` bodies), oldest first.
    pub fn provisions(&self) -> Vec<Value> {
        status::snapshot(&self.shared.lock(), &self.shared.base_url)
    }

    /// Every v4 hard delete so far.
    pub fn deleted_users(&self) -> Vec<DeletedUser> {
        self.shared.lock().v4.deleted.clone()
    }

    /// The spend User extension of operations for these employee numbers fails `times` more
    /// times (then succeeds).
    pub fn fail_spend(&self, employee_numbers: &[&str], times: u32) {
        let mut inner = self.shared.lock();
        for e in employee_numbers {
            inner.v4.spend_failures.insert((*e).to_string(), times);
        }
    }

    /// Provisions reaching an operation for these employee numbers stay pending until the
    /// provision timeout.
    pub fn stick(&self, employee_numbers: &[&str]) {
        let mut inner = self.shared.lock();
        for e in employee_numbers {
            inner.v4.stuck.insert((*e).to_string());
        }
    }

    /// Forgets stuck and failing employee numbers.
    pub fn clear_v4_faults(&self) {
        let mut inner = self.shared.lock();
        inner.v4.stuck.clear();
        inner.v4.spend_failures.clear();
    }

    /// These userNames are taken by another company (uniqueness is across all of Concur).
    pub fn reserve_user_names(&self, names: &[&str]) {
        let mut inner = self.shared.lock();
        for n in names {
            inner.v4.foreign_user_names.insert(n.to_ascii_lowercase());
        }
    }

    /// The v4 settings in force.
    pub fn v4_settings(&self) -> V4Settings {
        self.shared.lock().v4.settings.clone()
    }

    /// Replaces the v4 settings (work already submitted keeps its due time).
    pub fn set_v4_settings(&self, settings: V4Settings) {
        self.shared.lock().v4.settings = settings;
    }

    /// Moves the simulated clock forward: provisions come due, time out and expire, and the
    /// search lag passes, as if that much time had gone by.
    pub fn advance_clock(&self, by: Duration) {
        self.shared.advance_clock(by);
    }

    /// Stops accepting, lets in-flight requests finish (up to 5 s), then returns.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
