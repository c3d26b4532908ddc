//! `[concur]`: where and as whom the Concur client connects, its limiter, retries and batch
//! size, with the defaults and the checks of each key.

use std::path::PathBuf;

use serde::Deserialize;

use super::{ConfigError, secret_keys, validate_http_limits};
use crate::model::Secret;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConcurConfig {
    #[serde(default = "default_base_url")]
    pub base_url: String,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    pub client_secret_file: Option<PathBuf>,
    /// The username of the company token request.
    pub company_id: String,
    /// The company request token (grant_type=password, credtype=authtoken).
    pub request_token: Option<Secret>,
    pub request_token_file: Option<PathBuf>,
    /// One limiter shared by every request to Concur; 0 turns it off.
    #[serde(default = "default_rps")]
    pub requests_per_second: f64,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: f64,
    /// Attempts per request before giving up (429s, 5xx, timeouts, dropped connections).
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// Records per User v1 batch (at most 500).
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Longest served throttle (`Retry-After`) a one-shot command waits for; a longer one ends
    /// it with "throttled until …". `run` always waits (and stays stoppable).
    #[serde(default = "default_max_wait")]
    pub max_wait_seconds: f64,
    /// Largest Concur response body read; a longer answer fails the request.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: u64,
}

fn default_max_wait() -> f64 {
    300.0
}

/// Default of `concur.max_response_bytes`, and the body cap of every HTTP client: 32 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 32 * 1024 * 1024;

fn default_max_response_bytes() -> u64 {
    DEFAULT_MAX_RESPONSE_BYTES
}

fn default_base_url() -> String {
    "https://us.api.concursolutions.com".into()
}
fn default_rps() -> f64 {
    5.0
}
fn default_timeout() -> f64 {
    60.0
}
fn default_attempts() -> u32 {
    6
}
fn default_batch() -> usize {
    500
}

impl ConcurConfig {
    /// Checks `[concur]`: the URL, names, limits and that each secret is given once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.base_url.starts_with("https://") || self.base_url.starts_with("http://")) {
            return Err(ConfigError::invalid(
                "concur.base_url",
                "must start with https:// (or http:// for the simulator)",
            ));
        }
        check_base_url(&self.base_url)?;
        if self.client_id.trim().is_empty() {
            return Err(ConfigError::invalid(
                "concur.client_id",
                "must not be empty",
            ));
        }
        if self.company_id.trim().is_empty() {
            return Err(ConfigError::invalid(
                "concur.company_id",
                "must not be empty",
            ));
        }
        validate_http_limits(
            "concur",
            self.requests_per_second,
            self.timeout_seconds,
            self.max_attempts,
        )?;
        if !(self.max_wait_seconds >= 0.0 && self.max_wait_seconds.is_finite()) {
            return Err(ConfigError::invalid(
                "concur.max_wait_seconds",
                "must be a number ≥ 0",
            ));
        }
        if self.max_response_bytes < 1024 {
            return Err(ConfigError::invalid(
                "concur.max_response_bytes",
                "must be at least 1024 bytes",
            ));
        }
        if self.batch_size == 0 || self.batch_size > 500 {
            return Err(ConfigError::invalid(
                "concur.batch_size",
                "must be between 1 and 500 (the User v1 batch limit)",
            ));
        }
        secret_keys(
            "concur.client_secret",
            &self.client_secret,
            &self.client_secret_file,
        )?;
        secret_keys(
            "concur.request_token",
            &self.request_token,
            &self.request_token_file,
        )?;
        Ok(())
    }
}

/// Whether `host` is `127.0.0.0/8`, `::1` or `localhost`: where plain `http://` is allowed
/// (the bundled simulator), and the only origin besides Concur's a geolocation may name.
pub fn is_loopback(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
    }
}

/// `concur.base_url`: plain `http://` only to a loopback host (the bundled simulator).
fn check_base_url(value: &str) -> Result<(), ConfigError> {
    let key = "concur.base_url";
    let url = url::Url::parse(value.trim())
        .map_err(|e| ConfigError::invalid(key, format!("not a URL: {e}")))?;
    let Some(host) = url.host() else {
        return Err(ConfigError::invalid(key, "has no host"));
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::invalid(key, "must not carry user information"));
    }
    if url.scheme() == "http" && !is_loopback(&host) {
        return Err(ConfigError::invalid(
            key,
            "http:// is only allowed to a loopback host (127.0.0.0/8, ::1, localhost); use https://",
        ));
    }
    Ok(())
}
