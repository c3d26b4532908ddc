//! The Concur client: auth and token lifecycle, one shared rate limiter, retries, the User v1 and
//! User Password wire format, and the user batch writer.
//!
//! - `error`: [`ConcurError`], the one error type of this boundary, with `is_retryable()`.
//! - `xml`: pure encoders and tolerant decoders of the v1 documents.
//! - pacing and retries come from `crate::http::retry` (free of Concur types).
//! - `transport`: [`ClientConfig`], [`TokenStore`] and the HTTP client + pacer both `auth` and
//!   `client` send through.
//! - `auth`: token acquisition, refresh, rotation and geolocation.
//! - `geo`: which geolocations may be followed (Concur's domains, in one list).
//! - `client`: [`ConcurClient`], the only thing here that talks to the network.
//! - `target`: [`UserTarget`], what a cycle needs from Concur, and what it answers per record.
//! - `users`: [`write_users`], which resolves every record's outcome, and User v1's
//!   [`UserTarget`] implementation.

pub mod attendees;
mod auth;
mod client;
pub mod error;
pub mod geo;
pub mod readback;
mod target;
mod transport;
mod users;
pub mod xml;

pub use client::{ClientStats, ConcurClient, PASSWORDS_PATH, USERS_PATH};
pub use error::{ConcurError, Credential};
pub use target::{PasswordOutcome, RecordOutcome, UserTarget};
pub use transport::{ClientConfig, StoredToken, TokenStore};
pub use users::write_users;
pub use xml::{
    BatchItemError, BatchItemSuccess, BatchRecord, BatchResult, PasswordBatchResult,
    PasswordStatus, decode_password_result, decode_user_batch_result, encode_password_batch,
    encode_user_batch,
};

#[cfg(test)]
mod tests;
