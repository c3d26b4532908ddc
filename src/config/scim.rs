//! `[source.scim]`: the SCIM service, its token, paging, full/delta timing, attribute overrides
//! and limiter, with their defaults. The keys are checked by `source::scim`, which owns the
//! duration syntax and the attribute paths.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::model::Secret;

/// `[source.scim]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScimConfig {
    /// The service base, e.g. `https://idp.example.com/scim/v2`.
    #[serde(default)]
    pub url: String,
    /// Bearer token (or `token_file`).
    pub token: Option<Secret>,
    pub token_file: Option<PathBuf>,
    /// A SCIM filter every read applies, e.g. `active eq true`.
    pub filter: Option<String>,
    /// Users per page (`count`); the service may return fewer.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// How often a full read runs (deltas in between), e.g. `24h`, `90m`, `3600` (seconds).
    #[serde(default = "default_full_every")]
    pub full_every: String,
    /// How far before the previous read's start a delta looks back, so that a change still
    /// being written while that read ran is not missed.
    #[serde(default = "default_delta_overlap")]
    pub delta_overlap: String,
    /// Canonical field name → SCIM attribute path, replacing the default mapping (`""` unmaps).
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// This source's own limiter; 0 turns it off.
    #[serde(default = "default_rps")]
    pub requests_per_second: f64,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: f64,
    /// Sends per request before a page counts as failed (429, 5xx, timeouts).
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
}

impl Default for ScimConfig {
    fn default() -> Self {
        ScimConfig {
            url: String::new(),
            token: None,
            token_file: None,
            filter: None,
            page_size: default_page_size(),
            full_every: default_full_every(),
            delta_overlap: default_delta_overlap(),
            attributes: BTreeMap::new(),
            requests_per_second: default_rps(),
            timeout_seconds: default_timeout(),
            max_attempts: default_attempts(),
        }
    }
}

fn default_page_size() -> u32 {
    100
}
fn default_full_every() -> String {
    "1h".into()
}
fn default_delta_overlap() -> String {
    "60s".into()
}
fn default_rps() -> f64 {
    10.0
}
fn default_timeout() -> f64 {
    60.0
}
fn default_attempts() -> u32 {
    6
}
