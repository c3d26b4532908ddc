//! Progress of a long run (records read, operations planned, operations settled), told to
//! whoever watches: the CLI registers a [`Progress`] once (a terminal's progress bar); without
//! one every report is a no-op. No IO here: the stages only count.

use std::sync::OnceLock;

/// What a run reports as it goes. Every method may be called from any thread.
pub trait Progress: Send + Sync {
    /// `total` source records read so far.
    fn read(&self, total: u64);
    /// The plan is complete: `operations` to apply.
    fn planned(&self, operations: u64);
    /// `operations` more are about to be sent.
    fn sending(&self, operations: u64);
    /// One more operation settled (acknowledged, refused or left unanswered).
    fn settled(&self);
}

static WATCHER: OnceLock<Box<dyn Progress>> = OnceLock::new();

/// Registers the process's watcher; only the first registration counts.
pub fn watch(progress: Box<dyn Progress>) {
    let _ = WATCHER.set(progress);
}

pub fn read(total: u64) {
    if let Some(p) = WATCHER.get() {
        p.read(total);
    }
}

pub fn planned(operations: u64) {
    if let Some(p) = WATCHER.get() {
        p.planned(operations);
    }
}

pub fn sending(operations: u64) {
    if let Some(p) = WATCHER.get()
        && operations > 0
    {
        p.sending(operations);
    }
}

pub fn settled() {
    if let Some(p) = WATCHER.get() {
        p.settled();
    }
}
