//! `[source.scim]`: the SCIM service, its token, paging, full/delta timing, attribute overrides
//! and limiter, with their defaults and checks: the duration syntax ([`parse_duration`]) and the
//! attribute mapping, compiled here ([`ScimConfig::mapping`]: the default paths overlaid with
//! the configured ones, parsed by `scim_path`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{
    AttrPath, ConfigError, default_attempts, default_timeout, secret_keys, validate_http_limits,
};
use crate::model::{Field, Secret};

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

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::invalid(&format!("source.scim.{key}"), message)
}

impl ScimConfig {
    /// Checks every key; called by `Config::validate` when `source.kind = "scim"`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = self.url.trim();
        if url.is_empty() {
            return Err(invalid(
                "url",
                "missing: the SCIM service base, e.g. https://idp.example.com/scim/v2",
            ));
        }
        if !(url.starts_with("https://") || url.starts_with("http://"))
            || url::Url::parse(url).is_err()
        {
            return Err(invalid("url", "must be an https:// (or http://) URL"));
        }
        secret_keys("source.scim.token", &self.token, &self.token_file)?;
        if self.page_size == 0 || self.page_size > 10_000 {
            return Err(invalid("page_size", "must be between 1 and 10000"));
        }
        parse_duration(&self.full_every).map_err(|m| invalid("full_every", m))?;
        parse_duration(&self.delta_overlap).map_err(|m| invalid("delta_overlap", m))?;
        self.mapping()?;
        validate_http_limits(
            "source.scim",
            self.requests_per_second,
            self.timeout_seconds,
            self.max_attempts,
        )
    }

    /// The default mapping with `attributes` laid over it: canonical field name → SCIM path
    /// (`""` unmaps the field). The error names the key and the problem.
    pub fn mapping(&self) -> Result<ScimMapping, ConfigError> {
        let mut by_field: BTreeMap<Field, (Vec<AttrPath>, bool)> = BTreeMap::new();
        for (f, paths) in default_paths() {
            let parsed = paths
                .iter()
                .map(|p| {
                    AttrPath::parse(p).map_err(|e| invalid(&format!("attributes.{}", f.name()), e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            by_field.insert(f, (parsed, true));
        }
        for (name, path) in &self.attributes {
            let key = format!("attributes.{name}");
            let Some(f) = Field::from_name(name) else {
                return Err(invalid(&key, "not a canonical field name"));
            };
            if path.trim().is_empty() {
                by_field.remove(&f);
                continue;
            }
            let p = AttrPath::parse(path).map_err(|e| invalid(&key, e))?;
            by_field.insert(f, (vec![p], false));
        }
        Ok(ScimMapping {
            fields: by_field
                .into_iter()
                .map(|(f, (p, default))| (f, p, default))
                .collect(),
        })
    }
}

/// The compiled attribute mapping: each canonical field with its SCIM paths, tried in order,
/// and whether they are the defaults (a default locale is cut to `ll-CC`).
#[derive(Clone, Debug)]
pub struct ScimMapping {
    pub fields: Vec<(Field, Vec<AttrPath>, bool)>,
}

/// The default mapping: each canonical field with its SCIM paths, tried in order.
fn default_paths() -> Vec<(Field, Vec<&'static str>)> {
    vec![
        (
            Field::EMPLOYEE_ID,
            vec!["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber"],
        ),
        (Field::LOGIN_ID, vec!["userName"]),
        (
            Field::EMAIL,
            vec![
                "emails[primary eq true].value",
                "emails[type eq \"work\"].value",
                "emails.value",
            ],
        ),
        (Field::FIRST_NAME, vec!["name.givenName"]),
        (Field::LAST_NAME, vec!["name.familyName"]),
        (Field::MIDDLE_INITIAL, vec!["name.middleName"]),
        (Field::ACTIVE, vec!["active"]),
        (Field::LOCALE, vec!["locale", "preferredLanguage"]),
        (
            Field::COUNTRY,
            vec![
                "addresses[type eq \"work\"].country",
                "addresses[primary eq true].country",
            ],
        ),
        (
            Field::ORG_UNIT1,
            vec!["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"],
        ),
        (
            Field::ORG_UNIT2,
            vec!["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter"],
        ),
        (
            Field::ORG_UNIT3,
            vec!["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:division"],
        ),
        (
            Field::MANAGER_EMPLOYEE_ID,
            vec!["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value"],
        ),
    ]
}

/// A duration such as `24h`, `90m`, `1h30m`, `45s`, `2d` or plain seconds (`3600`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let bad = || format!("{t:?} is not a duration such as 24h, 90m, 1h30m, 45s or 3600");
    let mut total = 0u64;
    let mut num = String::new();
    let mut any = false;
    for c in t.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            ' ' if num.is_empty() => continue,
            _ => return Err(bad()),
        };
        let n: u64 = num.parse().map_err(|_| bad())?;
        total = total.saturating_add(n.saturating_mul(unit));
        num.clear();
        any = true;
    }
    if !num.is_empty() || !any {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        for (t, s) in [
            ("24h", 86_400),
            ("90m", 5_400),
            ("1h30m", 5_400),
            ("45s", 45),
            ("2d", 172_800),
            ("3600", 3_600),
            ("0s", 0),
        ] {
            assert_eq!(parse_duration(t), Ok(Duration::from_secs(s)), "{t}");
        }
        for t in ["", "h", "5x", "1.5h", "10 minutes"] {
            assert!(parse_duration(t).is_err(), "{t}");
        }
    }

    fn config(scim: &str) -> Result<crate::config::Config, String> {
        crate::config::Config::from_toml(&format!(
            "[source]\nkind = \"scim\"\n[source.scim]\n{scim}\n[concur]\nclient_id = \"i\"\n\
             company_uuid = \"8c4b5f3e-1d2a-4e6b-9f70-0a1b2c3d4e5f\"\n\
             client_secret = \"s\"\ncompany_id = \"c\"\nrequest_token = \"t\"\n"
        ))
        .map_err(|e| e.to_string())
    }

    #[test]
    fn config_keys_are_checked_by_name() {
        let c = config("url = \"https://idp.example.com/scim/v2\"\ntoken = \"tok\"").unwrap();
        let s = &c.source.scim;
        assert_eq!(
            (s.page_size, s.full_every.as_str(), s.max_attempts),
            (100, "1h", 6)
        );
        for (scim, key) in [
            ("token = \"t\"", "source.scim.url"),
            ("url = \"ftp://x\"\ntoken = \"t\"", "source.scim.url"),
            ("url = \"https://x\"", "source.scim.token"),
            (
                "url = \"https://x\"\ntoken = \"t\"\ntoken_file = \"/f\"",
                "source.scim.token",
            ),
            (
                "url = \"https://x\"\ntoken = \"t\"\nfull_every = \"soon\"",
                "source.scim.full_every",
            ),
            (
                "url = \"https://x\"\ntoken = \"t\"\npage_size = 0",
                "source.scim.page_size",
            ),
            (
                "url = \"https://x\"\ntoken = \"t\"\n[source.scim.attributes]\nbogus = \"title\"",
                "source.scim.attributes.bogus",
            ),
            (
                "url = \"https://x\"\ntoken = \"t\"\n[source.scim.attributes]\nemail = \"emails[type]\"",
                "source.scim.attributes.email",
            ),
            (
                "url = \"https://x\"\ntoken = \"t\"\nbogus_key = 1",
                "bogus_key",
            ),
        ] {
            let e = config(scim).unwrap_err();
            assert!(e.contains(key), "{scim}: {e}");
        }
        let e = config("url = \"https://x\"\ntoken = \"secret-value\"\npage_size = 0").unwrap_err();
        assert!(!e.contains("secret-value"), "{e}");
    }
}
