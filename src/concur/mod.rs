//! The Concur client: auth and token lifecycle, one shared rate limiter, retries, the seam a
//! cycle writes users through, and the APIs behind it.
//!
//! API-neutral (nothing here knows a User v1 document):
//! - `error`: [`ConcurError`], the one error type of this boundary, with `is_retryable()`.
//! - `body`: tolerant reading of answers (XML tree, JSON fields ignoring case, error messages).
//! - pacing and retries come from `crate::http::retry` (free of Concur types).
//! - `transport`: [`ClientConfig`], [`TokenStore`] and the HTTP client + pacer both `auth` and
//!   `client` send through.
//! - `auth`: token acquisition, refresh, rotation and geolocation.
//! - `geo`: which geolocations may be followed (Concur's domains, in one list).
//! - `client`: [`ConcurClient`], the only thing here that talks to the network: authorised
//!   requests with retries, for every API.
//! - `target`: [`UserTarget`], what a cycle needs from Concur, and what it answers per record.
//!
//! Per API, each importing only the neutral modules above:
//! - `v1`: User v1 and User Password (wire format, batch calls, the `UserTarget`
//!   implementation) and the reads of its era (Profile v1, FormFields, Bulk User v3.1).
//! - `attendees`: Attendees v4.

pub mod attendees;
mod auth;
mod body;
mod client;
pub mod error;
pub mod geo;
mod target;
mod transport;
pub mod v1;
pub mod v4;

pub use body::error_message;
pub use client::{ClientStats, ConcurClient};
pub use error::{ConcurError, Credential};
pub use target::{
    PasswordOutcome, Planned, Poll, Provisioning, RecordOutcome, Sent, Submitted, UserOutcome,
    UserTarget,
};
pub use transport::{ClientConfig, StoredToken, TokenStore};
/// The reads of the User v1 era (Profile v1, FormFields, Bulk User v3.1).
pub use v1::readback;

#[cfg(test)]
mod tests;
