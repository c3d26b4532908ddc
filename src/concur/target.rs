//! The seam between a cycle and "Concur": [`UserTarget`] is everything a cycle needs from the
//! API users are written through (its batch limit, writing planned operations, setting
//! passwords) and what it answers per record. Nothing in it is particular to one API: User v1
//! implements it on `ConcurClient` (`v1::users`); an API with asynchronous provisioning or
//! without passwords plugs in beside it without touching the cycle.

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
    /// Most operations (or passwords) the caller hands over at once. A target whose requests
    /// have further limits (a body size) splits a batch itself.
    fn max_batch(&self) -> usize;

    /// Writes planned user operations (at most [`UserTarget::max_batch`]; the caller batches)
    /// and returns one outcome per operation, in order, each settled by Concur: re-sending what
    /// an answer left open, or waiting until an asynchronous provisioning has finished, is the
    /// target's business. `Err` means a request failed after its retries; nothing can be said
    /// about the operations.
    async fn write_users(&self, ops: &[&Op]) -> Result<Vec<RecordOutcome>, ConcurError>;

    /// Sets each login's password (at most [`UserTarget::max_batch`]) and returns one outcome
    /// per input, in order. An API that takes no passwords keeps this default, which fails each
    /// one with a message saying so and sends nothing.
    async fn set_passwords(
        &self,
        users: &[(&str, &Secret)],
    ) -> Result<Vec<PasswordOutcome>, ConcurError> {
        Ok(users
            .iter()
            .map(|(login, _)| PasswordOutcome {
                login_id: (*login).to_owned(),
                outcome: RecordOutcome::Failed(
                    "the Concur API users are written through sets no passwords".into(),
                ),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A target that writes everything and takes no passwords.
    struct NoPasswords;

    impl UserTarget for NoPasswords {
        fn max_batch(&self) -> usize {
            100
        }
        async fn write_users(&self, ops: &[&Op]) -> Result<Vec<RecordOutcome>, ConcurError> {
            Ok(vec![RecordOutcome::Acknowledged; ops.len()])
        }
    }

    #[tokio::test]
    async fn a_target_without_passwords_fails_each_one_by_name() {
        let pw = Secret::new("pw-1-x");
        let out = NoPasswords
            .set_passwords(&[("a@example.com", &pw), ("b@example.com", &pw)])
            .await
            .expect("answered");
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].login_id, "b@example.com");
        assert!(matches!(&out[0].outcome, RecordOutcome::Failed(m) if m.contains("no passwords")));
    }
}
