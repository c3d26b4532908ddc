//! The user batch writer: sends up to 500 records and resolves every record's outcome.
//!
//! Concur answers HTTP 200 whatever happened and lists only the first ten errors. A record is
//! acknowledged only when it is listed as a success, or when the counts account for everyone
//! (`records-failed` equals the listed errors and succeeded + listed errors equals the batch
//! size) and it is not among the errors. A listed error fails it. Every other record was not
//! confirmed either way; since a v1 record is an upsert of the full desired record, those are
//! sent again in batches of at most ten (so that every error comes back), then alone. A record
//! Concur still gives no outcome for is failed with a message saying so.

use super::endpoints::{post_password_batch, post_user_batch};
use super::xml::{BatchRecord, BatchResult, MAX_BATCH};
use crate::concur::client::ConcurClient;
use crate::concur::error::ConcurError;
use crate::concur::target::{PasswordOutcome, RecordOutcome, UserTarget};
use crate::model::{Op, OpKind, Secret};

/// Re-sends of unresolved records use batches this small: Concur lists up to ten errors.
const ISOLATION_BATCH: usize = 10;

/// Writes `records` (at most 500; the caller batches) and returns one outcome per record, in
/// order. `Err` means a request failed after its retries; nothing can be said about the records.
pub async fn write_users(
    client: &ConcurClient,
    records: &[BatchRecord<'_>],
) -> Result<Vec<RecordOutcome>, ConcurError> {
    let mut outcomes: Vec<Option<RecordOutcome>> = vec![None; records.len()];
    let mut pending: Vec<usize> = (0..records.len()).collect();
    // Whole batch, then batches of ten, then one by one; each size strictly smaller.
    let mut size = records.len();
    for round in 0.. {
        if pending.is_empty() || size == 0 {
            break;
        }
        if round > 0 {
            tracing::info!(
                unresolved = pending.len(),
                batch_size = size,
                "re-sending records Concur gave no outcome for"
            );
        }
        let mut unresolved = Vec::new();
        for chunk in pending.chunks(size.max(1)) {
            let batch: Vec<BatchRecord<'_>> = chunk.iter().map(|&i| records[i]).collect();
            let result = post_user_batch(client, &batch).await?;
            for (pos, outcome) in resolve(&batch, &result).into_iter().enumerate() {
                match outcome {
                    Some(o) => outcomes[chunk[pos]] = Some(o),
                    None => unresolved.push(chunk[pos]),
                }
            }
        }
        pending = unresolved;
        size = if size > ISOLATION_BATCH {
            ISOLATION_BATCH.min(pending.len())
        } else if size > 1 {
            1
        } else {
            0
        };
    }
    Ok(outcomes
        .into_iter()
        .map(|o| {
            o.unwrap_or_else(|| {
                RecordOutcome::Failed("Concur reported no outcome for this record".into())
            })
        })
        .collect())
}

/// User v1 behind the seam: operations become full-record upserts (a password only with a
/// create), passwords go through the User Password endpoint.
impl UserTarget for ConcurClient {
    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    async fn write_users(&self, ops: &[&Op]) -> Result<Vec<RecordOutcome>, ConcurError> {
        let records: Vec<BatchRecord<'_>> = ops.iter().map(|op| batch_record(op)).collect();
        write_users(self, &records).await
    }

    async fn set_passwords(
        &self,
        users: &[(&str, &Secret)],
    ) -> Result<Vec<PasswordOutcome>, ConcurError> {
        post_password_batch(self, users).await
    }
}

/// The v1 record of one planned operation: the full desired record, its password only when
/// the user is created (v1 ignores it otherwise), and the ids it is renamed from.
fn batch_record(op: &Op) -> BatchRecord<'_> {
    BatchRecord {
        user: &op.user,
        password: if op.kind == OpKind::Create {
            op.password.as_ref()
        } else {
            None
        },
        old_login_id: op.old_login_id.as_deref(),
        old_employee_id: op.old_employee_id.as_deref(),
    }
}

/// The outcome of each record of one request, `None` where the response does not settle it.
fn resolve(batch: &[BatchRecord<'_>], result: &BatchResult) -> Vec<Option<RecordOutcome>> {
    let has_id =
        |r: &BatchRecord<'_>, id: &str| r.sent_employee_id() == id || r.user.employee_id() == id;
    // Positions a response item refers to: its FeedRecordNumber when that is in range and does
    // not contradict its EmployeeID, else every record whose sent or new employee id is its
    // EmployeeID.
    let positions = |feed: Option<u32>, employee_id: Option<&str>| -> Vec<usize> {
        let id = employee_id.map(str::trim).filter(|id| !id.is_empty());
        if let Some(n) = feed
            && n >= 1
            && (n as usize) <= batch.len()
            && id.is_none_or(|id| has_id(&batch[n as usize - 1], id))
        {
            return vec![n as usize - 1];
        }
        let Some(id) = id else {
            return Vec::new();
        };
        batch
            .iter()
            .enumerate()
            .filter(|(_, r)| has_id(r, id))
            .map(|(i, _)| i)
            .collect()
    };

    let mut out: Vec<Option<RecordOutcome>> = vec![None; batch.len()];
    for s in result.successes.iter().filter(|s| s.is_success()) {
        for i in positions(s.feed_record_number, s.employee_id.as_deref()) {
            out[i] = Some(RecordOutcome::Acknowledged);
        }
    }
    let mut failed = vec![false; batch.len()];
    let mut all_errors_placed = true;
    for e in &result.errors {
        let at = positions(e.feed_record_number, e.employee_id.as_deref());
        all_errors_placed &= !at.is_empty();
        for i in at {
            failed[i] = true;
            let message = if e.message.is_empty() {
                "Concur rejected the record without a message".to_owned()
            } else {
                e.message.clone()
            };
            out[i] = Some(RecordOutcome::Failed(message));
        }
    }
    let listed = result.errors.len();
    let counts_cover_everyone = all_errors_placed
        && result.records_failed == Some(listed as u32)
        && result.records_succeeded as usize + listed == batch.len();
    if counts_cover_everyone {
        for (i, o) in out.iter_mut().enumerate() {
            if o.is_none() && !failed[i] {
                *o = Some(RecordOutcome::Acknowledged);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::concur::v1::xml::{BatchItemError, BatchItemSuccess};
    use crate::model::{Field, User};

    fn user(id: &str) -> User {
        let mut u = User::new();
        u.set(Field::EMPLOYEE_ID, id);
        u.set(Field::LOGIN_ID, format!("{id}@example.com"));
        u
    }

    #[test]
    fn resolve_matches_by_feed_number_then_employee_id() {
        let (a, b, c) = (user("A"), user("B"), user("C2"));
        let renamed = BatchRecord {
            old_employee_id: Some("C1"),
            ..BatchRecord::new(&c)
        };
        let batch = [BatchRecord::new(&a), BatchRecord::new(&b), renamed];
        let result = BatchResult {
            records_succeeded: 2,
            records_failed: Some(1),
            errors: vec![BatchItemError {
                employee_id: Some("B".into()),
                // Contradicts the EmployeeID: the id wins.
                feed_record_number: Some(1),
                message: "Invalid Input: CrnKey".into(),
            }],
            successes: vec![BatchItemSuccess {
                employee_id: Some("C1".into()),
                feed_record_number: None,
                status: "SUCCESS".into(),
            }],
        };
        assert_eq!(
            resolve(&batch, &result),
            [
                Some(RecordOutcome::Acknowledged), // by the counts
                Some(RecordOutcome::Failed("Invalid Input: CrnKey".into())),
                Some(RecordOutcome::Acknowledged), // by its old employee id
            ]
        );
        // Counts that do not add up settle only what is listed.
        let partial = BatchResult {
            records_failed: Some(2),
            ..result
        };
        assert_eq!(resolve(&batch, &partial)[0], None);
    }
}
