//! The requests of the asynchronous ledger: a submit or a poll awaiting its answer, and when
//! each provision's next poll is due.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::future::LocalBoxFuture;
use futures_util::stream::FuturesUnordered;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Item;
use crate::concur::{ConcurError, Planned, Poll, Submitted, UserTarget};

/// A provision being polled.
pub(super) struct InFlight {
    pub(super) provision_id: String,
    pub(super) accepted: Instant,
    /// When it was accepted or last polled.
    pub(super) last: Instant,
    /// The wait after `last` before the next poll (doubling).
    pub(super) interval: Duration,
    /// It carries a manager that new reports wait for.
    pub(super) awaited: bool,
    /// A poll of it is awaiting its answer.
    pub(super) polling: bool,
    /// By bulkId.
    pub(super) items: HashMap<String, Item>,
}

impl InFlight {
    /// When its next poll is due (sooner while nothing else can be sent).
    pub(super) fn due(&self, idle: bool) -> Instant {
        if idle || self.awaited {
            self.last + self.interval / QUICK_POLLS
        } else {
            self.last + self.interval
        }
    }
}

/// A request awaiting its answer, and what it brings back.
pub(super) enum Answer {
    Submitted {
        batch: Vec<Item>,
        result: Result<Submitted, ConcurError>,
    },
    Polled {
        provision_id: String,
        result: Result<Poll, ConcurError>,
    },
}

/// Requests awaiting their answers.
pub(super) type Requests<'t> = FuturesUnordered<LocalBoxFuture<'t, Answer>>;

/// How much shorter the waits between polls are for a provision that reports wait for, or
/// while nothing else can be sent.
const QUICK_POLLS: u32 = 8;

/// A submit of `batch` as one request.
pub(super) fn submit_request<T: UserTarget>(
    target: &T,
    batch: Vec<Item>,
) -> LocalBoxFuture<'_, Answer> {
    Box::pin(async move {
        let result = {
            let planned: Vec<Planned<'_>> = batch
                .iter()
                .map(|i| Planned {
                    op: &i.op,
                    uuid: i.uuid.as_deref(),
                    adopt: i.adopt,
                })
                .collect();
            target.submit(&planned).await
        };
        Answer::Submitted { batch, result }
    })
}

/// A poll of `provision_id` as one request.
pub(super) fn poll_request<T: UserTarget>(
    target: &T,
    provision_id: String,
) -> LocalBoxFuture<'_, Answer> {
    Box::pin(async move {
        let result = target.poll(&provision_id).await;
        Answer::Polled {
            provision_id,
            result,
        }
    })
}

/// Sleeps until `at`, or forever without one.
pub(super) async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Resolves once `cancel` fires, never without one.
pub(super) async fn cancelled(cancel: Option<&CancellationToken>) {
    match cancel {
        Some(c) => c.cancelled().await,
        None => std::future::pending().await,
    }
}
