//! `[state]`, `[admin]`, `[service]` and `[log]`: where the state database and its key live,
//! the admin endpoint, how `run` behaves as a service, and the log format and filter.

use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;
use crate::model::Secret;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    #[serde(default = "default_state_path")]
    pub path: PathBuf,
    /// The key that protects secrets at rest; default `<path>.key`, created with mode 0600.
    pub key_file: Option<PathBuf>,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            path: default_state_path(),
            key_file: None,
        }
    }
}

fn default_state_path() -> PathBuf {
    PathBuf::from("/var/lib/concur-sync/state.db")
}

/// `[admin]`: the HTTP endpoint for probes, metrics, the status page and `/status`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    #[serde(default = "default_admin_listen")]
    pub listen: String,
    /// The bearer token every path but `/healthz`, `/readyz` and `/metrics` requires; required
    /// when `listen` is not a loopback address, enforced whenever it is set.
    pub token: Option<Secret>,
    pub token_file: Option<PathBuf>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: default_admin_listen(),
            token: None,
            token_file: None,
        }
    }
}

/// The shortest admin token accepted, in characters.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 16;

impl AdminConfig {
    /// Structural checks: an address with a port; `token` or `token_file`, not both, neither
    /// empty, an inline token long enough.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError::invalid(
                "admin.listen",
                "must be an address with port, e.g. 127.0.0.1:9464",
            ));
        }
        if self.token.is_some() && self.token_file.is_some() {
            return Err(ConfigError::invalid(
                "admin.token",
                "give either admin.token or admin.token_file, not both",
            ));
        }
        super::non_empty_secret("admin.token", &self.token, &self.token_file)?;
        if let Some(t) = &self.token {
            check_token_length("admin.token", t)?;
        }
        Ok(())
    }

    /// Whether `listen` is a loopback address.
    pub fn is_loopback(&self) -> bool {
        self.listen
            .parse::<std::net::SocketAddr>()
            .is_ok_and(|a| a.ip().is_loopback())
    }

    /// The token the endpoint enforces, read from `token` or `token_file`; `None` when neither
    /// is set, which only a loopback `listen` allows.
    pub fn token(&self) -> Result<Option<Secret>, ConfigError> {
        if self.token.is_none() && self.token_file.is_none() {
            if self.is_loopback() {
                return Ok(None);
            }
            return Err(ConfigError::invalid(
                "admin.token",
                format!(
                    "admin.listen {} is not a loopback address: the status page and /status name people, so give admin.token or admin.token_file (a bearer token of at least {MIN_ADMIN_TOKEN_CHARS} characters), or listen on 127.0.0.1",
                    self.listen
                ),
            ));
        }
        let token = super::resolve("admin.token", &self.token, &self.token_file)?;
        let key = if self.token.is_some() {
            "admin.token"
        } else {
            "admin.token_file"
        };
        check_token_length(key, &token)?;
        Ok(Some(token))
    }
}

fn check_token_length(key: &str, token: &Secret) -> Result<(), ConfigError> {
    let t = token.expose();
    if t.chars().count() < MIN_ADMIN_TOKEN_CHARS {
        return Err(ConfigError::invalid(
            key,
            format!(
                "the admin token is too short: use at least {MIN_ADMIN_TOKEN_CHARS} characters (e.g. `openssl rand -hex 32`)"
            ),
        ));
    }
    if t.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError::invalid(
            key,
            "the admin token must not contain spaces or control characters",
        ));
    }
    Ok(())
}

fn default_admin_listen() -> String {
    "127.0.0.1:9464".into()
}

/// `[service]`: how `run` behaves as a service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Seconds between SIGTERM and exit at the most.
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout: f64,
    /// Seconds between scans of the drop folder when file events do not arrive (network
    /// filesystems give none).
    #[serde(default = "default_poll_seconds")]
    pub poll_seconds: f64,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            shutdown_timeout: default_shutdown_timeout(),
            poll_seconds: default_poll_seconds(),
        }
    }
}

fn default_shutdown_timeout() -> f64 {
    20.0
}
fn default_poll_seconds() -> f64 {
    5.0
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    #[serde(default)]
    pub format: LogFormat,
    /// A tracing filter such as `info` or `concur_sync=debug`; `RUST_LOG` wins when set.
    pub level: Option<String>,
}

/// A tracing filter (`log.level` or `RUST_LOG`), parsed strictly: every directive must parse and
/// a directive without `=` must be a level (`info`), not a word that would silently be taken as
/// a target name and switch every other log off.
pub fn log_filter(key: &str, value: &str) -> Result<tracing_subscriber::EnvFilter, ConfigError> {
    const LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];
    let bad = |why: String| {
        ConfigError::invalid(
            key,
            format!(
                "{value:?} is not a log filter ({why}); use a level (off, error, warn, info, debug, trace) or target=level, e.g. \"info,concur_sync=debug\""
            ),
        )
    };
    for directive in value.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        if !directive.contains(['=', '['])
            && !LEVELS.iter().any(|l| l.eq_ignore_ascii_case(directive))
        {
            return Err(bad(format!("{directive:?} is not a level")));
        }
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(value)
        .map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123";

    fn admin(table: &str) -> Result<AdminConfig, ConfigError> {
        let text = format!(
            "[source]\nkind = \"csv\"\npath = \"/tmp/hr.csv\"\n[concur]\nclient_id = \"id\"\n\
             company_uuid = \"8c4b5f3e-1d2a-4e6b-9f70-0a1b2c3d4e5f\"\nclient_secret = \"s\"\n\
             company_id = \"c\"\nrequest_token = \"t\"\n[admin]\n{table}\n"
        );
        super::super::Config::from_toml(&text).map(|c| c.admin)
    }

    #[test]
    fn a_non_loopback_address_needs_a_token() {
        let a = admin("listen = \"0.0.0.0:9464\"").unwrap();
        let e = a.token().unwrap_err().to_string();
        assert!(
            e.contains("admin.token") && e.contains("admin.token_file") && e.contains("0.0.0.0"),
            "{e}"
        );
        let a = admin(&format!("listen = \"0.0.0.0:9464\"\ntoken = \"{TOKEN}\"")).unwrap();
        assert_eq!(a.token().unwrap().unwrap().expose(), TOKEN);
        // On loopback the token is optional, and enforced when given.
        assert!(
            admin("listen = \"127.0.0.1:9464\"")
                .unwrap()
                .token()
                .unwrap()
                .is_none()
        );
        assert!(
            admin("listen = \"[::1]:9464\"")
                .unwrap()
                .token()
                .unwrap()
                .is_none()
        );
        let a = admin(&format!("token = \"{TOKEN}\"")).unwrap();
        assert!(a.token().unwrap().is_some());
    }

    #[test]
    fn the_token_comes_from_a_file_and_never_prints() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("admin_token");
        std::fs::write(&f, format!("{TOKEN}\n")).unwrap();
        let a = admin(&format!(
            "listen = \"0.0.0.0:1\"\ntoken_file = {:?}",
            f.display().to_string()
        ))
        .unwrap();
        assert_eq!(a.token().unwrap().unwrap().expose(), TOKEN);
        let a = admin(&format!("token = \"{TOKEN}\"")).unwrap();
        assert!(!format!("{a:?}").contains(TOKEN), "{a:?}");
        let a = admin("listen = \"0.0.0.0:1\"\ntoken_file = \"/nonexistent/admin_token\"").unwrap();
        let e = a.token().unwrap_err().to_string();
        assert!(e.contains("admin.token_file"), "{e}");
    }

    #[test]
    fn bad_tokens_are_named() {
        for (toml, key) in [
            (
                format!("token = \"{TOKEN}\"\ntoken_file = \"/x\""),
                "admin.token",
            ),
            ("token = \"short\"".to_owned(), "admin.token"),
            ("token = \"  \"".to_owned(), "admin.token"),
            (
                "token = \"0123456789 abcdef0123\"".to_owned(),
                "admin.token",
            ),
            ("token_file = \"\"".to_owned(), "admin.token_file"),
        ] {
            let e = admin(&toml).unwrap_err().to_string();
            assert!(e.contains(key), "{toml}: {e}");
            assert!(!e.contains("0123456789"), "{toml}: {e}");
        }
    }
}
