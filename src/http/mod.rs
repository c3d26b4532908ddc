//! Generic HTTP plumbing shared by every client of an outside API (Concur, a SCIM source):
//! `retry` paces requests (one rate limiter plus a served `Retry-After` gate), retries them,
//! reads bounded bodies and honours cancellation; `bearer` checks the token a client of an
//! endpoint concur-sync serves must send. Nothing here knows Concur's types.

pub mod bearer;
pub mod retry;
