//! The SCIM 2.0 feed source (`source.kind = "scim"`).

use serde::Deserialize;

use super::{SourceError, SourceRead};

/// `[source.scim]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScimConfig {}

/// Reads the users of the SCIM service (a full or a delta read).
pub async fn read(
    _cfg: &crate::config::Config,
    _store: &crate::store::Store,
) -> Result<SourceRead, SourceError> {
    Err(SourceError::Unsupported {
        kind: "scim".into(),
        message: "not available in this build".into(),
    })
}
