//! What operators use to see and steer single records and plans: `explain` (one user's story,
//! newest first), the retry queue (`failed`, `retry`, `skip`: audited writes through the
//! store), and saved plans applied exactly (`apply`, the saving half of `plan --out`, which
//! run the usual cycle through `service`). `commands.rs` holds the CLI commands; `explain.rs`
//! and `queue.rs` read the store and render.

pub mod commands;
pub mod explain;
pub mod queue;

/// Who is acting, as the audit records it: `user@host` (the login name from the environment,
/// else the process's uid).
pub fn actor() -> String {
    let user = ["USER", "LOGNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
        .unwrap_or_else(|| {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata("/proc/self")
                .map(|m| format!("uid {}", m.uid()))
                .unwrap_or_else(|_| "unknown".into())
        });
    let host = hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into());
    format!("{user}@{host}")
}
