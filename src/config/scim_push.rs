//! `[source.scim_push]`: the SCIM 2.0 endpoint that identity providers provision into
//! (`source.kind = "scim_push"`): where it listens, the bearer token clients must send, TLS,
//! how soon a cycle follows a push, and the attribute mapping overrides. Plain HTTP is refused
//! on any address but loopback.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::{ConfigError, MIN_ADMIN_TOKEN_CHARS, secret_keys};
use crate::model::Secret;

/// `[source.scim_push]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScimPushConfig {
    /// The address the endpoint listens on (it serves under `/scim/v2`).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// The bearer token every client must send (or `token_file`); at least 16 characters.
    pub token: Option<Secret>,
    pub token_file: Option<PathBuf>,
    /// PEM certificate chain and private key; both or neither. Without them the endpoint
    /// speaks plain HTTP, which only a loopback `listen` allows.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// Seconds after a push before the cycle it triggers starts; pushes arriving meanwhile are
    /// carried by the same cycle.
    #[serde(default = "default_debounce")]
    pub debounce_seconds: f64,
    /// Canonical field name → SCIM attribute path, replacing the default mapping (`""` unmaps),
    /// as `[source.scim.attributes]`.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// The state database the pushed directory lives in: `state.path`, set when the
    /// configuration is loaded (never from the file).
    #[serde(skip)]
    pub state_path: PathBuf,
}

impl Default for ScimPushConfig {
    fn default() -> Self {
        ScimPushConfig {
            listen: default_listen(),
            token: None,
            token_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            debounce_seconds: default_debounce(),
            attributes: BTreeMap::new(),
            state_path: PathBuf::new(),
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:8443".into()
}
fn default_debounce() -> f64 {
    2.0
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::invalid(&format!("source.scim_push.{key}"), message)
}

impl ScimPushConfig {
    /// Checks every key; called by `Config::validate` when `source.kind = "scim_push"`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let Ok(addr) = self.listen.parse::<std::net::SocketAddr>() else {
            return Err(invalid(
                "listen",
                "must be an address with port, e.g. 0.0.0.0:8443",
            ));
        };
        secret_keys("source.scim_push.token", &self.token, &self.token_file)?;
        if let Some(t) = &self.token {
            check_token("source.scim_push.token", t)?;
        }
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(_), None) => {
                return Err(invalid(
                    "tls_key_file",
                    "missing: tls_cert_file is set, so give the private key's PEM file too",
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "tls_cert_file",
                    "missing: tls_key_file is set, so give the certificate chain's PEM file too",
                ));
            }
            (None, None) if !addr.ip().is_loopback() => {
                return Err(invalid(
                    "tls_cert_file",
                    format!(
                        "source.scim_push.listen {} is not a loopback address: the endpoint \
                         receives people's data and the bearer token, so give tls_cert_file and \
                         tls_key_file, or listen on 127.0.0.1 behind a TLS proxy",
                        self.listen
                    ),
                ));
            }
            _ => {}
        }
        if !(self.debounce_seconds >= 0.0 && self.debounce_seconds <= 3_600.0) {
            return Err(invalid("debounce_seconds", "must be between 0 and 3600"));
        }
        self.scim_mapping_config().mapping().map_err(|e| match e {
            ConfigError::Invalid { key, message } => ConfigError::Invalid {
                key: key.replace("source.scim.", "source.scim_push."),
                message,
            },
            other => other,
        })?;
        Ok(())
    }

    /// The token from `token` or `token_file`, checked like an inline one.
    pub fn resolve_token(&self) -> Result<Secret, ConfigError> {
        let token = super::resolve("source.scim_push.token", &self.token, &self.token_file)?;
        let key = if self.token.is_some() {
            "source.scim_push.token"
        } else {
            "source.scim_push.token_file"
        };
        check_token(key, &token)?;
        Ok(token)
    }

    /// The `[source.scim]` the shared SCIM attribute mapping is compiled from: the defaults
    /// with these `attributes` laid over them.
    pub fn scim_mapping_config(&self) -> super::ScimConfig {
        super::ScimConfig {
            attributes: self.attributes.clone(),
            ..super::ScimConfig::default()
        }
    }
}

fn check_token(key: &str, token: &Secret) -> Result<(), ConfigError> {
    let t = token.expose();
    if t.chars().count() < MIN_ADMIN_TOKEN_CHARS {
        return Err(ConfigError::invalid(
            key,
            format!(
                "the token is too short: use at least {MIN_ADMIN_TOKEN_CHARS} characters (e.g. `openssl rand -hex 32`)"
            ),
        ));
    }
    if t.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError::invalid(
            key,
            "the token must not contain spaces or control characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    fn config(push: &str) -> Result<crate::config::Config, String> {
        crate::config::Config::from_toml(&format!(
            "[state]\npath = \"/tmp/x/state.db\"\n[source]\nkind = \"scim_push\"\n\
             [source.scim_push]\n{push}\n[concur]\nclient_id = \"i\"\n\
             company_uuid = \"8c4b5f3e-1d2a-4e6b-9f70-0a1b2c3d4e5f\"\n\
             client_secret = \"s\"\ncompany_id = \"c\"\nrequest_token = \"t\"\n"
        ))
        .map_err(|e| e.to_string())
    }

    const TOKEN: &str = "token = \"0123456789abcdef-push\"";

    #[test]
    fn keys_are_checked_by_name() {
        let c = config(TOKEN).unwrap();
        let p = &c.source.scim_push;
        assert_eq!(p.listen, "127.0.0.1:8443");
        assert_eq!(p.state_path, std::path::Path::new("/tmp/x/state.db"));
        config(&format!(
            "{TOKEN}\nlisten = \"0.0.0.0:8443\"\ntls_cert_file = \"/c.pem\"\ntls_key_file = \"/k.pem\""
        ))
        .unwrap();
        for (push, key) in [
            ("", "source.scim_push.token"),
            ("token = \"short\"", "source.scim_push.token"),
            (
                &format!("{TOKEN}\nlisten = \"0.0.0.0:8443\"") as &str,
                "source.scim_push.tls_cert_file",
            ),
            (
                &format!("{TOKEN}\ntls_cert_file = \"/c.pem\""),
                "source.scim_push.tls_key_file",
            ),
            (
                &format!("{TOKEN}\nlisten = \"x\""),
                "source.scim_push.listen",
            ),
            (
                &format!("{TOKEN}\n[source.scim_push.attributes]\nbogus = \"title\""),
                "source.scim_push.attributes.bogus",
            ),
        ] {
            let e = config(push).unwrap_err();
            assert!(e.contains(key), "{push}: {e}");
        }
        let e = config("token = \"0123456789abcdef-push\"\nlisten = \"0.0.0.0:1\"").unwrap_err();
        assert!(!e.contains("0123456789abcdef"), "{e}");
    }
}
