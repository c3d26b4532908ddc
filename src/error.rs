//! Why a command could not run or finish (`SyncError`, which every command returns) and the
//! process exit codes, kept in one place that `commands`, `readback`, `sync` and `main` all
//! use.

use crate::concur::ConcurError;
use crate::config::ConfigError;
use crate::source::SourceError;
use crate::store::StoreError;

/// Exit code of a command that did everything it was asked.
pub const EXIT_SUCCESS: u8 = 0;
/// Exit code of a fatal error (also of a cycle stopped by shutdown).
pub const EXIT_FATAL: u8 = 1;
/// Exit code of a cycle that finished with rejected or failed records.
pub const EXIT_PARTIAL: u8 = 2;
/// Exit code of a cycle whose changes were held for approval or whose read looked incomplete.
pub const EXIT_HELD: u8 = 3;

/// Why a cycle could not run or finish.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("source: {0}")]
    Source(#[from] SourceError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("Concur: {0}")]
    Concur(#[from] ConcurError),
    #[error("{0}")]
    Refused(String),
}
