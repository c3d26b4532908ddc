//! The Concur client: auth, rate limit, retries, wire encoding, and the writers.
