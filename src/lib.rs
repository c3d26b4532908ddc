//! concur-sync: keeps SAP Concur users in step with a company's source of truth.
//!
//! Pipeline: `source` → `validate` → `plan` → `concur` (writers) → `store` (snapshot, outbox).
//! `model` holds the types every stage exchanges. See ARCHITECTURE.md.
//!
//! The library's face is what the binary, the integration tests and the fuzz targets use: the
//! commands and the service with the cycle they run (`commands`, `service`, `cycle`, `demo`,
//! `passwords`, `error`), the configuration, the edges they are tested through (`source`,
//! `concur`, `store`), the core types (`model`, `validate`, `escape`) and the bundled
//! `simulator`. Everything else is internal to the crate.

// The face.
pub mod commands;
pub mod concur;
pub mod config;
pub mod cycle;
pub mod demo;
pub mod error;
pub mod escape;
pub mod model;
pub mod passwords;
pub mod service;
pub mod simulator;
pub mod source;
pub mod store;
pub mod terminal;
pub mod validate;

// Internal.
mod attendees;
mod check;
mod http;
mod identity;
mod operators;
mod output;
mod plan;
mod progress;
mod readback;
mod rules;
#[cfg(test)]
mod test_support;
mod wiring;
mod writer;
