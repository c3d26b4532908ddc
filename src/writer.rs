//! The one loop that drives a [`UserTarget`] for planned user operations already in the outbox:
//! batches to the target's limit, marks each batch in flight, sends it, and records every
//! outcome in the store (the snapshot advances in the transaction that closes the entry). Used
//! by the user cycle and by adoption's drift repairs.

use tokio_util::sync::CancellationToken;

use crate::concur::{ConcurError, RecordOutcome, UserTarget};
use crate::model::Op;
use crate::store::{CycleCounts, EntryResult, Store, StoreError};

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
}

/// Sends `entries` (outbox id, operation) in batches of at most `batch_size` (and the target's
/// limit), records each outcome and counts it in `counts`; `settled` hears about every one.
///
/// With a `cancel` token, sending stops between batches once it fires, and a batch cut off by
/// shutdown stays unrecorded (abandoned and planned again next cycle): `Ok(false)`. A batch that
/// gets no answer fails its entries with "not applied: …" and ends the loop with the error.
#[allow(clippy::too_many_arguments)]
pub async fn send_user_ops<T: UserTarget>(
    target: &T,
    store: &mut Store,
    cycle: i64,
    entries: &[(i64, &Op)],
    batch_size: usize,
    cancel: Option<&CancellationToken>,
    counts: &mut CycleCounts,
    mut settled: impl FnMut(&Op, Settled<'_>),
) -> Result<bool, WriteError> {
    for chunk in entries.chunks(batch_size.min(target.max_batch()).max(1)) {
        if cancel.is_some_and(CancellationToken::is_cancelled) {
            return Ok(false);
        }
        let ids: Vec<i64> = chunk.iter().map(|(id, _)| *id).collect();
        store.mark_inflight(&ids)?;
        let ops: Vec<&Op> = chunk.iter().map(|(_, op)| *op).collect();
        let outcomes = match target.write_users(&ops).await {
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
        let mut results = Vec::with_capacity(chunk.len());
        for (&(id, op), outcome) in chunk.iter().zip(outcomes) {
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
        store.record_results(cycle, &results)?;
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
