//! The progress bar of long manual runs (`sync`, `baseline`, `reconcile`, `plan`) on a
//! terminal: records read, operations planned, operations sent, and the rate. It draws on
//! standard error; log lines and standard output are written while it is hidden, so neither
//! is torn. The CLI starts it ([`start`]) only when standard error is a terminal and `--quiet`
//! is not given; the stages report through [`crate::progress`] and never see it.

use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

static BAR: OnceLock<ProgressBar> = OnceLock::new();

struct TerminalProgress {
    bar: ProgressBar,
    read: AtomicU64,
    planned: AtomicU64,
    sending: AtomicBool,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
        .with_key(
            "rate",
            |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0}/s", state.per_sec());
            },
        )
}

impl crate::progress::Progress for TerminalProgress {
    fn read(&self, total: u64) {
        if self.read.swap(total, Ordering::Relaxed) == 0 {
            self.bar.enable_steady_tick(Duration::from_millis(200));
        }
        if !self.sending.load(Ordering::Relaxed) {
            self.bar.set_position(total);
        }
    }

    fn planned(&self, operations: u64) {
        self.planned.store(operations, Ordering::Relaxed);
        if !self.sending.load(Ordering::Relaxed) {
            self.bar
                .set_message(format!("; planned {operations} operations"));
        }
    }

    fn sending(&self, operations: u64) {
        if self.sending.swap(true, Ordering::Relaxed) {
            self.bar.inc_length(operations);
            return;
        }
        let read = self.read.load(Ordering::Relaxed);
        let planned = self.planned.load(Ordering::Relaxed);
        self.bar.reset();
        self.bar.enable_steady_tick(Duration::from_millis(200));
        self.bar.set_length(operations);
        self.bar.set_style(style(
            "{spinner} {msg}sent {pos}/{len} {bar:20} {rate}, {eta} left",
        ));
        self.bar.set_message(if read > 0 {
            format!("read {read} records, planned {planned}; ")
        } else {
            String::new()
        });
    }

    fn settled(&self) {
        self.bar.inc(1);
    }
}

/// Shows the progress bar on standard error from now on, if it is a terminal.
pub fn start() {
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return;
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(style("{spinner} read {pos} records ({rate}){msg}"));
    if BAR.set(bar.clone()).is_ok() {
        crate::progress::watch(Box::new(TerminalProgress {
            bar,
            read: AtomicU64::new(0),
            planned: AtomicU64::new(0),
            sending: AtomicBool::new(false),
        }));
    }
}

/// Removes the bar (at the end of the command).
pub fn finish() {
    if let Some(bar) = BAR.get() {
        bar.finish_and_clear();
    }
}

/// Runs `f` (a write to the terminal) while the bar is hidden.
pub fn suspended<R>(f: impl FnOnce() -> R) -> R {
    match BAR.get() {
        Some(bar) if !bar.is_finished() => bar.suspend(f),
        _ => f(),
    }
}

/// Standard error for log lines: each is written while the bar is hidden.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        suspended(|| std::io::stderr().write(buf))
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        suspended(|| std::io::stderr().write_all(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
