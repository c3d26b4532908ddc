//! Wiring the Concur client to the state database: the client a command or the service uses,
//! with its token and served throttle persisted in the store (`TokenBridge`) and its waits
//! bounded for one-shot commands (`Waits`); and the target users are written through
//! (`UsersVia`: User v1 on the client, or the User Provisioning Service v4), as
//! `concur.api` says.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::concur::v4::V4Target;
use crate::concur::{
    self, ConcurClient, ConcurError, PasswordOutcome, Planned, Poll, Provisioning, RecordOutcome,
    Submitted, UserTarget,
};
use crate::config::ConcurApi;
use crate::config::Config;
use crate::error::SyncError;
use crate::model::{Op, Secret};
use crate::store::Store;

/// How long a client built for a command may wait on Concur.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waits {
    /// A one-shot command: a served throttle longer than `concur.max_wait_seconds` fails it.
    OneShot,
    /// The service: waits however long Concur asks (cancellable by shutdown).
    Service,
}

/// Builds the Concur client for a one-shot command, wiring its token persistence to the state
/// DB; nothing cancels it.
pub fn client(cfg: &Config, store: &Store) -> Result<ConcurClient, SyncError> {
    client_with(cfg, store, &CancellationToken::new(), Waits::OneShot)
}

/// Builds the Concur client: token and served throttle persisted in the state DB, every wait
/// and request ended by `cancel`.
pub fn client_with(
    cfg: &Config,
    store: &Store,
    cancel: &CancellationToken,
    waits: Waits,
) -> Result<ConcurClient, SyncError> {
    let secrets = cfg.secrets()?;
    let tokens = Arc::new(TokenBridge(store.token_store()?));
    let c = &cfg.concur;
    let mut config = concur::ClientConfig::new(
        c.base_url.clone(),
        c.client_id.clone(),
        secrets.client_secret,
        c.company_id.clone(),
        secrets.request_token,
    );
    config.requests_per_second = c.requests_per_second;
    config.timeout = std::time::Duration::from_secs_f64(c.timeout_seconds);
    config.max_attempts = c.max_attempts;
    config.max_response_bytes = c.max_response_bytes;
    config.max_wait = match waits {
        Waits::OneShot => Some(std::time::Duration::from_secs_f64(c.max_wait_seconds)),
        Waits::Service => None,
    };
    config.cancel = cancel.clone();
    let client = ConcurClient::new(config, Some(tokens))?;
    Ok(client)
}

/// The target users are written through, as `concur.api` says.
#[derive(Clone, Debug)]
pub enum UsersVia {
    V1(ConcurClient),
    V4(V4Target),
}

/// The target of `cfg` on `client`. Deactivations under v4 are dated today (UTC).
pub fn user_target(cfg: &Config, client: &ConcurClient) -> UsersVia {
    let c = &cfg.concur;
    match c.api {
        ConcurApi::V1 => UsersVia::V1(client.clone()),
        ConcurApi::V4 => UsersVia::V4(
            V4Target::new(
                client.clone(),
                c.company_uuid.as_deref().unwrap_or_default().trim(),
                chrono::Utc::now().date_naive(),
                std::time::Duration::from_secs_f64(c.provision_poll_seconds),
                std::time::Duration::from_secs_f64(c.provision_timeout_minutes * 60.0),
            )
            .with_max_in_flight(c.max_requests_in_flight),
        ),
    }
}

impl UserTarget for UsersVia {
    fn max_batch(&self) -> usize {
        match self {
            UsersVia::V1(c) => c.max_batch(),
            UsersVia::V4(t) => t.max_batch(),
        }
    }
    async fn write_users(&self, ops: &[&Op]) -> Result<Vec<RecordOutcome>, ConcurError> {
        match self {
            UsersVia::V1(c) => c.write_users(ops).await,
            UsersVia::V4(t) => t.write_users(ops).await,
        }
    }
    fn provisioning(&self) -> Option<Provisioning> {
        match self {
            UsersVia::V1(c) => c.provisioning(),
            UsersVia::V4(t) => t.provisioning(),
        }
    }
    async fn submit(&self, ops: &[Planned<'_>]) -> Result<Submitted, ConcurError> {
        match self {
            UsersVia::V1(c) => c.submit(ops).await,
            UsersVia::V4(t) => t.submit(ops).await,
        }
    }
    async fn poll(&self, provision_id: &str) -> Result<Poll, ConcurError> {
        match self {
            UsersVia::V1(c) => c.poll(provision_id).await,
            UsersVia::V4(t) => t.poll(provision_id).await,
        }
    }
    async fn look_up(&self, employee_id: &str) -> Result<Option<String>, ConcurError> {
        match self {
            UsersVia::V1(c) => c.look_up(employee_id).await,
            UsersVia::V4(t) => t.look_up(employee_id).await,
        }
    }
    async fn set_passwords(
        &self,
        users: &[(&str, &Secret)],
    ) -> Result<Vec<PasswordOutcome>, ConcurError> {
        match self {
            UsersVia::V1(c) => c.set_passwords(users).await,
            UsersVia::V4(t) => t.set_passwords(users).await,
        }
    }
}

struct TokenBridge(crate::store::TokenDb);

impl concur::TokenStore for TokenBridge {
    fn load(&self) -> Option<concur::StoredToken> {
        match self.0.load() {
            Ok(Some((refresh_token, geolocation))) => Some(concur::StoredToken {
                refresh_token,
                geolocation,
                access_expires_at: None,
            }),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the stored refresh token");
                None
            }
        }
    }
    fn load_not_before(&self) -> Option<std::time::SystemTime> {
        self.0.load_not_before().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the stored Concur throttle");
            None
        })
    }
    fn save_not_before(&self, until: std::time::SystemTime) {
        if let Err(e) = self.0.save_not_before(until) {
            tracing::error!(error = %e, "cannot persist the throttle Concur served");
        }
    }
    fn save(&self, token: &concur::StoredToken) {
        if let Err(e) = self.0.save(
            &token.refresh_token,
            token.geolocation.as_deref(),
            token.access_expires_at,
        ) {
            tracing::error!(error = %e, "cannot persist the newest refresh token");
        }
    }
}
