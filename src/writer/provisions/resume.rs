//! Resuming after a crash: the provisions a previous process left `submitted` are polled to
//! the end before anything new is planned.

use std::collections::VecDeque;

use tokio::time::Instant;

use super::{EXTENSION_ATTEMPTS, InFlight, Item, Ledger, WriteError};
use crate::concur::UserTarget;
use crate::model::Op;
use crate::store::{CycleCounts, Entry, Store};
use crate::writer::Settled;

/// Polls the provisions a previous process left `submitted` until each has settled (or timed
/// out), recording every outcome, before anything new is planned. Nothing is sent again.
pub async fn resume_provisions<T: UserTarget>(
    target: &T,
    store: &mut Store,
    counts: &mut CycleCounts,
) -> Result<usize, WriteError> {
    let Some(timing) = target.provisioning() else {
        return Ok(0);
    };
    let provisions = store.submitted_provisions()?;
    if provisions.is_empty() {
        return Ok(0);
    }
    let now = Instant::now();
    let wall = chrono::Utc::now();
    let mut in_flight = Vec::with_capacity(provisions.len());
    for p in provisions {
        let age = chrono::DateTime::parse_from_rfc3339(&p.submitted_at)
            .ok()
            .and_then(|at| (wall - at.with_timezone(&chrono::Utc)).to_std().ok())
            .unwrap_or_default();
        in_flight.push(InFlight {
            provision_id: p.provision_id,
            accepted: now.checked_sub(age).unwrap_or(now),
            // Due at once.
            last: now.checked_sub(timing.first_poll).unwrap_or(now),
            interval: timing.first_poll,
            awaited: true,
            polling: false,
            items: p
                .entries
                .into_iter()
                .map(|e| {
                    let kind = e.op.kind;
                    (
                        e.bulk_id,
                        Item {
                            entry: Entry::Written(e.id),
                            cycle: e.cycle_id,
                            op: e.op,
                            uuid: e.uuid,
                            adopt: false,
                            looked_up: true,
                            look_up: false,
                            unanswered_at: None,
                            counts_as: kind,
                            extension_attempts: EXTENSION_ATTEMPTS,
                        },
                    )
                })
                .collect(),
        });
    }
    let resumed = in_flight.len();
    tracing::info!(
        provisions = resumed,
        "resuming the provisions a previous process left in flight"
    );
    let mut ledger = Ledger::new(
        target,
        store,
        timing,
        counts,
        |_: &Op, _: Settled<'_>| {},
        in_flight,
        false,
    );
    ledger.run(VecDeque::new(), 1, None).await?;
    Ok(resumed)
}
