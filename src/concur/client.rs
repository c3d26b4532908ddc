//! [`ConcurClient`]: one HTTP client, one [`Pacer`] for every request to Concur (token endpoint
//! included), the token lifecycle, and the authorised requests every API sends through (an XML
//! POST, a GET, JSON requests that may be repeated or not). Requests are logged with method,
//! path, status and duration; never a token, secret, password or `Authorization` header.

use std::sync::Arc;

use reqwest::header::{ACCEPT, CONTENT_TYPE};

use super::auth::Auth;
use super::body::error_message;
use super::error::{ConcurError, excerpt};
use super::transport::{ClientConfig, TokenStore, Transport};
use crate::http::retry::{Pacer, RetryPolicy, send_with_retry};

/// Counters since the client was built.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ClientStats {
    /// HTTP requests sent, token requests and retries included.
    pub requests: u64,
    /// Attempts after the first.
    pub retries: u64,
    /// 429 answers received.
    pub throttled_429: u64,
    /// Seconds during which a served throttle held every request back.
    pub throttled_seconds: f64,
    /// Token grants requested (refresh or company token).
    pub token_requests: u64,
    /// Refreshes forced by an API call answered 401/403.
    pub forced_refreshes: u64,
    /// When the current access token expires (unix seconds).
    pub access_expires_at: Option<i64>,
}

/// The transport plus the token lifecycle; dereferences to the [`Transport`].
pub(crate) struct Inner {
    transport: Transport,
    auth: Auth,
}

impl std::ops::Deref for Inner {
    type Target = Transport;
    fn deref(&self) -> &Transport {
        &self.transport
    }
}

/// A Concur client; clones share the connection pool, limiter, throttle and token.
#[derive(Clone)]
pub struct ConcurClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ConcurClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConcurClient")
            .field("base_url", &self.inner.config.base_url)
            .field("company_id", &self.inner.config.company_id)
            .finish_non_exhaustive()
    }
}

impl ConcurClient {
    pub fn new(
        config: ClientConfig,
        store: Option<Arc<dyn TokenStore>>,
    ) -> Result<ConcurClient, ConcurError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("concur-sync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConcurError::Transport {
                path: String::new(),
                message: format!("cannot build HTTP client: {e}"),
                timeout: false,
                unsent: true,
            })?;
        let policy = RetryPolicy {
            max_attempts: config.max_attempts.max(1),
            backoff_base: config.backoff_base,
            backoff_max: config.backoff_max,
            timeout: config.timeout,
            max_body_bytes: config.max_response_bytes,
            ..RetryPolicy::default()
        };
        let mut pacer = Pacer::new(config.requests_per_second)
            .with_cancel(config.cancel.clone())
            .with_max_wait(config.max_wait);
        if let Some(store) = &store {
            // A throttle served to an earlier process still holds.
            if let Some(until) = store.load_not_before() {
                pacer.restore_not_before(until);
            }
            let store = store.clone();
            pacer = pacer.with_throttle_hook(Box::new(move |until| store.save_not_before(until)));
        }
        Ok(ConcurClient {
            inner: Arc::new(Inner {
                transport: Transport {
                    pacer,
                    config,
                    http,
                    policy,
                    store,
                },
                auth: Auth::new(),
            }),
        })
    }

    pub fn stats(&self) -> ClientStats {
        let p = self.inner.pacer.stats();
        ClientStats {
            requests: p.requests,
            retries: p.retries,
            throttled_429: p.throttled_429,
            throttled_seconds: p.throttled_seconds,
            token_requests: self
                .inner
                .auth
                .token_requests
                .load(std::sync::atomic::Ordering::Relaxed),
            forced_refreshes: self
                .inner
                .auth
                .forced_refreshes
                .load(std::sync::atomic::Ordering::Relaxed),
            access_expires_at: self.inner.auth.access_expires_at(),
        }
    }

    /// Obtains an access token now (refresh token first), e.g. to check credentials at startup.
    pub async fn authenticate(&self) -> Result<(), ConcurError> {
        self.inner.auth.lease(&self.inner, None).await.map(|_| ())
    }

    /// POSTs an XML body with the current token; a 401/403 refreshes the token and sends once
    /// more. Returns the body of a 2xx answer; `secrets` are scrubbed from any other.
    pub(crate) async fn post_xml(
        &self,
        path: &str,
        body: String,
        secrets: &[&str],
    ) -> Result<String, ConcurError> {
        let inner = &*self.inner;
        let mut refused = None;
        loop {
            let lease = inner.auth.lease(inner, refused).await?;
            let url = format!("{}{path}", lease.base_url);
            let reply = send_with_retry(&inner.pacer, &inner.policy, || {
                inner
                    .http
                    .post(&url)
                    .bearer_auth(lease.token.expose())
                    .header(CONTENT_TYPE, "application/xml")
                    .header(ACCEPT, "application/xml")
                    .body(body.clone())
            })
            .await
            .map_err(|f| ConcurError::from_send_failure(path, f))?;
            match reply.status {
                200..=299 => return Ok(reply.body),
                401 | 403 if refused.is_none() => refused = Some(lease.generation),
                status => {
                    let mut all_secrets = secrets.to_vec();
                    all_secrets.push(lease.token.expose());
                    return Err(http_error(path, status, &reply.body, &all_secrets));
                }
            }
        }
    }
}

/// How [`ConcurClient::send_authed`] may repeat a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Repeat {
    /// Idempotent (GET, PUT): retried per the client's policy.
    Retry,
    /// Not idempotent (a create): sent once; a 429 still holds back every later request.
    Once,
    /// Not to be applied twice (a UPS v4 Bulk): resent only after answers that say it was not
    /// processed (429, 503) or when no connection was made, per the client's policy.
    IfUnprocessed,
}

impl ConcurClient {
    /// Sends one authenticated JSON request through the shared pacer, the retry policy and the
    /// token lifecycle: a 401 or 403 (v1 answers 403 on an expired token, v3/v4 401) obtains a
    /// new token and sends once more. Returns the final answer whatever its status; `Err` only
    /// when no answer came back.
    pub(crate) async fn send_authed(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<&serde_json::Value>,
        repeat: Repeat,
    ) -> Result<crate::http::retry::Reply, ConcurError> {
        let text = body.map(serde_json::Value::to_string);
        self.send_authed_json(method, path_and_query, text.as_deref(), repeat)
            .await
    }

    /// [`ConcurClient::send_authed`] with a body already serialized as JSON.
    pub(crate) async fn send_authed_json(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<&str>,
        repeat: Repeat,
    ) -> Result<crate::http::retry::Reply, ConcurError> {
        let inner = &*self.inner;
        let path = path_and_query.split('?').next().unwrap_or(path_and_query);
        let adjusted;
        let policy = match repeat {
            Repeat::Retry => &inner.policy,
            Repeat::Once => {
                adjusted = RetryPolicy {
                    max_attempts: 1,
                    ..inner.policy.clone()
                };
                &adjusted
            }
            Repeat::IfUnprocessed => {
                adjusted = RetryPolicy {
                    unprocessed_only: true,
                    ..inner.policy.clone()
                };
                &adjusted
            }
        };
        let mut refused = None;
        loop {
            let lease = inner.auth.lease(inner, refused).await?;
            let url = format!("{}{path_and_query}", lease.base_url);
            let reply = send_with_retry(&inner.pacer, policy, || {
                let mut req = inner
                    .http
                    .request(method.clone(), &url)
                    .bearer_auth(lease.token.expose())
                    .header(ACCEPT, "application/json");
                if let Some(b) = body {
                    req = req
                        .header(CONTENT_TYPE, "application/json")
                        .body(b.to_owned());
                }
                req
            })
            .await
            .map_err(|f| ConcurError::from_send_failure(path, f))?;
            if matches!(reply.status, 401 | 403) && refused.is_none() {
                refused = Some(lease.generation);
                continue;
            }
            if repeat == Repeat::Once && reply.status == 429 {
                let wait = crate::http::retry::parse_retry_after(
                    &reply.headers,
                    std::time::SystemTime::now(),
                )
                .map(|d| d.min(policy.retry_after_max))
                .unwrap_or_else(|| policy.backoff(1));
                inner.pacer.defer_until(tokio::time::Instant::now() + wait);
            }
            return Ok(reply);
        }
    }

    /// GETs `path_and_query` (retried per the client's policy) and returns the body of a 2xx
    /// answer; any other is an [`ConcurError::Http`] carrying Concur's message.
    pub(crate) async fn get(&self, path_and_query: &str) -> Result<String, ConcurError> {
        let reply = self
            .send_authed(reqwest::Method::GET, path_and_query, None, Repeat::Retry)
            .await?;
        let path = path_and_query.split('?').next().unwrap_or(path_and_query);
        match reply.status {
            200..=299 => Ok(reply.body),
            status => Err(http_error(path, status, &reply.body, &[])),
        }
    }
}

/// A non-2xx answer: its status and an excerpt of Concur's message (or of the body), every one
/// of `secrets` scrubbed.
fn http_error(path: &str, status: u16, body: &str, secrets: &[&str]) -> ConcurError {
    let text = error_message(body).unwrap_or_else(|| body.to_owned());
    ConcurError::Http {
        status,
        path: path.to_owned(),
        message: excerpt(&text, secrets, 200),
    }
}
