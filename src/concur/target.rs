//! The seam between a cycle and "Concur": [`UserTarget`] is everything a cycle needs from the
//! API users are written through (its batch limit, writing planned operations, setting
//! passwords) and what it answers per record. Nothing in it is particular to one API: User v1
//! implements it on `ConcurClient` (`v1::users`); the User Provisioning Service v4
//! (`v4::target`), which accepts a Bulk request with 202 and settles it later, implements the
//! asynchronous half: [`UserTarget::submit`] answers per operation either its outcome or the
//! `bulkId` it is pending under (the provision id once per request, for the caller to record
//! before waiting), and [`UserTarget::poll`] reports what a provision settled since.

use super::error::ConcurError;
use crate::model::{Op, Secret};

/// What Concur said about one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordOutcome {
    Acknowledged,
    /// Concur's message.
    Failed(String),
}

/// How one user operation ended, with what an API like UPS v4 can say about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserOutcome {
    /// Applied; `uuid` is the user's Concur UUID when the API names it.
    Acknowledged { uuid: Option<String> },
    /// The identity was applied (the user is `uuid`), but these extensions were not: each
    /// schema URN with Concur's messages. Only they need another PATCH.
    ExtensionsFailed {
        uuid: Option<String>,
        failed: Vec<(String, String)>,
    },
    /// Nothing of it was applied: Concur's messages (code, message, schemaPath). `conflict`
    /// when a create was refused because its employee number or user name is taken.
    Failed { message: String, conflict: bool },
}

impl From<RecordOutcome> for UserOutcome {
    fn from(o: RecordOutcome) -> UserOutcome {
        match o {
            RecordOutcome::Acknowledged => UserOutcome::Acknowledged { uuid: None },
            RecordOutcome::Failed(message) => UserOutcome::Failed {
                message,
                conflict: false,
            },
        }
    }
}

/// One operation handed to [`UserTarget::submit`].
#[derive(Clone, Copy, Debug)]
pub struct Planned<'a> {
    pub op: &'a Op,
    /// The user's Concur UUID, when known (an asynchronous API addresses users by it).
    pub uuid: Option<&'a str>,
    /// A create whose user Concur already holds as `uuid` (its earlier answer was lost, or
    /// the employee number was taken): it is written as a change of that user instead.
    pub adopt: bool,
}

/// What became of one operation of [`UserTarget::submit`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sent {
    Settled(UserOutcome),
    /// Accepted under the request's provision as this `bulkId`; settles later.
    Pending(String),
    /// Not in this request (it did not fit): hand it over again.
    NotSent,
    /// In a request that got no answer saying whether Concur took it (a timeout, a reset, a
    /// 500/502/504): it may be applied later. The message says what happened.
    Unanswered(String),
}

/// The answer to [`UserTarget::submit`]: the provision id, if the request was accepted for
/// later processing, and one [`Sent`] per operation, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submitted {
    pub provision_id: Option<String>,
    pub ops: Vec<Sent>,
}

/// What a poll of a provision found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Poll {
    /// Operations settled, by `bulkId`.
    pub settled: Vec<(String, UserOutcome)>,
    /// Some operations are still being processed.
    pub pending: bool,
}

/// How an asynchronous target wants its provisions polled.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Provisioning {
    /// The first poll after a request was accepted; backoff doubles it up to `max_interval`.
    pub first_poll: std::time::Duration,
    pub max_interval: std::time::Duration,
    /// A provision still pending this long after it was accepted has failed.
    pub timeout: std::time::Duration,
    /// Most requests (submits and polls) awaiting an answer at once.
    pub max_in_flight: usize,
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

    /// `Some` for an API that settles operations asynchronously ([`UserTarget::submit`] may
    /// leave them pending); `None` when every answer is final.
    fn provisioning(&self) -> Option<Provisioning> {
        None
    }

    /// Sends planned operations in one request (at most [`UserTarget::max_batch`]). The
    /// default writes them through [`UserTarget::write_users`], settling each.
    async fn submit(&self, ops: &[Planned<'_>]) -> Result<Submitted, ConcurError> {
        let plain: Vec<&Op> = ops.iter().map(|p| p.op).collect();
        Ok(Submitted {
            provision_id: None,
            ops: self
                .write_users(&plain)
                .await?
                .into_iter()
                .map(|o| Sent::Settled(o.into()))
                .collect(),
        })
    }

    /// What the provision `provision_id` settled so far (only asynchronous targets have any).
    async fn poll(&self, provision_id: &str) -> Result<Poll, ConcurError> {
        let _ = provision_id;
        Ok(Poll::default())
    }

    /// The Concur UUID of the user whose employee number is `employee_id`, if Concur holds
    /// one (only targets that address users by UUID look any up).
    async fn look_up(&self, employee_id: &str) -> Result<Option<String>, ConcurError> {
        let _ = employee_id;
        Ok(None)
    }

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
