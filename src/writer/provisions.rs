//! The asynchronous ledger: planned operations sent to a target that settles them later.
//!
//! - Creates of managers go in an earlier Bulk than the creates of reports that name them: a
//!   report's create waits until its manager's create has settled (Concur does not document
//!   in-order processing), while every other operation keeps going out.
//! - A request accepted with a provision id marks its entries `submitted` (provision id,
//!   bulkId, the UUID addressed) in one transaction before anything else happens.
//! - What one poll confirms is recorded in one transaction.
//! - Provisions are polled first `first_poll` after acceptance, then with doubling intervals
//!   up to `max_interval`; a poll only happens when one is due, so further requests keep going
//!   out while earlier ones are pending. A provision still pending after `timeout` fails its
//!   remaining operations with that reason (planned again next cycle).
//! - A Bulk request is resent only after answers that say it was not processed (429, 503, no
//!   connection). One that got no answer saying whether Concur took it (a timeout, a reset, a
//!   500/502/504, shutdown) leaves its entries unanswered: planned again next cycle.
//! - A create some earlier attempt may have applied (answer lost, refused, timed out) is
//!   looked up by employee number before it is sent: found, it is adopted (its UUID taken and
//!   the user patched to the desired state) instead of created. Not found after an unanswered
//!   attempt, it is not sent until a provision accepted at that attempt would have timed out
//!   (Concur may still be processing it, and its reads lag): a create is never attempted
//!   twice. A create refused because its employee number or user name is taken is resolved by
//!   a look-up and adoption too, never by a second user.
//! - An operation whose identity was applied but whose spend extensions failed advances the
//!   snapshot with the identity only: the failed extensions' fields keep what the snapshot
//!   held before. A follow-up PATCH of only those fields (its own outbox entry) goes out with
//!   the next request, up to [`EXTENSION_ATTEMPTS`] sends in all; after that the user's
//!   failure keeps Concur's messages and the next plan patches only them.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Settled, WriteError};
use crate::concur::v4::schema::fields_of;
use crate::concur::{Planned, Provisioning, Sent, UserOutcome, UserTarget};
use crate::model::{Op, OpKind, User};
use crate::store::{CycleCounts, EntryResult, Store, Unsettled};

mod order;
mod resume;

use order::{may_enable_approval, take_ready, waves};
pub use resume::resume_provisions;

/// One operation on its way: its outbox entry and cycle, what it addresses.
#[derive(Clone, Debug)]
struct Item {
    id: i64,
    cycle: i64,
    op: Op,
    uuid: Option<String>,
    /// A create of a user Concur already holds (as `uuid`).
    adopt: bool,
    /// Whether Concur was already asked for this user's UUID.
    looked_up: bool,
    /// Look up before sending (a create an earlier attempt may have applied).
    look_up: bool,
    /// When a request carrying this create last left without an answer saying what became
    /// of it: Concur may apply it until a provision accepted then would have timed out.
    unanswered_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The operation this one completes: its kind is what the cycle counts once it settles,
    /// and how many times its spend extensions were sent.
    counts_as: OpKind,
    extension_attempts: u32,
}

/// How many times the spend extensions of one operation are sent within a cycle before their
/// failure is recorded (the first attempt included); later cycles patch them again.
pub const EXTENSION_ATTEMPTS: u32 = 3;

/// A provision being polled.
struct InFlight {
    provision_id: String,
    accepted: Instant,
    next_poll: Instant,
    interval: Duration,
    /// By bulkId.
    items: HashMap<String, Item>,
}

/// The ledger's state for one run of the loop.
struct Ledger<'a, T, F> {
    target: &'a T,
    store: &'a mut Store,
    timing: Provisioning,
    counts: &'a mut CycleCounts,
    settled: F,
    in_flight: Vec<InFlight>,
    /// Whether failed spend extensions are patched again within this run (not when only
    /// resuming provisions a previous process left).
    retries_extensions: bool,
    /// Operations patching again the spend extensions an earlier one could not apply, to be
    /// sent with the next request.
    follow_ups: Vec<Item>,
    /// Employee ids of this run's operations that may let their user approve reports
    /// ([`may_enable_approval`]) and are not recorded yet: new reports naming them wait.
    unsettled: HashSet<String>,
}

/// Sends `entries` through an asynchronous target: see the module text.
#[allow(clippy::too_many_arguments)]
pub(super) async fn send<T: UserTarget>(
    target: &T,
    store: &mut Store,
    cycle: i64,
    entries: &[(i64, &Op)],
    batch_size: usize,
    cancel: Option<&CancellationToken>,
    counts: &mut CycleCounts,
    settled: &mut impl FnMut(&Op, Settled<'_>),
    timing: Provisioning,
) -> Result<bool, WriteError> {
    let keys: Vec<&str> = entries
        .iter()
        .map(|(_, op)| op.old_employee_id.as_deref().unwrap_or(&op.employee_id))
        .collect();
    // A create's user is not in the snapshot: it has no UUID to look for.
    let uuids = store.concur_uuids(
        entries
            .iter()
            .zip(&keys)
            .filter(|((_, op), _)| op.kind != OpKind::Create)
            .map(|(_, key)| *key),
    )?;
    let unsettled = store.creates_unsettled(
        entries
            .iter()
            .filter(|(_, op)| op.kind == OpKind::Create)
            .map(|(_, op)| op.employee_id.as_str()),
    )?;
    let items: Vec<Item> = entries
        .iter()
        .zip(&keys)
        .map(|(&(id, op), key)| Item {
            id,
            cycle,
            op: op.clone(),
            uuid: uuids.get(*key).cloned(),
            adopt: false,
            looked_up: false,
            look_up: unsettled.contains_key(&op.employee_id),
            unanswered_at: match unsettled.get(&op.employee_id) {
                Some(Unsettled::Unanswered(at)) => Some(*at),
                _ => None,
            },
            counts_as: op.kind,
            extension_attempts: 1,
        })
        .collect();
    let mut ledger = Ledger {
        target,
        store,
        timing,
        counts,
        settled,
        in_flight: Vec::new(),
        retries_extensions: true,
        follow_ups: Vec::new(),
        unsettled: HashSet::new(),
    };
    let size = batch_size.min(target.max_batch()).max(1);
    // Managers first (by depth); a create whose manager is created in this run waits until
    // that create has settled, while everything else keeps going out.
    let mut queue: VecDeque<Item> = waves(items).into_iter().flatten().collect();
    ledger.unsettled = queue
        .iter()
        .filter(|i| may_enable_approval(&i.op))
        .map(|i| i.op.employee_id.clone())
        .collect();
    // Set when a scan found every queued item waiting for its manager: no use scanning again
    // before something settles.
    let mut all_waiting = false;
    loop {
        if cancel.is_some_and(CancellationToken::is_cancelled) {
            return Ok(false);
        }
        if ledger.poll_due(Instant::now()).await? {
            queue.extend(ledger.follow_ups.drain(..));
            all_waiting = false;
            continue;
        }
        if !queue.is_empty() && !all_waiting {
            let batch = take_ready(&mut queue, size, &ledger.unsettled);
            if batch.is_empty() {
                all_waiting = true;
            } else {
                let back = ledger.submit(batch).await?;
                for item in back.into_iter().rev() {
                    queue.push_front(item);
                }
                queue.extend(ledger.follow_ups.drain(..));
                continue;
            }
        }
        let Some(next) = ledger.in_flight.iter().map(|p| p.next_poll).min() else {
            if queue.is_empty() {
                break;
            }
            // Nothing in flight, yet items wait for a manager: its create was never recorded
            // in this run (cannot happen); send them rather than wait forever.
            let n = size.min(queue.len());
            let batch: Vec<Item> = queue.drain(..n).collect();
            let back = ledger.submit(batch).await?;
            for item in back.into_iter().rev() {
                queue.push_front(item);
            }
            continue;
        };
        match cancel {
            Some(c) => {
                tokio::select! {
                    () = tokio::time::sleep_until(next) => {}
                    () = c.cancelled() => return Ok(false),
                }
            }
            None => tokio::time::sleep_until(next).await,
        }
    }
    Ok(true)
}

impl<T: UserTarget, F: FnMut(&Op, Settled<'_>)> Ledger<'_, T, F> {
    /// Polls one provision that is due, if any; `true` when one was polled.
    async fn poll_due(&mut self, now: Instant) -> Result<bool, WriteError> {
        let Some(at) = self.in_flight.iter().position(|p| p.next_poll <= now) else {
            return Ok(false);
        };
        let provision_id = self.in_flight[at].provision_id.clone();
        let poll = self.target.poll(&provision_id).await?;
        let mut done = Vec::new();
        {
            let p = &mut self.in_flight[at];
            for (bulk_id, outcome) in poll.settled {
                if let Some(item) = p.items.remove(&bulk_id) {
                    done.push((item, outcome));
                }
            }
        }
        // What Concur confirmed whole is recorded in one transaction per poll; the rest (rare)
        // one by one.
        let (acknowledged, rest): (Vec<_>, Vec<_>) = done
            .into_iter()
            .partition(|(_, o)| matches!(o, UserOutcome::Acknowledged { .. }));
        self.acknowledge(acknowledged)?;
        let mut again = Vec::new();
        for (item, outcome) in rest {
            if let Some(retry) = self.settle(item, outcome).await? {
                again.push(retry);
            }
        }
        let p = &mut self.in_flight[at];
        if !p.items.is_empty() && p.accepted.elapsed() >= self.timing.timeout {
            let minutes = self.timing.timeout.as_secs_f64() / 60.0;
            let message = format!(
                "provision {provision_id} still pending after {minutes} minutes; planned again next cycle"
            );
            let items: Vec<Item> = p.items.drain().map(|(_, i)| i).collect();
            for item in items {
                self.fail(&item, &message)?;
            }
        }
        let p = &mut self.in_flight[at];
        if p.items.is_empty() {
            self.in_flight.remove(at);
        } else {
            p.next_poll = Instant::now() + p.interval;
            p.interval = (p.interval * 2).min(self.timing.max_interval);
        }
        // A create resolved by adoption goes out again right away, alone.
        for item in again {
            let back = self.submit(vec![item]).await?;
            for item in back {
                Box::pin(self.submit(vec![item])).await?;
            }
        }
        Ok(true)
    }

    /// Looks up what must be looked up, sends one request, records its 202 (or outcomes).
    /// Returns the items the request did not carry.
    async fn submit(&mut self, batch: Vec<Item>) -> Result<Vec<Item>, WriteError> {
        let mut ready = Vec::with_capacity(batch.len());
        for mut item in batch {
            let needs = (item.op.kind == OpKind::Create && item.look_up)
                || (item.op.kind != OpKind::Create && item.uuid.is_none());
            if needs && !item.looked_up {
                item.looked_up = true;
                let key = item
                    .op
                    .old_employee_id
                    .clone()
                    .unwrap_or_else(|| item.op.employee_id.clone());
                match self.target.look_up(&key).await? {
                    Some(uuid) => {
                        item.adopt = item.op.kind == OpKind::Create;
                        if item.adopt {
                            tracing::info!(employee_id = %item.op.employee_id, uuid = %uuid, "Concur already holds this user: adopted and patched instead of created");
                        }
                        item.uuid = Some(uuid);
                    }
                    None if item.op.kind != OpKind::Create => {
                        self.fail(
                            &item,
                            "the user was not found in Concur by its employee number; nothing was sent",
                        )?;
                        continue;
                    }
                    None => {
                        if let Some(message) = self.still_in_doubt(&item) {
                            self.record(
                                item.cycle,
                                &[(item.id, &item.op, EntryResult::Failed(message.clone()))],
                            )?;
                            (self.settled)(&item.op, Settled::Unanswered(&message));
                            self.counts.failed += 1;
                            continue;
                        }
                    }
                }
            }
            ready.push(item);
        }
        if ready.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = ready.iter().map(|i| i.id).collect();
        self.store.mark_inflight(&ids)?;
        let planned: Vec<Planned<'_>> = ready
            .iter()
            .map(|i| Planned {
                op: &i.op,
                uuid: i.uuid.as_deref(),
                adopt: i.adopt,
            })
            .collect();
        let submitted = match self.target.submit(&planned).await {
            Ok(s) => s,
            Err(e) => {
                let msg = format!("not applied: {e}");
                for item in &ready {
                    self.fail_unsent(item, &msg)?;
                }
                return Err(e.into());
            }
        };
        let mut pending: Vec<(String, Item)> = Vec::new();
        let mut back = Vec::new();
        let mut now_settled = Vec::new();
        for (item, sent) in ready.into_iter().zip(submitted.ops) {
            match sent {
                Sent::Pending(bulk_id) => pending.push((bulk_id, item)),
                Sent::Settled(o) => now_settled.push((item, o)),
                Sent::NotSent => back.push(item),
                Sent::Unanswered(message) => {
                    let message = if item.op.kind == OpKind::Create {
                        format!(
                            "{message}; Concur may still create the user: looked up before it is sent again"
                        )
                    } else {
                        format!("{message}; planned again next cycle")
                    };
                    self.record(
                        item.cycle,
                        &[(item.id, &item.op, EntryResult::Unanswered(message.clone()))],
                    )?;
                    (self.settled)(&item.op, Settled::Unanswered(&message));
                    self.counts.failed += 1;
                }
            }
        }
        if !pending.is_empty() {
            let Some(provision_id) = submitted.provision_id else {
                return Err(WriteError::Concur(crate::concur::ConcurError::Decode(
                    "operations pending without a provision id".into(),
                )));
            };
            let rows: Vec<(i64, &str, Option<&str>)> = pending
                .iter()
                .map(|(b, i)| (i.id, b.as_str(), i.uuid.as_deref()))
                .collect();
            self.store.mark_submitted(&provision_id, &rows)?;
            let now = Instant::now();
            self.in_flight.push(InFlight {
                provision_id,
                accepted: now,
                next_poll: now + self.timing.first_poll,
                interval: (self.timing.first_poll * 2).min(self.timing.max_interval),
                items: pending.into_iter().collect(),
            });
        }
        for (item, outcome) in now_settled {
            if let Some(retry) = Box::pin(self.settle(item, outcome)).await? {
                back.push(retry);
            }
        }
        // Items never sent go back to the entry's pending state through the caller's queue.
        Ok(back)
    }

    /// Records outcomes; an operation recorded (however it ended) no longer holds new reports
    /// back.
    fn record(
        &mut self,
        cycle: i64,
        results: &[(i64, &Op, EntryResult)],
    ) -> Result<(), WriteError> {
        self.store.record_results(cycle, results)?;
        for (_, op, _) in results {
            self.unsettled.remove(&op.employee_id);
        }
        Ok(())
    }

    /// Records operations Concur applied whole, in one transaction.
    fn acknowledge(&mut self, done: Vec<(Item, UserOutcome)>) -> Result<(), WriteError> {
        if done.is_empty() {
            return Ok(());
        }
        let results: Vec<(i64, &Op, EntryResult)> = done
            .iter()
            .map(|(item, outcome)| {
                let uuid = match outcome {
                    UserOutcome::Acknowledged { uuid } => uuid.clone(),
                    _ => None,
                };
                let result = match uuid.or_else(|| item.uuid.clone()) {
                    Some(u) => EntryResult::AcknowledgedAs(u),
                    None => EntryResult::Acknowledged,
                };
                (item.id, &item.op, result)
            })
            .collect();
        let cycle = done[0].0.cycle;
        if done.iter().all(|(i, _)| i.cycle == cycle) {
            self.record(cycle, &results)?;
        } else {
            for ((item, _), result) in done.iter().zip(results) {
                self.record(item.cycle, &[result])?;
            }
        }
        for (item, _) in &done {
            (self.settled)(&item.op, Settled::Acknowledged);
            self.counts.count(item.counts_as);
        }
        Ok(())
    }

    /// Records one settled operation. Returns it again when it is to be sent once more (a
    /// create refused as a conflict, now adopted).
    async fn settle(
        &mut self,
        mut item: Item,
        outcome: UserOutcome,
    ) -> Result<Option<Item>, WriteError> {
        match outcome {
            UserOutcome::Acknowledged { uuid } => {
                self.acknowledge(vec![(item, UserOutcome::Acknowledged { uuid })])?;
            }
            UserOutcome::ExtensionsFailed { uuid, failed } => {
                let message = failed
                    .iter()
                    .map(|(name, m)| format!("{name}: {m}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                let key = item
                    .op
                    .old_employee_id
                    .clone()
                    .unwrap_or_else(|| item.op.employee_id.clone());
                let before = self.store.load_users([key.as_str()])?.remove(&key);
                let mut partial = item.op.clone();
                partial.user = keep_before(&item.op.user, before.as_ref(), &failed);
                let uuid = uuid.or_else(|| item.uuid.clone());
                let result = match uuid.clone() {
                    Some(u) => EntryResult::AcknowledgedAs(u),
                    None => EntryResult::Acknowledged,
                };
                let changes = item.op.user.changes_from(&partial.user);
                let retry = self.retries_extensions
                    && item.extension_attempts < EXTENSION_ATTEMPTS
                    && uuid.is_some()
                    && !changes.is_empty();
                if retry {
                    // The identity is recorded; only the failed extensions go out again.
                    self.record(item.cycle, &[(item.id, &partial, result)])?;
                    let follow_up = Op {
                        kind: OpKind::Update,
                        employee_id: item.op.employee_id.clone(),
                        user: item.op.user.clone(),
                        old_login_id: None,
                        old_employee_id: None,
                        changes,
                        password: None,
                        origin: item.op.origin.clone(),
                    };
                    tracing::info!(employee_id = %item.op.employee_id, attempt = item.extension_attempts, message = %message, "the identity was applied, some extensions were not: patching them again");
                    let id = self.store.add_follow_up(item.cycle, &follow_up)?;
                    if may_enable_approval(&item.op) {
                        // Its role may be among what failed: new reports keep waiting.
                        self.unsettled.insert(item.op.employee_id.clone());
                    }
                    self.follow_ups.push(Item {
                        id,
                        cycle: item.cycle,
                        op: follow_up,
                        uuid,
                        adopt: false,
                        looked_up: true,
                        look_up: false,
                        unanswered_at: None,
                        counts_as: item.counts_as,
                        extension_attempts: item.extension_attempts + 1,
                    });
                    return Ok(None);
                }
                let message = format!(
                    "the identity was applied, these extensions were not after {} attempts (patched again next cycle): {message}",
                    item.extension_attempts
                );
                self.record(
                    item.cycle,
                    &[
                        (item.id, &partial, result),
                        (item.id, &item.op, EntryResult::Failed(message.clone())),
                    ],
                )?;
                (self.settled)(&item.op, Settled::Refused(&message));
                self.counts.failed += 1;
            }
            UserOutcome::Failed { message, conflict } => {
                if conflict && item.op.kind == OpKind::Create && !item.adopt && !item.looked_up {
                    item.looked_up = true;
                    if let Some(uuid) = self.target.look_up(&item.op.employee_id).await? {
                        tracing::info!(employee_id = %item.op.employee_id, uuid = %uuid, "create refused as a conflict: the existing user is adopted and patched");
                        item.uuid = Some(uuid);
                        item.adopt = true;
                        return Ok(Some(item));
                    }
                }
                self.fail(&item, &message)?;
            }
        }
        Ok(None)
    }

    /// Why a create Concur does not show must not be sent yet: a request that carried it left
    /// without an answer less than a provision timeout ago, so Concur may still apply it.
    fn still_in_doubt(&self, item: &Item) -> Option<String> {
        let at = item.unanswered_at?;
        let timeout = chrono::Duration::from_std(self.timing.timeout).ok()?;
        let until = at + timeout;
        (chrono::Utc::now() < until).then(|| {
            let fmt = |t: chrono::DateTime<chrono::Utc>| {
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            };
            format!(
                "the create sent at {} got no answer and Concur does not show the user yet; it may still be applied, so it is looked up again by later cycles and sent again only after {} (concur.provision_timeout_minutes)",
                fmt(at),
                fmt(until)
            )
        })
    }

    fn fail(&mut self, item: &Item, message: &str) -> Result<(), WriteError> {
        self.record(
            item.cycle,
            &[(item.id, &item.op, EntryResult::Failed(message.to_owned()))],
        )?;
        (self.settled)(&item.op, Settled::Refused(message));
        self.counts.failed += 1;
        Ok(())
    }

    fn fail_unsent(&mut self, item: &Item, message: &str) -> Result<(), WriteError> {
        self.record(
            item.cycle,
            &[(item.id, &item.op, EntryResult::Failed(message.to_owned()))],
        )?;
        (self.settled)(&item.op, Settled::Unsent);
        self.counts.failed += 1;
        Ok(())
    }
}

/// `desired` with the fields of the `failed` extensions as `before` held them (absent when
/// the user is new).
fn keep_before(desired: &User, before: Option<&User>, failed: &[(String, String)]) -> User {
    let mut out = desired.clone();
    for (schema, _) in failed {
        for field in fields_of(schema) {
            match before.and_then(|b| b.get(field)) {
                Some(v) => out.set(field, v),
                None => out.remove(field),
            }
        }
    }
    out
}
