//! The asynchronous ledger: planned operations sent to a target that settles them later.
//!
//! - Creates of managers go in an earlier Bulk than the creates of reports that name them: a
//!   report's create waits until its manager's create has settled (Concur does not document
//!   in-order processing), while every other operation keeps going out.
//! - A request accepted with a provision id marks its entries `submitted` (provision id,
//!   bulkId, the UUID addressed); what one poll confirms is recorded in one transaction.
//! - Up to `max_in_flight` requests (Bulks and polls) await their answers at once, so Concur's
//!   answer time does not idle the limiter; the store is written by this one loop, in order.
//!   What answers teach (202s, outcomes) is written in the transaction that marks the next
//!   request's entries `inflight`, before that request leaves (one sync to disk per request),
//!   or on its own when no request follows. A crash before that write leaves the entries as
//!   the previous write had them: `inflight` (looked up or planned again) or `submitted`
//!   (polled again).
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

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use futures_util::future::LocalBoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Settled, WriteError};
use crate::concur::v4::schema::fields_of;
use crate::concur::{
    ConcurError, Planned, Poll, Provisioning, Sent, Submitted, UserOutcome, UserTarget,
};
use crate::model::{Field, Op, OpKind, User};
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
    /// When it was accepted or last polled.
    last: Instant,
    /// The wait after `last` before the next poll (doubling).
    interval: Duration,
    /// It carries a manager that new reports wait for.
    awaited: bool,
    /// A poll of it is awaiting its answer.
    polling: bool,
    /// By bulkId.
    items: HashMap<String, Item>,
}

impl InFlight {
    /// When its next poll is due (sooner while nothing else can be sent).
    fn due(&self, idle: bool) -> Instant {
        if idle || self.awaited {
            self.last + self.interval / QUICK_POLLS
        } else {
            self.last + self.interval
        }
    }
}

/// A request awaiting its answer, and what it brings back.
enum Answer {
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
type Requests<'t> = FuturesUnordered<LocalBoxFuture<'t, Answer>>;

/// One operation of an accepted request: entry id, bulkId, the UUID it addressed.
type Accepted = (i64, String, Option<String>);

/// What the ledger has learnt and not yet written: committed with the next request's
/// `inflight` mark (one transaction, one sync to disk), or on its own when no request follows.
#[derive(Default)]
struct Unwritten {
    /// Requests accepted: provision id; (entry id, bulkId, UUID addressed).
    submitted: Vec<(String, Vec<Accepted>)>,
    /// Outcomes: cycle, entry id, operation, result.
    results: Vec<(i64, i64, Op, EntryResult)>,
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
    /// Managers whose settling new reports of this run wait for: a provision carrying one is
    /// polled sooner.
    awaited: HashSet<String>,
    unwritten: Unwritten,
    /// Nothing can be sent now: everything left waits for a manager, or all is sent.
    idle: bool,
}

/// How much shorter the waits between polls are for a provision that reports wait for, or
/// while nothing else can be sent.
const QUICK_POLLS: u32 = 8;

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

/// A submit of `batch` as one request.
fn submit_request<T: UserTarget>(target: &T, batch: Vec<Item>) -> LocalBoxFuture<'_, Answer> {
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
fn poll_request<T: UserTarget>(target: &T, provision_id: String) -> LocalBoxFuture<'_, Answer> {
    Box::pin(async move {
        let result = target.poll(&provision_id).await;
        Answer::Polled {
            provision_id,
            result,
        }
    })
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Resolves once `cancel` fires, never without one.
async fn cancelled(cancel: Option<&CancellationToken>) {
    match cancel {
        Some(c) => c.cancelled().await,
        None => std::future::pending().await,
    }
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
                    if let Err(e) = self.answered(answer, &mut queue).await
                        && stop.is_none()
                    {
                        stop = Some(Stop::Failed(e));
                    } else if !self.unwritten.is_empty() && (requests.is_empty() || stop.is_some()) {
                        self.write(&[])?;
                    }
                }
                () = sleep_until(due) => {}
                () = cancelled(cancel), if stop.is_none() => stop = Some(Stop::Cancelled),
            }
        }
        self.write(&[])?;
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
            // Marked in flight (with what was learnt so far) before the request leaves.
            let ids: Vec<i64> = ready.iter().map(|i| i.id).collect();
            self.write(&ids)?;
            requests.push(submit_request(target, ready));
        }
        if !self.unwritten.is_empty() && requests.is_empty() {
            self.write(&[])?;
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

    /// Writes what was learnt and marks `inflight` entries in flight, in one transaction.
    fn write(&mut self, inflight: &[i64]) -> Result<(), WriteError> {
        if self.unwritten.is_empty() && inflight.is_empty() {
            return Ok(());
        }
        let unwritten = std::mem::take(&mut self.unwritten);
        self.store.in_one_transaction(|store| {
            for (provision_id, rows) in &unwritten.submitted {
                let rows: Vec<(i64, &str, Option<&str>)> = rows
                    .iter()
                    .map(|(id, bulk_id, uuid)| (*id, bulk_id.as_str(), uuid.as_deref()))
                    .collect();
                store.mark_submitted(provision_id, &rows)?;
            }
            for group in unwritten.results.chunk_by(|a, b| a.0 == b.0) {
                let results: Vec<(i64, &Op, EntryResult)> = group
                    .iter()
                    .map(|(_, id, op, result)| (*id, op, result.clone()))
                    .collect();
                store.record_results(group[0].0, &results)?;
            }
            if !inflight.is_empty() {
                store.mark_inflight(inflight)?;
            }
            Ok(())
        })?;
        Ok(())
    }

    /// Handles one answer: records what it settled, puts back what is to be sent (again).
    async fn answered(
        &mut self,
        answer: Answer,
        queue: &mut VecDeque<Item>,
    ) -> Result<(), WriteError> {
        let back = match answer {
            Answer::Submitted { batch, result } => self.submitted(batch, result).await?,
            Answer::Polled {
                provision_id,
                result,
            } => self.polled(&provision_id, result).await?,
        };
        for item in back.into_iter().rev() {
            queue.push_front(item);
        }
        queue.extend(self.follow_ups.drain(..));
        Ok(())
    }

    /// Records what one poll of `provision_id` found. Returns creates to send again (refused
    /// as a conflict, now adopted).
    async fn polled(
        &mut self,
        provision_id: &str,
        result: Result<Poll, ConcurError>,
    ) -> Result<Vec<Item>, WriteError> {
        let Some(at) = self
            .in_flight
            .iter()
            .position(|p| p.provision_id == provision_id)
        else {
            return Ok(Vec::new());
        };
        self.in_flight[at].polling = false;
        let poll = result?;
        let mut done = Vec::new();
        {
            let p = &mut self.in_flight[at];
            for (bulk_id, outcome) in poll.settled {
                if let Some(item) = p.items.remove(&bulk_id) {
                    done.push((item, outcome));
                }
            }
        }
        let (acknowledged, rest): (Vec<_>, Vec<_>) = done
            .into_iter()
            .partition(|(_, o)| matches!(o, UserOutcome::Acknowledged { .. }));
        self.acknowledge(acknowledged);
        let mut again = Vec::new();
        for (item, outcome) in rest {
            if let Some(retry) = self.settle(item, outcome).await? {
                again.push(retry);
            }
        }
        let Some(at) = self
            .in_flight
            .iter()
            .position(|p| p.provision_id == provision_id)
        else {
            return Ok(again);
        };
        let p = &mut self.in_flight[at];
        if !p.items.is_empty() && p.accepted.elapsed() >= self.timing.timeout {
            let minutes = self.timing.timeout.as_secs_f64() / 60.0;
            let message = format!(
                "provision {provision_id} still pending after {minutes} minutes; planned again next cycle"
            );
            let items: Vec<Item> = p.items.drain().map(|(_, i)| i).collect();
            for item in items {
                self.fail(item, &message);
            }
        }
        if self.in_flight[at].items.is_empty() {
            self.in_flight.remove(at);
        }
        Ok(again)
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
                            self.record(item.cycle, item.id, item.op, EntryResult::Failed(message));
                            continue;
                        }
                    }
                }
            }
            ready.push(item);
        }
        Ok(ready)
    }

    /// Records the answer to one request (its 202, or outcomes). Returns the items it did not
    /// carry and creates to send again (refused as a conflict, now adopted).
    async fn submitted(
        &mut self,
        batch: Vec<Item>,
        result: Result<Submitted, ConcurError>,
    ) -> Result<Vec<Item>, WriteError> {
        let submitted = match result {
            Ok(s) => s,
            Err(e) => {
                let msg = format!("not applied: {e}");
                for item in batch {
                    self.fail_unsent(item, &msg);
                }
                return Err(e.into());
            }
        };
        let mut pending: Vec<(String, Item)> = Vec::new();
        let mut back = Vec::new();
        let mut now_settled = Vec::new();
        for (item, sent) in batch.into_iter().zip(submitted.ops) {
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
                    (self.settled)(&item.op, Settled::Unanswered(&message));
                    self.counts.failed += 1;
                    self.record(
                        item.cycle,
                        item.id,
                        item.op,
                        EntryResult::Unanswered(message),
                    );
                }
            }
        }
        if !pending.is_empty() {
            let Some(provision_id) = submitted.provision_id else {
                return Err(WriteError::Concur(ConcurError::Decode(
                    "operations pending without a provision id".into(),
                )));
            };
            self.unwritten.submitted.push((
                provision_id.clone(),
                pending
                    .iter()
                    .map(|(b, i)| (i.id, b.clone(), i.uuid.clone()))
                    .collect(),
            ));
            let awaited = pending
                .iter()
                .any(|(_, i)| self.awaited.contains(&i.op.employee_id));
            let now = Instant::now();
            self.in_flight.push(InFlight {
                provision_id,
                accepted: now,
                last: now,
                interval: self.timing.first_poll,
                awaited,
                polling: false,
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

    /// Records an outcome (written with the next request, or on its own); an operation
    /// recorded, however it ended, no longer holds new reports back.
    fn record(&mut self, cycle: i64, id: i64, op: Op, result: EntryResult) {
        self.unsettled.remove(&op.employee_id);
        self.unwritten.results.push((cycle, id, op, result));
    }

    /// Records operations Concur applied whole.
    fn acknowledge(&mut self, done: Vec<(Item, UserOutcome)>) {
        for (item, outcome) in done {
            let uuid = match outcome {
                UserOutcome::Acknowledged { uuid } => uuid,
                _ => None,
            };
            let result = match uuid.or(item.uuid) {
                Some(u) => EntryResult::AcknowledgedAs(u),
                None => EntryResult::Acknowledged,
            };
            (self.settled)(&item.op, Settled::Acknowledged);
            self.counts.count(item.counts_as);
            self.record(item.cycle, item.id, item.op, result);
        }
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
                self.acknowledge(vec![(item, UserOutcome::Acknowledged { uuid })]);
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
                // The snapshot as written so far.
                self.write(&[])?;
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
                    self.record(item.cycle, item.id, partial, result);
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
                    self.write(&[])?;
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
                (self.settled)(&item.op, Settled::Refused(&message));
                self.counts.failed += 1;
                self.record(item.cycle, item.id, partial, result);
                self.record(item.cycle, item.id, item.op, EntryResult::Failed(message));
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
                self.fail(item, &message);
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

    fn fail(&mut self, item: Item, message: &str) {
        (self.settled)(&item.op, Settled::Refused(message));
        self.counts.failed += 1;
        self.record(
            item.cycle,
            item.id,
            item.op,
            EntryResult::Failed(message.to_owned()),
        );
    }

    fn fail_unsent(&mut self, item: Item, message: &str) {
        (self.settled)(&item.op, Settled::Unsent);
        self.counts.failed += 1;
        self.record(
            item.cycle,
            item.id,
            item.op,
            EntryResult::Failed(message.to_owned()),
        );
    }
}

impl Unwritten {
    fn is_empty(&self) -> bool {
        self.submitted.is_empty() && self.results.is_empty()
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
