//! The process panic hook: a panic report goes to stderr, redacted, and never to stdout
//! (the JSON-RPC channel in stdio mode).

use std::io::Write;
use std::panic::PanicHookInfo;

use crate::redact;

/// Installs the hook for the whole process (call once, at start-up).
pub fn install() {
    std::panic::set_hook(Box::new(|info| {
        if crate::log_lines::json() {
            // One JSON object like every other line (the writer masks secrets again).
            tracing::error!("{}", report(info));
            return;
        }
        // `eprintln!` would panic inside the hook (an abort) when stderr is a closed pipe.
        let _ = writeln!(std::io::stderr().lock(), "{}", report(info));
    }));
}

/// The one line the hook writes: `panic at FILE:LINE: MESSAGE`, secrets masked.
pub fn report(info: &PanicHookInfo<'_>) -> String {
    let location = info
        .location()
        .map(|l| format!(" at {}:{}", l.file(), l.line()))
        .unwrap_or_default();
    format!(
        "panic{location}: {}",
        redact::redact(&payload_text(info.payload()))
    )
}

/// The text of a panic payload (`&str` or `String`; anything else is just "panic").
pub fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}
