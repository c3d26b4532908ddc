//! What every Concur call shares below the token lifecycle: the [`ClientConfig`], the
//! [`TokenStore`] the refresh token survives restarts in, and the [`Transport`] (HTTP client,
//! pacer, retry policy, store) that `auth` and `client` both send through.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::http::retry::{Pacer, RetryPolicy};
use crate::model::Secret;

/// Everything the client needs to reach one company's Concur.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// e.g. `https://us.api.concursolutions.com`; replaced by the token's `geolocation`.
    pub base_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub company_id: String,
    pub request_token: Secret,
    /// Fractional allowed (0.5 = one request every two seconds); 0 = no limit.
    pub requests_per_second: f64,
    /// Per request, connect to end of body.
    pub timeout: Duration,
    /// Sends per request in all, the first included.
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Origins trusted as a geolocation besides Concur's hosts, so that unit tests can follow
    /// one fake server to another.
    #[cfg(test)]
    pub(crate) trusted_test_origins: Vec<String>,
    /// Largest response body read; a longer answer fails the request.
    pub max_response_bytes: u64,
    /// Longest served throttle (`Retry-After`) waited for; a longer one fails the request with
    /// [`ConcurError::Throttled`]. `None` waits however long (the service).
    pub max_wait: Option<Duration>,
    /// Shutdown: every wait and every request in flight ends, and nothing more is sent.
    pub cancel: CancellationToken,
}

impl ClientConfig {
    /// A configuration with the default pacing: no rate limit, 60 s timeout, 6 attempts,
    /// backoff from 500 ms to 60 s.
    pub fn new(
        base_url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: Secret,
        company_id: impl Into<String>,
        request_token: Secret,
    ) -> ClientConfig {
        let defaults = RetryPolicy::default();
        ClientConfig {
            base_url: base_url.into(),
            client_id: client_id.into(),
            client_secret,
            company_id: company_id.into(),
            request_token,
            requests_per_second: 0.0,
            timeout: defaults.timeout,
            max_attempts: defaults.max_attempts,
            backoff_base: defaults.backoff_base,
            backoff_max: defaults.backoff_max,
            #[cfg(test)]
            trusted_test_origins: Vec::new(),
            max_response_bytes: defaults.max_body_bytes,
            max_wait: None,
            cancel: CancellationToken::new(),
        }
    }
}

/// Where the refresh token (and a served throttle) survives restarts.
pub trait TokenStore: Send + Sync {
    fn load(&self) -> Option<StoredToken>;
    fn save(&self, token: &StoredToken);
    /// The wall-clock end of the last throttle Concur served, as saved by `save_not_before`.
    fn load_not_before(&self) -> Option<std::time::SystemTime> {
        None
    }
    /// Remembers that Concur asked for no request before `until`, for the next process too.
    fn save_not_before(&self, _until: std::time::SystemTime) {}
}

/// What the [`TokenStore`] keeps. The access token itself is never stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredToken {
    pub refresh_token: Secret,
    /// The base URL Concur assigned to the company, e.g. `https://us2.api.concursolutions.com`.
    pub geolocation: Option<String>,
    /// When the access token obtained with it expires, in unix seconds; for status displays.
    pub access_expires_at: Option<i64>,
    /// When the refresh token expires, in unix seconds, as Concur's token answer said
    /// (`refresh_expires_in`); `None` when it did not say.
    pub refresh_expires_at: Option<i64>,
}

/// The HTTP client, pacer and retry policy every request to Concur goes through.
pub(crate) struct Transport {
    pub(crate) config: ClientConfig,
    pub(crate) http: reqwest::Client,
    pub(crate) pacer: Pacer,
    pub(crate) policy: RetryPolicy,
    pub(crate) store: Option<Arc<dyn TokenStore>>,
}
