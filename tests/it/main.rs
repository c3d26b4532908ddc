//! One integration-test binary; each module covers one feature at the boundary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod crash;
mod faults;
mod harness;
mod identity_safety;
mod ldap;
mod passwords;
mod readback;
mod renames;
mod roundtrip;
mod scim;
mod secrets;
mod service;
mod simulator;
mod sync_cycle;
mod tokens;
