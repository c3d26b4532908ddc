//! concur-sync: keeps SAP Concur users in step with a company's source of truth.
//!
//! Pipeline: `source` → `validate` → `plan` → `concur` (writers) → `store` (snapshot, outbox).
//! `model` holds the types every stage exchanges. See ARCHITECTURE.md.

pub mod attendees;
pub mod check;
pub mod commands;
pub mod concur;
pub mod config;
pub mod cycle;
pub mod demo;
pub mod error;
pub mod escape;
pub mod http;
pub mod identity;
pub mod model;
pub mod output;
pub mod passwords;
pub mod plan;
pub mod readback;
pub mod rules;
pub mod service;
pub mod simulator;
pub mod source;
pub mod store;
#[cfg(test)]
pub(crate) mod test_support;
pub mod validate;
pub mod wiring;
pub mod writer;
