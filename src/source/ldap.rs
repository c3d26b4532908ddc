//! The live LDAP directory source (`source.kind = "ldap"`) and the attribute mapping shared with
//! LDIF exports.

use serde::Deserialize;

use super::{SourceError, SourceRead};

/// `[source.ldap]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapConfig {}

/// Reads every matching entry of the directory.
pub async fn read(_cfg: &crate::config::Config) -> Result<SourceRead, SourceError> {
    Err(SourceError::Unsupported {
        kind: "ldap".into(),
        message: "not available in this build".into(),
    })
}
