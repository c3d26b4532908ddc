//! `[concur]`: where and as whom the Concur client connects, which API users are written
//! through, its limiter, retries and batch size, with the defaults and the checks of each key.

use std::path::PathBuf;

use serde::Deserialize;

use super::{ConfigError, default_attempts, default_timeout, secret_keys, validate_http_limits};
use crate::model::Secret;

/// The API users are written through (`concur.api`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConcurApi {
    /// User v1 (XML batches) and the reads of its era: tenants outside the data centers where
    /// SAP decommissioned it.
    V1,
    /// The User Provisioning Service v4 (asynchronous Bulk + provision status) and Identity
    /// v4.1 / Spend User v4.1 reads.
    V4,
}

impl ConcurApi {
    /// Most operations one request may carry: 500 records per User v1 batch, 100 operations
    /// per UPS v4 Bulk.
    pub fn batch_limit(self) -> usize {
        match self {
            ConcurApi::V1 => 500,
            ConcurApi::V4 => 100,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ConcurApi::V1 => "v1",
            ConcurApi::V4 => "v4",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConcurConfig {
    /// `"v4"` or `"v1"`.
    #[serde(default = "default_api")]
    pub api: ConcurApi,
    /// The company's UUID (the enterprise `companyId` of every v4 user); required with v4.
    pub company_uuid: Option<String>,
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
    /// Operations per request: records per User v1 batch (default and at most 500) or
    /// operations per UPS v4 Bulk (default and at most 100). Read it through
    /// [`ConcurConfig::batch_size`].
    #[serde(rename = "batch_size")]
    pub batch_size_setting: Option<usize>,
    /// Seconds before the first provision status poll after a v4 Bulk (fractions allowed); later
    /// polls back off.
    #[serde(default = "default_provision_poll")]
    pub provision_poll_seconds: f64,
    /// Minutes a v4 provision may stay pending before its operations are recorded as failed
    /// (and planned again).
    #[serde(default = "default_provision_timeout")]
    pub provision_timeout_minutes: f64,
    /// v4: most requests (Bulks, status polls) waiting for an answer at once; 1 sends one at
    /// a time. The limiter still paces them.
    #[serde(default = "default_requests_in_flight")]
    pub max_requests_in_flight: usize,
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
fn default_api() -> ConcurApi {
    ConcurApi::V4
}
fn default_provision_poll() -> f64 {
    5.0
}
fn default_provision_timeout() -> f64 {
    120.0
}
fn default_requests_in_flight() -> usize {
    4
}

impl ConcurConfig {
    /// Operations per request: `concur.batch_size`, or the API's limit.
    pub fn batch_size(&self) -> usize {
        self.batch_size_setting
            .unwrap_or_else(|| self.api.batch_limit())
    }

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
        let limit = self.api.batch_limit();
        if self.batch_size() == 0 || self.batch_size() > limit {
            return Err(ConfigError::invalid(
                "concur.batch_size",
                match self.api {
                    ConcurApi::V1 => "must be between 1 and 500 (the User v1 batch limit)",
                    ConcurApi::V4 => {
                        "must be between 1 and 100 (the UPS v4 Bulk limit of 100 operations)"
                    }
                },
            ));
        }
        if !(self.provision_poll_seconds > 0.0 && self.provision_poll_seconds.is_finite()) {
            return Err(ConfigError::invalid(
                "concur.provision_poll_seconds",
                "must be a number of seconds > 0",
            ));
        }
        if !(self.provision_timeout_minutes > 0.0 && self.provision_timeout_minutes.is_finite()) {
            return Err(ConfigError::invalid(
                "concur.provision_timeout_minutes",
                "must be a number of minutes > 0",
            ));
        }
        if !(1..=MAX_REQUESTS_IN_FLIGHT).contains(&self.max_requests_in_flight) {
            return Err(ConfigError::invalid(
                "concur.max_requests_in_flight",
                "must be between 1 and 16",
            ));
        }
        match (self.api, self.company_uuid.as_deref().map(str::trim)) {
            (ConcurApi::V4, None | Some("")) => {
                return Err(ConfigError::invalid(
                    "concur.company_uuid",
                    "is required with concur.api = \"v4\", the default: the company's UUID, the enterprise companyId every v4 user carries (with any UUID there, `concur-sync check` shows the one Concur reports); for a legacy tenant still on User v1 set concur.api = \"v1\" instead",
                ));
            }
            (_, Some(u)) if !is_uuid(u) => {
                return Err(ConfigError::invalid(
                    "concur.company_uuid",
                    "must be a UUID like 8c4b5f3e-1d2a-4e6b-9f70-0a1b2c3d4e5f",
                ));
            }
            _ => {}
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

/// Most `concur.max_requests_in_flight` allows.
const MAX_REQUESTS_IN_FLIGHT: usize = 16;

/// A hyphenated UUID (`8-4-4-4-12` hexadecimal digits).
fn is_uuid(s: &str) -> bool {
    s.len() == 36 && uuid::Uuid::try_parse(s).is_ok()
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

#[cfg(test)]
mod tests {
    use super::ConcurApi;
    use crate::config::Config;

    fn load(concur_extra: &str) -> Result<Config, String> {
        Config::from_toml(&format!(
            "[source]\nkind = \"csv\"\npath = \"/tmp/hr.csv\"\n[concur]\nclient_id = \"i\"\nclient_secret = \"s\"\ncompany_id = \"c\"\nrequest_token = \"t\"\n{concur_extra}\n"
        ))
        .map_err(|e| e.to_string())
    }

    #[test]
    fn the_batch_size_defaults_to_and_is_bounded_by_the_api_limit() {
        assert_eq!(load("api = \"v1\"").unwrap().concur.batch_size(), 500);
        let uuid = "company_uuid = \"8c4b5f3e-1d2a-4e6b-9f70-0a1b2c3d4e5f\"";
        let v4 = load(&format!("api = \"v4\"\n{uuid}")).unwrap();
        assert_eq!(v4.concur.batch_size(), 100);
        let e = load(&format!("api = \"v4\"\n{uuid}\nbatch_size = 101")).unwrap_err();
        assert!(e.contains("concur.batch_size") && e.contains("100"), "{e}");
        let e = load("api = \"v1\"\nbatch_size = 501").unwrap_err();
        assert!(e.contains("concur.batch_size") && e.contains("500"), "{e}");
    }

    #[test]
    fn a_config_without_api_is_v4_and_its_missing_company_uuid_is_named() {
        let uuid = "company_uuid = \"8c4b5f3e-1d2a-4e6b-9f70-0a1b2c3d4e5f\"";
        let c = load(uuid).unwrap();
        assert_eq!(c.concur.api, ConcurApi::V4);
        assert_eq!(c.concur.batch_size(), 100);
        let e = load("").unwrap_err();
        assert!(
            e.contains("concur.company_uuid")
                && e.contains("required")
                && e.contains("api = \"v1\""),
            "{e}"
        );
        let c = load("api = \"v1\"").unwrap();
        assert_eq!(c.concur.api, ConcurApi::V1);
    }

    #[test]
    fn v4_needs_a_company_uuid_and_the_provision_timings_must_be_positive() {
        let e = load("api = \"v4\"").unwrap_err();
        assert!(
            e.contains("concur.company_uuid") && e.contains("required"),
            "{e}"
        );
        let e = load("api = \"v4\"\ncompany_uuid = \"acme\"").unwrap_err();
        assert!(
            e.contains("concur.company_uuid") && e.contains("UUID"),
            "{e}"
        );
        let uuid = "company_uuid = \"8c4b5f3e-1d2a-4e6b-9f70-0a1b2c3d4e5f\"";
        let c = load(&format!(
            "api = \"v4\"\n{uuid}\nprovision_poll_seconds = 0.5"
        ))
        .unwrap();
        assert_eq!(c.concur.provision_poll_seconds, 0.5);
        let e = load(&format!("api = \"v4\"\n{uuid}\nprovision_poll_seconds = 0")).unwrap_err();
        assert!(e.contains("concur.provision_poll_seconds"), "{e}");
        let e = load("provision_timeout_minutes = -1").unwrap_err();
        assert!(e.contains("concur.provision_timeout_minutes"), "{e}");
        assert_eq!(c.concur.max_requests_in_flight, 4);
        for bad in ["0", "17"] {
            let e = load(&format!("{uuid}\nmax_requests_in_flight = {bad}")).unwrap_err();
            assert!(
                e.contains("concur.max_requests_in_flight") && e.contains("between 1 and 16"),
                "{e}"
            );
        }
        let e = load("api = \"v5\"").unwrap_err();
        assert!(e.contains("api"), "{e}");
    }
}
