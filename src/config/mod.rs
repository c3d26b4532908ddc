//! Typed configuration: defaults → TOML file → `CONCUR_SYNC__SECTION__KEY` environment.
//! Unknown keys are errors that name the key; every secret `x` may be given as `x_file`
//! instead (a path whose content is the secret, e.g. under `$CREDENTIALS_DIRECTORY`).
//!
//! This module owns `Config`, loading and layering, the checks across sections and the secret
//! helpers; each section is a file of its own with its type, defaults and checks (`concur`,
//! `source`, `ldap`, `scim`, `sync`, `attendees`, `service` for state/admin/service/log). The
//! syntax a section's values are written in is parsed here too (`ldap_filter` for the filter an
//! LDIF export is matched against, `scim_path` for SCIM attribute paths), so that every
//! structural check runs when the configuration is loaded. It imports nothing but `model`.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::model::Secret;

mod attendees;
mod concur;
mod ldap;
mod ldap_filter;
mod scim;
mod scim_path;
mod service;
mod source;
mod sync;

pub use attendees::{
    AttendeeColumn, AttendeeSourceConfig, AttendeeSourceKind, AttendeesConfig, attendee_column,
};
pub use concur::{ConcurApi, ConcurConfig, DEFAULT_MAX_RESPONSE_BYTES, is_loopback};
pub use ldap::{
    AttributeTargets, DEFAULT_ATTRIBUTES, InactiveWhen, LdapConfig, LdapMapping, SearchScope,
};
pub use ldap_filter::LdapFilter;
pub use scim::{ScimConfig, ScimMapping, parse_duration};
pub use scim_path::{AttrPath, CORE_USER, ENTERPRISE, FilterValue};
pub use service::{
    AdminConfig, LogConfig, LogFormat, MIN_ADMIN_TOKEN_CHARS, ServiceConfig, StateConfig,
    log_filter,
};
pub use source::{
    CsvConfig, DEFAULT_MAX_FIELD_BYTES, DEFAULT_MAX_RECORD_BYTES, SourceConfig, SourceKind,
};
pub use sync::{DeactivationLimit, PasswordOnCreate, SyncConfig};

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

impl ConfigError {
    /// The error of configuration key `key` (dotted, e.g. `source.scim.url`).
    pub fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: key.into(),
            message: message.into(),
        }
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
    pub attendees: Option<AttendeesConfig>,
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
        self.concur.validate()?;
        if matches!(self.source.kind, SourceKind::Csv | SourceKind::Ldif)
            && self.source.path.as_os_str().is_empty()
        {
            return Err(ConfigError::invalid(
                "source.path",
                "missing: the file to read is required for kind csv and ldif",
            ));
        }
        if self.source.kind == SourceKind::Scim {
            self.source.scim.validate()?;
        }
        self.delimiter()?;
        if !(0.0..=1.0).contains(&self.sync.min_source_ratio) {
            return Err(ConfigError::invalid(
                "sync.min_source_ratio",
                "must be between 0 and 1",
            ));
        }
        if self.concur.api == ConcurApi::V4
            && self.sync.password_on_create == PasswordOnCreate::Random
        {
            return Err(ConfigError::invalid(
                "sync.password_on_create",
                "\"random\" cannot apply with concur.api = \"v4\": v4 has no password attribute (users sign in through single sign-on); remove the key",
            ));
        }
        if self.sync.schedule.split_whitespace().count() != 6 {
            return Err(ConfigError::invalid(
                "sync.schedule",
                "must be a six-field cron expression (sec min hour day month weekday), e.g. \"0 */15 * * * *\"",
            ));
        }
        if let Some(level) = &self.log.level {
            log_filter("log.level", level)?;
        }
        self.admin.validate()?;
        if self.service.shutdown_timeout.is_nan() || self.service.shutdown_timeout <= 0.0 {
            return Err(ConfigError::invalid(
                "service.shutdown_timeout",
                "must be > 0",
            ));
        }
        if self.source.settle_seconds.is_nan() || self.source.settle_seconds < 0.0 {
            return Err(ConfigError::invalid("source.settle_seconds", "must be ≥ 0"));
        }
        if self.source.max_field_bytes == 0 || self.source.max_record_bytes == 0 {
            return Err(ConfigError::invalid(
                "source.max_record_bytes",
                "source.max_record_bytes and source.max_field_bytes must be > 0",
            ));
        }
        self.source.ldap.validate(self.source.kind)?;
        for (header, canonical) in &self.source.csv.columns {
            if crate::model::Field::from_name(canonical).is_none()
                && !matches!(canonical.as_str(), "password" | "previous_employee_id")
            {
                return Err(ConfigError::invalid(
                    &format!("source.csv.columns.{header}"),
                    format!("\"{canonical}\" is not a canonical field name"),
                ));
            }
        }
        for key in self.defaults.keys() {
            if crate::model::Field::from_name(key).is_none() {
                return Err(ConfigError::invalid(
                    &format!("defaults.{key}"),
                    "not a canonical field name",
                ));
            }
        }
        self.sync.check_reconcile_schedule()?;
        if let Some(a) = &self.attendees {
            a.validate()?;
        }
        Ok(())
    }

    /// Whether `admin.listen` is a loopback address.
    pub fn admin_is_loopback(&self) -> bool {
        self.admin.is_loopback()
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
        return Err(ConfigError::invalid(
            &format!("{section}.requests_per_second"),
            "must be a number ≥ 0 (0 turns the limiter off)",
        ));
    }
    if !(timeout_seconds > 0.0 && timeout_seconds.is_finite()) {
        return Err(ConfigError::invalid(
            &format!("{section}.timeout_seconds"),
            "must be > 0",
        ));
    }
    if max_attempts == 0 {
        return Err(ConfigError::invalid(
            &format!("{section}.max_attempts"),
            "must be at least 1",
        ));
    }
    Ok(())
}

/// A TOML syntax check that reports the position (and the key, when the line names one) but
/// never the text of the line, which may hold a secret.
/// Default of every `timeout_seconds` (Concur, SCIM, LDAP): 60 seconds.
fn default_timeout() -> f64 {
    60.0
}

/// Default of every `max_attempts` (Concur, SCIM): 6.
fn default_attempts() -> u32 {
    6
}

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
        return Err(ConfigError::invalid(key, "is empty"));
    }
    if file
        .as_ref()
        .is_some_and(|p| p.as_os_str().to_string_lossy().trim().is_empty())
    {
        return Err(ConfigError::invalid(
            &format!("{key}_file"),
            "is empty: give the path of the file",
        ));
    }
    Ok(())
}

pub(crate) fn one_of(key: &str, inline: bool, file: bool) -> Result<(), ConfigError> {
    match (inline, file) {
        (true, true) => Err(ConfigError::invalid(
            key,
            format!("give either {key} or {key}_file, not both"),
        )),
        (false, false) => Err(ConfigError::invalid(
            key,
            format!("missing: give {key} or {key}_file"),
        )),
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
        return Err(ConfigError::invalid(
            key,
            format!("missing: give {key} or {key}_file"),
        ));
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::invalid(
            &format!("{key}_file"),
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    let value = text.trim_end_matches(['\r', '\n']);
    if value.trim().is_empty() {
        return Err(ConfigError::invalid(
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
company_uuid = "8c4b5f3e-1d2a-4e6b-9f70-0a1b2c3d4e5f"
client_secret = "s"
company_id = "c"
request_token = "t"
"#;

    #[test]
    fn example_config_parses() {
        let text = include_str!("../../config/example.toml");
        let c = Config::from_toml(text).unwrap();
        assert_eq!(c.source.csv.columns.len(), 2);
        assert_eq!(c.defaults["ledger"], "DEFAULT");
        assert_eq!(c.delimiter().unwrap(), b',');
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::from_toml(MINIMAL).unwrap();
        assert_eq!(c.concur.requests_per_second, 5.0);
        assert_eq!(c.concur.api, ConcurApi::V4);
        assert_eq!(c.concur.batch_size(), 100);
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
