//! The Concur client: auth and token lifecycle, one shared rate limiter, retries, the User v1 and
//! User Password wire format, and the user batch writer.
//!
//! - `error`: [`ConcurError`], the one error type of this boundary, with `is_retryable()`.
//! - `xml`: pure encoders and tolerant decoders of the v1 documents.
//! - pacing and retries come from `crate::http::retry` (free of Concur types).
//! - `auth`: token acquisition, refresh, rotation and geolocation.
//! - `geo`: which geolocations may be followed (Concur's domains, in one list).
//! - `client`: [`ConcurClient`], the only thing here that talks to the network.
//! - `users`: [`write_users`], which resolves every record's outcome.

pub mod attendees;
mod auth;
mod client;
pub mod error;
pub mod geo;
pub mod readback;
mod users;
pub mod xml;

pub use auth::{StoredToken, TokenStore};
pub use client::{
    ClientConfig, ClientStats, ConcurClient, PASSWORDS_PATH, PasswordOutcome, USERS_PATH,
};
pub use error::{ConcurError, Credential};
pub use users::{RecordOutcome, write_users};
pub use xml::{
    BatchItemError, BatchItemSuccess, BatchRecord, BatchResult, PasswordBatchResult,
    PasswordStatus, decode_password_result, decode_user_batch_result, encode_password_batch,
    encode_user_batch,
};

#[cfg(test)]
mod tests;
