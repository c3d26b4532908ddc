//! `[state]`, `[admin]`, `[service]` and `[log]`: where the state database and its key live,
//! the admin endpoint, how `run` behaves as a service, and the log format and filter.

use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;

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

/// `[admin]`: the HTTP endpoint for probes, metrics and status.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    #[serde(default = "default_admin_listen")]
    pub listen: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: default_admin_listen(),
        }
    }
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
