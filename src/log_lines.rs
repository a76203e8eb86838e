//! The few lines written to stderr outside a tracing event (start-up errors, the panic
//! report) follow `--log-format`: plain text as always, or with `json` one tracing event
//! like every other line, so that a log collector reads nothing but JSON objects.

use std::sync::atomic::{AtomicBool, Ordering};

static JSON: AtomicBool = AtomicBool::new(false);

/// Called once by logging set-up: whether log lines are JSON objects.
pub fn use_json(on: bool) {
    JSON.store(on, Ordering::Relaxed);
}

/// Whether log lines are JSON objects.
pub fn json() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// `error: MESSAGE` on stderr, or the same as an ERROR event in JSON; secrets masked.
pub fn error(message: &str) {
    let message = crate::redact::redact(message);
    if json() {
        tracing::error!("{message}");
    } else {
        use std::io::Write;
        // `eprintln!` panics on a closed stderr; a lost line is better than that.
        let _ = writeln!(std::io::stderr().lock(), "error: {message}");
    }
}
