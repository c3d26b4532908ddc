//! Company-token lifecycle: the stored refresh token first, the company request token when it is
//! refused; proactive refresh before expiry and forced refresh after a 401/403; rotation saved
//! to the [`super::transport::TokenStore`]; `geolocation` followed only when [`super::geo`]
//! trusts it (wherever it comes from: the token answer, a code-16 refusal or the store). One
//! token request at a time: the state mutex is held across the request, so concurrent callers
//! wait and then share its result.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::ACCEPT;
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::body::error_message;
use super::error::{ConcurError, Credential, excerpt};
use super::transport::{StoredToken, Transport};
use crate::http::retry::send_with_retry;
use crate::model::Secret;

/// Refresh this long before the access token expires (or half its lifetime, if shorter).
const REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// Lifetime assumed when the token endpoint gives none (Concur documents one hour).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// Concur's token-endpoint codes.
const CODE_ELSEWHERE: i64 = 16;

/// An access token to use for one API call.
pub(crate) struct Lease {
    pub token: Secret,
    pub generation: u64,
    pub base_url: String,
}

#[derive(Default)]
struct State {
    loaded: bool,
    access: Option<Secret>,
    refresh_at: Option<Instant>,
    refresh: Option<Secret>,
    /// When `refresh` expires (unix seconds), as Concur said.
    refresh_expires_at: Option<i64>,
    geolocation: Option<String>,
    /// Bumped with every new access token; a caller refused with generation `g` asks for `> g`.
    generation: u64,
}

pub(crate) struct Auth {
    state: Mutex<State>,
    pub(crate) token_requests: AtomicU64,
    pub(crate) forced_refreshes: AtomicU64,
    expires_at_unix: AtomicU64,
}

enum Grant {
    Password,
    Refresh(Secret),
}

impl Grant {
    fn credential(&self) -> Credential {
        match self {
            Grant::Password => Credential::CompanyRequestToken,
            Grant::Refresh(_) => Credential::RefreshToken,
        }
    }
}

#[derive(Deserialize)]
struct TokenReply {
    access_token: Option<String>,
    refresh_token: Option<String>,
    expires_in: Option<serde_json::Value>,
    /// When the refresh token expires: Concur's guides show unix seconds despite the name; a
    /// small number is read as seconds from now (see [`refresh_expiry`]).
    refresh_expires_in: Option<serde_json::Value>,
    geolocation: Option<String>,
}

#[derive(Deserialize, Default)]
struct TokenErrorReply {
    error: Option<String>,
    code: Option<serde_json::Value>,
    geolocation: Option<String>,
}

fn number(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Unix seconds at which a refresh token expires, from the token answer's `refresh_expires_in`
/// received at `now` (unix seconds). Concur's guides show an epoch time under that name; a
/// value below 10^9 (before September 2001 as a time) can only be a lifetime in seconds.
fn refresh_expiry(v: &serde_json::Value, now: i64) -> Option<i64> {
    const EPOCH_FROM: f64 = 1e9;
    let n = number(v).filter(|n| n.is_finite() && *n > 0.0 && *n < 1e12)?;
    Some(if n >= EPOCH_FROM {
        n as i64
    } else {
        now + n as i64
    })
}

fn normalize_base(url: &str) -> String {
    url.trim().trim_end_matches('/').to_owned()
}

/// The origin to use for `value`, or the error that refuses it; `from` names where it came from.
fn trusted_geolocation(
    inner: &Transport,
    value: &str,
    from: &'static str,
) -> Result<String, ConcurError> {
    #[cfg(test)]
    let extra: &[String] = &inner.config.trusted_test_origins;
    #[cfg(not(test))]
    let extra: &[String] = &[];
    super::geo::trusted_origin(value, &inner.config.base_url, extra).map_err(|u| {
        tracing::error!(geolocation = %u.value, from, reason = %u.reason, "untrusted geolocation refused");
        ConcurError::UntrustedGeolocation {
            value: u.value,
            from,
            reason: u.reason,
        }
    })
}

impl Auth {
    pub(crate) fn new() -> Auth {
        Auth {
            state: Mutex::new(State::default()),
            token_requests: AtomicU64::new(0),
            forced_refreshes: AtomicU64::new(0),
            expires_at_unix: AtomicU64::new(0),
        }
    }

    /// Unix seconds at which the current access token expires, if one was obtained.
    pub(crate) fn access_expires_at(&self) -> Option<i64> {
        match self.expires_at_unix.load(Ordering::Relaxed) {
            0 => None,
            t => Some(t as i64),
        }
    }

    /// A valid access token. `refused` is the generation of a token the API just refused: a newer
    /// one is obtained unless another caller already did.
    pub(crate) async fn lease(
        &self,
        inner: &Transport,
        refused: Option<u64>,
    ) -> Result<Lease, ConcurError> {
        let mut st = self.state.lock().await;
        if !st.loaded {
            st.loaded = true;
            if let Some(stored) = inner.store.as_ref().and_then(|s| s.load()) {
                if !stored.refresh_token.is_empty() {
                    st.refresh = Some(stored.refresh_token.clone());
                    st.refresh_expires_at = stored.refresh_expires_at;
                }
                if let Some(raw) = stored
                    .geolocation
                    .as_deref()
                    .filter(|g| !g.trim().is_empty())
                {
                    match trusted_geolocation(inner, raw, "the state database") {
                        Ok(geo) => st.geolocation = Some(geo),
                        Err(e) => {
                            // Forget it, so that the next request goes to concur.base_url.
                            if let Some(store) = &inner.store {
                                store.save(&StoredToken {
                                    geolocation: None,
                                    ..stored
                                });
                            }
                            return Err(e);
                        }
                    }
                }
            }
        }
        let usable = st.access.is_some()
            && st.refresh_at.is_some_and(|t| Instant::now() < t)
            && refused.is_none_or(|g| st.generation > g);
        if !usable {
            if refused.is_some_and(|g| g == st.generation) {
                self.forced_refreshes.fetch_add(1, Ordering::Relaxed);
                tracing::info!("access token refused by the API; obtaining a new one");
            }
            self.obtain(inner, &mut st).await?;
        }
        let token = st
            .access
            .clone()
            .ok_or_else(|| ConcurError::Decode("no access token".into()))?;
        Ok(Lease {
            token,
            generation: st.generation,
            base_url: self.base_url(inner, &st),
        })
    }

    fn base_url(&self, inner: &Transport, st: &State) -> String {
        st.geolocation
            .clone()
            .unwrap_or_else(|| normalize_base(&inner.config.base_url))
    }

    async fn obtain(&self, inner: &Transport, st: &mut State) -> Result<(), ConcurError> {
        if let Some(refresh) = st.refresh.clone() {
            match self.grant(inner, st, Grant::Refresh(refresh)).await {
                Ok(()) => return Ok(()),
                Err(ConcurError::AuthRejected {
                    credential: Credential::RefreshToken,
                    code,
                    ..
                }) => {
                    tracing::warn!(
                        code,
                        "refresh token refused; requesting a new company token"
                    );
                    st.refresh = None;
                    st.refresh_expires_at = None;
                }
                Err(e) => return Err(e),
            }
        }
        self.grant(inner, st, Grant::Password).await
    }

    /// One grant, following a code-16 redirect to the company's geolocation once.
    async fn grant(
        &self,
        inner: &Transport,
        st: &mut State,
        grant: Grant,
    ) -> Result<(), ConcurError> {
        let cfg = &inner.config;
        let mut base = self.base_url(inner, st);
        let mut secrets: Vec<String> = vec![
            cfg.client_secret.expose().to_owned(),
            cfg.request_token.expose().to_owned(),
        ];
        if let Grant::Refresh(r) = &grant {
            secrets.push(r.expose().to_owned());
        }
        let secret_refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
        for hop in 0..2 {
            let url = format!("{base}/oauth2/v0/token");
            self.token_requests.fetch_add(1, Ordering::Relaxed);
            let reply = send_with_retry(&inner.pacer, &inner.policy, || {
                let mut form: Vec<(&str, &str)> = vec![
                    ("client_id", cfg.client_id.as_str()),
                    ("client_secret", cfg.client_secret.expose()),
                ];
                match &grant {
                    Grant::Password => form.extend([
                        ("grant_type", "password"),
                        ("username", cfg.company_id.as_str()),
                        ("password", cfg.request_token.expose()),
                        ("credtype", "authtoken"),
                    ]),
                    Grant::Refresh(r) => form.extend([
                        ("grant_type", "refresh_token"),
                        ("refresh_token", r.expose()),
                    ]),
                }
                inner
                    .http
                    .post(&url)
                    .header(ACCEPT, "application/json")
                    .form(&form)
            })
            .await
            .map_err(|f| ConcurError::from_send_failure("/oauth2/v0/token", f))?;

            if (200..300).contains(&reply.status) {
                let parsed: TokenReply = serde_json::from_str(&reply.body).map_err(|e| {
                    ConcurError::Decode(format!("token response is not the expected JSON: {e}"))
                })?;
                return self.accept(inner, st, parsed, base);
            }

            let err: TokenErrorReply = serde_json::from_str(&reply.body).unwrap_or_default();
            let code = err.code.as_ref().and_then(number).map(|c| c as i64);
            let message = excerpt(
                &error_message(&reply.body).unwrap_or_else(|| reply.body.clone()),
                &secret_refs,
                200,
            );
            if code == Some(CODE_ELSEWHERE)
                && hop == 0
                && let Some(raw) = err.geolocation.as_deref().filter(|g| !g.trim().is_empty())
            {
                let geo = trusted_geolocation(inner, raw, "a code-16 token answer")?;
                if geo != base {
                    tracing::info!(geolocation = %geo, "company lives at another geolocation; retrying there");
                    st.geolocation = Some(geo.clone());
                    base = geo;
                    continue;
                }
            }
            if (400..500).contains(&reply.status) && reply.status != 429 {
                let error = err.error.as_deref().unwrap_or("");
                let client_refused = error.eq_ignore_ascii_case("invalid_client")
                    || error.eq_ignore_ascii_case("unauthorized_client")
                    || (error.is_empty() && code.is_none() && reply.status == 401);
                let credential = if client_refused {
                    Credential::Client
                } else {
                    grant.credential()
                };
                return Err(ConcurError::AuthRejected {
                    credential,
                    code: code.unwrap_or(i64::from(reply.status)),
                    message,
                });
            }
            return Err(ConcurError::Http {
                status: reply.status,
                path: "/oauth2/v0/token".into(),
                message,
            });
        }
        Err(ConcurError::Decode(
            "token endpoint redirected more than once".into(),
        ))
    }

    fn accept(
        &self,
        inner: &Transport,
        st: &mut State,
        reply: TokenReply,
        base: String,
    ) -> Result<(), ConcurError> {
        let geo = match reply
            .geolocation
            .as_deref()
            .filter(|g| !g.trim().is_empty())
        {
            Some(raw) => Some(trusted_geolocation(inner, raw, "the token answer")?),
            None => None,
        };
        let access = reply
            .access_token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ConcurError::Decode("token response has no access_token".into()))?;
        let lifetime = reply
            .expires_in
            .as_ref()
            .and_then(number)
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(|s| Duration::from_secs_f64(s.min(1e9)))
            .unwrap_or(DEFAULT_LIFETIME);
        let margin = REFRESH_MARGIN.min(lifetime / 2);
        st.access = Some(Secret::new(access));
        st.refresh_at = Some(Instant::now() + lifetime - margin);
        st.generation += 1;
        let now_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        if let Some(r) = reply.refresh_token.filter(|r| !r.is_empty()) {
            // A new refresh token's expiry is unknown unless the answer says it.
            if st.refresh.as_ref().is_none_or(|old| old.expose() != r) {
                st.refresh_expires_at = None;
            }
            st.refresh = Some(Secret::new(r));
        }
        if let Some(at) = reply
            .refresh_expires_in
            .as_ref()
            .and_then(|v| refresh_expiry(v, now_unix))
        {
            st.refresh_expires_at = Some(at);
        }
        st.geolocation = geo.or(st.geolocation.take()).or_else(|| {
            let configured = normalize_base(&inner.config.base_url);
            (base != configured).then_some(base)
        });
        let expires_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| (d + lifetime).as_secs())
            .unwrap_or(0);
        self.expires_at_unix.store(expires_at, Ordering::Relaxed);
        tracing::info!(
            expires_in_s = lifetime.as_secs(),
            geolocation = st.geolocation.as_deref().unwrap_or(""),
            "obtained Concur access token"
        );
        if let (Some(store), Some(refresh)) = (&inner.store, &st.refresh) {
            store.save(&StoredToken {
                refresh_token: refresh.clone(),
                geolocation: st.geolocation.clone(),
                access_expires_at: Some(expires_at as i64),
                refresh_expires_at: st.refresh_expires_at,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::refresh_expiry;
    use serde_json::json;

    #[test]
    fn refresh_expiry_reads_an_epoch_or_a_lifetime() {
        let now = 1_780_000_000;
        // Concur's guides: an epoch time, as a number or a string.
        assert_eq!(
            refresh_expiry(&json!(1_795_000_000), now),
            Some(1_795_000_000)
        );
        assert_eq!(
            refresh_expiry(&json!("1795000000"), now),
            Some(1_795_000_000)
        );
        // Six months in seconds.
        assert_eq!(
            refresh_expiry(&json!(15_811_200), now),
            Some(now + 15_811_200)
        );
        for bad in [json!(0), json!(-5), json!("soon"), json!(null), json!(1e15)] {
            assert_eq!(refresh_expiry(&bad, now), None, "{bad}");
        }
    }
}
