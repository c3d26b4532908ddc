//! The asynchronous ledger: planned operations sent to a target that settles them later.
//!
//! - Creates of managers go in an earlier Bulk than the creates of reports that name them: a
//!   report's create waits until its manager's create has settled (Concur does not document
//!   in-order processing), while every other operation keeps going out.
//! - A request accepted with a provision id marks its entries `submitted` (provision id,
//!   bulkId, the UUID addressed); what one poll confirms is recorded in one transaction.
//! - Up to `max_in_flight` requests (Bulks and polls) await their answers at once, so Concur's
//!   answer time does not idle the limiter; the store is written by this one loop, in order.
//!   What answers teach is written in the transaction that marks the next request's entries
//!   `inflight`, before that request leaves (one sync to disk per request), or on its own when
//!   no request follows: 202s always, outcomes once many gathered or the oldest waited a
//!   second (the snapshot pages they change are then written once for many answers). A crash
//!   before that write leaves the entries as the previous write had them: `inflight` (looked
//!   up or planned again) or `submitted` (polled again).
//! - Provisions are polled first `first_poll` after acceptance, then with doubling intervals
//!   up to `max_interval`; a poll only happens when one is due, so further requests keep going
//!   out while earlier ones are pending. While nothing else can be sent (everything left waits
//!   for a manager, or all is sent), and always for a provision carrying a manager that new
//!   reports wait for, each wait is an eighth as long: those polls take request slots that
//!   would idle, and end the wait sooner. A provision still pending after `timeout` fails its
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

use std::collections::{HashSet, VecDeque};

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Settled, WriteError};
use crate::concur::{Provisioning, UserTarget};
use crate::model::{Field, Op, OpKind};
use crate::store::{CycleCounts, Entry, EntryResult, Store, Unsettled};

mod order;
mod outcomes;
mod requests;
mod resume;

use order::{may_enable_approval, take_ready, waves};
use outcomes::Unwritten;
use requests::{InFlight, Requests, cancelled, poll_request, sleep_until, submit_request};
pub use resume::resume_provisions;

/// One operation on its way: its outbox entry and cycle, what it addresses.
#[derive(Clone, Debug)]
struct Item {
    /// Written when its first request leaves, if only planned until then.
    entry: Entry,
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

impl Item {
    /// Its outbox entry's id once written: every item is written ([`Ledger::write`]) before
    /// its request leaves, so a request's items all have one (0, which no entry has, before).
    fn id(&self) -> i64 {
        match self.entry {
            Entry::Written(id) => id,
            Entry::Planned { .. } => 0,
        }
    }
}

/// How many times the spend extensions of one operation are sent within a cycle before their
/// failure is recorded (the first attempt included); later cycles patch them again.
pub const EXTENSION_ATTEMPTS: u32 = 3;

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
    /// Managers whose settling new reports of this run wait for: a provision carrying one is
    /// polled sooner.
    awaited: HashSet<String>,
    unwritten: Unwritten,
    /// Nothing can be sent now: everything left waits for a manager, or all is sent.
    idle: bool,
}

/// Why the loop stopped early.
enum Stop {
    Cancelled,
    Failed(WriteError),
}

/// Sends `entries` through an asynchronous target: see the module text.
#[allow(clippy::too_many_arguments)]
pub(super) async fn send<T: UserTarget>(
    target: &T,
    store: &mut Store,
    cycle: i64,
    entries: &[(Entry, &Op)],
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
        .map(|(&(entry, op), key)| Item {
            entry,
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
    let mut ledger = Ledger::new(target, store, timing, counts, settled, Vec::new(), true);
    let size = batch_size.min(target.max_batch()).max(1);
    // Managers first (by depth); a create whose manager is created in this run waits until
    // that create has settled, while everything else keeps going out.
    let mut waves = waves(items);
    ledger.unsettled = waves
        .iter()
        .flatten()
        .filter(|i| may_enable_approval(&i.op))
        .map(|i| i.op.employee_id.clone())
        .collect();
    ledger.awaited = waves
        .iter()
        .flatten()
        .filter(|i| i.op.kind == OpKind::Create)
        .filter_map(|i| i.op.user.get(Field::MANAGER_EMPLOYEE_ID))
        .filter(|m| ledger.unsettled.contains(*m))
        .map(str::to_owned)
        .collect();
    // Within a depth, the managers others wait for go first.
    for wave in &mut waves {
        wave.sort_by_key(|i| !ledger.awaited.contains(&i.op.employee_id));
    }
    let queue: VecDeque<Item> = waves.into_iter().flatten().collect();
    ledger.run(queue, size, cancel).await
}

impl<'a, T: UserTarget, F: FnMut(&Op, Settled<'_>)> Ledger<'a, T, F> {
    fn new(
        target: &'a T,
        store: &'a mut Store,
        timing: Provisioning,
        counts: &'a mut CycleCounts,
        settled: F,
        in_flight: Vec<InFlight>,
        retries_extensions: bool,
    ) -> Self {
        Ledger {
            target,
            store,
            timing,
            counts,
            settled,
            in_flight,
            retries_extensions,
            follow_ups: Vec::new(),
            unsettled: HashSet::new(),
            awaited: HashSet::new(),
            unwritten: Unwritten::default(),
            idle: false,
        }
    }

    /// Sends `queue` in requests of at most `size` operations and polls every provision to
    /// the end, with up to `timing.max_in_flight` requests awaiting answers at once. `Ok(false)`
    /// when `cancel` stopped it: no request starts after that, and the answers of those under
    /// way are recorded.
    async fn run(
        &mut self,
        mut queue: VecDeque<Item>,
        size: usize,
        cancel: Option<&CancellationToken>,
    ) -> Result<bool, WriteError> {
        let target = self.target;
        let max = self.timing.max_in_flight.max(1);
        let mut requests: Requests<'a> = FuturesUnordered::new();
        let mut stop: Option<Stop> = None;
        // Set when a scan found every queued item waiting for its manager: no use scanning
        // again before something settles.
        let mut all_waiting = false;
        loop {
            if stop.is_none() && cancel.is_some_and(CancellationToken::is_cancelled) {
                stop = Some(Stop::Cancelled);
            }
            if stop.is_none()
                && let Err(e) = self
                    .start_requests(
                        target,
                        &mut requests,
                        &mut queue,
                        &mut all_waiting,
                        size,
                        max,
                    )
                    .await
            {
                stop = Some(Stop::Failed(e));
            }
            self.idle = queue.is_empty() || all_waiting;
            if requests.is_empty() {
                if stop.is_some() {
                    break;
                }
                let Some(next) = self.next_poll() else {
                    if queue.is_empty() {
                        break;
                    }
                    // Nothing in flight, yet items wait for a manager: its operation was never
                    // recorded in this run (cannot happen); send them rather than wait forever.
                    self.unsettled.clear();
                    all_waiting = false;
                    continue;
                };
                tokio::select! {
                    () = tokio::time::sleep_until(next) => {}
                    () = cancelled(cancel) => stop = Some(Stop::Cancelled),
                }
                continue;
            }
            // A poll falling due matters only while a request may start.
            let due = if stop.is_none() && requests.len() < max {
                self.next_poll()
            } else {
                None
            };
            tokio::select! {
                Some(answer) = requests.next() => {
                    all_waiting = false;
                    // What it taught is written with the next request, or once none awaits.
                    if let Err(e) = self.answered(answer, &mut queue).await
                        && stop.is_none()
                    {
                        stop = Some(Stop::Failed(e));
                    }
                }
                () = sleep_until(due) => {}
                () = cancelled(cancel), if stop.is_none() => stop = Some(Stop::Cancelled),
            }
        }
        self.write(&mut [])?;
        match stop {
            None => Ok(true),
            Some(Stop::Cancelled) => Ok(false),
            Some(Stop::Failed(e)) => Err(e),
        }
    }

    /// Starts what may start: polls that are due first (what they settle may free reports),
    /// then requests of ready items, while fewer than `max` requests await answers. Whatever
    /// was learnt is written with the next request's `inflight` mark, or on its own.
    async fn start_requests(
        &mut self,
        target: &'a T,
        requests: &mut Requests<'a>,
        queue: &mut VecDeque<Item>,
        all_waiting: &mut bool,
        size: usize,
        max: usize,
    ) -> Result<(), WriteError> {
        let now = Instant::now();
        while requests.len() < max {
            let (idle, max_interval) = (self.idle, self.timing.max_interval);
            let Some(p) = self
                .in_flight
                .iter_mut()
                .filter(|p| !p.polling && p.due(idle) <= now)
                .min_by_key(|p| p.due(idle))
            else {
                break;
            };
            p.polling = true;
            p.last = now;
            p.interval = (p.interval * 2).min(max_interval);
            requests.push(poll_request(target, p.provision_id.clone()));
        }
        while requests.len() < max && !queue.is_empty() && !*all_waiting {
            let batch = take_ready(queue, size, &self.unsettled);
            if batch.is_empty() {
                *all_waiting = true;
                break;
            }
            let ready = self.look_up(batch).await?;
            if ready.is_empty() {
                continue;
            }
            // Marked (or written) in flight, with what was learnt so far, before the request
            // leaves.
            let mut ready = ready;
            self.write(&mut ready)?;
            requests.push(submit_request(target, ready));
        }
        if !self.unwritten.is_empty() && (requests.is_empty() || self.unwritten.results_overdue()) {
            self.write(&mut [])?;
        }
        Ok(())
    }

    /// When the next poll not under way is due.
    fn next_poll(&self) -> Option<Instant> {
        self.in_flight
            .iter()
            .filter(|p| !p.polling)
            .map(|p| p.due(self.idle))
            .min()
    }

    /// Looks up what must be looked up before it is sent; returns what may be sent.
    async fn look_up(&mut self, batch: Vec<Item>) -> Result<Vec<Item>, WriteError> {
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
                            item,
                            "the user was not found in Concur by its employee number; nothing was sent",
                        );
                        continue;
                    }
                    None => {
                        if let Some(message) = self.still_in_doubt(&item) {
                            (self.settled)(&item.op, Settled::Unanswered(&message));
                            self.counts.failed += 1;
                            self.record(
                                item.cycle,
                                item.entry,
                                item.op,
                                EntryResult::Failed(message),
                            );
                            continue;
                        }
                    }
                }
            }
            ready.push(item);
        }
        Ok(ready)
    }
}
