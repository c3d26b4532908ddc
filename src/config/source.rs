//! `[source]`: which kind of source is read and from where, the drop-folder timings, the
//! reading limits and `[source.csv]`; the LDAP and SCIM subsections live in `ldap` and `scim`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::{Config, ConfigError, LdapConfig, ScimConfig, ScimPushConfig};

/// Default of `source.max_record_bytes`: 1 MiB.
pub const DEFAULT_MAX_RECORD_BYTES: u64 = 1 << 20;
/// Default of `source.max_field_bytes`: 64 KiB, far above the longest Concur field.
pub const DEFAULT_MAX_FIELD_BYTES: u64 = 64 << 10;

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
    /// The SCIM 2.0 endpoint identity providers provision into (`[source.scim_push]`).
    #[serde(rename = "scim_push")]
    ScimPush,
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
    pub ldap: LdapConfig,
    /// Connection and attribute mapping for `scim`.
    #[serde(default)]
    pub scim: ScimConfig,
    /// The SCIM endpoint for `scim_push`.
    #[serde(default)]
    pub scim_push: ScimPushConfig,
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

impl CsvConfig {
    /// The delimiter byte; `key` names the setting in the error.
    pub fn delimiter_byte(&self, key: &str) -> Result<u8, ConfigError> {
        match self.delimiter.as_deref() {
            None => Ok(b','),
            Some("\\t" | "\t") => Ok(b'\t'),
            Some(d) if d.len() == 1 && d.is_ascii() => Ok(d.as_bytes()[0]),
            Some(_) => Err(ConfigError::invalid(
                key,
                "must be a single ASCII character",
            )),
        }
    }
}

pub(super) fn default_settle() -> f64 {
    10.0
}
pub(super) fn default_archive_days() -> u64 {
    30
}
fn default_max_record_bytes() -> u64 {
    DEFAULT_MAX_RECORD_BYTES
}
fn default_max_field_bytes() -> u64 {
    DEFAULT_MAX_FIELD_BYTES
}

impl SourceConfig {
    /// The CSV delimiter byte.
    pub fn delimiter(&self) -> Result<u8, ConfigError> {
        self.csv.delimiter_byte("source.csv.delimiter")
    }
}

impl Config {
    /// The CSV delimiter byte.
    pub fn delimiter(&self) -> Result<u8, ConfigError> {
        self.source.delimiter()
    }
}
