//! The Concur client: auth, rate limit, retries, wire encoding, and the writers.

pub mod error;
pub mod xml;

pub use error::{ConcurError, Credential};
pub use xml::{
    BatchItemError, BatchItemSuccess, BatchRecord, BatchResult, PasswordBatchResult,
    PasswordStatus, decode_password_result, decode_user_batch_result, encode_password_batch,
    encode_user_batch,
};
