//! The User Provisioning Service v4 behind the seam (the IO of the pure layer beside it): a
//! batch of planned operations goes out as one `POST /profile/v4/Bulk` (creates as POST,
//! everything else as a PATCH of the user's UUID; never PUT, never DELETE), answered 202 with a
//! provision id; `GET /provisions/{id}/status?attributes=operations` (paged) tells what each
//! operation became; `GET /profile/identity/v4/Users?filter=employeeNumber eq "…"` finds a
//! user's UUID. Every request goes through the client's one limiter.

use std::time::Duration;

use chrono::NaiveDate;
use serde_json::{Value, json};

use super::bulk::{BulkLimits, BulkOperation, Method, Unsendable, operation_for, pack, user_path};
use super::error::error_text;
use super::list::{decode_user_list, employee_number_filter, identity_lookup_path};
use super::mapping::user_body;
use super::schema::{PATCH_OP, UPS_BULK_PATH};
use super::status::{Settled, decode_provision_status, provision_status_path, settle};
use crate::concur::client::{ConcurClient, Repeat};
use crate::concur::error::ConcurError;
use crate::concur::target::{
    Planned, Poll, Provisioning, RecordOutcome, Sent, Submitted, UserOutcome, UserTarget,
};
use crate::model::{Op, OpKind};

/// Operations asked for per page of a provision's status.
const STATUS_PAGE: u64 = 100;

/// Longest wait between two polls of one provision.
const MAX_POLL_INTERVAL: Duration = Duration::from_secs(60);

/// The User Provisioning Service v4 of one company.
#[derive(Clone, Debug)]
pub struct V4Target {
    client: ConcurClient,
    /// The enterprise `companyId` of a create.
    company_uuid: String,
    /// The `terminationDate` of a deactivation (today, UTC).
    today: NaiveDate,
    limits: BulkLimits,
    first_poll: Duration,
    timeout: Duration,
    max_in_flight: usize,
}

impl V4Target {
    pub fn new(
        client: ConcurClient,
        company_uuid: &str,
        today: NaiveDate,
        first_poll: Duration,
        timeout: Duration,
    ) -> V4Target {
        V4Target {
            client,
            company_uuid: company_uuid.to_owned(),
            today,
            limits: BulkLimits::default(),
            first_poll,
            timeout,
            max_in_flight: 1,
        }
    }

    /// Lets up to `n` requests (Bulks, status polls) await their answers at once.
    #[must_use]
    pub fn with_max_in_flight(mut self, n: usize) -> V4Target {
        self.max_in_flight = n.max(1);
        self
    }

    pub fn client(&self) -> &ConcurClient {
        &self.client
    }

    /// The Bulk operation of one planned operation, or why it has none.
    fn operation(&self, p: &Planned<'_>) -> Result<BulkOperation, Unsendable> {
        if p.adopt
            && p.op.kind == OpKind::Create
            && let Some(uuid) = p.uuid
        {
            return Ok(adoption(p.op, uuid, &self.company_uuid));
        }
        operation_for(p.op, p.uuid, &self.company_uuid, self.today)
    }
}

/// A create whose user Concur already holds as `uuid`: a PATCH replacing every attribute the
/// create would have set (path-less, one value per schema), so that the user ends exactly as
/// the create would have left it.
fn adoption(op: &Op, uuid: &str, company_uuid: &str) -> BulkOperation {
    let mut body = user_body(&op.user, company_uuid);
    if let Some(map) = body.as_object_mut() {
        map.remove("schemas");
        map.remove("id");
    }
    BulkOperation {
        method: Method::Patch,
        path: user_path(uuid),
        bulk_id: super::bulk::bulk_id(&op.employee_id),
        data: json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": body}]}),
    }
}

/// What one operation's status means for its user, or `None` while it is still processed.
/// One page of a provision's status: what it settled, and the `startIndex` of the next page.
fn read_status_page(body: &str) -> Result<(Poll, Option<u64>), ConcurError> {
    let status = decode_provision_status(body)?;
    let mut page = Poll::default();
    for op in &status.operations {
        let Some(bulk_id) = op.bulk_id.clone() else {
            continue;
        };
        match outcome_of(op) {
            Some(o) => page.settled.push((bulk_id, o)),
            None => page.pending = true,
        }
    }
    Ok((page, status.next_start_index()))
}

fn outcome_of(op: &super::status::OperationStatus) -> Option<UserOutcome> {
    match settle(op) {
        Settled::Pending => None,
        Settled::IdentityFailed { code, message } => Some(UserOutcome::Failed {
            conflict: code.as_deref() == Some("409"),
            message,
        }),
        Settled::Applied(applied) => {
            if !applied.is_final() {
                return None;
            }
            let mut failed = applied.failed;
            failed.extend(
                applied
                    .not_processed
                    .into_iter()
                    .map(|name| (name, "not processed".to_owned())),
            );
            Some(if failed.is_empty() {
                UserOutcome::Acknowledged { uuid: applied.uuid }
            } else {
                UserOutcome::ExtensionsFailed {
                    uuid: applied.uuid,
                    failed,
                }
            })
        }
    }
}

impl UserTarget for V4Target {
    fn max_batch(&self) -> usize {
        self.limits.max_operations
    }

    fn provisioning(&self) -> Option<Provisioning> {
        Some(Provisioning {
            first_poll: self.first_poll,
            max_interval: MAX_POLL_INTERVAL.max(self.first_poll),
            timeout: self.timeout,
            max_in_flight: self.max_in_flight,
        })
    }

    /// Submits and polls until every operation settled (or the provision timed out).
    async fn write_users(&self, ops: &[&Op]) -> Result<Vec<RecordOutcome>, ConcurError> {
        let planned: Vec<Planned<'_>> = ops
            .iter()
            .map(|op| Planned {
                op,
                uuid: None,
                adopt: false,
            })
            .collect();
        let submitted = self.submit(&planned).await?;
        let mut out: Vec<Option<UserOutcome>> = Vec::with_capacity(ops.len());
        let mut pending: Vec<(usize, String)> = Vec::new();
        for (i, sent) in submitted.ops.into_iter().enumerate() {
            match sent {
                Sent::Settled(o) => out.push(Some(o)),
                Sent::Pending(b) => {
                    pending.push((i, b));
                    out.push(None);
                }
                Sent::NotSent => out.push(Some(UserOutcome::Failed {
                    message: "not sent: it did not fit into the request".into(),
                    conflict: false,
                })),
                Sent::Unanswered(message) => out.push(Some(UserOutcome::Failed {
                    message,
                    conflict: false,
                })),
            }
        }
        if let Some(id) = submitted.provision_id {
            let started = tokio::time::Instant::now();
            let mut wait = self.first_poll;
            while !pending.is_empty() && started.elapsed() < self.timeout {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_POLL_INTERVAL);
                let poll = self.poll(&id).await?;
                for (bulk_id, o) in poll.settled {
                    if let Some(at) = pending.iter().position(|(_, b)| *b == bulk_id) {
                        out[pending.remove(at).0] = Some(o);
                    }
                }
            }
        }
        Ok(out
            .into_iter()
            .map(|o| match o {
                Some(UserOutcome::Acknowledged { .. }) => RecordOutcome::Acknowledged,
                Some(UserOutcome::ExtensionsFailed { failed, .. }) => RecordOutcome::Failed(
                    failed
                        .iter()
                        .map(|(n, m)| format!("{n}: {m}"))
                        .collect::<Vec<_>>()
                        .join("; "),
                ),
                Some(UserOutcome::Failed { message, .. }) => RecordOutcome::Failed(message),
                None => RecordOutcome::Failed("the provision did not finish in time".into()),
            })
            .collect())
    }

    async fn submit(&self, ops: &[Planned<'_>]) -> Result<Submitted, ConcurError> {
        let mut sent: Vec<Sent> = vec![Sent::NotSent; ops.len()];
        let mut bulk: Vec<BulkOperation> = Vec::new();
        let mut index: Vec<usize> = Vec::new();
        for (i, p) in ops.iter().enumerate() {
            match self.operation(p) {
                Ok(b) => {
                    bulk.push(b);
                    index.push(i);
                }
                // A change of nothing v4 holds (a flag absent rather than N, a field v4 does
                // not carry): Concur already holds what the record says.
                Err(Unsendable::NoChange) => {
                    sent[i] = Sent::Settled(UserOutcome::Acknowledged {
                        uuid: p.uuid.map(str::to_owned),
                    });
                }
                Err(e) => {
                    sent[i] = Sent::Settled(UserOutcome::Failed {
                        message: e.to_string(),
                        conflict: false,
                    });
                }
            }
        }
        let packed = pack(&bulk, self.limits);
        for o in &packed.oversized {
            sent[index[o.index]] = Sent::Settled(UserOutcome::Failed {
                message: o.message.clone(),
                conflict: false,
            });
        }
        // One request per call: the caller records its 202 before anything else is sent.
        let Some(request) = packed.requests.first() else {
            return Ok(Submitted {
                provision_id: None,
                ops: sent,
            });
        };
        // A Bulk must not be applied twice: resent only after answers that say it was not
        // processed; after a lost answer its creates are looked up before anything is resent.
        let unanswered = |sent: &mut Vec<Sent>, why: String| {
            for &m in &request.members {
                sent[index[m]] = Sent::Unanswered(why.clone());
            }
        };
        let reply = match self
            .client
            .send_authed_json(
                reqwest::Method::POST,
                &format!("{UPS_BULK_PATH}/"),
                Some(&request.body),
                Repeat::IfUnprocessed,
            )
            .await
        {
            Ok(reply) => reply,
            Err(
                e @ (ConcurError::Transport { unsent: false, .. } | ConcurError::Cancelled { .. }),
            ) => {
                unanswered(&mut sent, format!("no answer to the Bulk request: {e}"));
                return Ok(Submitted {
                    provision_id: None,
                    ops: sent,
                });
            }
            Err(e) => return Err(e),
        };
        if matches!(reply.status, 500 | 502 | 504) {
            let why = format!(
                "the Bulk request was answered HTTP {} ({}), which does not say whether Concur took it",
                reply.status,
                error_text(&reply.body)
            );
            unanswered(&mut sent, why);
            return Ok(Submitted {
                provision_id: None,
                ops: sent,
            });
        }
        match reply.status {
            200..=299 => {
                let status = decode_provision_status(&reply.body)?;
                for &m in &request.members {
                    sent[index[m]] = Sent::Pending(bulk[m].bulk_id.clone());
                }
                Ok(Submitted {
                    provision_id: Some(status.id),
                    ops: sent,
                })
            }
            400..=499 if !matches!(reply.status, 401 | 403 | 408 | 429) => {
                let message = error_text(&reply.body);
                for &m in &request.members {
                    sent[index[m]] = Sent::Settled(UserOutcome::Failed {
                        message: format!("Bulk refused (HTTP {}): {message}", reply.status),
                        conflict: false,
                    });
                }
                Ok(Submitted {
                    provision_id: None,
                    ops: sent,
                })
            }
            status => Err(ConcurError::Http {
                status,
                path: UPS_BULK_PATH.to_owned(),
                message: error_text(&reply.body),
            }),
        }
    }

    async fn poll(&self, provision_id: &str) -> Result<Poll, ConcurError> {
        let mut poll = Poll::default();
        let mut start = 1;
        loop {
            let body = self
                .client
                .get(&provision_status_path(provision_id, start, STATUS_PAGE))
                .await?;
            // A page of a hundred operations takes a while to read: on a thread of the
            // blocking pool, so that the caller's other work goes on meanwhile.
            let (page, next) = tokio::task::spawn_blocking(move || read_status_page(&body))
                .await
                .map_err(|e| ConcurError::Decode(format!("the provision status: {e}")))??;
            poll.pending |= page.pending;
            poll.settled.extend(page.settled);
            match next {
                Some(next) if next > start => start = next,
                _ => break,
            }
        }
        Ok(poll)
    }

    async fn look_up(&self, employee_id: &str) -> Result<Option<String>, ConcurError> {
        let body = self
            .client
            .get(&identity_lookup_path(
                &employee_number_filter(employee_id),
                2,
            ))
            .await?;
        let page = decode_user_list(&body)?;
        Ok(page.resources.iter().find_map(|r| {
            let number = r
                .get(super::schema::ENTERPRISE)
                .and_then(|e| e.get("employeeNumber"))
                .and_then(Value::as_str);
            (number.is_none() || number.is_some_and(|n| n.eq_ignore_ascii_case(employee_id)))
                .then(|| r.get("id").and_then(Value::as_str).map(str::to_owned))
                .flatten()
        }))
    }
}
