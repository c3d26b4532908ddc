//! Wiring the Concur client to the state database: the client a command or the service uses,
//! with its token and served throttle persisted in the store (`TokenBridge`) and its waits
//! bounded for one-shot commands (`Waits`).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::concur::{self, ConcurClient};
use crate::config::Config;
use crate::error::SyncError;
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
