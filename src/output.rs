//! Standard output of the CLI commands. Rust ignores SIGPIPE, so `println!` panics once the
//! reader has gone (`concur-sync status | head -1`); [`outln!`] and [`out!`] write through
//! [`write_stdout`] instead, which drops the rest of the output quietly when the pipe is
//! closed and lets the command end with its own exit code.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes `text` to standard output and flushes it. A closed pipe is not an error: this and
/// every later write are dropped without a message.
pub fn write_stdout(text: &str) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let written = crate::terminal::suspended(|| {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes()).and_then(|()| out.flush())
    });
    if let Err(e) = written {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            CLOSED.store(true, Ordering::Relaxed);
        } else {
            tracing::warn!(error = %e, "cannot write to standard output");
        }
    }
}

/// Like `print!`, without the panic on a closed pipe.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write_stdout(&format!($($arg)*))
    };
}

/// Like `println!`, without the panic on a closed pipe.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::output::write_stdout("\n")
    };
    ($($arg:tt)*) => {
        $crate::output::write_stdout(&format!("{}\n", format_args!($($arg)*)))
    };
}
