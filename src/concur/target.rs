//! The seam between a cycle and "Concur": [`UserTarget`] is everything a cycle needs from the
//! API users are written through (its batch limit, writing planned operations, setting
//! passwords) and what it answers per record. User v1 implements it on `ConcurClient`; a second
//! API plugs in beside it without touching the cycle.

use super::error::ConcurError;
use crate::model::{Op, Secret};

/// What Concur said about one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordOutcome {
    Acknowledged,
    /// Concur's message.
    Failed(String),
}

/// The outcome of one password change, in input order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswordOutcome {
    pub login_id: String,
    pub outcome: RecordOutcome,
}

/// What a cycle needs from the API users are written through.
#[allow(async_fn_in_trait)]
pub trait UserTarget {
    /// Most records (or passwords) one request may carry.
    fn max_batch(&self) -> usize;

    /// Writes planned user operations (at most [`UserTarget::max_batch`]; the caller batches)
    /// and returns one outcome per operation, in order, each settled by Concur: re-sending what
    /// the answer left open is the target's business. `Err` means a request failed after its
    /// retries; nothing can be said about the operations.
    async fn write_users(&self, ops: &[&Op]) -> Result<Vec<RecordOutcome>, ConcurError>;

    /// Sets each login's password (at most [`UserTarget::max_batch`]) and returns one outcome
    /// per input, in order.
    async fn set_passwords(
        &self,
        users: &[(&str, &Secret)],
    ) -> Result<Vec<PasswordOutcome>, ConcurError>;
}
