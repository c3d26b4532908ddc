//! The two User v1 calls that write: one User v1 batch (`POST /api/user/v1.0/Users`) and one
//! User Password batch (`POST /api/user/v1.0/Users/password`), each of 1..=500 records, sent
//! through the client's authorised POST and decoded.

use super::xml::{
    BatchRecord, BatchResult, MAX_BATCH, decode_password_result, decode_user_batch_result,
    encode_password_batch, encode_user_batch,
};
use crate::concur::client::ConcurClient;
use crate::concur::error::ConcurError;
use crate::concur::target::{PasswordOutcome, RecordOutcome};
use crate::model::Secret;

pub const USERS_PATH: &str = "/api/user/v1.0/Users";
pub const PASSWORDS_PATH: &str = "/api/user/v1.0/Users/password";

/// Posts one User v1 batch (1..=500 records) and decodes the result. HTTP 200 does not mean
/// the records were applied: `users::write_users` settles each record.
pub async fn post_user_batch(
    client: &ConcurClient,
    records: &[BatchRecord<'_>],
) -> Result<BatchResult, ConcurError> {
    check_size(records.len())?;
    let secrets: Vec<&str> = records
        .iter()
        .filter_map(|r| r.password.map(Secret::expose))
        .collect();
    let body = client
        .post_xml(USERS_PATH, encode_user_batch(records), &secrets)
        .await?;
    decode_user_batch_result(&body)
}

/// Posts one User Password batch (1..=500) and returns one outcome per input, in order.
pub async fn post_password_batch(
    client: &ConcurClient,
    users: &[(&str, &Secret)],
) -> Result<Vec<PasswordOutcome>, ConcurError> {
    check_size(users.len())?;
    let secrets: Vec<&str> = users.iter().map(|(_, p)| p.expose()).collect();
    let body = client
        .post_xml(PASSWORDS_PATH, encode_password_batch(users), &secrets)
        .await?;
    let result = decode_password_result(&body)?;
    let mut used = vec![false; result.statuses.len()];
    Ok(users
        .iter()
        .map(|(login, _)| {
            let found = result
                .statuses
                .iter()
                .enumerate()
                .find(|(i, s)| !used[*i] && s.login_id.trim().eq_ignore_ascii_case(login));
            let outcome = match found {
                Some((i, s)) => {
                    used[i] = true;
                    if s.success {
                        RecordOutcome::Acknowledged
                    } else {
                        RecordOutcome::Failed(s.message.clone())
                    }
                }
                None => RecordOutcome::Failed("Concur returned no status for this login".into()),
            };
            PasswordOutcome {
                login_id: (*login).to_owned(),
                outcome,
            }
        })
        .collect())
}

fn check_size(n: usize) -> Result<(), ConcurError> {
    if n == 0 {
        return Err(ConcurError::Batch("empty batch".into()));
    }
    if n > MAX_BATCH {
        return Err(ConcurError::Batch(format!(
            "{n} records exceed the limit of {MAX_BATCH} per batch"
        )));
    }
    Ok(())
}
