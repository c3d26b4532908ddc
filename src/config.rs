//! Typed configuration: defaults → TOML file → `CONCUR_SYNC__SECTION__KEY` environment.
//! Unknown keys are errors that name the key; every secret `x` may be given as `x_file`
//! instead (a path whose content is the secret, e.g. under `$CREDENTIALS_DIRECTORY`).

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::model::Secret;

/// Where the configuration is read from when neither `--config` nor `CONCUR_SYNC_CONFIG` is set.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/concur-sync/config.toml";
/// Environment variables `CONCUR_SYNC__SECTION__KEY` override file values.
pub const ENV_PREFIX: &str = "CONCUR_SYNC";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration {path}: {message}")]
    Load { path: String, message: String },
    #[error("configuration key {key}: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub state: StateConfig,
    pub source: SourceConfig,
    /// Values for canonical fields a source leaves empty or lacks (canonical name → value).
    #[serde(default)]
    pub defaults: BTreeMap<String, String>,
    pub concur: ConcurConfig,
    #[serde(default)]
    pub sync: SyncConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub service: ServiceConfig,
    /// The Attendees v4 job; absent = no attendee sync.
    #[serde(default)]
    pub attendees: Option<crate::attendees::AttendeesConfig>,
}

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

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// An HR CSV file.
    Csv,
    /// An LDIF export (RFC 2849), e.g. slapcat or ldifde output.
    Ldif,
    /// A live LDAP directory.
    Ldap,
    /// A SCIM 2.0 service.
    Scim,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub kind: SourceKind,
    /// The file (csv, ldif). Not used by ldap and scim.
    #[serde(default)]
    pub path: PathBuf,
    /// A file only counts as complete once its size and modification time have not changed
    /// for this many seconds (unless it was renamed into place or has a `NAME.done` marker).
    #[serde(default = "default_settle")]
    pub settle_seconds: f64,
    /// Days processed files stay in the drop folder's `archive/`.
    #[serde(default = "default_archive_days")]
    pub archive_days: u64,
    /// Longest source record (a CSV row, an LDIF entry) in bytes; a longer one fails the file.
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: u64,
    /// Longest source value in bytes; a longer one rejects its record.
    #[serde(default = "default_max_field_bytes")]
    pub max_field_bytes: u64,
    /// Set (never from the file) when `path` is a file taken from a drop folder: it is then
    /// opened without following symbolic links.
    #[serde(skip)]
    pub in_drop_folder: bool,
    #[serde(default)]
    pub csv: CsvConfig,
    /// Connection and attribute mapping for `ldap`; the mapping also applies to `ldif`.
    #[serde(default)]
    pub ldap: crate::source::ldap::LdapConfig,
    /// Connection and attribute mapping for `scim`.
    #[serde(default)]
    pub scim: crate::source::scim::ScimConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvConfig {
    /// One character; default `,`. `"\t"` for tab-separated files.
    pub delimiter: Option<String>,
    /// File header name → canonical field name.
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
}

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

fn default_max_response_bytes() -> u64 {
    crate::http::retry::DEFAULT_MAX_BODY_BYTES
}

fn default_settle() -> f64 {
    10.0
}
fn default_archive_days() -> u64 {
    30
}
fn default_max_record_bytes() -> u64 {
    crate::source::csv::DEFAULT_MAX_RECORD_BYTES
}
fn default_max_field_bytes() -> u64 {
    crate::source::csv::DEFAULT_MAX_FIELD_BYTES
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

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum PasswordOnCreate {
    /// The source's password column, else a generated random one.
    #[default]
    Source,
    /// Always a generated random password (never stored, never retrievable).
    Random,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    #[serde(default)]
    pub password_on_create: PasswordOnCreate,
    /// When `run` starts a cycle: six-field cron (with seconds), evaluated in UTC.
    #[serde(default = "default_schedule")]
    pub schedule: String,
    /// A plan deactivating more than this is held whole until an operator approves it:
    /// a count (`50`) or a share of the managed active users (`"5%"`).
    #[serde(default = "default_max_deactivations")]
    pub max_deactivations: DeactivationLimit,
    /// A plan changing the login, e-mail or name (or, by a rename, the employee id) of more
    /// users than this holds those changes until an operator approves them, as
    /// `max_deactivations` does: a count or a share of the managed active users.
    #[serde(default = "default_max_identity_changes")]
    pub max_identity_changes: DeactivationLimit,
    /// A complete read that returns fewer than this share of the managed active users
    /// deactivates nobody (the rest of the plan still applies; the cycle is `degraded`).
    #[serde(default = "default_min_source_ratio")]
    pub min_source_ratio: f64,
    /// Concur users that match no source user are managed (deactivated as departures) instead
    /// of left untouched.
    #[serde(default)]
    pub manage_unmatched: bool,
    /// When `reconcile` (adoption + drift repair) runs in the service: cron with seconds.
    #[serde(default = "default_reconcile_schedule")]
    pub reconcile_schedule: String,
}

fn default_reconcile_schedule() -> String {
    "0 0 2 * * *".into()
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            password_on_create: PasswordOnCreate::Source,
            schedule: default_schedule(),
            max_deactivations: default_max_deactivations(),
            max_identity_changes: default_max_identity_changes(),
            min_source_ratio: default_min_source_ratio(),
            manage_unmatched: false,
            reconcile_schedule: default_reconcile_schedule(),
        }
    }
}

fn default_schedule() -> String {
    "0 */15 * * * *".into()
}
fn default_max_deactivations() -> DeactivationLimit {
    DeactivationLimit::Share(5.0)
}
fn default_max_identity_changes() -> DeactivationLimit {
    DeactivationLimit::Share(5.0)
}
fn default_min_source_ratio() -> f64 {
    0.9
}

/// `sync.max_deactivations` and `sync.max_identity_changes`: a count or a percentage of the
/// managed active users.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DeactivationLimit {
    Count(u64),
    /// Percent, 0–100.
    Share(f64),
}

impl DeactivationLimit {
    /// The largest number of deactivations allowed without approval.
    pub fn allowed(self, managed_active: u64) -> u64 {
        match self {
            DeactivationLimit::Count(n) => n,
            DeactivationLimit::Share(p) => ((managed_active as f64) * p / 100.0).floor() as u64,
        }
    }
}

impl std::fmt::Display for DeactivationLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeactivationLimit::Count(n) => write!(f, "{n}"),
            DeactivationLimit::Share(p) => write!(f, "{p}%"),
        }
    }
}

impl<'de> Deserialize<'de> for DeactivationLimit {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Float(f64),
            Text(String),
        }
        let bad = || {
            serde::de::Error::custom(
                "sync.max_deactivations and sync.max_identity_changes must be a count like 50 or a share like \"5%\"",
            )
        };
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(DeactivationLimit::Count(n)),
            Raw::Float(f) if f >= 0.0 && f.fract() == 0.0 => Ok(DeactivationLimit::Count(f as u64)),
            Raw::Float(_) => Err(bad()),
            Raw::Text(t) => {
                let t = t.trim();
                if let Some(p) = t.strip_suffix('%') {
                    let v: f64 = p.trim().parse().map_err(|_| bad())?;
                    if !(0.0..=100.0).contains(&v) {
                        return Err(bad());
                    }
                    Ok(DeactivationLimit::Share(v))
                } else {
                    t.parse().map(DeactivationLimit::Count).map_err(|_| bad())
                }
            }
        }
    }
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

/// Secrets resolved from inline values or `*_file` paths.
#[derive(Debug, Clone)]
pub struct ResolvedSecrets {
    pub client_secret: Secret,
    pub request_token: Secret,
}

impl Config {
    /// Reads `path` and the environment overrides, then validates.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let err = |message: String| ConfigError::Load {
            path: path.display().to_string(),
            message,
        };
        if !path.exists() {
            return Err(err(
                "file not found (give --config FILE or set CONCUR_SYNC_CONFIG)".into(),
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
        check_toml_syntax(&text).map_err(err)?;
        let built = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix(ENV_PREFIX)
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true),
            )
            .build()
            .map_err(|e| err(e.to_string()))?;
        let cfg: Config = built.try_deserialize().map_err(|e| err(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses a TOML string (no environment), for tests and the demo.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        check_toml_syntax(text).map_err(|message| ConfigError::Load {
            path: "<inline>".into(),
            message,
        })?;
        let built = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()
            .map_err(|e| ConfigError::Load {
                path: "<inline>".into(),
                message: e.to_string(),
            })?;
        let cfg: Config = built.try_deserialize().map_err(|e| ConfigError::Load {
            path: "<inline>".into(),
            message: e.to_string(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let c = &self.concur;
        if !(c.base_url.starts_with("https://") || c.base_url.starts_with("http://")) {
            return Err(invalid(
                "concur.base_url",
                "must start with https:// (or http:// for the simulator)",
            ));
        }
        check_base_url(&c.base_url)?;
        if c.client_id.trim().is_empty() {
            return Err(invalid("concur.client_id", "must not be empty"));
        }
        if c.company_id.trim().is_empty() {
            return Err(invalid("concur.company_id", "must not be empty"));
        }
        validate_http_limits(
            "concur",
            c.requests_per_second,
            c.timeout_seconds,
            c.max_attempts,
        )?;
        if !(c.max_wait_seconds >= 0.0 && c.max_wait_seconds.is_finite()) {
            return Err(invalid("concur.max_wait_seconds", "must be a number ≥ 0"));
        }
        if c.max_response_bytes < 1024 {
            return Err(invalid(
                "concur.max_response_bytes",
                "must be at least 1024 bytes",
            ));
        }
        if c.batch_size == 0 || c.batch_size > 500 {
            return Err(invalid(
                "concur.batch_size",
                "must be between 1 and 500 (the User v1 batch limit)",
            ));
        }
        secret_keys(
            "concur.client_secret",
            &c.client_secret,
            &c.client_secret_file,
        )?;
        secret_keys(
            "concur.request_token",
            &c.request_token,
            &c.request_token_file,
        )?;
        if matches!(self.source.kind, SourceKind::Csv | SourceKind::Ldif)
            && self.source.path.as_os_str().is_empty()
        {
            return Err(invalid(
                "source.path",
                "missing: the file to read is required for kind csv and ldif",
            ));
        }
        if self.source.kind == SourceKind::Scim {
            self.source.scim.validate()?;
        }
        self.delimiter()?;
        if !(0.0..=1.0).contains(&self.sync.min_source_ratio) {
            return Err(invalid("sync.min_source_ratio", "must be between 0 and 1"));
        }
        if self.sync.schedule.split_whitespace().count() != 6 {
            return Err(invalid(
                "sync.schedule",
                "must be a six-field cron expression (sec min hour day month weekday), e.g. \"0 */15 * * * *\"",
            ));
        }
        if let Some(level) = &self.log.level {
            log_filter("log.level", level)?;
        }
        if self.admin.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(invalid(
                "admin.listen",
                "must be an address with port, e.g. 127.0.0.1:9464",
            ));
        }
        if self.service.shutdown_timeout.is_nan() || self.service.shutdown_timeout <= 0.0 {
            return Err(invalid("service.shutdown_timeout", "must be > 0"));
        }
        if self.source.settle_seconds.is_nan() || self.source.settle_seconds < 0.0 {
            return Err(invalid("source.settle_seconds", "must be ≥ 0"));
        }
        if self.source.max_field_bytes == 0 || self.source.max_record_bytes == 0 {
            return Err(invalid(
                "source.max_record_bytes",
                "source.max_record_bytes and source.max_field_bytes must be > 0",
            ));
        }
        crate::source::ldap::validate(self)?;
        for (header, canonical) in &self.source.csv.columns {
            if crate::model::Field::from_name(canonical).is_none()
                && !matches!(canonical.as_str(), "password" | "previous_employee_id")
            {
                return Err(invalid(
                    &format!("source.csv.columns.{header}"),
                    format!("\"{canonical}\" is not a canonical field name"),
                ));
            }
        }
        for key in self.defaults.keys() {
            if crate::model::Field::from_name(key).is_none() {
                return Err(invalid(
                    &format!("defaults.{key}"),
                    "not a canonical field name",
                ));
            }
        }
        crate::readback::validate_config(self)?;
        Ok(())
    }

    /// Whether `admin.listen` is a loopback address (the endpoint has no authentication).
    pub fn admin_is_loopback(&self) -> bool {
        self.admin
            .listen
            .parse::<std::net::SocketAddr>()
            .is_ok_and(|a| a.ip().is_loopback())
    }

    /// The CSV reader's options: delimiter, column mapping, size limits.
    pub fn csv_options(&self) -> Result<crate::source::csv::CsvOptions, ConfigError> {
        Ok(crate::source::csv::CsvOptions {
            delimiter: self.delimiter()?,
            columns: self.source.csv.columns.clone(),
            max_record_bytes: self.source.max_record_bytes,
            max_field_bytes: self.source.max_field_bytes,
            no_follow: self.source.in_drop_folder,
        })
    }

    /// The CSV delimiter byte.
    pub fn delimiter(&self) -> Result<u8, ConfigError> {
        match self.source.csv.delimiter.as_deref() {
            None => Ok(b','),
            Some("\\t") | Some("\t") => Ok(b'\t'),
            Some(d) if d.len() == 1 && d.is_ascii() => Ok(d.as_bytes()[0]),
            Some(_) => Err(invalid(
                "source.csv.delimiter",
                "must be a single ASCII character",
            )),
        }
    }

    /// Reads the secrets, from the inline values or their `*_file` paths.
    pub fn secrets(&self) -> Result<ResolvedSecrets, ConfigError> {
        let c = &self.concur;
        Ok(ResolvedSecrets {
            client_secret: resolve(
                "concur.client_secret",
                &c.client_secret,
                &c.client_secret_file,
            )?,
            request_token: resolve(
                "concur.request_token",
                &c.request_token,
                &c.request_token_file,
            )?,
        })
    }
}

/// Checks the limiter and retry settings every HTTP client section has (`section.*`).
pub(crate) fn validate_http_limits(
    section: &str,
    requests_per_second: f64,
    timeout_seconds: f64,
    max_attempts: u32,
) -> Result<(), ConfigError> {
    if !(requests_per_second >= 0.0 && requests_per_second.is_finite()) {
        return Err(invalid(
            &format!("{section}.requests_per_second"),
            "must be a number ≥ 0 (0 turns the limiter off)",
        ));
    }
    if !(timeout_seconds > 0.0 && timeout_seconds.is_finite()) {
        return Err(invalid(
            &format!("{section}.timeout_seconds"),
            "must be > 0",
        ));
    }
    if max_attempts == 0 {
        return Err(invalid(
            &format!("{section}.max_attempts"),
            "must be at least 1",
        ));
    }
    Ok(())
}

/// `concur.base_url`: plain `http://` only to a loopback host (the bundled simulator).
fn check_base_url(value: &str) -> Result<(), ConfigError> {
    let key = "concur.base_url";
    let url = url::Url::parse(value.trim()).map_err(|e| invalid(key, format!("not a URL: {e}")))?;
    let Some(host) = url.host() else {
        return Err(invalid(key, "has no host"));
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(key, "must not carry user information"));
    }
    if url.scheme() == "http" && !crate::concur::geo::is_loopback(&host) {
        return Err(invalid(
            key,
            "http:// is only allowed to a loopback host (127.0.0.0/8, ::1, localhost); use https://",
        ));
    }
    Ok(())
}

/// A TOML syntax check that reports the position (and the key, when the line names one) but
/// never the text of the line, which may hold a secret.
fn check_toml_syntax(text: &str) -> Result<(), String> {
    let Err(e) = toml::de::DeTable::parse(text) else {
        return Ok(());
    };
    let mut message = format!("TOML syntax error: {}", e.message().trim());
    if let Some(span) = e.span() {
        let mut start = span.start.min(text.len());
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        let before = &text[..start];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        message = format!("line {line}, column {column}: {message}");
        if let Some(key) = key_at(text, line_start) {
            message.push_str(&format!(" (key {key})"));
        }
    }
    Err(message)
}

/// The dotted key assigned on the line starting at `line_start`, with its table, if it
/// looks like one (`name = ...` below a `[table]` header).
fn key_at(text: &str, line_start: usize) -> Option<String> {
    let bare = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    };
    let line = text[line_start..].lines().next().unwrap_or("");
    let (name, _) = line.split_once('=')?;
    let name = name.trim();
    if !bare(name) {
        return None;
    }
    let table = text[..line_start].lines().rev().find_map(|l| {
        let l = l.trim();
        let inner = l.strip_prefix('[')?.strip_suffix(']')?;
        let inner = inner.trim_start_matches('[').trim_end_matches(']').trim();
        bare(inner).then(|| inner.to_owned())
    });
    Some(match table {
        Some(t) => format!("{t}.{name}"),
        None => name.to_owned(),
    })
}

/// A tracing filter (`log.level` or `RUST_LOG`), parsed strictly: every directive must parse and
/// a directive without `=` must be a level (`info`), not a word that would silently be taken as
/// a target name and switch every other log off.
pub fn log_filter(key: &str, value: &str) -> Result<tracing_subscriber::EnvFilter, ConfigError> {
    const LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];
    let bad = |why: String| {
        invalid(
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

/// Checks a secret given as `key` or `key_file`: exactly one of them, neither empty.
pub(crate) fn secret_keys(
    key: &str,
    inline: &Option<Secret>,
    file: &Option<PathBuf>,
) -> Result<(), ConfigError> {
    one_of(key, inline.is_some(), file.is_some())?;
    non_empty_secret(key, inline, file)
}

/// An optional secret `key` / `key_file`, if given, is not empty or whitespace.
pub(crate) fn non_empty_secret(
    key: &str,
    inline: &Option<Secret>,
    file: &Option<PathBuf>,
) -> Result<(), ConfigError> {
    if inline
        .as_ref()
        .is_some_and(|s| s.expose().trim().is_empty())
    {
        return Err(invalid(key, "is empty"));
    }
    if file
        .as_ref()
        .is_some_and(|p| p.as_os_str().to_string_lossy().trim().is_empty())
    {
        return Err(invalid(
            &format!("{key}_file"),
            "is empty: give the path of the file",
        ));
    }
    Ok(())
}

pub(crate) fn one_of(key: &str, inline: bool, file: bool) -> Result<(), ConfigError> {
    match (inline, file) {
        (true, true) => Err(invalid(
            key,
            format!("give either {key} or {key}_file, not both"),
        )),
        (false, false) => Err(invalid(key, format!("missing: give {key} or {key}_file"))),
        _ => Ok(()),
    }
}

pub(crate) fn resolve(
    key: &str,
    inline: &Option<Secret>,
    file: &Option<PathBuf>,
) -> Result<Secret, ConfigError> {
    if let Some(s) = inline {
        return Ok(s.clone());
    }
    let Some(path) = file else {
        return Err(invalid(key, format!("missing: give {key} or {key}_file")));
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        invalid(
            &format!("{key}_file"),
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    let value = text.trim_end_matches(['\r', '\n']);
    if value.trim().is_empty() {
        return Err(invalid(
            &format!("{key}_file"),
            format!("{} is empty", path.display()),
        ));
    }
    Ok(Secret::new(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[source]
kind = "csv"
path = "/tmp/hr.csv"
[concur]
client_id = "id"
client_secret = "s"
company_id = "c"
request_token = "t"
"#;

    #[test]
    fn example_config_parses() {
        let text = include_str!("../config/example.toml");
        let c = Config::from_toml(text).unwrap();
        assert_eq!(c.source.csv.columns.len(), 2);
        assert_eq!(c.defaults["ledger"], "DEFAULT");
        assert_eq!(c.delimiter().unwrap(), b',');
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::from_toml(MINIMAL).unwrap();
        assert_eq!(c.concur.requests_per_second, 5.0);
        assert_eq!(c.concur.batch_size, 500);
        assert_eq!(c.sync.password_on_create, PasswordOnCreate::Source);
        assert_eq!(c.sync.max_deactivations, DeactivationLimit::Share(5.0));
        assert_eq!(c.sync.max_deactivations.allowed(1000), 50);
        let c = Config::from_toml(&format!("{MINIMAL}[sync]\nmax_deactivations = 12\n")).unwrap();
        assert_eq!(c.sync.max_deactivations, DeactivationLimit::Count(12));
        assert_eq!(c.sync.max_identity_changes, DeactivationLimit::Share(5.0));
        let c = Config::from_toml(&format!(
            "{MINIMAL}[sync]\nmax_identity_changes = \"20%\"\n"
        ))
        .unwrap();
        assert_eq!(c.sync.max_identity_changes.allowed(50), 10);
        assert_eq!(c.secrets().unwrap().client_secret.expose(), "s");
    }

    #[test]
    fn unknown_key_is_named() {
        let text = format!("{MINIMAL}\nbogus_key = 1\n");
        let e = Config::from_toml(&text).unwrap_err().to_string();
        assert!(e.contains("bogus_key"), "{e}");
    }

    #[test]
    fn secret_from_file_and_missing_secret() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("secret");
        std::fs::write(&f, "from-file\n").unwrap();
        let text = MINIMAL.replace(
            "client_secret = \"s\"",
            &format!("client_secret_file = \"{}\"", f.display()),
        );
        let c = Config::from_toml(&text).unwrap();
        assert_eq!(c.secrets().unwrap().client_secret.expose(), "from-file");
        let e = Config::from_toml(&MINIMAL.replace("request_token = \"t\"", ""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("concur.request_token"), "{e}");
    }
}
