//! What the SCIM source remembers between cycles (in the state DB's `kv` table, keys `scim.*`):
//! when the last full read started, the delta watermark, and the read of the cycle in progress.
//!
//! The rule: a read is recorded as *pending* for the cycle that made it, and only becomes a
//! watermark when the next read finds that cycle closed with
//! - `success`: the delta watermark moves to the pending read's start; a full read also moves
//!   the last full read time (and the configuration digest);
//! - `partial` after a full read: the same (failed and rejected users are read again by the next
//!   full read); `partial` after a delta read: nothing moves, so the next delta reads the same
//!   changed users again and retries what Concur refused;
//! - anything else (`failed`, `held`, `interrupted`): nothing moves.
//!
//! A read outside a cycle (`plan`, `baseline`) records nothing.

use serde::{Deserialize, Serialize};

use crate::store::{CycleOutcome, Store, StoreError};

const LAST_FULL: &str = "scim.last_full";
const DELTA_SINCE: &str = "scim.delta_since";
const DIGEST: &str = "scim.config_digest";
const PENDING: &str = "scim.pending";

/// A read waiting for its cycle's outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    cycle: i64,
    /// RFC 3339 UTC: the watermark this read stands for.
    start: String,
    /// A complete full read.
    full: bool,
    digest: String,
}

/// The watermarks in force for the next read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Watermarks {
    pub last_full: Option<String>,
    pub delta_since: Option<String>,
    pub digest: Option<String>,
}

fn text(store: &Store, key: &str) -> Result<Option<String>, StoreError> {
    Ok(store
        .kv_get(key)?
        .and_then(|v| String::from_utf8(v).ok())
        .filter(|s| !s.is_empty()))
}

/// Turns the pending read of a closed cycle into watermarks (or drops it), then returns the
/// watermarks in force.
pub fn settle(store: &Store) -> Result<Watermarks, StoreError> {
    if let Some(raw) = store.kv_get(PENDING)? {
        match serde_json::from_slice::<Pending>(&raw) {
            Ok(p) => {
                let outcome = store.cycle_outcome(p.cycle)?;
                let advance = match outcome {
                    Some(CycleOutcome::Running) => None,
                    Some(CycleOutcome::Success) => Some(true),
                    Some(CycleOutcome::Partial) => Some(p.full),
                    _ => Some(false),
                };
                match advance {
                    None => {}
                    Some(adv) => {
                        if adv {
                            store.kv_set(DELTA_SINCE, p.start.as_bytes())?;
                            if p.full {
                                store.kv_set(LAST_FULL, p.start.as_bytes())?;
                                store.kv_set(DIGEST, p.digest.as_bytes())?;
                            }
                        }
                        tracing::debug!(cycle = p.cycle, outcome = ?outcome.map(CycleOutcome::as_str), advanced = adv, full = p.full, start = %p.start, "settled the previous SCIM read");
                        store.kv_delete(PENDING)?;
                    }
                }
            }
            Err(_) => store.kv_delete(PENDING)?,
        }
    }
    Ok(Watermarks {
        last_full: text(store, LAST_FULL)?,
        delta_since: text(store, DELTA_SINCE)?,
        digest: text(store, DIGEST)?,
    })
}

/// Records a successful read for the cycle in progress, if any. Two reads in one cycle keep the
/// earlier start and count as full only if both were.
pub fn record(store: &Store, start: &str, full: bool, digest: &str) -> Result<(), StoreError> {
    let running = store.running_cycle()?;
    let Some(cycle) = running else {
        return Ok(());
    };
    let mut p = Pending {
        cycle,
        start: start.to_owned(),
        full,
        digest: digest.to_owned(),
    };
    if let Some(raw) = store.kv_get(PENDING)?
        && let Ok(old) = serde_json::from_slice::<Pending>(&raw)
        && old.cycle == cycle
    {
        p.start = p.start.min(old.start);
        p.full = p.full && old.full && p.digest == old.digest;
    }
    let json = serde_json::to_vec(&p).unwrap_or_default();
    store.kv_set(PENDING, &json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::CycleCounts;

    fn cycle(store: &Store, start: &str, full: bool, outcome: CycleOutcome) -> Watermarks {
        let marks = settle(store).unwrap();
        let id = store.begin_cycle("scim").unwrap();
        record(store, start, full, "d1").unwrap();
        store
            .finish_cycle(id, outcome, &CycleCounts::default(), None)
            .unwrap();
        marks
    }

    #[test]
    fn watermarks_move_only_after_acknowledged_cycles() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db"), None).unwrap();
        assert_eq!(settle(&store).unwrap(), Watermarks::default());
        // A failed full read leaves nothing behind; a read outside a cycle records nothing.
        cycle(&store, "2026-01-01T00:00:00Z", true, CycleOutcome::Failed);
        record(&store, "2026-01-01T00:30:00Z", true, "d1").unwrap();
        assert_eq!(settle(&store).unwrap(), Watermarks::default());
        cycle(&store, "2026-01-01T01:00:00Z", true, CycleOutcome::Partial);
        let m = cycle(&store, "2026-01-01T02:00:00Z", false, CycleOutcome::Success);
        assert_eq!(m.last_full.as_deref(), Some("2026-01-01T01:00:00Z"));
        assert_eq!(m.delta_since.as_deref(), Some("2026-01-01T01:00:00Z"));
        assert_eq!(m.digest.as_deref(), Some("d1"));
        // A successful delta moves only the delta watermark; partial, held and interrupted
        // deltas move nothing, so their users are read again.
        for outcome in [
            CycleOutcome::Partial,
            CycleOutcome::Held,
            CycleOutcome::Interrupted,
        ] {
            let m = cycle(&store, "2026-01-01T03:00:00Z", false, outcome);
            assert_eq!(
                m.delta_since.as_deref(),
                Some("2026-01-01T02:00:00Z"),
                "{outcome}"
            );
        }
        let m = settle(&store).unwrap();
        assert_eq!(m.delta_since.as_deref(), Some("2026-01-01T02:00:00Z"));
        assert_eq!(m.last_full.as_deref(), Some("2026-01-01T01:00:00Z"));
    }
}
