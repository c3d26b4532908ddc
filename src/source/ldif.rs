//! The LDIF export source (`source.kind = "ldif"`, RFC 2849).

use super::{SourceError, SourceRead};

/// Reads an LDIF file.
pub fn read(_cfg: &crate::config::Config) -> Result<SourceRead, SourceError> {
    Err(SourceError::Unsupported {
        kind: "ldif".into(),
        message: "not available in this build".into(),
    })
}
