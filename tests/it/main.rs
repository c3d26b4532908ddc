//! One integration-test binary; each module covers one feature at the boundary.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod attendees;
mod config_hardening;
mod crash;
mod dropfolder_hardening;
mod faults;
mod harness;
mod identity_safety;
mod ldap;
mod lifecycle_hardening;
mod operators;
mod passwords;
mod plan_render;
mod readback;
mod renames;
mod requests_per_cycle;
mod roundtrip;
mod scale;
mod scim;
mod scim_push;
mod secrets;
mod service;
mod simulator;
mod simulator_v4;
mod source_digest;
mod status_page;
mod sync_cycle;
mod tokens;
mod v4_chaos;
mod v4_readback;
mod v4_scenarios;
mod v4_sync;
