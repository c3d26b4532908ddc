//! `[source.ldap]`: the LDAP connection (URL, StartTLS, CA, bind, search) and the attribute
//! mapping that also applies to LDIF exports, with the defaults and the checks. The mapping is
//! compiled here ([`LdapConfig::mapping`]: inetOrgPerson defaults overlaid with the configured
//! attributes); applying it to entries is the source's business.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::{ConfigError, LdapFilter, SourceKind, default_timeout, non_empty_secret};
use crate::model::{Field, Secret};

/// `[source.ldap]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapConfig {
    /// `ldap://host[:port]` (optionally with `starttls = true`) or `ldaps://host[:port]`.
    #[serde(default)]
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS before binding.
    #[serde(default)]
    pub starttls: bool,
    /// PEM file with the CA certificate(s) that sign the server's certificate; default: the
    /// system's trusted roots.
    pub ca_file: Option<PathBuf>,
    /// The account to bind as; none means an anonymous bind.
    pub bind_dn: Option<String>,
    pub bind_password: Option<Secret>,
    pub bind_password_file: Option<PathBuf>,
    /// Where the search starts.
    #[serde(default)]
    pub base_dn: String,
    #[serde(default = "default_filter")]
    pub filter: String,
    #[serde(default)]
    pub scope: SearchScope,
    /// Entries per page (RFC 2696 paged results).
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_seconds: f64,
    /// Longest wait for any one answer of the server (the bind, each page of the search).
    #[serde(default = "default_timeout")]
    pub timeout_seconds: f64,
    /// LDAP attribute description → canonical field name (or a list of them). Overlays the
    /// inetOrgPerson defaults; `""` removes a default.
    #[serde(default)]
    pub attributes: BTreeMap<String, AttributeTargets>,
    /// Users whose entry matches this rule are sent as inactive.
    pub inactive_when: Option<InactiveWhen>,
}

impl Default for LdapConfig {
    fn default() -> Self {
        LdapConfig {
            url: String::new(),
            starttls: false,
            ca_file: None,
            bind_dn: None,
            bind_password: None,
            bind_password_file: None,
            base_dn: String::new(),
            filter: default_filter(),
            scope: SearchScope::default(),
            page_size: default_page_size(),
            connect_timeout_seconds: default_connect_timeout(),
            timeout_seconds: default_timeout(),
            attributes: BTreeMap::new(),
            inactive_when: None,
        }
    }
}

fn default_filter() -> String {
    "(objectClass=inetOrgPerson)".into()
}
fn default_page_size() -> u32 {
    500
}
fn default_connect_timeout() -> f64 {
    10.0
}

/// `scope`: `sub` (default, the base and everything below), `one` (direct children) or `base`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SearchScope {
    Base,
    One,
    #[default]
    Sub,
}

/// A mapping target: one canonical field or several (`mail = ["login_id", "email"]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum AttributeTargets {
    One(String),
    Many(Vec<String>),
}

/// `inactive_when = { attribute = "…", values = ["…"] }` or, for flag words such as Active
/// Directory's `userAccountControl`, `{ attribute = "…", bitmask = 2 }`. A value `"*"` matches
/// any value (the attribute is present).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InactiveWhen {
    pub attribute: String,
    #[serde(default)]
    pub values: Vec<String>,
    pub bitmask: Option<u64>,
}

impl AttributeTargets {
    fn names(&self) -> Vec<&str> {
        match self {
            AttributeTargets::One(s) => vec![s.trim()],
            AttributeTargets::Many(v) => v.iter().map(|s| s.trim()).collect(),
        }
    }
}

/// The inetOrgPerson defaults: LDAP attribute → canonical fields.
pub const DEFAULT_ATTRIBUTES: &[(&str, &[&str])] = &[
    ("employeeNumber", &["employee_id"]),
    ("mail", &["login_id", "email"]),
    ("givenName", &["first_name"]),
    ("sn", &["last_name"]),
    ("initials", &["middle_initial"]),
    ("preferredLanguage", &["locale"]),
    ("c", &["country"]),
    ("departmentNumber", &["org_unit1"]),
    ("ou", &["org_unit1"]),
    ("manager", &["manager_employee_id"]),
];

/// The compiled attribute mapping: which attributes feed which canonical field, and the
/// inactive rule.
#[derive(Debug, Clone)]
pub struct LdapMapping {
    /// Canonical field → attribute descriptions in priority order (the first one an entry has
    /// wins), as configured (original case, for the search request).
    pub fields: Vec<(Field, Vec<String>)>,
    pub inactive: Option<InactiveWhen>,
}

impl LdapConfig {
    /// The inetOrgPerson defaults overlaid with `[source.ldap.attributes]`: a configured
    /// attribute replaces every default that fed the same canonical fields, and an attribute
    /// mapped to `""` (or `[]`) is not used at all.
    pub fn mapping(&self) -> Result<LdapMapping, ConfigError> {
        let mut table: BTreeMap<String, (String, Vec<Field>)> = BTreeMap::new();
        let mut configured: Vec<(String, String, Vec<Field>)> = Vec::new();
        for (attr, targets) in &self.attributes {
            let key = format!("source.ldap.attributes.{attr}");
            if attr.trim().is_empty() || attr.contains([' ', ':', '=', ',']) {
                return Err(ConfigError::invalid(
                    &key,
                    "not an LDAP attribute description",
                ));
            }
            let mut fields = Vec::new();
            for name in targets.names() {
                if name.is_empty() {
                    continue;
                }
                let field = Field::from_name(name).ok_or_else(|| {
                    ConfigError::invalid(&key, format!("\"{name}\" is not a canonical field name"))
                })?;
                fields.push(field);
            }
            configured.push((attr.to_ascii_lowercase(), attr.clone(), fields));
        }
        let overridden: Vec<Field> = configured
            .iter()
            .flat_map(|(_, _, f)| f.iter().copied())
            .collect();
        for (attr, names) in DEFAULT_ATTRIBUTES {
            let fields: Vec<Field> = names
                .iter()
                .filter_map(|n| Field::from_name(n))
                .filter(|f| !overridden.contains(f))
                .collect();
            if !fields.is_empty() {
                table.insert(attr.to_ascii_lowercase(), ((*attr).to_owned(), fields));
            }
        }
        for (lower, attr, fields) in configured {
            if fields.is_empty() {
                table.remove(&lower);
            } else {
                table.insert(lower, (attr, fields));
            }
        }
        // Alphabetical by attribute description: several attributes for one field are tried in
        // that order (departmentNumber before ou).
        let mut by_field: BTreeMap<Field, Vec<String>> = BTreeMap::new();
        for (attr, fields) in table.into_values() {
            for f in fields {
                by_field.entry(f).or_default().push(attr.clone());
            }
        }
        if !by_field.contains_key(&Field::EMPLOYEE_ID) {
            return Err(ConfigError::invalid(
                "source.ldap.attributes",
                "no attribute maps to employee_id (the key of every user)",
            ));
        }
        if let Some(rule) = &self.inactive_when {
            if rule.attribute.trim().is_empty() {
                return Err(ConfigError::invalid(
                    "source.ldap.inactive_when.attribute",
                    "must name an attribute",
                ));
            }
            if rule.values.is_empty() && rule.bitmask.is_none() {
                return Err(ConfigError::invalid(
                    "source.ldap.inactive_when",
                    "give values = [\"…\"] or bitmask = N",
                ));
            }
        }
        Ok(LdapMapping {
            fields: by_field.into_iter().collect(),
            inactive: self.inactive_when.clone(),
        })
    }

    /// Checks `[source.ldap]`: the attribute mapping when `kind` is ldap or ldif, the filter an
    /// LDIF export is matched against, and the connection keys when `kind` is ldap.
    pub fn validate(&self, kind: SourceKind) -> Result<(), ConfigError> {
        if matches!(kind, SourceKind::Ldap | SourceKind::Ldif) {
            self.mapping()?;
        }
        if kind == SourceKind::Ldif {
            LdapFilter::parse(&self.filter).map_err(|m| {
                ConfigError::invalid("source.ldap.filter", format!("{:?}: {m}", self.filter))
            })?;
        }
        if kind != SourceKind::Ldap {
            return Ok(());
        }
        let scheme_ok = self.url.starts_with("ldap://") || self.url.starts_with("ldaps://");
        if !scheme_ok {
            return Err(ConfigError::invalid(
                "source.ldap.url",
                "must start with ldap:// or ldaps://",
            ));
        }
        if self.starttls && self.url.starts_with("ldaps://") {
            return Err(ConfigError::invalid(
                "source.ldap.starttls",
                "StartTLS upgrades ldap:// connections; ldaps:// is already encrypted",
            ));
        }
        if self.base_dn.trim().is_empty() {
            return Err(ConfigError::invalid(
                "source.ldap.base_dn",
                "missing: where to search",
            ));
        }
        if ldap3::parse_filter(&self.filter).is_err() {
            return Err(ConfigError::invalid(
                "source.ldap.filter",
                format!("{:?} is not an LDAP filter", self.filter),
            ));
        }
        if self.page_size == 0 || self.page_size > i32::MAX as u32 {
            return Err(ConfigError::invalid(
                "source.ldap.page_size",
                "must be at least 1",
            ));
        }
        for (key, v) in [
            ("connect_timeout_seconds", self.connect_timeout_seconds),
            ("timeout_seconds", self.timeout_seconds),
        ] {
            if !(v > 0.0 && v.is_finite()) {
                return Err(ConfigError::invalid(
                    &format!("source.ldap.{key}"),
                    "must be > 0",
                ));
            }
        }
        non_empty_secret(
            "source.ldap.bind_password",
            &self.bind_password,
            &self.bind_password_file,
        )?;
        match (
            &self.bind_dn,
            self.bind_password.is_some(),
            self.bind_password_file.is_some(),
        ) {
            (_, true, true) => Err(ConfigError::invalid(
                "source.ldap.bind_password",
                "give either source.ldap.bind_password or source.ldap.bind_password_file, not both",
            )),
            (Some(_), false, false) => Err(ConfigError::invalid(
                "source.ldap.bind_password",
                "missing: give source.ldap.bind_password or source.ldap.bind_password_file for bind_dn",
            )),
            (None, true, _) | (None, _, true) => Err(ConfigError::invalid(
                "source.ldap.bind_dn",
                "missing: a bind password needs the bind_dn it belongs to",
            )),
            _ => Ok(()),
        }
    }
}
