//! Delivery: the planned operations already in the outbox go to Concur through the shared send
//! loops (`writer`), user records first, then passwords, and every outcome is recorded; held
//! plans an operator approved (`apply_held`) take the same way. Creates get their initial
//! password here, just before the outbox is written.

use std::ops::Range;

use rand::Rng;
use rand::seq::{IndexedRandom, SliceRandom};
use tokio_util::sync::CancellationToken;

use crate::concur::{ConcurClient, PasswordOutcome, RecordOutcome, UserTarget};
use crate::config::{Config, PasswordOnCreate};
use crate::error::SyncError;
use crate::model::{Op, OpKind, Secret};
use crate::store::{CycleCounts, CycleOutcome, Entry, EntryResult, OutboxState, Store, StoreError};
use crate::writer::{self, PasswordLedger, Settled, WhenUnsent};

use super::CycleReport;

/// Gives every planned create its initial password: the source's, unless it has none or
/// `sync.password_on_create = "random"`, then a random one.
pub fn set_create_passwords(cfg: &Config, ops: &mut [Op]) {
    let mut rng = rand::rng();
    for op in ops {
        if op.kind == OpKind::Create
            && (op.password.is_none() || cfg.sync.password_on_create == PasswordOnCreate::Random)
        {
            op.password = Some(random_password(&mut rng));
        }
    }
}

/// A random password that satisfies common Concur password policies: 24 characters, at least
/// one of each class, shuffled. Never stored or logged.
fn random_password(rng: &mut impl Rng) -> Secret {
    const CLASSES: [&[u8]; 4] = [
        b"abcdefghijkmnopqrstuvwxyz",
        b"ABCDEFGHJKLMNPQRSTUVWXYZ",
        b"23456789",
        b"!#%+-=?@^_",
    ];
    const ALL: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789!#%+-=?@^_";
    let mut chars = [0u8; 24];
    for (c, set) in chars.iter_mut().zip(CLASSES) {
        *c = *set.choose(rng).unwrap_or(&b'a');
    }
    for c in &mut chars[CLASSES.len()..] {
        *c = *ALL.choose(rng).unwrap_or(&b'a');
    }
    chars.shuffle(rng);
    Secret::new(String::from_utf8_lossy(&chars).into_owned())
}

/// Sends the deactivations a held cycle kept back, after an operator approved them. Refused
/// when the cycle is not the current held plan or the source changed since.
pub async fn apply_held(
    cfg: &Config,
    store: &mut Store,
    client: &ConcurClient,
    cycle: i64,
    current_digest: Option<&str>,
) -> Result<CycleReport, SyncError> {
    let info = store
        .cycle(cycle)?
        .ok_or_else(|| SyncError::Refused(format!("there is no cycle {cycle}")))?;
    if info.outcome != CycleOutcome::Held {
        return Err(SyncError::Refused(format!(
            "cycle {cycle} is {}, not held: nothing to approve",
            info.outcome
        )));
    }
    let entries = store.open_entries(cycle, &[OutboxState::Held])?;
    if entries.is_empty() {
        return Err(SyncError::Refused(format!(
            "cycle {cycle} holds no plan any more (a later cycle superseded it, or it was rejected); approve the newest held cycle shown by `concur-sync status`"
        )));
    }
    let digest = store.cycle_digest(cycle)?;
    if let (Some(now), Some(then)) = (current_digest, digest.as_deref())
        && now != then
    {
        return Err(SyncError::Refused(format!(
            "the source changed since cycle {cycle} was planned; let the next cycle re-plan and approve that one"
        )));
    }
    // Only deactivations of users still active in the snapshot, and changes of users it
    // still holds under the id they were planned for: anything else changed since.
    let snapshot = store.snapshot_index()?;
    let (ops, ids): (Vec<Op>, Vec<Entry>) = entries
        .into_iter()
        .filter(|e| match e.op.kind {
            OpKind::Deactivate => snapshot.get(&e.op.employee_id).is_some_and(|s| s.active),
            _ => snapshot.contains(e.op.old_employee_id.as_deref().unwrap_or(&e.op.employee_id)),
        })
        .map(|e| (e.op, Entry::Written(e.id)))
        .unzip();
    store.release_held(cycle)?;
    let mut counts = info.counts.clone();
    let before = client.stats();
    let done = apply(
        cfg,
        store,
        &crate::wiring::user_target(cfg, client),
        cycle,
        &ops,
        &ids,
        &mut counts,
        &CancellationToken::new(),
    )
    .await;
    let after = client.stats();
    counts.requests += after.requests.saturating_sub(before.requests);
    counts.retries += after.retries.saturating_sub(before.retries);
    let outcome = if counts.failed > 0 || counts.rejected > 0 {
        CycleOutcome::Partial
    } else {
        CycleOutcome::Success
    };
    let deactivations = ops.iter().filter(|o| o.kind == OpKind::Deactivate).count();
    let msg = format!(
        "held plan approved by an operator at {}: {} deactivations and {} identity changes sent",
        crate::store::now(),
        deactivations,
        ops.len() - deactivations
    );
    match done {
        Ok(_) => {
            store.finish_cycle(cycle, outcome, &counts, Some(&msg))?;
            store.audit("approve", &format!("cycle {cycle}: {msg}"))?;
            Ok(CycleReport {
                cycle_id: cycle,
                outcome,
                counts,
            })
        }
        Err(e) => {
            store.abandon_open(
                cycle,
                "not sent: Concur could not be reached; re-planned next cycle",
            )?;
            store.finish_cycle(cycle, CycleOutcome::Failed, &counts, Some(&e.to_string()))?;
            Err(e)
        }
    }
}

/// Sends `ops` (outbox entries `ids`, written as they leave when only planned) in batches and
/// records every outcome: user records first, then passwords. Returns `Ok(false)` when `cancel`
/// stopped it (between batches, or inside one: the client drops the request and that batch
/// stays unacknowledged).
#[allow(clippy::too_many_arguments)]
pub(super) async fn apply(
    cfg: &Config,
    store: &mut Store,
    target: &impl UserTarget,
    cycle: i64,
    ops: &[Op],
    ids: &[Entry],
    counts: &mut CycleCounts,
    cancel: &CancellationToken,
) -> Result<bool, SyncError> {
    let (pw_idx, user_idx): (Vec<usize>, Vec<usize>) =
        (0..ops.len()).partition(|&i| ops[i].kind == OpKind::Password);
    let entries: Vec<(Entry, &Op)> = user_idx.iter().map(|&i| (ids[i], &ops[i])).collect();
    let finished = writer::send_user_ops(
        target,
        store,
        cycle,
        &entries,
        cfg.concur.batch_size(),
        Some(cancel),
        counts,
        |op, settled| {
            match settled {
                Settled::Refused(m) => {
                    tracing::warn!(employee_id = %op.employee_id, operation = %op.kind, message = %m, "Concur rejected the record");
                }
                Settled::Unanswered(m) => {
                    tracing::warn!(employee_id = %op.employee_id, operation = %op.kind, message = %m, "no answer from Concur");
                }
                Settled::Acknowledged | Settled::Unsent => {}
            }
        },
    )
    .await?;
    if !finished {
        return Ok(false);
    }
    // A password operation always carries its password; one without would have nothing to send.
    let entries: Vec<(Entry, &Op, &Secret)> = pw_idx
        .iter()
        .filter_map(|&i| ops[i].password.as_ref().map(|p| (ids[i], &ops[i], p)))
        .collect();
    let items: Vec<(&str, &Secret)> = entries
        .iter()
        .map(|(_, op, p)| (op.user.login_id(), *p))
        .collect();
    crate::progress::sending(entries.len() as u64);
    let mut ledger = Outbox {
        store,
        cycle,
        entries: &entries,
        sent: Vec::new(),
        counts,
    };
    Ok(writer::send_passwords(
        target,
        &items,
        cfg.concur.batch_size(),
        Some(cancel),
        WhenUnsent::Stop,
        &mut ledger,
    )
    .await?)
}

/// A cycle's password changes as outbox entries: each batch is marked (or written) in flight,
/// and every outcome closes its entry and is counted.
struct Outbox<'a, 'o> {
    store: &'a mut Store,
    cycle: i64,
    entries: &'a [(Entry, &'o Op, &'o Secret)],
    /// The entry ids of the batch last sent.
    sent: Vec<i64>,
    counts: &'a mut CycleCounts,
}

impl PasswordLedger for Outbox<'_, '_> {
    fn sending(&mut self, at: Range<usize>) -> Result<(), StoreError> {
        let batch: Vec<(Entry, &Op)> = self.entries[at].iter().map(|&(e, op, _)| (e, op)).collect();
        self.sent = self.store.mark_sending(self.cycle, &batch)?;
        Ok(())
    }

    fn settled(
        &mut self,
        at: Range<usize>,
        outcomes: Vec<PasswordOutcome>,
    ) -> Result<(), StoreError> {
        let results: Vec<(i64, &Op, EntryResult)> = self.entries[at]
            .iter()
            .zip(&self.sent)
            .zip(outcomes)
            .map(|((&(_, op, _), &id), o)| {
                crate::progress::settled();
                let r = match o.outcome {
                    RecordOutcome::Acknowledged => {
                        self.counts.password += 1;
                        EntryResult::Acknowledged
                    }
                    RecordOutcome::Failed(m) => {
                        self.counts.failed += 1;
                        tracing::warn!(employee_id = %op.employee_id, message = %m, "Concur refused the password");
                        EntryResult::Failed(m)
                    }
                };
                (id, op, r)
            })
            .collect();
        self.store.record_results(self.cycle, &results)
    }

    fn unsent(&mut self, at: Range<usize>, message: &str) -> Result<(), StoreError> {
        let results: Vec<(i64, &Op, EntryResult)> = self.entries[at]
            .iter()
            .zip(&self.sent)
            .map(|(&(_, op, _), &id)| {
                crate::progress::settled();
                (id, op, EntryResult::Failed(message.to_owned()))
            })
            .collect();
        self.counts.failed += results.len() as u64;
        self.store.record_results(self.cycle, &results)
    }
}
