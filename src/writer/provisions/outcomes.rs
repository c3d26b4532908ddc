//! What the asynchronous ledger learns from answers: a request's 202 or outcomes, a poll's
//! settled operations, failed spend extensions patched again, and how all of it is written
//! (with the next request's in-flight mark, in one transaction).

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use super::requests::{Answer, InFlight};
use super::{EXTENSION_ATTEMPTS, Item, Ledger, may_enable_approval};
use crate::concur::v4::schema::fields_of;
use crate::concur::{ConcurError, Poll, Sent, Submitted, UserOutcome, UserTarget};
use crate::model::{Op, OpKind, User};
use crate::store::{Entry, EntryResult};
use crate::writer::{Settled, WriteError};
/// One operation of an accepted request: entry id, bulkId, the UUID it addressed.
type Accepted = (i64, String, Option<String>);

/// What the ledger has learnt and not yet written: committed with the next request's
/// `inflight` mark (one transaction, one sync to disk), or on its own when no request follows.
/// Outcomes ride along with a later request once [`OUTCOMES_AT_ONCE`] have gathered or the
/// oldest waited [`OUTCOMES_WAIT`]: the snapshot rows and indexes they change are then written
/// once for many answers instead of once per answer. Until then their entries stay `submitted`
/// on disk, and a restart polls those provisions again.
#[derive(Default)]
pub(super) struct Unwritten {
    /// Requests accepted: provision id; (entry id, bulkId, UUID addressed).
    pub(super) submitted: Vec<(String, Vec<Accepted>)>,
    /// Outcomes: cycle, entry, operation, result.
    pub(super) results: Vec<(i64, Entry, Op, EntryResult)>,
    /// The entries of `results`.
    result_ids: HashSet<Entry>,
    /// When the oldest of `results` was learnt.
    results_since: Option<Instant>,
}

/// How many outcomes make the next request's transaction write them.
const OUTCOMES_AT_ONCE: usize = 2_000;
/// How long an outcome waits at most for a request to carry it.
const OUTCOMES_WAIT: Duration = Duration::from_secs(1);

impl Unwritten {
    pub(super) fn is_empty(&self) -> bool {
        self.submitted.is_empty() && self.results.is_empty()
    }

    pub(super) fn push_result(&mut self, cycle: i64, entry: Entry, op: Op, result: EntryResult) {
        self.results_since.get_or_insert_with(Instant::now);
        self.result_ids.insert(entry);
        self.results.push((cycle, entry, op, result));
    }

    /// Whether the outcomes go with a transaction that marks `inflight` in flight: always
    /// when no request follows, and before an entry with an outcome is sent again.
    fn results_due(&self, inflight: &[Item]) -> bool {
        !self.results.is_empty()
            && (inflight.is_empty()
                || self.results_overdue()
                || inflight.iter().any(|i| self.result_ids.contains(&i.entry)))
    }

    /// Whether enough outcomes gathered, or the oldest waited long enough, to be written now.
    pub(super) fn results_overdue(&self) -> bool {
        self.results.len() >= OUTCOMES_AT_ONCE
            || self
                .results_since
                .is_some_and(|t| t.elapsed() >= OUTCOMES_WAIT)
    }

    /// What to write now: the accepted requests, and the outcomes when they are due.
    fn take(&mut self, inflight: &[Item]) -> Unwritten {
        let submitted = std::mem::take(&mut self.submitted);
        if self.results_due(inflight) {
            Unwritten {
                submitted,
                ..std::mem::take(self)
            }
        } else {
            Unwritten {
                submitted,
                ..Unwritten::default()
            }
        }
    }
}

impl<T: UserTarget, F: FnMut(&Op, Settled<'_>)> Ledger<'_, T, F> {
    /// Writes what was learnt (outcomes only when due: [`Unwritten`]) and marks `inflight`
    /// items in flight (writing the entries only planned so far), in one transaction. With no
    /// items to mark, writes everything.
    pub(super) fn write(&mut self, inflight: &mut [Item]) -> Result<(), WriteError> {
        let unwritten = self.unwritten.take(inflight);
        if unwritten.is_empty() && inflight.is_empty() {
            return Ok(());
        }
        let ids = self.store.in_one_transaction(|store| {
            for (provision_id, rows) in &unwritten.submitted {
                let rows: Vec<(i64, &str, Option<&str>)> = rows
                    .iter()
                    .map(|(id, bulk_id, uuid)| (*id, bulk_id.as_str(), uuid.as_deref()))
                    .collect();
                store.mark_submitted(provision_id, &rows)?;
            }
            for group in unwritten.results.chunk_by(|a, b| a.0 == b.0) {
                let cycle = group[0].0;
                // An operation settled before it was sent (a look-up showed it cannot be) gets
                // its entry now.
                let planned: Vec<(i64, &Op)> = group
                    .iter()
                    .filter_map(|(_, e, op, _)| match e {
                        Entry::Planned { seq } => Some((*seq, op)),
                        Entry::Written(_) => None,
                    })
                    .collect();
                let mut written = store.write_unsent(cycle, &planned)?.into_iter();
                let results: Vec<(i64, &Op, EntryResult)> = group
                    .iter()
                    .filter_map(|(_, e, op, result)| {
                        let id = match e {
                            Entry::Written(id) => *id,
                            Entry::Planned { .. } => written.next()?,
                        };
                        Some((id, op, result.clone()))
                    })
                    .collect();
                store.record_results(cycle, &results)?;
            }
            let mut ids = Vec::new();
            for group in inflight.chunk_by(|a, b| a.cycle == b.cycle) {
                let entries: Vec<(Entry, &Op)> = group.iter().map(|i| (i.entry, &i.op)).collect();
                ids.extend(store.mark_sending(group[0].cycle, &entries)?);
            }
            Ok(ids)
        })?;
        for (item, id) in inflight.iter_mut().zip(ids) {
            item.entry = Entry::Written(id);
        }
        Ok(())
    }

    /// Handles one answer: records what it settled, puts back what is to be sent (again).
    pub(super) async fn answered(
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
                        item.entry,
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
                    .map(|(b, i)| (i.id(), b.clone(), i.uuid.clone()))
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
    pub(super) fn record(&mut self, cycle: i64, entry: Entry, op: Op, result: EntryResult) {
        self.unsettled.remove(&op.employee_id);
        self.unwritten.push_result(cycle, entry, op, result);
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
            self.record(item.cycle, item.entry, item.op, result);
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
                self.write(&mut [])?;
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
                    self.record(item.cycle, item.entry, partial, result);
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
                    self.write(&mut [])?;
                    let id = self.store.add_follow_up(item.cycle, &follow_up)?;
                    if may_enable_approval(&item.op) {
                        // Its role may be among what failed: new reports keep waiting.
                        self.unsettled.insert(item.op.employee_id.clone());
                    }
                    self.follow_ups.push(Item {
                        entry: Entry::Written(id),
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
                self.record(item.cycle, item.entry, partial, result);
                self.record(
                    item.cycle,
                    item.entry,
                    item.op,
                    EntryResult::Failed(message),
                );
            }
            UserOutcome::Failed { message, conflict } => {
                if conflict && item.op.kind == OpKind::Create && !item.adopt && !item.looked_up {
                    item.looked_up = true;
                    if let Some(uuid) = self.target.look_up(&item.op.employee_id).await? {
                        tracing::info!(employee_id = %item.op.employee_id, uuid = %uuid, "create refused as a conflict: the existing user is adopted and patched");
                        // Written before the entry is sent again: its request history keeps it.
                        self.unwritten.push_result(
                            item.cycle,
                            item.entry,
                            item.op.clone(),
                            EntryResult::Refused(format!(
                                "{message} (the existing user is adopted and patched)"
                            )),
                        );
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
    pub(super) fn still_in_doubt(&self, item: &Item) -> Option<String> {
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

    pub(super) fn fail(&mut self, item: Item, message: &str) {
        (self.settled)(&item.op, Settled::Refused(message));
        self.counts.failed += 1;
        self.record(
            item.cycle,
            item.entry,
            item.op,
            EntryResult::Failed(message.to_owned()),
        );
    }

    pub(super) fn fail_unsent(&mut self, item: Item, message: &str) {
        (self.settled)(&item.op, Settled::Unsent);
        self.counts.failed += 1;
        self.record(
            item.cycle,
            item.entry,
            item.op,
            EntryResult::Failed(message.to_owned()),
        );
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
