//! The loops that drive a [`UserTarget`]. `send_user_ops` sends planned user operations
//! already in the outbox: batches to the target's limit, marks each batch in flight, sends it,
//! and records every outcome in the store (the snapshot advances in the transaction that closes
//! the entry); used by the user cycle and by adoption's drift repairs. `send_passwords` sends
//! passwords the same way, telling a [`PasswordLedger`] what happened to each batch; used by the
//! cycle's password changes and by `concur-sync passwords`.
//!
//! An asynchronous target (UPS v4: a Bulk request is answered 202 with a provision id and
//! settles later) goes through the asynchronous ledger in `provisions`: each accepted request's
//! provision id and bulkIds are recorded (`submitted`) in the transaction that records the 202,
//! before any waiting; provisions are polled while further requests go out, and each settled
//! operation closes its entry like a synchronous answer. `resume_provisions` polls what a
//! previous process left submitted, before anything is planned.

mod provisions;

use std::ops::Range;

use tokio_util::sync::CancellationToken;

use crate::concur::{ConcurError, PasswordOutcome, RecordOutcome, UserTarget};
use crate::model::{Op, Secret};
use crate::store::{CycleCounts, Entry, EntryResult, Store, StoreError};

/// Why sending stopped before every batch was answered.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("Concur: {0}")]
    Concur(#[from] ConcurError),
}

/// How one operation ended, as told to the caller.
pub enum Settled<'a> {
    Acknowledged,
    /// Concur refused the record, with its message.
    Refused(&'a str),
    /// Its batch never got an answer (the request failed after its retries).
    Unsent,
    /// Its request left but no answer said whether Concur took it; what became of it is found
    /// out before it is sent again. The message says what happened.
    Unanswered(&'a str),
}

/// Sends `entries` (outbox entry, operation) in batches of at most `batch_size` (and the
/// target's limit), records each outcome and counts it in `counts`; `settled` hears about every
/// one. A planned entry is written, in flight, as its batch leaves.
///
/// With a `cancel` token, sending stops between batches once it fires, and a batch cut off by
/// shutdown stays unrecorded (abandoned and planned again next cycle): `Ok(false)`. A batch that
/// gets no answer fails its entries with "not applied: …" and ends the loop with the error.
#[allow(clippy::too_many_arguments)]
pub async fn send_user_ops<T: UserTarget>(
    target: &T,
    store: &mut Store,
    cycle: i64,
    entries: &[(Entry, &Op)],
    batch_size: usize,
    cancel: Option<&CancellationToken>,
    counts: &mut CycleCounts,
    mut settled: impl FnMut(&Op, Settled<'_>),
) -> Result<bool, WriteError> {
    crate::progress::sending(entries.len() as u64);
    let mut settled = |op: &Op, s: Settled<'_>| {
        crate::progress::settled();
        settled(op, s);
    };
    if let Some(timing) = target.provisioning() {
        return provisions::send(
            target,
            store,
            cycle,
            entries,
            batch_size,
            cancel,
            counts,
            &mut settled,
            timing,
        )
        .await;
    }
    // Each batch leaves once the one before it is answered (a report's manager goes first), and
    // the answer of the one before is recorded while it is in flight: no rate-limited slot
    // waits for the store.
    let mut answered: Option<Answered<'_>> = None;
    for chunk in entries.chunks(batch_size.min(target.max_batch()).max(1)) {
        if cancel.is_some_and(CancellationToken::is_cancelled) {
            record_answered(store, cycle, answered.take(), counts, &mut settled)?;
            return Ok(false);
        }
        let ids = store.mark_sending(cycle, chunk)?;
        let chunk: Vec<(i64, &Op)> = ids
            .into_iter()
            .zip(chunk.iter().map(|(_, op)| *op))
            .collect();
        let ops: Vec<&Op> = chunk.iter().map(|(_, op)| *op).collect();
        let before = answered.take();
        let (answer, recorded) = tokio::join!(target.write_users(&ops), async {
            record_answered(store, cycle, before, counts, &mut settled)
        });
        recorded?;
        let outcomes = match answer {
            Ok(o) => o,
            Err(e) if cancel.is_some() && e.is_cancelled() => return Ok(false),
            Err(e) => {
                let msg = format!("not applied: {e}");
                let results: Vec<(i64, &Op, EntryResult)> = chunk
                    .iter()
                    .map(|&(id, op)| (id, op, EntryResult::Failed(msg.clone())))
                    .collect();
                store.record_results(cycle, &results)?;
                for op in &ops {
                    settled(op, Settled::Unsent);
                }
                counts.failed += results.len() as u64;
                return Err(e.into());
            }
        };
        answered = Some((chunk, outcomes));
    }
    record_answered(store, cycle, answered, counts, &mut settled)?;
    Ok(true)
}

/// A batch (outbox id, operation) and Concur's answer for each operation, in order.
type Answered<'a> = (Vec<(i64, &'a Op)>, Vec<RecordOutcome>);

/// Records Concur's answer for one batch (`None`: nothing to record) and counts it.
fn record_answered(
    store: &mut Store,
    cycle: i64,
    answered: Option<Answered<'_>>,
    counts: &mut CycleCounts,
    settled: &mut impl FnMut(&Op, Settled<'_>),
) -> Result<(), StoreError> {
    let Some((chunk, outcomes)) = answered else {
        return Ok(());
    };
    let mut results = Vec::with_capacity(chunk.len());
    for ((id, op), outcome) in chunk.into_iter().zip(outcomes) {
        match outcome {
            RecordOutcome::Acknowledged => {
                settled(op, Settled::Acknowledged);
                counts.count(op.kind);
                results.push((id, op, EntryResult::Acknowledged));
            }
            RecordOutcome::Failed(m) => {
                settled(op, Settled::Refused(&m));
                counts.failed += 1;
                results.push((id, op, EntryResult::Failed(m)));
            }
        }
    }
    store.record_results(cycle, &results)
}

pub use provisions::resume_provisions;

/// Where [`send_passwords`] records what happened to each batch (a cycle's outbox, or only the
/// caller's report).
pub trait PasswordLedger {
    /// Before the batch of `items[at]` is sent.
    fn sending(&mut self, at: Range<usize>) -> Result<(), StoreError>;
    /// Concur's answer for every password of `items[at]`, in order.
    fn settled(
        &mut self,
        at: Range<usize>,
        outcomes: Vec<PasswordOutcome>,
    ) -> Result<(), StoreError>;
    /// The batch of `items[at]` got no answer: `message` ("not applied: …") for each.
    fn unsent(&mut self, at: Range<usize>, message: &str) -> Result<(), StoreError>;
}

/// What [`send_passwords`] does after a batch that got no answer (after its retries).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenUnsent {
    /// End the loop with the error.
    Stop,
    /// Go on with the next batch, unless Concur refused the credentials.
    NextBatch,
}

/// Sends `items` (login, password) in batches of at most `batch_size` (and the target's limit)
/// and tells `ledger` about each batch before and after it is sent.
///
/// With a `cancel` token, sending stops between batches once it fires, and a batch cut off by
/// shutdown stays unsettled: `Ok(false)`. A batch that gets no answer is told to the ledger as
/// unsent; then `when_unsent` decides whether the loop ends with the error. Refused credentials
/// always end it.
pub async fn send_passwords<T: UserTarget>(
    target: &T,
    items: &[(&str, &Secret)],
    batch_size: usize,
    cancel: Option<&CancellationToken>,
    when_unsent: WhenUnsent,
    ledger: &mut impl PasswordLedger,
) -> Result<bool, WriteError> {
    let mut start = 0;
    for chunk in items.chunks(batch_size.min(target.max_batch()).max(1)) {
        if cancel.is_some_and(CancellationToken::is_cancelled) {
            return Ok(false);
        }
        let at = start..start + chunk.len();
        start = at.end;
        ledger.sending(at.clone())?;
        match target.set_passwords(chunk).await {
            Ok(outcomes) => ledger.settled(at, outcomes)?,
            Err(e) if cancel.is_some() && e.is_cancelled() => return Ok(false),
            Err(e) => {
                ledger.unsent(at, &format!("not applied: {e}"))?;
                if when_unsent == WhenUnsent::Stop || matches!(e, ConcurError::AuthRejected { .. })
                {
                    return Err(e.into());
                }
                tracing::warn!(users = chunk.len(), error = %e, "password batch not applied");
            }
        }
    }
    Ok(true)
}

impl From<WriteError> for crate::error::SyncError {
    fn from(e: WriteError) -> crate::error::SyncError {
        match e {
            WriteError::Store(e) => crate::error::SyncError::Store(e),
            WriteError::Concur(e) => crate::error::SyncError::Concur(e),
        }
    }
}

#[cfg(test)]
mod tests;
