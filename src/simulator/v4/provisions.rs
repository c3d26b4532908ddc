//! Provisions: the asynchronous job behind `POST /Users`, `PATCH`/`PUT /Users/{id}` and
//! `POST /Bulk` (their status answer is `status.rs`).
//!
//! Work is processed against the simulated clock, never by a background task: whenever the
//! state is locked ([`settle`]), every provision due by then (`created + provision_delay`) is
//! processed, operation by operation in order, as of its due time. So a delay of 0 is done
//! before the first status poll, a test that advances the clock sees exactly what is due, and
//! nothing a client does (or a client killed mid-flight) changes what is processed.
//!
//! A provision with an operation for a stuck employee number (or drawn stuck by
//! `rate_stuck`) stops before that operation and stays pending until `created +
//! provision_timeout`, when it is marked failed; operations before it keep their results.
//! Provisions are forgotten (404) `status_retention` after creation.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::super::state::Inner;
use super::apply;
use super::errors::Msg;
use super::model::CORE;

pub(crate) const STATUS_SCHEMA: &str =
    "urn:ietf:params:scim:schemas:extension:concur:2.0:Provision:Status";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ProvisionType {
    Bulk,
    User,
}

/// An extension's result (`processing` while its operation is pending).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Outcome {
    Processing,
    Success,
    Error,
    NoOp,
    NotProcessed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ExtResult {
    pub name: String,
    pub result: Outcome,
    pub code: String,
    #[serde(default)]
    pub messages: Vec<Msg>,
}

impl ExtResult {
    pub fn pending(name: &str) -> Self {
        Self {
            name: name.to_string(),
            result: Outcome::Processing,
            code: String::new(),
            messages: Vec::new(),
        }
    }

    pub fn set(&mut self, result: Outcome, code: &str, messages: Vec<Msg>) {
        self.result = result;
        self.code = code.to_string();
        self.messages = messages;
    }
}

/// What the identity part of an operation does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum IdentityWork {
    Create(Map<String, Value>),
    Replace(Map<String, Value>),
    /// PatchOp operations (JSON), already checked for shape.
    Patch(Vec<Value>),
}

/// What one extension part of an operation does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum ExtWork {
    Replace(Map<String, Value>),
    Patch(Vec<Value>),
}

/// The work an operation still has to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Work {
    /// The user (id, or `bulkId:…`); `None` for a create.
    pub target: Option<String>,
    /// `None` when the identity was written synchronously (`/Users`).
    pub identity: Option<IdentityWork>,
    pub extensions: Vec<(String, ExtWork)>,
    pub delete: bool,
    /// The user was created by this operation (create-only attributes may be set).
    pub creating: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Operation {
    pub id: String,
    pub bulk_id: Option<String>,
    pub method: String,
    pub resource: Option<String>,
    pub work: Option<Work>,
    /// Drawn at submission: the spend User extension fails once, transiently.
    pub spend_failure: bool,
    /// `(success, code)` once processed.
    pub done: Option<(bool, String)>,
    pub extensions: Vec<ExtResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Provision {
    pub id: String,
    pub seq: u64,
    pub kind: ProvisionType,
    pub created: DateTime<Utc>,
    pub last_modified: DateTime<Utc>,
    pub due: DateTime<Utc>,
    pub completed: Option<DateTime<Utc>>,
    pub correlation_id: String,
    /// Drawn at submission: the provision never starts and times out.
    pub stuck: bool,
    /// Stopped before `ops[next]`, waiting for the timeout.
    pub halted: bool,
    pub fail_on_errors: Option<u64>,
    pub next: usize,
    pub ops: Vec<Operation>,
    /// `bulkId` → id of the user its operation wrote.
    pub bulk_ids: BTreeMap<String, String>,
}

impl Provision {
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut ok = 0;
        let mut failed = 0;
        let mut pending = 0;
        for op in &self.ops {
            match &op.done {
                Some((true, _)) => ok += 1,
                Some((false, _)) => failed += 1,
                None => pending += 1,
            }
        }
        (ok, failed, pending)
    }
}

/// Time-ordered queues of what [`settle`] must do.
#[derive(Debug, Default)]
pub(crate) struct Queues {
    due: BTreeMap<(DateTime<Utc>, u64), String>,
    deadlines: BTreeMap<(DateTime<Utc>, u64), String>,
    expiry: BTreeMap<(DateTime<Utc>, u64), String>,
}

fn duration(d: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Stores a new provision; its work is due `provision_delay` from `now`.
pub(crate) fn submit(
    inner: &mut Inner,
    kind: ProvisionType,
    ops: Vec<Operation>,
    now: DateTime<Utc>,
    stuck: bool,
    fail_on_errors: Option<u64>,
    correlation_id: String,
) -> String {
    inner.v4.next_provision += 1;
    let seq = inner.v4.next_provision;
    let id = uuid::Uuid::new_v4().to_string();
    let due = now + duration(inner.v4.settings.provision_delay);
    let p = Provision {
        id: id.clone(),
        seq,
        kind,
        created: now,
        last_modified: now,
        due,
        completed: None,
        correlation_id,
        stuck,
        halted: false,
        fail_on_errors,
        next: 0,
        ops,
        bulk_ids: BTreeMap::new(),
    };
    enqueue(inner, &p);
    inner.v4.provisions.insert(id.clone(), p);
    id
}

fn enqueue(inner: &mut Inner, p: &Provision) {
    let retention = duration(inner.v4.settings.status_retention);
    let q = &mut inner.v4.queues;
    q.expiry
        .insert((p.created + retention, p.seq), p.id.clone());
    if p.completed.is_none() {
        if p.halted {
            let timeout = duration(inner.v4.settings.provision_timeout);
            q.deadlines
                .insert((p.created + timeout, p.seq), p.id.clone());
        } else {
            q.due.insert((p.due, p.seq), p.id.clone());
        }
    }
}

/// Restores provisions read from a state file.
pub(crate) fn restore(inner: &mut Inner, list: Vec<Provision>) {
    for p in list {
        inner.v4.next_provision = inner.v4.next_provision.max(p.seq);
        enqueue(inner, &p);
        inner.v4.provisions.insert(p.id.clone(), p);
    }
}

/// Every provision, oldest first (for the state file and the control API).
pub(crate) fn persisted(inner: &Inner) -> Vec<Provision> {
    let mut v: Vec<Provision> = inner.v4.provisions.values().cloned().collect();
    v.sort_by_key(|p| p.seq);
    v
}

fn first_due(
    q: &BTreeMap<(DateTime<Utc>, u64), String>,
    now: DateTime<Utc>,
) -> Option<(DateTime<Utc>, u64)> {
    q.keys().next().filter(|(t, _)| *t <= now).copied()
}

/// Processes, times out and forgets whatever is due by `now`, in time order. Returns whether
/// anything changed.
pub(crate) fn settle(inner: &mut Inner, now: DateTime<Utc>) -> bool {
    let mut changed = false;
    loop {
        let q = &inner.v4.queues;
        let candidates = [
            first_due(&q.due, now).map(|k| (k, 0)),
            first_due(&q.deadlines, now).map(|k| (k, 1)),
            first_due(&q.expiry, now).map(|k| (k, 2)),
        ];
        let Some((key, which)) = candidates.into_iter().flatten().min() else {
            return changed;
        };
        changed = true;
        let q = &mut inner.v4.queues;
        let id = match which {
            0 => q.due.remove(&key),
            1 => q.deadlines.remove(&key),
            _ => q.expiry.remove(&key),
        };
        let Some(id) = id else { continue };
        match which {
            0 => process(inner, &id, key.0),
            1 => time_out(inner, &id, key.0),
            _ => {
                inner.v4.provisions.remove(&id);
            }
        }
    }
}

fn process(inner: &mut Inner, id: &str, at: DateTime<Utc>) {
    let Some(mut p) = inner.v4.provisions.remove(id) else {
        return;
    };
    let deadline = p.created + duration(inner.v4.settings.provision_timeout);
    if at >= deadline {
        inner.v4.provisions.insert(id.to_string(), p);
        time_out(inner, id, deadline);
        return;
    }
    let honour = inner.v4.settings.honour_fail_on_errors;
    while p.next < p.ops.len() {
        let emp = apply::employee_of(inner, &p.ops[p.next], &p.bulk_ids);
        if p.stuck || emp.is_some_and(|e| inner.v4.stuck.contains(&e)) {
            p.halted = true;
            p.last_modified = at;
            inner
                .v4
                .queues
                .deadlines
                .insert((deadline, p.seq), p.id.clone());
            inner.v4.provisions.insert(id.to_string(), p);
            return;
        }
        let limit = p.fail_on_errors.filter(|n| honour && *n > 0);
        let reached = limit.is_some_and(|n| p.counts().1 as u64 >= n);
        let op = &mut p.ops[p.next];
        if reached {
            abandon(
                op,
                "412",
                Msg::error(
                    "NOT_PROCESSED",
                    "Not processed: failOnErrors was reached",
                    "",
                ),
            );
        } else {
            apply::run(inner, op, &mut p.bulk_ids, at);
        }
        p.next += 1;
    }
    p.completed = Some(at);
    p.last_modified = at;
    inner.v4.provisions.insert(id.to_string(), p);
}

/// Marks an operation failed without processing what it had left to do.
fn abandon(op: &mut Operation, code: &str, msg: Msg) {
    op.work = None;
    op.done = Some((false, code.to_string()));
    let mut first = true;
    for e in &mut op.extensions {
        if e.result == Outcome::Processing {
            let messages = if first { vec![msg.clone()] } else { Vec::new() };
            e.set(Outcome::NotProcessed, code, messages);
            first = false;
        }
    }
}

fn time_out(inner: &mut Inner, id: &str, at: DateTime<Utc>) {
    let minutes = inner.v4.settings.provision_timeout.as_secs() / 60;
    let Some(p) = inner.v4.provisions.get_mut(id) else {
        return;
    };
    if p.completed.is_some() {
        return;
    }
    let msg = Msg::error(
        "PROVISION_TIMEOUT",
        format!("Provision request timed out after {minutes} minutes and was marked failed"),
        "",
    );
    for op in p.ops.iter_mut().skip(p.next) {
        abandon(op, "500", msg.clone());
    }
    p.next = p.ops.len();
    p.halted = false;
    p.completed = Some(at);
    p.last_modified = at;
}

/// The result list a new operation starts with: identity and every modeled extension, plus the
/// other extensions it carries.
pub(crate) fn initial_results(extra: &[String]) -> Vec<ExtResult> {
    let mut v = vec![ExtResult::pending(CORE)];
    v.extend(super::model::MODELED.iter().map(|u| ExtResult::pending(u)));
    for u in extra {
        if !v.iter().any(|e| &e.name == u) {
            v.push(ExtResult::pending(u));
        }
    }
    v
}
